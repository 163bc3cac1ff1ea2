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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, Field, JsonValue, RootModel

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
    # Top-level payload fields (by name or alias) that are encrypted before the job is stored or
    # sent, opened only for the handler, and read "[redacted]" everywhere else (tarefa.sensitive).
    sensitive: Sequence[str] = ()
    # Flow control (tarefa.flow; README "Flow control"), each off unless set. The key functions
    # get the validated payload, as `rate_key` does.
    # At most `concurrency` jobs of one `concurrency_key(payload)` run at once (one shared key
    # when None), across every worker invocation: a job over it waits, its attempts untouched.
    concurrency: int | None = None
    concurrency_key: Callable[[Any], str] | None = None
    # While a job of the caller's `unique_key(payload)` is PENDING, PROCESSING or RETRYING, a
    # second enqueue with that key returns it (200, as an idempotency key does).
    unique_key: Callable[[Any], str] | None = None
    # A burst of enqueues for one `debounce_key(payload)` runs once, the last one, after the key
    # was quiet for `debounce` s and never later than `debounce_max_wait` s after the first
    # (10 x debounce when None); the others end CANCELLED (DEBOUNCED).
    debounce: int | None = None
    debounce_key: Callable[[Any], str] | None = None
    debounce_max_wait: int | None = None
    # The SQS message group (the fair queues' tenant); the job's owner when None.
    fairness_key: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        _check_flow_control(self)
        if isinstance(self.sensitive, str):
            raise JobTypeError("sensitive must be a sequence of field names, e.g. ('password',)")
        object.__setattr__(self, "sensitive", tuple(self.sensitive))
        if any(not isinstance(name, str) or not name for name in self.sensitive):
            raise JobTypeError("sensitive field names must be non-empty strings")
        if not 1 <= self.max_attempts <= 25:
            raise JobTypeError(f"max_attempts must be 1..25, got {self.max_attempts}")
        if not 1 <= self.timeout_seconds <= LAMBDA_MAX_TIMEOUT_SECONDS:
            raise JobTypeError(f"timeout_seconds must be 1..{LAMBDA_MAX_TIMEOUT_SECONDS}")
        if not self.backoff or any(not 0 <= step <= MAX_DELAY_SECONDS for step in self.backoff):
            raise JobTypeError(f"backoff steps must be 0..{MAX_DELAY_SECONDS} s, and at least one")


MAX_CONCURRENCY = 1000  # slots are items: past this a key's slots cost more to scan than they save
MAX_DEBOUNCE_SECONDS = 900  # a debounced job's message waits by SQS's delay (at most 15 minutes)
MAX_DEBOUNCE_WAIT_SECONDS = 43_200
DEBOUNCE_MAX_WAIT_FACTOR = 10


def _check_flow_control(policy: JobPolicy) -> None:
    """Impossible flow-control policies stop the import that declares them."""
    for name in ("concurrency_key", "unique_key", "debounce_key", "fairness_key"):
        function = getattr(policy, name)
        if function is not None and not callable(function):
            raise JobTypeError(f"{name} must be a function of the payload, got {type(function).__name__}")
    if policy.concurrency is not None:
        if isinstance(policy.concurrency, bool) or not isinstance(policy.concurrency, int):
            raise JobTypeError(f"concurrency must be an int, got {policy.concurrency!r}")
        if not 1 <= policy.concurrency <= MAX_CONCURRENCY:
            raise JobTypeError(f"concurrency must be 1..{MAX_CONCURRENCY}, got {policy.concurrency}")
    elif policy.concurrency_key is not None:
        raise JobTypeError("concurrency_key needs concurrency=N (how many run at once per key)")
    if policy.debounce is None:
        if policy.debounce_key is not None or policy.debounce_max_wait is not None:
            raise JobTypeError("debounce_key and debounce_max_wait need debounce=seconds")
        return
    if isinstance(policy.debounce, bool) or not isinstance(policy.debounce, int):
        raise JobTypeError(f"debounce must be whole seconds, got {policy.debounce!r}")
    if not 1 <= policy.debounce <= MAX_DEBOUNCE_SECONDS:
        raise JobTypeError(f"debounce must be 1..{MAX_DEBOUNCE_SECONDS} s, got {policy.debounce}")
    wait = policy.debounce_max_wait
    if wait is not None and (
        isinstance(wait, bool)
        or not isinstance(wait, int)
        or not policy.debounce <= wait <= MAX_DEBOUNCE_WAIT_SECONDS
    ):
        raise JobTypeError(
            f"debounce_max_wait must be {policy.debounce}..{MAX_DEBOUNCE_WAIT_SECONDS} s (at least the "
            f"debounce), got {wait!r}"
        )
    if policy.unique_key is not None:
        raise JobTypeError(
            "debounce and unique_key exclude each other: a debounced burst's enqueues each make a job, "
            "unique_key returns the first"
        )


Handler = Callable[[Any, "JobContext"], Any]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SensitiveField:
    """A payload field declared sensitive: `key` is its name in the stored payload (the model's
    dump by alias); `inputs` every key a request may carry it under (name and aliases)."""

    name: str
    key: str
    inputs: frozenset[str]


@dataclass(frozen=True)
class JobType:
    name: str
    payload_model: type[BaseModel]
    handler: Handler
    policy: JobPolicy = field(default_factory=JobPolicy)
    aliases: tuple[str, ...] = ()
    sensitive_fields: tuple[SensitiveField, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sensitive_fields", _sensitive_fields(self.name, self.payload_model, self.policy)
        )

    @property
    def module(self) -> str:
        return str(getattr(self.handler, "__module__", ""))

    @property
    def sensitive_keys(self) -> tuple[str, ...]:
        """The stored payload's keys whose values are sealed (empty for most types)."""
        return tuple(f.key for f in self.sensitive_fields)

    def flow_control(self) -> dict[str, Any]:
        """The flow-control options that are on (GET /job-types); keys are named by whether a
        key function is set, never by what it returns."""
        p = self.policy
        shown: dict[str, Any] = {}
        if p.concurrency is not None:
            shown["concurrency"] = {"limit": p.concurrency, "perKey": p.concurrency_key is not None}
        if p.unique_key is not None:
            shown["uniqueWhileActive"] = True
        if p.debounce is not None:
            shown["debounce"] = {
                "seconds": p.debounce,
                "maxWaitSeconds": self.debounce_max_wait,
                "perKey": p.debounce_key is not None,
            }
        if p.rate is not None:
            shown["rate"] = {
                "limit": p.rate.limit,
                "windowSeconds": p.rate.window_seconds,
                "perKey": p.rate_key is not None,
            }
        shown["fairness"] = "fairness_key" if p.fairness_key is not None else "owner"
        return shown

    @property
    def debounce_max_wait(self) -> int | None:
        p = self.policy
        if p.debounce is None:
            return None
        return p.debounce_max_wait or min(MAX_DEBOUNCE_WAIT_SECONDS, DEBOUNCE_MAX_WAIT_FACTOR * p.debounce)

    def describe(self) -> dict[str, Any]:
        """What GET /job-types lists; sensitive fields are `writeOnly` in the schema."""
        schema = self.payload_model.model_json_schema(by_alias=True)
        inputs = {key for f in self.sensitive_fields for key in f.inputs}
        for name, prop in schema.get("properties", {}).items():
            if name in inputs and isinstance(prop, dict):
                prop["writeOnly"] = True
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "priority": str(self.policy.priority),
            "maxAttempts": self.policy.max_attempts,
            "timeoutSeconds": self.policy.timeout_seconds,
            "sensitive": list(self.sensitive_keys),
            "flowControl": self.flow_control(),
            "payloadSchema": schema,
        }


def _sensitive_fields(
    type_name: str, model: type[BaseModel], policy: JobPolicy
) -> tuple[SensitiveField, ...]:
    """Resolve JobPolicy.sensitive against the payload model: each must name one of its
    top-level fields (by name or alias), or the type is refused at declaration."""
    if not policy.sensitive:
        return ()
    fields = {} if issubclass(model, RootModel) else model.model_fields
    found: list[SensitiveField] = []
    for declared_name in policy.sensitive:
        for name, info in fields.items():
            inputs = {name} | {a for a in (info.alias, info.serialization_alias) if a}
            inputs |= _validation_names(info.validation_alias)
            if declared_name in inputs:
                key = info.serialization_alias or info.alias or name
                if any(f.name == name for f in found):
                    raise JobTypeError(
                        f"job type {type_name!r}: sensitive field {declared_name!r} is named twice"
                    )
                found.append(SensitiveField(name, key, frozenset(inputs)))
                break
        else:
            known = ", ".join(sorted(fields)) or "none: the payload model has no fields"
            raise JobTypeError(
                f"job type {type_name!r}: sensitive field {declared_name!r} is not a top-level field of "
                f"{model.__name__} (its fields: {known})"
            )
    return tuple(found)


def _validation_names(alias: Any) -> set[str]:
    if isinstance(alias, str):
        return {alias}
    if isinstance(alias, AliasChoices):
        return {c for c in alias.choices if isinstance(c, str)} | {
            c.path[0] for c in alias.choices if isinstance(c, AliasPath) and isinstance(c.path[0], str)
        }
    if isinstance(alias, AliasPath) and alias.path and isinstance(alias.path[0], str):
        return {alias.path[0]}
    return set()


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

    def check_no_sensitive_fields(self, why: str) -> None:
        """Sensitive fields need a KMS key: without one, such a type stops the start."""
        for job_type in self._types.values():
            if job_type.sensitive_fields:
                raise JobTypeError(
                    f"job type {job_type.name!r} ({job_type.module}) declares sensitive fields "
                    f"{list(job_type.sensitive_keys)}, but {why}"
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


# webhook.delivery (seed 003's webhook:delivery): low priority, 3 attempts 10 s and 30 s apart
# (seed 003's 10/30/90 ladder); a receiver gets at most 30 s (the subscription's timeout).
WEBHOOK_DELIVERY_POLICY = JobPolicy(
    priority=Priority.LOW, max_attempts=3, backoff=(10, 30, 90), timeout_seconds=75
)
# With a KMS key the event's data is a sensitive field: what a workload publishes (a message's
# text, a phone number) is sealed in the jobs table and in the queue, `[redacted]` in GET /jobs,
# and opened only for the POST. Without a key the type cannot declare it (such a type stops the
# start, tarefa.wiring), so the data is stored as it is, as the subscriptions' secrets are.
SEALED_WEBHOOK_DELIVERY_POLICY = replace(WEBHOOK_DELIVERY_POLICY, sensitive=("data",))


def default_registry(
    test_jobs: bool, modules: Iterable[str] = (), *, seal_deliveries: bool = False
) -> JobTypeRegistry:
    """The built-in types (`system.fail` only when TAREFA_TEST_JOBS=1), then the modules';
    `seal_deliveries` (a KMS key is configured) makes webhook.delivery's data sensitive."""
    from tarefa.webhook_job import DELIVERY_ALIAS, DELIVERY_TYPE, DeliveryPayload, deliver

    registry = JobTypeRegistry()
    registry.register(JobType("system.echo", EchoPayload, echo))
    policy = SEALED_WEBHOOK_DELIVERY_POLICY if seal_deliveries else WEBHOOK_DELIVERY_POLICY
    registry.register(JobType(DELIVERY_TYPE, DeliveryPayload, deliver, policy, (DELIVERY_ALIAS,)))
    if test_jobs:
        registry.register(JobType("system.fail", FailPayload, fail))
    load_modules(registry, modules)
    return registry
