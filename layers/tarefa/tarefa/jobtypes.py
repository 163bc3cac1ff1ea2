"""Job types: a name, a payload model, a handler and the policy that governs retries.

Workloads declare their types where they live, with `@job_type` (as dramatiq's `@actor` or
Celery's `@app.task`); the deployed functions import the modules named in TAREFA_JOB_MODULES
once per cold start. The API validates payloads against the model before a job is accepted, and
the worker validates again for jobs that producers sent straight to SQS.
"""

from __future__ import annotations

import importlib
import inspect
import re
import time
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, RootModel

from tarefa.backoff import DEFAULT_LADDER, MAX_DELAY_SECONDS
from tarefa.errors import PermanentJobError, RetryableJobError, UnknownJobTypeError
from tarefa.job import Priority
from tarefa.ratelimit import Rate

if TYPE_CHECKING:
    from tarefa.context import JobContext

LAMBDA_MAX_TIMEOUT_SECONDS = 900
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"


class JobTypeError(Exception):
    """A job type or a module of them cannot be registered or loaded: a start-up error."""


@dataclass(frozen=True)
class JobPolicy:
    priority: Priority = Priority.MEDIUM
    max_attempts: int = 3
    backoff: Sequence[int] = DEFAULT_LADDER
    timeout_seconds: int = 60
    # At most `rate` runs per window for each `rate_key(payload)` (one shared key when None);
    # a job over it waits in its queue instead of failing. `rate_key` gets the validated payload.
    rate: Rate | None = None
    rate_key: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 25:
            raise JobTypeError(f"max_attempts must be 1..25, got {self.max_attempts}")
        if not 1 <= self.timeout_seconds <= LAMBDA_MAX_TIMEOUT_SECONDS:
            raise JobTypeError(f"timeout_seconds must be 1..{LAMBDA_MAX_TIMEOUT_SECONDS}")
        if not self.backoff or any(not 0 <= step <= MAX_DELAY_SECONDS for step in self.backoff):
            raise JobTypeError(f"backoff steps must be 0..{MAX_DELAY_SECONDS} s, and at least one")


Handler = Callable[[Any, "JobContext"], Any]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobType:
    name: str
    payload_model: type[BaseModel]
    handler: Handler
    policy: JobPolicy = field(default_factory=JobPolicy)
    aliases: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return str(getattr(self.handler, "__module__", ""))

    def describe(self) -> dict[str, Any]:
        """What GET /job-types lists."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "priority": str(self.policy.priority),
            "maxAttempts": self.policy.max_attempts,
            "timeoutSeconds": self.policy.timeout_seconds,
            "payloadSchema": self.payload_model.model_json_schema(by_alias=True),
        }


class JobTypeRegistry:
    """Types by name; an alias resolves to its canonical type (stored and listed under it)."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self._names: dict[str, str] = {}  # every name and alias -> canonical name

    def register(self, job_type: JobType) -> None:
        for name in (job_type.name, *job_type.aliases):
            if not re.match(NAME_PATTERN, name):
                raise JobTypeError(f"job type name {name!r} must match {NAME_PATTERN}")
            if name in self._names:
                owner = self._types[self._names[name]]
                raise JobTypeError(
                    f"job type name {name!r} is already taken by {owner.name!r} ({owner.module})"
                )
        self._types[job_type.name] = job_type
        for name in (job_type.name, *job_type.aliases):
            self._names[name] = job_type.name

    def job_type(
        self,
        name: str,
        *,
        policy: JobPolicy | None = None,
        aliases: Iterable[str] = (),
        payload_model: type[BaseModel] | None = None,
    ) -> Callable[[F], F]:
        """Declare the decorated function as the handler of job type `name`; its first
        parameter's annotation (a pydantic model) is the payload model."""

        def declare(handler: F) -> F:
            model = payload_model or _payload_model_of(handler, name)
            self.register(JobType(name, model, handler, policy or JobPolicy(), tuple(aliases)))
            return handler

        return declare

    def get(self, name: str) -> JobType:
        try:
            return self._types[self._names[name]]
        except KeyError:
            raise UnknownJobTypeError(name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def names(self) -> list[str]:
        return sorted(self._types)

    def types(self) -> list[JobType]:
        return [self._types[n] for n in self.names()]

    def check_timeouts(self, worker_timeout_seconds: int) -> None:
        """A job that may run longer than the worker function would be killed mid-run."""
        for job_type in self._types.values():
            if job_type.policy.timeout_seconds > worker_timeout_seconds:
                raise JobTypeError(
                    f"job type {job_type.name!r} ({job_type.module}) has timeout_seconds="
                    f"{job_type.policy.timeout_seconds}, above the worker's {worker_timeout_seconds} s"
                )


def _payload_model_of(handler: Callable[..., Any], name: str) -> type[BaseModel]:
    parameters = list(inspect.signature(handler).parameters)
    if len(parameters) != 2:
        raise JobTypeError(f"job type {name!r}: the handler must take (payload, ctx)")
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:
        raise JobTypeError(f"job type {name!r}: cannot read the handler's annotations: {exc}") from None
    model = hints.get(parameters[0])
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise JobTypeError(
            f"job type {name!r}: annotate the handler's first parameter with a pydantic model "
            "(or pass payload_model=)"
        )
    return model


# Where `@job_type` declarations land; the container picks the types of the modules it loads.
declared = JobTypeRegistry()
job_type = declared.job_type


def load_modules(registry: JobTypeRegistry, modules: Iterable[str]) -> None:
    """Import each module and add the types declared in it (or in its submodules)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise JobTypeError(
                f"TAREFA_JOB_MODULES: cannot import {module!r}: {type(exc).__name__}: {exc}"
            ) from exc
        found = [t for t in declared.types() if t.module == module or t.module.startswith(module + ".")]
        if not found:
            raise JobTypeError(f"TAREFA_JOB_MODULES: module {module!r} declares no job type")
        for job_type_ in found:
            if job_type_.name not in registry:
                registry.register(job_type_)


# -- built-in types --------------------------------------------------------------------------
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


def default_registry(test_jobs: bool, modules: Iterable[str] = ()) -> JobTypeRegistry:
    """The built-in types (`system.fail` only when TAREFA_TEST_JOBS=1), then the modules'."""
    registry = JobTypeRegistry()
    registry.register(JobType("system.echo", EchoPayload, echo))
    if test_jobs:
        registry.register(JobType("system.fail", FailPayload, fail))
    load_modules(registry, modules)
    return registry
