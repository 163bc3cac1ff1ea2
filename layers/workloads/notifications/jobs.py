"""The notifications job type: `notifications.email.send` (seed 001's `send-email` on its
`emails` queue is its alias). Payload: the notification's id; the message stays in its table.

MEDIUM, 5 attempts, 2/6/18/54 s apart; at most EMAIL_SEND_RATE sends a second (default 2/1,
Resend's default team limit): a job over it waits in its queue, never fails. A provider's refusal
of the message ends the job COMPLETED with the notification FAILED; only failures of the system
(the provider unreachable after every attempt, credentials refused) end it FAILED.

This module loads on the API's cold start (to validate payloads): the providers and the table's
client load on first use, in the worker.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

from notifications.payloads import EmailJob
from tarefa import JobContext, JobPolicy, PermanentJobError, Priority, Rate, job_type

if TYPE_CHECKING:
    from notifications.provider.port import EmailProvider
    from notifications.service import NotificationService

SECRET_NAME = "notifications/resend"  # noqa: S105 - a name: {"apiKey"}
PROVIDER_VARIABLE = "EMAIL_PROVIDER"  # ses (default) or resend
FROM_VARIABLE = "EMAIL_FROM"
RESEND_URL_VARIABLE = "RESEND_API_URL"
RATE_VARIABLE = "EMAIL_SEND_RATE"
TIMEOUT_VARIABLE = "EMAIL_PROVIDER_TIMEOUT_SECONDS"
SEND_RATE = Rate.parse(os.environ.get(RATE_VARIABLE) or "2/1")


@cache
def service() -> NotificationService:
    from notifications.service import NotificationService
    from notifications.store import NotificationsStore

    return NotificationService(NotificationsStore())


@cache
def _ses() -> EmailProvider:
    from notifications.provider.ses import SesEmail

    return SesEmail()


def provider(ctx: JobContext) -> EmailProvider:
    """The provider EMAIL_PROVIDER names: SES (boto3, the worker's role) or Resend (the
    engine's outbound client, its API key from tarefa/<stage>/notifications/resend)."""
    chosen = (os.environ.get(PROVIDER_VARIABLE) or "ses").lower()
    if chosen == "ses":
        return _ses()
    if chosen != "resend":
        raise PermanentJobError(
            f"EMAIL_PROVIDER={chosen!r} is not ses or resend", code="EMAIL_NOT_CONFIGURED"
        )
    from notifications.provider.resend import ResendEmail

    read = float(os.environ.get(TIMEOUT_VARIABLE) or 10)
    key = str((ctx.secret(SECRET_NAME, "json") or {}).get("apiKey") or "")
    return ResendEmail(
        ctx.http, key, os.environ.get(RESEND_URL_VARIABLE) or "", timeout=(min(3.0, read), read)
    )


def sender() -> str:
    address = os.environ.get(FROM_VARIABLE) or ""
    if "@" not in address:
        raise PermanentJobError("EMAIL_FROM is not set", code="EMAIL_NOT_CONFIGURED")
    return address


@job_type(
    "notifications.email.send",
    policy=JobPolicy(
        priority=Priority.MEDIUM, max_attempts=5, backoff=(2, 6, 18, 54), timeout_seconds=60, rate=SEND_RATE
    ),
    aliases=["send-email"],
)
def send_email(payload: EmailJob, ctx: JobContext) -> dict[str, Any]:
    """Send the notification once (the provider's id is recorded by ctx.once; Resend also gets
    the job's idempotency key) and record SENT, or FAILED with a safe reason."""
    notification = service().deliver(
        payload.notification_id,
        sender,
        lambda: provider(ctx),
        ctx.once,
        ctx.idempotency_key,
        ctx.is_last_attempt,
        owner=ctx.user_id or "",
    )
    result: dict[str, Any] = {
        "notificationId": notification.notification_id,
        "status": str(notification.status),
    }
    if notification.provider_message_id:
        result["providerMessageId"] = notification.provider_message_id
    if notification.reason:
        result["reason"] = notification.reason
    return result
