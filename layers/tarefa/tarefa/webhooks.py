"""Signed webhook delivery, subscriptions and job callbacks: an engine capability.

A user subscribes a URL to event names (`POST /webhooks`) and gets its signing secret once. An
event published for that user (`tarefa.api.publish`, `ctx.publish`, a job's callback) becomes
one delivery per matching subscription: a `webhook.delivery` job (LOW priority, 3 attempts,
10 s then 30 s apart) that POSTs `{"type", "timestamp", "data"}` through the engine's outbound
client (the SSRF guard), signed per Standard Webhooks (tarefa.signing). Any 2xx delivers it;
410 disables the subscription; 429, 5xx and timeouts retry; any other answer fails it. Each
delivery's attempts are kept in the subscription's delivery log.

A job enqueued with `callbackUrl` (one of its owner's subscription URLs) gets `job.completed`,
`job.failed` or `job.cancelled` posted when it ends, whichever path ended it: the worker, the
maintenance sweeps or a cancel. The callback is keyed by the job and its ending, so however
often an ending is seen (a redelivered message), one delivery is made.

This module knows nothing of Lambda or boto3: storage is the WebhookStore port
(tarefa/adapters/dynamodb_webhooks.py), and the composition root (tarefa.wiring) wires it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import secrets as random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger
from pydantic import Field, field_validator

from tarefa.errors import (
    ConflictError,
    IdempotencyKeyReusedError,
    MalformedRequestError,
    PermanentJobError,
    Refusal,
    RetryableJobError,
    ValidationFailedError,
)
from tarefa.job import TERMINAL, CamelModel, Job, JobStatus, utcnow
from tarefa.signing import new_secret, signature_header
from tarefa.webhook_job import DELIVERY_ALIAS, DELIVERY_TYPE, DeliveryPayload

__all__ = ["DELIVERY_ALIAS", "DELIVERY_TYPE", "DeliveryPayload", "WebhookService"]

if TYPE_CHECKING:
    from tarefa.context import JobContext
    from tarefa.jobs import Caller, Enqueued, EnqueueRequest
    from tarefa.outbound import OutboundHttp

logger = Logger(child=True)

TEST_EVENT = "webhook.test"
JOB_EVENTS: dict[JobStatus, str] = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}
EVENT_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}(\.[a-z0-9_-]{1,64}){1,4}")
DEFAULT_TIMEOUT_SECONDS = 10
MAX_TIMEOUT_SECONDS = 30
ROTATION_OVERLAP = timedelta(hours=24)  # a rotated-out secret still signs this long
DELIVERY_RETENTION = timedelta(days=30)  # the delivery log (and publish's idempotency) lasts this long
MAX_SUBSCRIPTIONS_PER_USER = 50
MAX_EVENTS = 50
MAX_URL_LENGTH = 2048
MAX_DATA_BYTES = 200_000  # a delivery job's message stays under SQS's 256 KiB
# Sealed (a KMS key makes the data a sensitive field), the data travels as base64 ciphertext,
# 4/3 of its size: 150 KB of JSON is a message of about 200 KB.
SEALED_MAX_DATA_BYTES = 150_000
MAX_HEADERS = 10
MAX_RETRY_AFTER_SECONDS = 3600
PUBLISHER_HEADER_PREFIX = "x-tarefa-"
RESERVED_HEADERS = frozenset({"x-tarefa-event"})
USER_AGENT = "Tarefa-Webhooks/1"
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,512}")


class SubscriptionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"  # the receiver answered 410 Gone: nothing is sent any more


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"  # the subscription was deleted or disabled before it was sent


class Verdict(StrEnum):
    DELIVERED = "DELIVERED"
    RETRY = "RETRY"
    DISABLE = "DISABLE"
    FAIL = "FAIL"


def classify(status: int | None) -> Verdict:
    """What a receiver's answer means: None is no answer (a timeout, a dropped connection)."""
    if status is None or status == 429 or status >= 500:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.DISABLE
    return Verdict.FAIL


# -- errors -------------------------------------------------------------------------------------
class SubscriptionNotFoundError(Refusal):
    code = "WEBHOOK_NOT_FOUND"
    status = 404

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"Webhook subscription {subscription_id} was not found")


class SubscriptionExistsError(Refusal):
    code = "WEBHOOK_EXISTS"
    status = 409


class SubscriptionDisabledError(Refusal):
    code = "WEBHOOK_DISABLED"
    status = 409


class SubscriptionBusyError(Refusal):
    code = "WEBHOOK_BUSY"
    status = 409


class TooManySubscriptionsError(Refusal):
    code = "TOO_MANY_WEBHOOKS"
    status = 409


# -- records ------------------------------------------------------------------------------------
class StoredSecret(CamelModel):
    """A signing secret as stored: sealed (KMS envelope) when the deployment has a key."""

    sealed: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None = None  # set when rotated out: it signs until then

    def valid_at(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


class Subscription(CamelModel):
    id: str
    user_id: str
    url: str
    events: list[str]
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    secrets: list[StoredSecret] = Field(default_factory=list)
    version: int = 0

    @property
    def active(self) -> bool:
        return self.status == SubscriptionStatus.ACTIVE

    @property
    def listing_key(self) -> str:
        return f"{self.created_at.isoformat()}#{self.id}"

    def wants(self, event: str) -> bool:
        return "*" in self.events or event in self.events

    def public(self, now: datetime) -> dict[str, Any]:
        """What the API shows: never a secret, only until when a rotated-out one still signs."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"secrets", "version"}, exclude_none=True)
        expiring = [s.expires_at for s in self.secrets if s.expires_at is not None and s.valid_at(now)]
        if expiring:
            body["previousSecretExpiresAt"] = max(expiring).isoformat()
        return body


MAX_ATTEMPT_LOG = 10  # a delivery's attempts kept on it (3 a run; a retried job adds more)


class AttemptRecord(CamelModel):
    """One POST of a delivery, as the delivery log shows it."""

    attempt: int
    at: datetime
    response_code: int | None = None  # None: no answer (a timeout, a refused connection)
    latency_ms: int | None = None
    error: str | None = None


class Delivery(CamelModel):
    id: str  # the webhook-id header: the same on every attempt of this delivery
    subscription_id: str
    user_id: str
    event: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    job_id: str | None = None
    attempts: int = 0
    response_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    last_attempt_at: datetime | None = None
    # every attempt's answer, oldest first (the fields above are the latest one's)
    history: list[AttemptRecord] = Field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def with_attempt(self, record: AttemptRecord) -> list[AttemptRecord]:
        """The history with `record` (a repeat of an attempt, a redelivered message, replaces it)."""
        kept = [r for r in self.history if r.attempt != record.attempt]
        return sorted([*kept, record], key=lambda r: r.attempt)[-MAX_ATTEMPT_LOG:]


# -- requests -----------------------------------------------------------------------------------
def _event_names(events: list[str]) -> list[str]:
    for name in events:
        if name != "*" and not EVENT_PATTERN.fullmatch(name):
            raise ValueError(
                f"{name!r} is not an event name (lower-case dotted words like job.completed, or *)"
            )
    return list(dict.fromkeys(events))


class UpdateSubscriptionRequest(CamelModel):
    """PATCH /webhooks/{id}: turn a subscription off, or on again (after a 410 disabled it)."""

    enabled: bool


class CreateSubscriptionRequest(CamelModel):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    events: list[str] = Field(min_length=1, max_length=MAX_EVENTS)
    timeout_seconds: int = Field(DEFAULT_TIMEOUT_SECONDS, ge=1, le=MAX_TIMEOUT_SECONDS)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return _event_names(value)


class PageRequest(CamelModel):
    """A query string: `limit` parses from a string (lax), like GET /jobs."""

    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, min_length=1, max_length=2048)


# -- ports --------------------------------------------------------------------------------------
class WebhookStore(Protocol):
    def create(self, subscription: Subscription) -> None:
        """Write a new subscription; ConflictError when its owner already has its URL."""

    def get(self, subscription_id: str) -> Subscription | None: ...

    def by_url(self, user_id: str, url: str) -> Subscription | None: ...

    def for_user(
        self, user_id: str | None, limit: int, before_key: str | None
    ) -> tuple[list[Subscription], str | None]:
        """Newest first (every user's when `user_id` is None); the last listing key when more follow."""

    def save(self, subscription: Subscription, expected_version: int) -> None:
        """ConflictError when the stored version is not `expected_version`."""

    def delete(self, subscription: Subscription) -> None: ...

    def claim_delivery(self, delivery: Delivery, key_hash: str, expires_at: datetime) -> Delivery | None:
        """Record `delivery` as the one for (its subscription, key); None when this call did,
        else the delivery an earlier call recorded for that key."""

    def get_delivery(self, subscription_id: str, delivery_id: str) -> Delivery | None: ...

    def put_delivery(self, delivery: Delivery, expires_at: datetime) -> None: ...

    def deliveries(
        self, subscription_id: str, limit: int, after: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first; the last delivery id when more follow."""


class SecretBox(Protocol):
    def seal(self, subscription_id: str, secret: str) -> dict[str, Any]: ...

    def open(self, subscription_id: str, sealed: dict[str, Any]) -> str: ...


class Sealer(Protocol):
    """tarefa.sensitive.Codec's face: seal values for an id, open them again."""

    def seal(self, job_id: str, values: dict[str, Any]) -> dict[str, Any]: ...

    def open(self, job_id: str, envelope: Any) -> dict[str, Any]: ...


class EnvelopeSecrets:
    """Secrets sealed with the engine's KMS envelope codec (tarefa.sensitive), bound to the
    subscription's id: the table never holds a secret in the clear."""

    def __init__(self, codec: Callable[[], Sealer]) -> None:
        self.codec = codec

    def seal(self, subscription_id: str, secret: str) -> dict[str, Any]:
        from tarefa.errors import EncryptionUnavailableError
        from tarefa.sensitive import SealingUnavailableError

        try:
            return {"envelope": self.codec().seal(f"webhook:{subscription_id}", {"secret": secret})}
        except SealingUnavailableError:
            raise EncryptionUnavailableError(
                "The webhook secret could not be encrypted (KMS unavailable); nothing was changed, retry"
            ) from None

    def open(self, subscription_id: str, sealed: dict[str, Any]) -> str:
        if "plain" in sealed:  # stored by a deployment without a key
            return str(sealed["plain"])
        return str(self.codec().open(f"webhook:{subscription_id}", sealed["envelope"])["secret"])


class PlainSecrets:
    """Without a KMS key (TAREFA_SENSITIVE_KEY_ID empty) secrets are stored as they are; the
    table's own encryption at rest is all that protects them."""

    def seal(self, subscription_id: str, secret: str) -> dict[str, Any]:
        return {"plain": secret}

    def open(self, subscription_id: str, sealed: dict[str, Any]) -> str:
        if "plain" not in sealed:
            raise PermanentJobError(
                "the subscription's secret is sealed and no key opens it here", code="SECRET_SEALED"
            )
        return str(sealed["plain"])


Enqueue = Callable[["Caller", "EnqueueRequest"], "Enqueued"]


def new_subscription_id() -> str:
    """`wh_` + 24 hex digits: never one of the static segments under /webhooks (payments, ...)."""
    return "wh_" + random.token_hex(12)


def new_delivery_id(epoch: float) -> str:
    """`msg_` + milliseconds (hex) + randomness: ids sort by creation, newest last."""
    return f"msg_{int(epoch * 1000):012x}{random.token_hex(8)}"


def callback_key(job: Job) -> str:
    """One callback per ending of a job: its status, its wake count (a retry of a FAILED job
    bumps it) and when its last attempt started (a redriven job's new run differs)."""
    started = job.processing_started_at.isoformat() if job.processing_started_at else "-"
    return f"callback:{job.job_id}:{job.status}:{job.wake}:{started}"


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedRequestError("cursor is not one this API returned") from None


def _url_error(message: str) -> ValidationFailedError:
    return ValidationFailedError("The webhook URL is not allowed", [{"field": "url", "message": message}])


class WebhookService:
    def __init__(
        self,
        store: WebhookStore,
        secrets: SecretBox,
        http: Callable[[], OutboundHttp],
        enqueue: Enqueue,
        now: Callable[[], datetime] = utcnow,
        epoch: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        max_data_bytes: int = MAX_DATA_BYTES,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.http = http
        self.enqueue = enqueue
        self.now = now
        self.epoch = epoch
        self.timer = timer
        self.max_data_bytes = max_data_bytes  # SEALED_MAX_DATA_BYTES where the data is sealed

    # -- subscriptions ---------------------------------------------------------------------
    def check_url(self, url: str) -> None:
        """https, or http to a host TAREFA_HTTP_ALLOW lists (the local stack, tests); and an
        address the outbound client would reach now (no private, loopback, link-local or
        metadata address unless allow-listed). ValidationFailedError naming `url` otherwise."""
        from tarefa.outbound import OutboundRetryableError

        try:
            parts = urlsplit(url)
        except ValueError:
            raise _url_error("the URL cannot be parsed") from None
        if parts.username is not None or parts.password is not None:
            raise _url_error(
                "credentials in the URL are not allowed: the URL is shown to whoever can read it"
            )
        if parts.fragment:
            raise _url_error("a URL fragment is never sent; remove it")
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise _url_error("the URL must be https")
        client = self.http()
        try:
            addresses = client.vet(url)
        except PermanentJobError as exc:  # BlockedAddressError, InvalidUrlError
            raise _url_error(str(exc)) from None
        except OutboundRetryableError as exc:
            raise _url_error(f"{exc}; use a host name that resolves") from None
        if scheme == "http":
            host = (parts.hostname or "").lower()
            if not any(client.allow.permits(host, ipaddress.ip_address(a)) for a in addresses):
                raise _url_error("the URL must be https (http only for hosts on TAREFA_HTTP_ALLOW)")

    def create(self, caller: Caller, request: CreateSubscriptionRequest) -> tuple[Subscription, str]:
        """A new subscription and its secret (shown this once)."""
        self.check_url(request.url)
        mine, _ = self.store.for_user(caller.user_id, MAX_SUBSCRIPTIONS_PER_USER, None)
        if len(mine) >= MAX_SUBSCRIPTIONS_PER_USER:
            raise TooManySubscriptionsError(
                f"A user has at most {MAX_SUBSCRIPTIONS_PER_USER} webhook subscriptions; delete one first"
            )
        now = self.now()
        subscription_id = new_subscription_id()
        secret = new_secret()
        subscription = Subscription(
            id=subscription_id,
            user_id=caller.user_id,
            url=request.url,
            events=request.events,
            timeout_seconds=request.timeout_seconds,
            created_at=now,
            updated_at=now,
            secrets=[StoredSecret(sealed=self.secrets.seal(subscription_id, secret), created_at=now)],
        )
        try:
            self.store.create(subscription)
        except ConflictError:
            raise SubscriptionExistsError(
                "You already have a subscription for this URL; change its events by deleting it and "
                "subscribing again, or rotate its secret"
            ) from None
        logger.info("webhook subscription created", extra={"subscription_id": subscription_id})
        return subscription, secret

    def get(self, caller: Caller, subscription_id: str) -> Subscription:
        found = self.store.get(subscription_id) if subscription_id.startswith("wh_") else None
        if found is None or not (caller.is_admin or found.user_id == caller.user_id):
            raise SubscriptionNotFoundError(subscription_id)  # never reveal another user's
        return found

    def listing(self, caller: Caller, request: PageRequest) -> dict[str, Any]:
        before = _decode_cursor(request.cursor) if request.cursor else None
        user_id = None if caller.is_admin else caller.user_id
        items, last = self.store.for_user(user_id, request.limit, before)
        now = self.now()
        return {
            "items": [s.public(now) for s in items],
            "nextCursor": _encode_cursor(last) if last else None,
        }

    def delete(self, caller: Caller, subscription_id: str) -> None:
        subscription = self.get(caller, subscription_id)
        self.store.delete(subscription)
        logger.info("webhook subscription deleted", extra={"subscription_id": subscription_id})

    def set_enabled(self, caller: Caller, subscription_id: str, enabled: bool) -> Subscription:
        """PATCH /webhooks/{id}: the owner's only (anyone else, admins included, gets 404: the
        URL and its receiver are the owner's). Enabling vets the URL again (its DNS may have
        moved since it answered 410) and delivers from then on; deliveries skipped while it was
        disabled are not sent again. Disabling stops deliveries, as a 410 does."""
        for _ in range(3):
            subscription = self.store.get(subscription_id) if subscription_id.startswith("wh_") else None
            if subscription is None or subscription.user_id != caller.user_id:
                raise SubscriptionNotFoundError(subscription_id)
            if subscription.active == enabled:
                return subscription
            now = self.now()
            if enabled:
                self.check_url(subscription.url)
                update: dict[str, Any] = {
                    "status": SubscriptionStatus.ACTIVE,
                    "disabled_at": None,
                    "disabled_reason": None,
                }
            else:
                update = {
                    "status": SubscriptionStatus.DISABLED,
                    "disabled_at": now,
                    "disabled_reason": "disabled by its owner",
                }
            changed = subscription.model_copy(
                update={**update, "updated_at": now, "version": subscription.version + 1}
            )
            try:
                self.store.save(changed, subscription.version)
            except ConflictError:
                continue
            logger.info(
                "webhook subscription %s",
                "enabled" if enabled else "disabled",
                extra={"subscription_id": subscription.id},
            )
            return changed
        raise SubscriptionBusyError(f"Webhook subscription {subscription_id} kept changing; try again")

    def rotate(self, caller: Caller, subscription_id: str) -> tuple[Subscription, str]:
        """A new secret (shown once); the current one keeps signing for ROTATION_OVERLAP, so
        deliveries meanwhile carry both signatures."""
        for _ in range(3):
            subscription = self.get(caller, subscription_id)
            now = self.now()
            secret = new_secret()
            kept = [
                s.model_copy(update={"expires_at": now + ROTATION_OVERLAP}) if s.expires_at is None else s
                for s in subscription.secrets
                if s.valid_at(now)
            ]
            fresh = StoredSecret(sealed=self.secrets.seal(subscription.id, secret), created_at=now)
            rotated = subscription.model_copy(
                update={"secrets": [fresh, *kept], "updated_at": now, "version": subscription.version + 1}
            )
            try:
                self.store.save(rotated, subscription.version)
            except ConflictError:
                continue
            logger.info("webhook secret rotated", extra={"subscription_id": subscription.id})
            return rotated, secret
        raise SubscriptionBusyError(f"Webhook subscription {subscription_id} kept changing; try again")

    def signing_secrets(self, subscription: Subscription, now: datetime) -> list[str]:
        """The secrets that sign a delivery now, newest first."""
        return [self.secrets.open(subscription.id, s.sealed) for s in subscription.secrets if s.valid_at(now)]

    def subscription_exists(self, user_id: str, url: str) -> bool:
        found = self.store.by_url(user_id, url)
        return found is not None and found.active

    # -- the delivery log and the test event -----------------------------------------------
    def deliveries(self, caller: Caller, subscription_id: str, request: PageRequest) -> dict[str, Any]:
        subscription = self.get(caller, subscription_id)
        after = _decode_cursor(request.cursor) if request.cursor else None
        if after is not None and not after.startswith("msg_"):
            raise MalformedRequestError("cursor is not one this API returned")
        items, last = self.store.deliveries(subscription.id, request.limit, after)
        return {"items": [d.public() for d in items], "nextCursor": _encode_cursor(last) if last else None}

    def test(self, caller: Caller, subscription_id: str) -> Delivery:
        subscription = self.get(caller, subscription_id)
        if not subscription.active:
            raise SubscriptionDisabledError(
                f"Webhook subscription {subscription.id} is disabled ({subscription.disabled_reason or 'disabled'}); "
                'enable it again with PATCH /webhooks/{id} {"enabled": true}'
            )
        data = {"subscriptionId": subscription.id, "message": "A test event from Tarefa"}
        return self._deliver(subscription, TEST_EVENT, data, f"test:{random.token_hex(16)}", {})

    # -- publishing ------------------------------------------------------------------------
    def publish(
        self,
        owner: str,
        event: str,
        data: dict[str, Any],
        *,
        key: str,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """See tarefa.api.publish: one delivery job per matching subscription, idempotent on
        (subscription, key); the delivery job ids."""
        if not EVENT_PATTERN.fullmatch(event):
            raise ValueError(
                f"{event!r} is not an event name (lower-case dotted words, e.g. message.received)"
            )
        if not key:
            raise ValueError("publish needs a key")
        extra = _publisher_headers(headers or {})
        subscriptions, _ = self.store.for_user(owner, MAX_SUBSCRIPTIONS_PER_USER, None)
        targets = {s.id: s for s in subscriptions if s.user_id == owner and s.active and s.wants(event)}
        if url is not None:
            named = next((s for s in subscriptions if s.url == url), None) or self.store.by_url(owner, url)
            if named is not None and named.active and named.user_id == owner:
                targets.setdefault(named.id, named)
        job_ids: list[str] = []
        for subscription in targets.values():
            job_id = self._deliver(subscription, event, data, key, extra).job_id
            if job_id is not None:
                job_ids.append(job_id)
        return job_ids

    def job_ended(self, job: Job) -> str | None:
        """The callback of a job that ended (COMPLETED, FAILED, CANCELLED) and carries a
        callbackUrl: its delivery job id, the same however often the ending is seen; None when
        there is nothing to send (no callback, or the subscription is gone or disabled)."""
        if not job.callback_url or job.status not in TERMINAL:
            return None
        from tarefa.jobs import SYSTEM_USER

        owner = job.user_id or SYSTEM_USER
        subscription = self.store.by_url(owner, job.callback_url)
        if subscription is None or not subscription.active:
            logger.info(
                "job callback not sent: its subscription is gone or disabled", extra={"job_id": job.job_id}
            )
            return None
        data = job.public()
        if len(json.dumps(data, separators=(",", ":")).encode()) > self.max_data_bytes:
            data = {k: v for k, v in data.items() if k not in ("payload", "result")}
            data["truncated"] = True  # the receiver reads the rest with GET /jobs/{jobId}
        return self._deliver(subscription, JOB_EVENTS[job.status], data, callback_key(job), {}).job_id

    def _deliver(
        self, subscription: Subscription, event: str, data: dict[str, Any], key: str, headers: dict[str, str]
    ) -> Delivery:
        """Record the delivery for (subscription, key) once, and its job once: a repeat (a
        crash between the two, a redelivered message) finds both and makes neither again."""
        from tarefa.jobs import Caller, EnqueueRequest

        if len(json.dumps(data, separators=(",", ":")).encode()) > self.max_data_bytes:
            raise ValueError(f"an event's data is at most {self.max_data_bytes} bytes of JSON")
        now = self.now()
        expires = now + DELIVERY_RETENTION
        key_hash = hashlib.sha256(f"{subscription.id}\x00{key}".encode()).hexdigest()[:40]
        delivery = Delivery(
            id=new_delivery_id(self.epoch()),
            subscription_id=subscription.id,
            user_id=subscription.user_id,
            event=event,
            created_at=now,
            updated_at=now,
        )
        earlier = self.store.claim_delivery(delivery, key_hash, expires)
        if earlier is not None:
            if earlier.job_id is not None:
                return earlier
            delivery = earlier  # recorded, but its job may not have been made: make it (once)
        payload = DeliveryPayload(
            subscription_id=subscription.id,
            delivery_id=delivery.id,
            event=event,
            timestamp=delivery.created_at.isoformat().replace("+00:00", "Z"),
            data=data,
            headers=headers,
        )
        request = EnqueueRequest.model_validate(
            {
                "type": DELIVERY_TYPE,
                "payload": payload.model_dump(mode="json", by_alias=True),
                "idempotencyKey": f"webhook-delivery:{delivery.id}",
            }
        )
        try:
            job_id = self.enqueue(Caller(subscription.user_id), request).job.job_id
        except IdempotencyKeyReusedError as exc:  # the earlier call made it (with other data)
            job_id = exc.job_id
        current = self.store.get_delivery(subscription.id, delivery.id) or delivery
        if current.job_id is None:
            current = current.model_copy(update={"job_id": job_id})
            self.store.put_delivery(current, expires)
        return current

    # -- delivering (the webhook.delivery job) ---------------------------------------------
    def deliver(self, payload: DeliveryPayload, ctx: JobContext) -> dict[str, Any]:
        """One attempt: POST the event, signed, and record what the receiver answered."""
        now = self.now()
        expires = now + DELIVERY_RETENTION
        delivery = self.store.get_delivery(payload.subscription_id, payload.delivery_id)
        if (
            delivery is None
            or delivery.user_id != ctx.user_id
            or delivery.event != payload.event
            or delivery.job_id not in (None, ctx.job_id)
        ):
            # Only the engine makes deliveries (publish, callbacks, /test) and records each before
            # its job: a webhook.delivery enqueued by hand (POST /jobs) names none, and sends nothing.
            raise PermanentJobError(
                "this job is not a delivery the engine recorded; nothing was sent", code="NOT_A_DELIVERY"
            )
        try:
            extra = _publisher_headers(payload.headers)
        except ValueError as exc:
            raise PermanentJobError(str(exc), code="INVALID_HEADERS") from None
        subscription = self.store.get(payload.subscription_id)
        if subscription is not None and subscription.user_id != delivery.user_id:
            raise PermanentJobError("the delivery is not for this subscription", code="NOT_A_DELIVERY")
        if subscription is None or not subscription.active:
            why = "the subscription was deleted" if subscription is None else "the subscription is disabled"
            skipped = delivery.model_copy(
                update={"status": DeliveryStatus.SKIPPED, "error": why, "updated_at": now}
            )
            self.store.put_delivery(skipped, expires)
            logger.info("webhook delivery skipped: %s", why, extra={"delivery_id": delivery.id})
            return {"delivered": False, "deliveryId": delivery.id, "skipped": why}
        body = json.dumps(
            {"type": payload.event, "timestamp": payload.timestamp, "data": payload.data},
            separators=(",", ":"),
        )
        timestamp = int(self.epoch())
        headers = {
            **extra,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                self.signing_secrets(subscription, now), delivery.id, timestamp, body
            ),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Tarefa-Event": payload.event,
        }
        try:
            status, error, retry_after, latency = self._post(ctx, subscription, body, headers)
        except PermanentJobError as exc:  # the guard refused the address (its DNS changed since)
            attempt = max(delivery.attempts + 1, ctx.attempt)
            refused = delivery.model_copy(
                update={
                    "status": DeliveryStatus.FAILED,
                    "attempts": attempt,
                    "history": delivery.with_attempt(AttemptRecord(attempt=attempt, at=now, error=str(exc))),
                    "error": str(exc),
                    "job_id": delivery.job_id or ctx.job_id,
                    "last_attempt_at": now,
                    "updated_at": now,
                }
            )
            self.store.put_delivery(refused, expires)
            raise
        verdict = classify(status)
        if status is not None and verdict != Verdict.DELIVERED and error is None:
            error = f"the receiver answered {status}"
        final = verdict != Verdict.RETRY or ctx.is_last_attempt
        outcome = {
            Verdict.DELIVERED: DeliveryStatus.DELIVERED,
            Verdict.RETRY: DeliveryStatus.FAILED if final else DeliveryStatus.RETRYING,
            Verdict.DISABLE: DeliveryStatus.FAILED,
            Verdict.FAIL: DeliveryStatus.FAILED,
        }[verdict]
        attempt = max(delivery.attempts + 1, ctx.attempt)
        record = AttemptRecord(
            attempt=attempt,
            at=now,
            response_code=status,
            latency_ms=latency,
            error=None if verdict == Verdict.DELIVERED else error,
        )
        recorded = delivery.model_copy(
            update={
                "status": outcome,
                "attempts": attempt,
                "history": delivery.with_attempt(record),
                "response_code": status,
                "latency_ms": latency,
                "error": None if verdict == Verdict.DELIVERED else error,
                "job_id": delivery.job_id or ctx.job_id,
                "last_attempt_at": now,
                "updated_at": now,
            }
        )
        self.store.put_delivery(recorded, expires)
        logger.info(
            "webhook delivery attempt",
            extra={
                "delivery_id": delivery.id,
                "status": status,
                "verdict": str(verdict),
                "latency_ms": latency,
            },
        )
        if verdict == Verdict.DELIVERED:
            return {"delivered": True, "deliveryId": delivery.id, "status": status}
        if verdict == Verdict.DISABLE:
            self._disable(subscription.id)
            raise PermanentJobError(
                "the receiver answered 410 Gone: the subscription is disabled", code="WEBHOOK_GONE"
            )
        if verdict == Verdict.FAIL:
            raise PermanentJobError(error or "the receiver refused the delivery", code=f"HTTP_{status}")
        raise RetryableJobError(error or "the receiver did not answer", retry_after=retry_after)

    def _post(
        self, ctx: JobContext, subscription: Subscription, body: str, headers: dict[str, str]
    ) -> tuple[int | None, str | None, float | None, int]:
        """(status or None, error, Retry-After seconds, latency in ms) of one POST."""
        from tarefa.outbound import OutboundRetryableError, parse_retry_after

        started = self.timer()
        try:
            response = ctx.http.post(
                subscription.url,
                body=body,
                headers=headers,
                timeout=float(min(subscription.timeout_seconds, MAX_TIMEOUT_SECONDS)),
                raise_for_status=False,
                follow_redirects=False,
            )
        except OutboundRetryableError as exc:  # timeouts, refused connections, DNS
            return None, str(exc), None, round((self.timer() - started) * 1000)
        latency = round((self.timer() - started) * 1000)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            retry_after = min(retry_after, MAX_RETRY_AFTER_SECONDS)
        return response.status, None, retry_after, latency

    def _disable(self, subscription_id: str) -> None:
        for _ in range(3):
            subscription = self.store.get(subscription_id)
            if subscription is None or not subscription.active:
                return
            now = self.now()
            disabled = subscription.model_copy(
                update={
                    "status": SubscriptionStatus.DISABLED,
                    "disabled_at": now,
                    "disabled_reason": "the URL answered 410 Gone",
                    "updated_at": now,
                    "version": subscription.version + 1,
                }
            )
            try:
                self.store.save(disabled, subscription.version)
                logger.warning(
                    "webhook subscription disabled (410)", extra={"subscription_id": subscription_id}
                )
                return
            except ConflictError:
                continue


def _publisher_headers(headers: Mapping[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} extra headers")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if not lowered.startswith(PUBLISHER_HEADER_PREFIX) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header {name!r}: a publisher's header names start with X-Tarefa-")
        if lowered in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the engine")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"header {name!r}: the value must be printable ASCII, at most 512 characters")
        checked[name] = value
    return checked
