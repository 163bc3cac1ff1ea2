"""`tools.everything`: a handler that uses every service of its context, with a side effect
that must happen once although its first attempt fails after it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tarefa import JobContext, JobPolicy, RetryableJobError, cache_family, job_type

TOOLS = cache_family("tools", 600)
SIDE_EFFECTS: list[str] = []  # what a provider would have received, by idempotency key


class Everything(BaseModel):
    url: str
    secret: str
    fail_after_side_effect: bool = True


@job_type("tools.everything", policy=JobPolicy(max_attempts=3, backoff=(5,)))
def everything(payload: Everything, ctx: JobContext) -> dict[str, Any]:
    assert ctx.cache is not None
    seen = ctx.cache.get(TOOLS, ctx.job_id)
    ctx.cache.set(TOOLS, ctx.job_id, {"attempt": ctx.attempt})
    secret = ctx.secret(payload.secret, transform="json")
    ctx.progress(25, "secret read")
    answer = ctx.http.get(payload.url, headers={"Authorization": f"Bearer {secret['token']}"}).json()
    ctx.progress(50, "provider answered")

    def charge() -> dict[str, Any]:
        SIDE_EFFECTS.append(ctx.step_key("charge"))
        return {"charged": True, "key": ctx.step_key("charge")}

    charged = ctx.once("charge", charge)
    if payload.fail_after_side_effect and ctx.attempt == 1:
        raise RetryableJobError("crash between the side effect and the job's record")
    ctx.progress(100, "done")
    return {"answer": answer, "charged": charged, "cachedFromAttempt": seen, "attempt": ctx.attempt}
