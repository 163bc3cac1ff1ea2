"""Job types for tests/e2e/test_flow_control.py, loaded by a stack of its own with
`--parameter-overrides JobModules=demo,e2e_flow_jobs`. Each handler takes `seconds` to run and
returns when it started and ended (the worker's wall clock, one process), so a test reads from
the jobs' results alone whether two of them ran at once."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tarefa import JobContext, JobPolicy, job_type


class Timed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=64)
    seconds: float = Field(0.5, ge=0, le=5)
    n: int = 0


def _key(payload: Timed) -> str:
    return payload.key


def _run(payload: Timed) -> dict[str, Any]:
    started = time.time()
    time.sleep(payload.seconds)
    return {"key": payload.key, "n": payload.n, "startedAt": started, "endedAt": time.time()}


@job_type("e2e.flow.one", policy=JobPolicy(concurrency=1, concurrency_key=_key, timeout_seconds=30))
def one_per_key(payload: Timed, ctx: JobContext) -> dict[str, Any]:
    """One at a time per key (seed 003's session:init)."""
    return _run(payload)


@job_type("e2e.flow.free", policy=JobPolicy(timeout_seconds=30))
def free(payload: Timed, ctx: JobContext) -> dict[str, Any]:
    """The control: the same work, no limit."""
    return _run(payload)


@job_type("e2e.flow.unique", policy=JobPolicy(unique_key=_key, timeout_seconds=30))
def unique(payload: Timed, ctx: JobContext) -> dict[str, Any]:
    """One active job per owner and key."""
    return _run(payload)
