"""The messaging workload's HTTP routes, served by a function of their own (functions/messaging)
behind the same API, with the engine's error shape, limits and outage answers (`tarefa.api`).

Every route needs a JWT and a user sees only their own sessions and messages (another's is a
404, as if it did not exist); admins see all. Three routes are public, authenticated by the
provider instead: the Cloud API's subscription handshake (`GET /webhooks/whatsapp`, its verify
token) and its deliveries (`POST /webhooks/whatsapp`, X-Hub-Signature-256 over the raw body),
and Evolution's per-instance webhook (`POST /webhooks/evolution/{instance}`, the instance's
secret header). They answer at once: the work is a `message:receive` or `message:status` job,
keyed by the provider's message id (and status), so a provider's redelivery is the same job.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from messaging.jobs import CLOUDAPI_SECRET, EVOLUTION_SECRET, provider_name, service
from messaging.models import (
    Message,
    MessageQuery,
    MessageRequest,
    MessageStatus,
    ReceiveJob,
    SendJob,
    Session,
    SessionJob,
    SessionQuery,
    SessionRequest,
    SessionStatus,
    StatusJob,
)
from messaging.provider.port import Inbound, ProviderName, StatusReport
from messaging.provider.signature import (
    INSTANCE_SECRET_HEADER,
    SIGNATURE_HEADER,
    InvalidSignatureError,
    verify_hub_signature,
    verify_instance_secret,
    verify_token_matches,
)
from messaging.service import parse_callback
from tarefa import api

logger = Logger(child=True)
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped
# Meta and Evolution post from a few addresses: generous limits, per address, that still stop a
# flood of forged requests before the signature check reads its secret.
api.declare_limit("POST /webhooks/whatsapp", "6000/60")
api.declare_limit("GET /webhooks/whatsapp", "60/60")
api.declare_limit("POST /webhooks/evolution/{instance}", "6000/60")


def _session(session_id: str) -> Session:
    who = api.caller(router.current_event)
    return service().session(session_id, None if who.is_admin else who.user_id)


def _message(message_id: str) -> Message:
    who = api.caller(router.current_event)
    return service().message(message_id, None if who.is_admin else who.user_id)


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:48]


def _validation(field: str, message: str) -> Response[str]:
    return api.error_response(
        422, "VALIDATION_ERROR", "The request is not valid", [{"field": field, "message": message}]
    )


# -- sessions ------------------------------------------------------------------------------------


@router.post("/sessions")
def create_session() -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, SessionRequest)
    if request.webhook_url and not api.subscription_exists(who.user_id, request.webhook_url):
        return _validation(
            "webhookUrl", "webhookUrl must be one of your webhook subscriptions (POST /webhooks)"
        )
    svc = service()
    session = svc.create_session(who.user_id, request, provider_name())
    try:
        enqueued = api.enqueue(
            who,
            "messaging.session.init",
            SessionJob(session_id=session.session_id).model_dump(by_alias=True),
            idempotency_key=f"session-init-{session.session_id}-0",
        )
    except Exception:  # FAILED, so that its number is free for the user's next try
        svc.session_failed(session.session_id, 0, "enqueue_failed")
        raise
    session = svc.note_session_job(session.session_id, enqueued.job.job_id, "init")
    return api.json_response(202, {"session": session.public(), "jobId": enqueued.job.job_id})


@router.get("/sessions")
def list_sessions() -> Response[str]:
    who = api.caller(router.current_event)
    query = api.parse_query(router.current_event, SessionQuery)
    owner = who.user_id
    if query.user_id and query.user_id != who.user_id:
        if not who.is_admin:
            return api.error_response(403, "FORBIDDEN", "Only admins list another user's sessions")
        owner = query.user_id
    items, cursor = service().store.list_sessions(owner, query.cursor, query.limit)
    return api.json_response(200, {"items": [s.public() for s in items], "cursor": cursor})


@router.get("/sessions/<session_id>")
def get_session(session_id: str) -> Response[str]:
    return api.json_response(200, {"session": _session(session_id).public()})


@router.post("/sessions/<session_id>/close")
def close_session(session_id: str) -> Response[str]:
    who = api.caller(router.current_event)
    svc = service()
    session = svc.request_close(_session(session_id))
    enqueued = api.enqueue(
        who,
        "messaging.session.close",
        SessionJob(session_id=session.session_id, generation=session.generation).model_dump(by_alias=True),
        idempotency_key=f"session-close-{session.session_id}-{session.generation}",
    )
    session = svc.note_session_job(session.session_id, enqueued.job.job_id, "close")
    return api.json_response(202, {"session": session.public(), "jobId": enqueued.job.job_id})


# -- messages ------------------------------------------------------------------------------------


@router.post("/sessions/<session_id>/messages")
def send_message(session_id: str) -> Response[str]:
    from messaging.phones import normalise

    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, MessageRequest)
    to = normalise(request.to)
    svc = service()
    session = _session(session_id)
    message, created = svc.create_message(session, request, to)
    body: dict[str, Any] = {"message": message.public()}
    if message.status == MessageStatus.QUEUED and (created or not message.job_ids):
        # The first request's job, or its own again when that request failed before sending
        # it: keyed by the message and its generation, so never a second job.
        try:
            enqueued = api.enqueue(
                who,
                "messaging.message.send",
                SendJob(message_id=message.message_id, session_id=session.session_id).model_dump(
                    by_alias=True
                ),
                idempotency_key=f"message-send-{message.message_id}-{message.generation}",
            )
        except Exception:
            if not request.idempotency_key:  # FAILED, so that POST .../retry sends it; with a key,
                svc.fail(message.message_id, message.generation, "ENQUEUE_FAILED", "enqueue_failed")
            raise  # the same request again enqueues it
        message = svc.note_message_job(message.message_id, enqueued.job.job_id)
        body = {"message": message.public(), "jobId": enqueued.job.job_id}
    return api.json_response(202 if created else 200, body)


@router.get("/sessions/<session_id>/messages")
def list_messages(session_id: str) -> Response[str]:
    query = api.parse_query(router.current_event, MessageQuery)
    session = _session(session_id)
    items, cursor = service().store.list_messages(
        session.session_id,
        query.status,
        str(query.direction) if query.direction else None,
        query.cursor,
        query.limit,
    )
    return api.json_response(200, {"items": [m.public() for m in items], "cursor": cursor})


@router.get("/messages/<message_id>")
def get_message(message_id: str) -> Response[str]:
    return api.json_response(200, {"message": _message(message_id).public()})


@router.post("/messages/<message_id>/retry")
def retry_message(message_id: str) -> Response[str]:
    who = api.caller(router.current_event)
    svc = service()
    message = svc.request_retry(_message(message_id))
    try:
        enqueued = api.enqueue(
            who,
            "messaging.message.send",
            SendJob(
                message_id=message.message_id, session_id=message.session_id, generation=message.generation
            ).model_dump(by_alias=True),
            idempotency_key=f"message-send-{message.message_id}-{message.generation}",
        )
    except Exception:  # FAILED again, so that the user can ask once more
        svc.fail(message.message_id, message.generation, "ENQUEUE_FAILED", "enqueue_failed")
        raise
    message = svc.note_message_job(message.message_id, enqueued.job.job_id)
    return api.json_response(202, {"message": message.public(), "jobId": enqueued.job.job_id})


# -- the providers' webhooks (public: checked by the provider's signature or secret) -------------


def _raw_body() -> bytes:
    event = router.current_event
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body)
        except ValueError:
            return b""
    return body.encode()


def _config(name: str) -> dict[str, Any] | None:
    try:
        config = api.secret(name, "json")
    except Exception:  # Secrets Manager down, or the secret not created: nothing can be checked
        logger.exception("the provider's webhook secret cannot be read")
        return None
    return config if isinstance(config, dict) else None


def _enqueue_inbound(session: Session, inbound: Inbound) -> str:
    payload = ReceiveJob(
        session_id=session.session_id,
        provider_message_id=inbound.provider_message_id[:256],
        sender=inbound.sender[:32],
        kind=inbound.kind[:32],
        text=inbound.text,
        media_id=inbound.media_id,
        media_caption=inbound.media_caption,
        timestamp=inbound.timestamp,
        profile_name=inbound.profile_name,
    )
    enqueued = api.enqueue(
        api.as_user(session.owner),
        "messaging.message.receive",
        payload.model_dump(by_alias=True),
        idempotency_key=f"{session.provider}-in-{_key(session.session_id, inbound.provider_message_id)}",
    )
    return enqueued.job.job_id


def _owner_of_report(provider: ProviderName, report: StatusReport) -> str | None:
    svc = service()
    found = svc.store.by_provider_id(provider, report.provider_message_id)
    if found is None and report.callback_data:
        found = parse_callback(report.callback_data)
    if found is None:
        return None
    message = svc.store.get_message(found[0])
    return message.owner if message else None


def _enqueue_status(provider: ProviderName, report: StatusReport) -> str | None:
    owner = _owner_of_report(provider, report)
    if owner is None:
        return None  # not a message of ours (another system on the same number)
    payload = StatusJob(
        provider=provider,
        provider_message_id=report.provider_message_id[:256],
        status=report.status,
        timestamp=report.timestamp,
        error_code=report.error_code,
        error_title=report.error_title,
        callback_data=report.callback_data,
    )
    enqueued = api.enqueue(
        api.as_user(owner),
        "messaging.message.status",
        payload.model_dump(mode="json", by_alias=True),
        idempotency_key=f"{provider}-status-{_key(report.provider_message_id, str(report.status))}",
    )
    return enqueued.job.job_id


@router.get("/webhooks/whatsapp")
def whatsapp_handshake() -> Response[str]:
    """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
    query = router.current_event.query_string_parameters or {}
    config = _config(CLOUDAPI_SECRET) or {}
    expected = str(config.get("verifyToken") or "")
    if query.get("hub.mode") == "subscribe" and verify_token_matches(query.get("hub.verify_token"), expected):
        return Response(200, "text/plain", str(query.get("hub.challenge") or ""))
    return api.error_response(403, "FORBIDDEN", "The verify token does not match")


@router.post("/webhooks/whatsapp")
def whatsapp_webhook() -> Response[str]:
    from messaging.provider.cloudapi import parse_webhook

    raw = _raw_body()
    headers = {k.lower(): v for k, v in (router.current_event.headers or {}).items()}
    config = _config(CLOUDAPI_SECRET)
    secret = str((config or {}).get("appSecret") or "")
    if not secret:
        return api.error_response(503, "PROVIDER_NOT_CONFIGURED", "The WhatsApp app secret is not set")
    try:
        verify_hub_signature(headers.get(SIGNATURE_HEADER), raw, secret)
    except InvalidSignatureError as exc:
        return api.error_response(
            401, "INVALID_SIGNATURE", f"The delivery's signature is not valid ({exc.reason})"
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return api.json_response(200, {"received": True, "ignored": True})
    inbound, statuses = parse_webhook(body)
    svc = service()
    jobs: list[str] = []
    sessions: dict[str, Session | None] = {}
    for message in inbound:
        if message.address not in sessions:
            holder = svc.store.number_holder(message.address) if message.address else None
            sessions[message.address] = svc.store.get_session(holder) if holder else None
        session = sessions[message.address]
        if session is not None and session.status == SessionStatus.CONNECTED:
            jobs.append(_enqueue_inbound(session, message))
    for report in statuses:
        job_id = _enqueue_status("cloudapi", report)
        if job_id:
            jobs.append(job_id)
    return api.json_response(200, {"received": True, "jobIds": jobs})


@router.post("/webhooks/evolution/<instance>")
def evolution_webhook(instance: str) -> Response[str]:
    from messaging.provider.evolution import parse_webhook

    headers = {k.lower(): v for k, v in (router.current_event.headers or {}).items()}
    config = _config(EVOLUTION_SECRET)
    master = str((config or {}).get("webhookSecret") or "")
    if not master:
        return api.error_response(503, "PROVIDER_NOT_CONFIGURED", "The Evolution webhook secret is not set")
    try:
        verify_instance_secret(headers.get(INSTANCE_SECRET_HEADER.lower()), master, instance)
    except InvalidSignatureError as exc:
        return api.error_response(
            401, "INVALID_SIGNATURE", f"The delivery is not authenticated ({exc.reason})"
        )
    try:
        body = json.loads(_raw_body())
    except (ValueError, UnicodeDecodeError):
        return api.json_response(200, {"received": True, "ignored": True})
    svc = service()
    session = svc.store.get_session(instance)
    if session is None or session.provider != "evolution":
        return api.json_response(200, {"received": True, "ignored": True})
    inbound, statuses, connections = parse_webhook(body)
    jobs: list[str] = []
    if session.status == SessionStatus.CONNECTED:
        jobs += [_enqueue_inbound(session, message) for message in inbound]
    for report in statuses:
        job_id = _enqueue_status("evolution", report)
        if job_id:
            jobs.append(job_id)
    for connection in connections:
        if connection.qr and session.status in (SessionStatus.PENDING, SessionStatus.QR_READY):
            session = svc.session_waiting(
                session.session_id, session.generation, connection.qr, session.pairing_code
            )
        if connection.state == "open" and session.init_job_id:
            api.wake(session.init_job_id)  # session:init looks now instead of at its next poll
    return api.json_response(200, {"received": True, "jobIds": jobs})
