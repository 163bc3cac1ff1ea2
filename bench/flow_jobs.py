"""The job types bench/flow_bench.py measures: one echo handler, the same policy but for the one
flow-control option each turns on (loaded as a user's module, TAREFA_JOB_MODULES=bench.flow_jobs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tarefa import JobContext, JobPolicy, PermanentJobError, job_type


class Work(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=100)
    n: int = 0


# The bench's hook: called while a handler runs (another worker invocation polling meanwhile,
# as a second Lambda would). Empty unless a scenario sets it.
DURING: list[Callable[[], None]] = []


def _key(payload: Work) -> str:
    return payload.key


def _echo(payload: Work) -> dict[str, Any]:
    for hook in list(DURING):
        hook()
    return {"key": payload.key, "n": payload.n}


@job_type("bench.plain", policy=JobPolicy())
def plain(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """Every option off: what the others are measured against."""
    return _echo(payload)


@job_type("bench.concurrency", policy=JobPolicy(concurrency=4, concurrency_key=_key))
def concurrency(payload: Work, ctx: JobContext) -> dict[str, Any]:
    return _echo(payload)


@job_type("bench.concurrency_one", policy=JobPolicy(concurrency=1, concurrency_key=_key))
def concurrency_one(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """One at a time per key: with overlapping invocations, jobs wait for the slot."""
    return _echo(payload)


@job_type("bench.unique", policy=JobPolicy(unique_key=_key))
def unique(payload: Work, ctx: JobContext) -> dict[str, Any]:
    return _echo(payload)


@job_type("bench.debounce", policy=JobPolicy(debounce=5, debounce_key=_key, debounce_max_wait=30))
def debounce(payload: Work, ctx: JobContext) -> dict[str, Any]:
    return _echo(payload)


@job_type("bench.fair", policy=JobPolicy(fairness_key=_key))
def fair(payload: Work, ctx: JobContext) -> dict[str, Any]:
    return _echo(payload)


@job_type("bench.fails", policy=JobPolicy(max_attempts=1))
def fails(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """Ends FAILED at once: what a bulk retry acts on."""
    raise PermanentJobError("refused for the bench", code="REFUSED")
