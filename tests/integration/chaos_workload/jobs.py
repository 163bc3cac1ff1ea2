"""`chaos.work`: one job type whose payload says how each job is meant to end, and a ledger of
what really happened in its handler (the process runs the handlers in-process, so module-level
state is shared with the harness, tests/integration/chaos.py).

A plan is one of: a plain success; `fail_times` planned RetryableJobErrors on attempts 1..n,
then a success; a PermanentJobError; or a side effect through `ctx.once` followed by a crash
(once per job, the first time the handler gets past the side effect), then a success.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tarefa import JobContext, JobPolicy, PermanentJobError, RetryableJobError, job_type

PERMANENT_CODE = "CHAOS_PERMANENT"
MAX_ATTEMPTS = 6  # the largest plan needs 3; the rest is room for faults inside the handler


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str = Field(min_length=1, max_length=64)  # the submission this job came from
    fail_times: int = Field(0, ge=0, le=2)
    permanent: bool = False
    effect: bool = False
    crash: Literal["exception", "retryable"] = "exception"


class Ledger:
    """What the handlers did, by job id."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()  # handler invocations
        self.effects: Counter[str] = Counter()  # real executions of the `once` step's function
        self.succeeded: set[str] = set()  # the handler returned a result at least once
        self.crashed_after_effect: set[str] = set()

    def clear(self) -> None:
        self.runs.clear()
        self.effects.clear()
        self.succeeded.clear()
        self.crashed_after_effect.clear()


LEDGER = Ledger()


@job_type("chaos.work", policy=JobPolicy(max_attempts=MAX_ATTEMPTS, backoff=(2, 4), timeout_seconds=30))
def work(plan: Plan, ctx: JobContext) -> dict[str, Any]:
    LEDGER.runs[ctx.job_id] += 1
    if plan.permanent:
        raise PermanentJobError("planned permanent failure", code=PERMANENT_CODE)
    charged: Any = None
    if plan.effect:

        def charge() -> dict[str, str]:
            LEDGER.effects[ctx.job_id] += 1  # what a provider would have received
            return {"key": ctx.step_key("charge")}

        charged = ctx.once("charge", charge)
        ctx.progress(50, "charged")
        if ctx.job_id not in LEDGER.crashed_after_effect:
            LEDGER.crashed_after_effect.add(ctx.job_id)
            if plan.crash == "retryable":
                raise RetryableJobError("planned crash after the side effect")
            raise RuntimeError("planned crash after the side effect")
    if ctx.attempt <= plan.fail_times:
        raise RetryableJobError(f"planned failure on attempt {ctx.attempt} of {plan.fail_times}")
    LEDGER.succeeded.add(ctx.job_id)
    return {"tag": plan.tag, "attempt": ctx.attempt, "charged": charged}
