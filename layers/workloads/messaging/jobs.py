"""The messaging job types: seed 003's five, its queue names accepted as aliases.

**Exactly once in effect, for a send.** The Cloud API takes no idempotency key, so the provider
cannot recognise a repeated call. `message:send` therefore:
1. claims the message's send for its generation (a conditional write) before calling;
2. calls the provider with `biz_opaque_callback_data = tarefa:<messageId>:<generation>`, which
   Meta echoes in every status callback of that message;
3. records the provider's message id (SENT) and its lookup item in one transaction.
An attempt that finds the send claimed but not recorded (its predecessor crashed between 2 and
3, or timed out after the request left) does not send: it waits (RetryLater) for the provider's
callback, which `message:status` applies, recording the provider id it carries. Only when no
callback came within SEND_GRACE (60 s; Meta sends `sent` within seconds) does an attempt send
again. The window left: a send that reached Meta whose every callback is later than the grace
is sent twice. A provider error answer (429, 5xx with an error body, a 4xx) means nothing went:
the claim is released and the next attempt sends at once.

This module loads on the API's cold start (to validate payloads): the provider adapters and the
table's client load on first use.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from messaging.models import (
    MessageError,
    MessageStatus,
    ReceiveJob,
    SendJob,
    SessionJob,
    SessionStatus,
    StatusJob,
)
from messaging.provider.port import (
    PROVIDERS,
    Outgoing,
    ProviderName,
    ProviderPermanentError,
    ProviderRetryableError,
    ProviderStatus,
    SessionRef,
)
from messaging.service import SEND_GRACE, MessagingService, callback_data
from tarefa import JobContext, JobPolicy, PermanentJobError, Priority, Rate, RetryLater, job_type

if TYPE_CHECKING:
    from messaging.models import Message, Session
    from messaging.provider.port import WhatsAppProvider

CLOUDAPI_SECRET = "messaging/cloudapi"  # noqa: S105 - a name: {"accessToken", "appSecret", "verifyToken", "baseUrl"?, "apiVersion"?}
EVOLUTION_SECRET = "messaging/evolution"  # noqa: S105 - a name: {"apiKey", "webhookSecret", "baseUrl"?}
PROVIDER_VARIABLE = "WHATSAPP_PROVIDER"
CLOUDAPI_URL_VARIABLE = "WHATSAPP_API_URL"
CLOUDAPI_VERSION_VARIABLE = "WHATSAPP_API_VERSION"
EVOLUTION_URL_VARIABLE = "EVOLUTION_API_URL"
PUBLIC_URL_VARIABLE = "MESSAGING_PUBLIC_URL"  # the API's URL: where Evolution instances post
TIMEOUT_VARIABLE = "MESSAGING_PROVIDER_TIMEOUT_SECONDS"
GRACE_VARIABLE = "MESSAGING_SEND_GRACE_SECONDS"
SEND_RATE = Rate.parse("80/60")  # per session: over it a send waits in its queue, never fails
QR_POLL_SECONDS = 60  # Evolution: how often session:init looks whether the QR was scanned


@cache
def service() -> MessagingService:
    from messaging.store import MessagingStore

    return MessagingService(MessagingStore())


def provider_name() -> ProviderName:
    name = (os.environ.get(PROVIDER_VARIABLE) or "cloudapi").strip().lower()
    return name if name in PROVIDERS else "cloudapi"


def send_grace() -> timedelta:
    raw = os.environ.get(GRACE_VARIABLE)
    return timedelta(seconds=float(raw)) if raw else SEND_GRACE


def provider(ctx: JobContext, name: ProviderName) -> WhatsAppProvider:
    """The session's provider adapter with the stage's credentials, through ctx.http."""
    read = float(os.environ.get(TIMEOUT_VARIABLE) or 10)
    timeout = (min(3.0, read), read)
    try:
        if name == "evolution":
            from messaging.provider.evolution import EvolutionProvider

            config = ctx.secret(EVOLUTION_SECRET, "json")
            base = str(config.get("baseUrl") or os.environ.get(EVOLUTION_URL_VARIABLE) or "")
            return EvolutionProvider(ctx.http, str(config.get("apiKey") or ""), base, timeout)
        from messaging.provider.cloudapi import DEFAULT_BASE_URL, DEFAULT_VERSION, CloudApiProvider

        config = ctx.secret(CLOUDAPI_SECRET, "json")
        return CloudApiProvider(
            ctx.http,
            str(config.get("accessToken") or ""),
            str(config.get("baseUrl") or os.environ.get(CLOUDAPI_URL_VARIABLE) or DEFAULT_BASE_URL),
            str(config.get("apiVersion") or os.environ.get(CLOUDAPI_VERSION_VARIABLE) or DEFAULT_VERSION),
            timeout,
        )
    except ValueError as exc:  # the secret is there but not filled in: an operator's fix
        raise PermanentJobError(
            f"the WhatsApp provider is not configured: {exc}", code="PROVIDER_NOT_CONFIGURED"
        ) from None


def session_ref(ctx: JobContext | None, session: Session) -> SessionRef:
    headers: dict[str, str] = {}
    url = None
    if session.provider == "evolution":
        from messaging.provider.signature import INSTANCE_SECRET_HEADER, instance_secret

        public = (os.environ.get(PUBLIC_URL_VARIABLE) or "").rstrip("/")
        url = f"{public}/webhooks/evolution/{session.session_id}" if public else None
        if ctx is not None:
            master = str(ctx.secret(EVOLUTION_SECRET, "json").get("webhookSecret") or "")
            if master:
                headers[INSTANCE_SECRET_HEADER] = instance_secret(master, session.session_id)
    return SessionRef(
        session_id=session.session_id,
        phone_number_id=session.phone_number_id,
        instance=session.session_id,
        webhook_url=url,
        webhook_headers=headers,
    )


def session_result(session: Session) -> dict[str, Any]:
    return {"sessionId": session.session_id, "status": str(session.status), "reason": session.reason}


def message_result(message: Message) -> dict[str, Any]:
    return {
        "messageId": message.message_id,
        "status": str(message.status),
        "providerMessageId": message.provider_message_id,
        "error": message.error.model_dump(by_alias=True) if message.error else None,
    }


# -- sessions ----------------------------------------------------------------------------------------


def _session(payload: SessionJob) -> str:
    return payload.session_id


@job_type(
    "messaging.session.init",
    policy=JobPolicy(
        priority=Priority.HIGH,
        max_attempts=3,
        backoff=(5, 15, 45),
        timeout_seconds=30,
        # Seed 003: one session:init at a time per session, whoever enqueued it (its owner, an
        # admin, a retry), and idempotent while pending: the owner's second enqueue for the
        # session while one is PENDING, PROCESSING or RETRYING answers 200 with that job.
        concurrency=1,
        concurrency_key=_session,
        unique_key=_session,
    ),
    aliases=["session:init"],
)
def session_init(payload: SessionJob, ctx: JobContext) -> dict[str, Any]:
    """Bring a sender online: CONNECTED, or FAILED with the provider's reason. With Evolution
    the QR code waits on the session (QR_READY) and this job looks again until it is scanned
    (or its attempts run out: FAILED qr_not_scanned); CONNECTION_UPDATE wakes it at once. One
    runs at a time per session (a slot per session, tarefa.flow): the provider never sees two
    opens of one session at once."""
    svc = service()
    session = svc.session(payload.session_id)
    if session.generation != payload.generation or session.status not in (
        SessionStatus.PENDING,
        SessionStatus.QR_READY,
    ):
        return session_result(session)
    adapter = provider(ctx, session.provider)
    ref = session_ref(ctx, session)
    try:
        state = (
            adapter.session_state(ref)
            if session.status == SessionStatus.QR_READY
            else adapter.open_session(ref)
        )
    except ProviderPermanentError as exc:
        from messaging.provider.cloudapi import reason_of

        session = svc.session_failed(
            session.session_id,
            payload.generation,
            reason_of(exc.provider_code) if exc.provider_code else exc.code.lower(),
        )
        return session_result(session)
    except ProviderRetryableError:
        if ctx.is_last_attempt:
            svc.session_failed(session.session_id, payload.generation, "provider_unavailable")
        raise
    if state.state == "connected":
        session = svc.session_connected(session.session_id, payload.generation, state.display_number)
        return session_result(session)
    if state.qr or state.pairing_code:
        session = svc.session_waiting(session.session_id, payload.generation, state.qr, state.pairing_code)
    if ctx.is_last_attempt:
        session = svc.session_failed(session.session_id, payload.generation, "qr_not_scanned")
        return session_result(session)
    raise RetryLater(QR_POLL_SECONDS, "waiting for the QR code to be scanned")


@job_type(
    "messaging.session.close",
    policy=JobPolicy(priority=Priority.HIGH, max_attempts=2, backoff=(5,), timeout_seconds=30),
    aliases=["session:close"],
)
def session_close(payload: SessionJob, ctx: JobContext) -> dict[str, Any]:
    """Disconnect cleanly (Evolution logs the instance out); the session becomes CLOSED. When
    the provider cannot be told (refused, or down through the last attempt) the session is
    CLOSED here all the same, with reason `provider_not_told`: nothing goes out through it."""
    svc = service()
    session = svc.session(payload.session_id)
    if session.status == SessionStatus.CLOSED:
        return session_result(session)
    try:
        provider(ctx, session.provider).close_session(session_ref(ctx, session))
    except ProviderPermanentError:
        svc.session_closed(session.session_id, "provider_not_told")
        raise
    except ProviderRetryableError:
        if ctx.is_last_attempt:
            svc.session_closed(session.session_id, "provider_not_told")
        raise
    return session_result(svc.session_closed(session.session_id))


# -- messages ----------------------------------------------------------------------------------------


def _session_of(payload: SendJob) -> str:
    return payload.session_id


@job_type(
    "messaging.message.send",
    policy=JobPolicy(
        priority=Priority.MEDIUM,
        max_attempts=5,
        backoff=(2, 6, 18, 54, 162),
        timeout_seconds=60,
        rate=SEND_RATE,
        rate_key=_session_of,
    ),
    aliases=["message:send"],
)
def send_message(payload: SendJob, ctx: JobContext) -> dict[str, Any]:
    """Send a text (or a media link) once: the claim, the call, the record (module docstring)."""
    from messaging.provider.cloudapi import reason_of

    svc = service()
    claim = svc.claim_send(payload.message_id, payload.generation, send_grace())
    message = claim.message
    if claim.action == "done":
        return message_result(message)
    if claim.action == "wait":
        if ctx.is_last_attempt:
            message = svc.fail(
                message.message_id, payload.generation, "SEND_UNCONFIRMED", "provider_unconfirmed"
            )
            raise PermanentJobError(
                "the provider never confirmed a send that may have gone", code="SEND_UNCONFIRMED"
            )
        raise RetryLater(
            max(1.0, claim.seconds), "waiting for the provider's word on a send that may have gone"
        )
    session = svc.session(message.session_id)
    if session.status != SessionStatus.CONNECTED:
        svc.fail(message.message_id, payload.generation, "SESSION_NOT_CONNECTED", "session_not_connected")
        raise PermanentJobError(f"the session is {session.status}", code="SESSION_NOT_CONNECTED")
    assert message.to is not None
    outgoing = Outgoing(
        to=message.to,
        text=message.text,
        media_url=message.media.url if message.media else None,
        media_caption=message.media.caption if message.media else None,
        callback_data=callback_data(message),
    )
    try:
        sent = provider(ctx, session.provider).send(session_ref(ctx, session), outgoing)
    except ProviderPermanentError as exc:
        svc.fail(
            message.message_id,
            payload.generation,
            exc.code,
            reason_of(exc.provider_code) if exc.provider_code else "provider_refused",
        )
        raise
    except ProviderRetryableError as exc:
        if not exc.ambiguous:
            svc.release_claim(message.message_id, payload.generation)
        if ctx.is_last_attempt:
            reason = reason_of(exc.provider_code) if exc.provider_code else "provider_unavailable"
            svc.fail(message.message_id, payload.generation, exc.code, reason)
        raise
    message = svc.record_sent(
        message.message_id, payload.generation, sent.provider_message_id, session.provider
    )
    return message_result(message)


@job_type(
    "messaging.message.receive",
    policy=JobPolicy(
        priority=Priority.HIGH,
        max_attempts=3,
        backoff=(5, 15),
        timeout_seconds=30,
        sensitive=("from", "text", "mediaCaption", "profileName"),
    ),
    aliases=["message:receive"],
)
def receive_message(payload: ReceiveJob, ctx: JobContext) -> dict[str, Any]:
    """Store an inbound message (once per provider id) and deliver it, signed, to the session's
    webhook and the owner's `message.received` subscriptions."""
    svc = service()
    session = svc.session(payload.session_id)
    message, created = svc.record_inbound(session, payload)
    data = {
        "sessionId": session.session_id,
        "message": message.public(),
    }
    # The engine's signed deliveries (webhook.delivery jobs), keyed by the message: a repeated
    # attempt or a redelivered webhook makes no second delivery.
    deliveries = ctx.publish(
        "message.received",
        data,
        key=f"message.received:{message.message_id}",
        url=session.webhook_url,
        headers={"X-Tarefa-Session": session.session_id},
    )
    return {
        "messageId": message.message_id,
        "sessionId": session.session_id,
        "stored": created,
        "deliveries": deliveries,
    }


@job_type(
    "messaging.message.status",
    policy=JobPolicy(priority=Priority.LOW, max_attempts=3, backoff=(10, 30), timeout_seconds=30),
    aliases=["message:status"],
)
def message_status(payload: StatusJob, ctx: JobContext) -> dict[str, Any]:
    """Apply sent / delivered / read / failed, forward only (a late report changes nothing)."""
    from messaging.provider.cloudapi import reason_of

    error = None
    if payload.status == ProviderStatus.FAILED:
        error = MessageError(
            code=f"WHATSAPP_{payload.error_code}" if payload.error_code is not None else "PROVIDER_FAILED",
            reason=reason_of(payload.error_code),
        )
    at = datetime.fromtimestamp(payload.timestamp, UTC) if payload.timestamp > 0 else None
    message, applied = service().apply_status(
        payload.provider, payload.provider_message_id, payload.status, payload.callback_data, error, at
    )
    if message is None:
        return {"applied": False, "reason": "not a message of this system"}
    if applied and message.status == MessageStatus.FAILED:
        ctx.logger.info(
            "message failed at the provider",
            extra={"messageId": message.message_id, "code": error.code if error else None},
        )
    return {**message_result(message), "applied": applied}
