from __future__ import annotations

from pydantic import BaseModel

from tarefa import JobContext, JobPolicy, job_type


class Ping(BaseModel):
    n: int


@job_type("samples.ping", policy=JobPolicy(max_attempts=2), aliases=["SAMPLES_PING"])
def ping(payload: Ping, ctx: JobContext) -> int:
    return payload.n + 1
