from __future__ import annotations

from pydantic import BaseModel

from tarefa import JobContext, JobPolicy, job_type


class Nothing(BaseModel):
    pass


@job_type("samples.slow", policy=JobPolicy(timeout_seconds=600))
def slow(payload: Nothing, ctx: JobContext) -> None:
    return None
