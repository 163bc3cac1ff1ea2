"""Job types: a name, a payload model, a handler and the policy that governs retries.

Workloads (payments, messaging, guest registration) register their types here; the API validates
payloads against the model before a job is accepted, and the worker validates again for jobs that
producers sent straight to SQS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, RootModel

from tarefa.backoff import DEFAULT_LADDER
from tarefa.errors import PermanentJobError, RetryableJobError, UnknownJobTypeError
from tarefa.job import Priority
from tarefa.ratelimit import Rate


@dataclass(frozen=True)
class JobContext:
    """What a handler may know about the attempt it runs in."""

    job_id: str
    attempt: int
    max_attempts: int
    user_id: str | None


@dataclass(frozen=True)
class JobPolicy:
    priority: Priority = Priority.MEDIUM
    max_attempts: int = 3
    backoff: Sequence[int] = DEFAULT_LADDER
    timeout_seconds: int = 60
    # At most `rate` runs per window for each `rate_key(payload)` (one shared key when None);
    # a job over it waits in its queue instead of failing (seed 003: 80/60 per session).
    rate: Rate | None = None
    rate_key: Callable[[Any], str] | None = None


Handler = Callable[[Any, JobContext], Any]


@dataclass(frozen=True)
class JobType:
    name: str
    payload_model: type[BaseModel]
    handler: Handler
    policy: JobPolicy = field(default_factory=JobPolicy)


class JobTypeRegistry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> None:
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is already registered")
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobTypeError(name) from None

    def names(self) -> list[str]:
        return sorted(self._types)


class EchoPayload(RootModel[JsonValue]):
    """Any JSON value; the result is the payload itself."""


def echo(payload: EchoPayload, ctx: JobContext) -> JsonValue:
    return payload.root


class FailPayload(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    fail_times: int = Field(0, alias="failTimes", ge=0, le=100)
    permanent: bool = False
    sleep_seconds: float = Field(0, alias="sleepSeconds", ge=0, le=900)


def fail(payload: FailPayload, ctx: JobContext) -> dict[str, bool]:
    """Test and demo job: fails its first `failTimes` attempts, then succeeds."""
    if payload.sleep_seconds:
        time.sleep(payload.sleep_seconds)
    if ctx.attempt <= payload.fail_times:
        message = f"system.fail: attempt {ctx.attempt} of {payload.fail_times} planned failures"
        if payload.permanent:
            raise PermanentJobError(message)
        raise RetryableJobError(message)
    return {"ok": True}


def default_registry(test_jobs: bool) -> JobTypeRegistry:
    """The built-in types; `system.fail` only when TAREFA_TEST_JOBS=1."""
    registry = JobTypeRegistry()
    registry.register(JobType("system.echo", EchoPayload, echo))
    if test_jobs:
        registry.register(JobType("system.fail", FailPayload, fail))
    return registry
