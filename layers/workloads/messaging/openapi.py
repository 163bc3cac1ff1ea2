"""The messaging workload's routes in the API's OpenAPI document (read when the document is built)."""

from __future__ import annotations

from pydantic import BaseModel

from messaging.models import (
    MessageAccepted,
    MessageQuery,
    MessageRequest,
    SessionAccepted,
    SessionQuery,
    SessionRequest,
)
from tarefa.openapi import RouteDoc


class MessagingSessionBody(BaseModel):
    session: dict[str, object]


class MessagingMessageBody(BaseModel):
    message: dict[str, object]


class MessagingPage(BaseModel):
    items: list[dict[str, object]]
    cursor: str | None


class MessagingWebhookAnswer(BaseModel):
    received: bool
    jobIds: list[str] = []


ROUTES = [
    RouteDoc("POST", "/sessions", "Open a WhatsApp session (session:init brings it online: PENDING, then CONNECTED or FAILED with its reason; with Evolution QR_READY and its qr first); webhookUrl must be one of your subscriptions; a number another open session holds: 409 PHONE_NUMBER_IN_USE", 202, SessionAccepted, SessionRequest, errors=(400, 401, 409, 422, 503), tag="messaging"),
    RouteDoc("GET", "/sessions", "Your sessions, newest first (cursor; admins: userId)", 200, MessagingPage, query=SessionQuery, errors=(401, 403, 422), tag="messaging"),
    RouteDoc("GET", "/sessions/{sessionId}", "One session: status, reason, the QR code while PENDING or QR_READY", 200, MessagingSessionBody, errors=(401, 404), tag="messaging"),
    RouteDoc("POST", "/sessions/{sessionId}/close", "Disconnect a session (session:close; CLOSED); a closed or failed one: 409 INVALID_STATE", 202, SessionAccepted, errors=(401, 404, 409, 503), tag="messaging"),
    RouteDoc("POST", "/sessions/{sessionId}/messages", "Send a text or a media link (message:send; QUEUED, SENT, DELIVERED, READ or FAILED with error); the same idempotencyKey and body: 200 with the message, another body: 409 IDEMPOTENCY_KEY_REUSED; a session not CONNECTED: 409 SESSION_NOT_CONNECTED; `to` not a valid number: 422", 202, MessageAccepted, MessageRequest, errors=(400, 401, 404, 409, 422, 503), tag="messaging"),
    RouteDoc("GET", "/sessions/{sessionId}/messages", "A session's messages, newest first (status, direction, cursor)", 200, MessagingPage, query=MessageQuery, errors=(401, 404, 422), tag="messaging"),
    RouteDoc("GET", "/messages/{messageId}", "One message, with its status and error", 200, MessagingMessageBody, errors=(401, 404), tag="messaging"),
    RouteDoc("POST", "/messages/{messageId}/retry", "Send a FAILED message again (a new send job); any other: 409 INVALID_STATE", 202, MessageAccepted, errors=(401, 404, 409, 503), tag="messaging"),
    RouteDoc("GET", "/webhooks/whatsapp", "The Cloud API's subscription handshake (public: hub.verify_token checked; the challenge as text/plain, else 403)", 200, None, errors=(403, 429), public=True, tag="messaging"),
    RouteDoc("POST", "/webhooks/whatsapp", "The Cloud API's deliveries (public: X-Hub-Signature-256 checked; 401 when wrong): inbound messages and statuses become message:receive / message:status jobs", 200, MessagingWebhookAnswer, errors=(401, 429, 503), public=True, tag="messaging"),
    RouteDoc("POST", "/webhooks/evolution/{instance}", "Evolution API's events for one instance (public: its X-Tarefa-Instance-Secret header checked; 401 when wrong)", 200, MessagingWebhookAnswer, errors=(401, 429, 503), public=True, tag="messaging"),
]  # fmt: skip
