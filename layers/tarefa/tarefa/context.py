"""What a job handler gets besides its payload: who it is, and the services real work needs.

Handlers run at least once per attempt and attempts can repeat, so the context makes "exactly
once in effect" easy: `step_key` gives a provider idempotency key that is the same for every
attempt of a job's step, and `once` records a step's result so a later attempt reuses it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from tarefa.errors import PermanentJobError

if TYPE_CHECKING:
    from tarefa.cache import Cache
    from tarefa.outbound import OutboundHttp
    from tarefa.ratelimit import RateLimiter
    from tarefa.webhooks import WebhookService

# Every step key of every job lives in this namespace: uuid5(namespace, "<job id>/<step>").
STEP_NAMESPACE = uuid.UUID("5b0b5a8e-3f7e-4c55-9d0e-7a6c1f1e2d11")
STEP_RECORD_MAX_BYTES = 350_000  # an idempotency-table item stays under DynamoDB's 400 KB
STEP_RECORD_LIFETIME = timedelta(days=30)  # longer than any job lives (retention + retries)
PROGRESS_MESSAGE_MAX = 200

job_logger = Logger(child=True)


class StepStore(Protocol):
    """Where `once` keeps a step's result (the idempotency table on AWS)."""

    def get_step(self, key: str) -> str | None: ...

    def put_step(self, key: str, value: str, lifetime: timedelta) -> bool:
        """Record `value` unless the key exists; False when it did (someone recorded first)."""


class Enqueue(Protocol):
    def __call__(
        self,
        job_type: str,
        payload: Any,
        *,
        idempotency_key: str,
        user_id: str | None,
        priority: str | None,
        delay_seconds: int,
        max_attempts: int | None,
        order_id: str | None,
        callback_url: str | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class JobServices:
    """What the composition root hands every context; each is None where not configured."""

    cache: Cache | None = None
    limiter: RateLimiter | None = None
    secret: Callable[[str, str | None], Any] | None = None
    http: Callable[[], OutboundHttp] | None = None
    steps: StepStore | None = None
    enqueue: Enqueue | None = None
    wake: Callable[[str], bool] | None = None
    webhooks: Callable[[], WebhookService] | None = None


class ServiceUnavailableError(RuntimeError):
    """The handler asked for a service this deployment does not configure."""


class JobContext:
    """One attempt of one job, as its handler sees it."""

    def __init__(
        self,
        job_id: str,
        attempt: int,
        max_attempts: int,
        user_id: str | None,
        *,
        job_type: str = "",
        services: JobServices | None = None,
        report_progress: Callable[[int, str | None], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.user_id = user_id
        self.job_type = job_type
        self.logger = job_logger  # the worker binds job_id and job_type to every line
        self._services = services or JobServices()
        self._report_progress = report_progress

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    # -- services ---------------------------------------------------------------------------
    @property
    def cache(self) -> Cache | None:
        """The platform cache (None when the deployment has none): never the source of truth."""
        return self._services.cache

    @property
    def limiter(self) -> RateLimiter | None:
        return self._services.limiter

    @property
    def http(self) -> OutboundHttp:
        """The engine's outbound HTTP client: timeouts, size cap, SSRF guard, retry classes."""
        if self._services.http is None:
            raise ServiceUnavailableError("no outbound HTTP client is configured")
        return self._services.http()

    def secret(self, name: str, transform: str | None = None) -> Any:
        """A Secrets Manager secret (cached 5 minutes); `transform="json"` parses it."""
        if self._services.secret is None:
            raise ServiceUnavailableError("no secrets are configured")
        return self._services.secret(name, transform)

    # -- exactly once in effect -------------------------------------------------------------
    @property
    def idempotency_key(self) -> str:
        """Stable for the job: the same on every attempt and every duplicate delivery."""
        return self.step_key("")

    def step_key(self, step: str) -> str:
        """Stable per job and step (a UUID): send it as a provider's idempotency key, so a
        repeated attempt of the same step is recognised by the provider."""
        return str(uuid.uuid5(STEP_NAMESPACE, f"{self.job_id}/{step}"))

    def once(self, step: str, fn: Callable[[], Any]) -> Any:
        """Run `fn` for this step unless an earlier attempt recorded its result, and return
        that result (as JSON: a model comes back as a dict, every time). The record is written after `fn` returns: a crash in between runs `fn`
        again on the next attempt, so give the provider `step_key(step)` as well. Costs one
        GetItem per call and one conditional PutItem the first time. The result must be JSON."""
        steps = self._services.steps
        if steps is None:
            raise ServiceUnavailableError("no step store is configured")
        if not step:
            raise ValueError("a step needs a name")
        key = f"step#{self.job_id}#{step}"
        recorded = steps.get_step(key)
        if recorded is not None:
            return json.loads(recorded)["value"]
        encoded = _encode_step(step, fn())
        if not _record_step(steps, key, encoded):
            again = steps.get_step(key)  # a concurrent duplicate (or our lost answer) recorded it
            if again is not None:
                encoded = again
        return json.loads(encoded)["value"]  # the same shape on every attempt

    def progress(self, percent: float, message: str | None = None) -> None:
        """Record how far the job is (0-100); shown by GET /jobs/{id}, the CLI and the dashboard.
        One job write per call: report milestones, not every item."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be 0..100")
        if message is not None and len(message) > PROGRESS_MESSAGE_MAX:
            message = message[: PROGRESS_MESSAGE_MAX - 1] + "…"
        if self._report_progress is not None:
            self._report_progress(round(percent), message)

    def enqueue(
        self,
        job_type: str,
        payload: Any,
        *,
        step: str | None = None,
        priority: str | None = None,
        delay_seconds: int = 0,
        max_attempts: int | None = None,
        order_id: str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Enqueue a follow-up job for the same user; idempotent per step (default: the type),
        so a repeated attempt returns the job the first one made. Returns its job id.
        `callback_url` (one of the user's webhook subscriptions) gets the job's ending."""
        if self._services.enqueue is None:
            raise ServiceUnavailableError("this context cannot enqueue jobs")
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json", by_alias=True)
        return self._services.enqueue(
            job_type,
            payload,
            idempotency_key=self.step_key(f"enqueue:{step or job_type}"),
            user_id=self.user_id,
            priority=priority,
            delay_seconds=delay_seconds,
            max_attempts=max_attempts,
            order_id=order_id,
            callback_url=callback_url,
        )

    @property
    def webhooks(self) -> WebhookService:
        """The engine's webhook service (the built-in webhook.delivery job uses it)."""
        if self._services.webhooks is None:
            raise ServiceUnavailableError("no webhook service is configured")
        return self._services.webhooks()

    def publish(
        self,
        event: str,
        data: dict[str, Any],
        *,
        key: str | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Deliver `event` to the job owner's webhook subscriptions that want it (and to the
        one whose URL is `url`), signed; idempotent on `key` (default: this job's step
        `publish:<event>`), so a repeated attempt makes no second delivery. The delivery job ids."""
        from tarefa.jobs import SYSTEM_USER

        return self.webhooks.publish(
            self.user_id or SYSTEM_USER,
            event,
            data,
            key=key or self.step_key(f"publish:{event}"),
            url=url,
            headers=headers,
        )

    def wake(self, job_id: str) -> bool:
        """Run a job that waits for its next attempt now (a poll whose answer a webhook just
        brought); False when it is not waiting. The woken attempt counts as one."""
        if self._services.wake is None:
            raise ServiceUnavailableError("this context cannot wake jobs")
        return self._services.wake(job_id)


RECORD_PAUSES = (0.1, 0.4, 1.2)  # the step's record is retried within the attempt


def _record_step(
    steps: StepStore, key: str, encoded: str, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """The side effect happened: its record is worth a few tries before the attempt gives up
    (and the step runs again next time, which the provider's step_key absorbs)."""
    for pause in (*RECORD_PAUSES, None):
        try:
            return steps.put_step(key, encoded, STEP_RECORD_LIFETIME)
        except Exception:
            if pause is None:
                raise
            sleep(pause)
    raise AssertionError("unreachable")


def _encode_step(step: str, result: Any) -> str:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json", by_alias=True)
    try:
        encoded = json.dumps({"value": result}, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise PermanentJobError(
            f"step {step!r} returned a {type(result).__name__}, which is not JSON", code="STEP_NOT_JSON"
        ) from None
    if len(encoded.encode()) > STEP_RECORD_MAX_BYTES:
        raise PermanentJobError(
            f"step {step!r} returned {len(encoded)} bytes; a step's record holds at most "
            f"{STEP_RECORD_MAX_BYTES}",
            code="RESULT_TOO_LARGE",
        )
    return encoded
