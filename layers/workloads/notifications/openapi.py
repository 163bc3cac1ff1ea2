"""The notifications workload's routes in the API's OpenAPI document (read when it is built)."""

from __future__ import annotations

from notifications.models import EmailRequest, NotificationBody
from tarefa.openapi import RouteDoc

ROUTES = [
    RouteDoc("POST", "/notifications/email", "Send an e-mail: 202 {notification, jobId} at once, QUEUED, then SENT (providerMessageId) or FAILED (reason); the same idempotencyKey and message again get the same answer (202, as it is now), another message 409 IDEMPOTENCY_KEY_REUSED", 202, NotificationBody, EmailRequest, errors=(400, 401, 409, 413, 422, 429, 503), tag="notifications"),
    RouteDoc("GET", "/notifications/{notificationId}", "One of your notifications: status QUEUED, SENT or FAILED, with the provider's message id or a reason", 200, NotificationBody, errors=(401, 404), tag="notifications"),
]  # fmt: skip
