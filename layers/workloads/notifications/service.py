"""The notifications' rules, with no boto3 and no HTTP: a request becomes one notification (the
same idempotency key, the same notification), and its job sends it at most once in effect and
records the outcome; a notification leaves QUEUED once.

Exactly once in effect: the send runs inside `ctx.once("send", ...)`, so the provider's answer
(its message id) is recorded in the engine's idempotency table as soon as it returns, and a later
attempt (after a crash before the notification was updated) reuses it instead of sending again.
Resend also gets the job's idempotency key, so even a death between its answer and that record
sends once. SES has no such key: that window (milliseconds, the record retried 3 times within
the attempt) is the one place a second e-mail can go out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from notifications.models import EmailRequest, Notification, NotificationStatus
from notifications.provider.port import EmailMessage, EmailProvider, EmailRejectedError
from notifications.store import NotificationExistsError
from tarefa import PermanentJobError, Refusal, RetryableJobError

NAMESPACE = uuid.UUID("0c7d3f4e-5a61-4e0b-9a59-7f4f2c1d8e21")  # notification ids from keys
RETENTION_VARIABLE = "JOB_RETENTION_SECONDS"  # the platform's: a notification lives as its job
DEFAULT_RETENTION_SECONDS = 604_800
ID_PATTERN = re.compile(r"[0-9a-f-]{1,64}")  # a notification id: a UUID
Once = Callable[[str, Callable[[], Any]], Any]


class NotificationNotFoundError(Refusal):
    code = "NOT_FOUND"
    status = 404

    def __init__(self, notification_id: str) -> None:
        super().__init__(f"Notification {notification_id} not found")


class IdempotencyKeyReusedError(Refusal):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 409

    def __init__(self) -> None:
        super().__init__("This idempotencyKey was used for another message")


class NotificationRecords(Protocol):
    """The notifications table (store.NotificationsStore; an in-memory fake in unit tests)."""

    def create(self, notification: Notification) -> None: ...

    def get(self, notification_id: str) -> Notification | None: ...

    def set_job(self, notification_id: str, job_id: str) -> Notification | None: ...

    def finish(
        self,
        notification_id: str,
        status: NotificationStatus,
        at: datetime,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> Notification | None: ...


def fingerprint(request: EmailRequest) -> str:
    body = {
        "to": request.recipients(),
        "subject": request.subject,
        "text": request.text,
        "html": request.html,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class NotificationService:
    def __init__(
        self,
        store: NotificationRecords,
        now: Callable[[], datetime] | None = None,
        new_id: Callable[[], str] | None = None,
        retention_seconds: int | None = None,
    ) -> None:
        self.store = store
        self.now = now or (lambda: datetime.now(UTC))
        self.new_id = new_id or (lambda: str(uuid.uuid4()))
        self.retention_seconds = retention_seconds or int(
            os.environ.get(RETENTION_VARIABLE) or DEFAULT_RETENTION_SECONDS
        )

    def submit(self, owner: str, request: EmailRequest) -> tuple[Notification, bool]:
        """The notification for this request and whether it is new. With an idempotencyKey its
        id is derived from the owner and the key, so the same request again finds it."""
        digest = fingerprint(request)
        key = request.idempotency_key
        notification_id = str(uuid.uuid5(NAMESPACE, f"{owner}\n{key}")) if key else self.new_id()
        now = self.now()
        notification = Notification(
            notification_id=notification_id,
            owner=owner,
            to=request.recipients(),
            subject=request.subject,
            text=request.text,
            html=request.html,
            fingerprint=digest,
            created_at=now,
            updated_at=now,
            expires_at=int(now.timestamp()) + self.retention_seconds,
        )
        try:
            self.store.create(notification)
        except NotificationExistsError as exc:
            if exc.existing.owner != owner or exc.existing.fingerprint != digest:
                raise IdempotencyKeyReusedError() from None
            return exc.existing, False
        return notification, True

    def visible(self, notification_id: str, user_id: str, is_admin: bool) -> Notification:
        if not ID_PATTERN.fullmatch(notification_id):  # never a key DynamoDB would refuse
            raise NotificationNotFoundError(notification_id[:64])
        found = self.store.get(notification_id)
        if found is None or not (is_admin or found.owner == user_id):
            raise NotificationNotFoundError(notification_id)  # another's is as if it did not exist
        return found

    def note_job(self, notification: Notification, job_id: str) -> Notification:
        if notification.job_id == job_id:
            return notification
        return self.store.set_job(notification.notification_id, job_id) or notification

    def deliver(
        self,
        notification_id: str,
        sender: Callable[[], str],
        provider: Callable[[], EmailProvider],
        once: Once,
        idempotency_key: str,
        last_attempt: bool,
        owner: str | None = None,
    ) -> Notification:
        """Send a QUEUED notification and record the outcome: SENT with the provider's id, or
        FAILED with a safe reason. A refusal of the message is its outcome (returned); failures
        of the system raise (retryable, or permanent), and the last attempt's marks it FAILED.
        With `owner`, a notification of anybody else is as if it did not exist."""
        found = self.store.get(notification_id)
        if found is None or (owner is not None and found.owner != owner):
            # Only the notification's own job sends it: another user's POST /jobs naming it is refused.
            raise PermanentJobError(f"notification {notification_id} does not exist", code="NOT_FOUND")
        if found.status != NotificationStatus.QUEUED:
            return found

        def send() -> dict[str, str]:  # only when no earlier attempt recorded a send
            message = EmailMessage(sender(), tuple(found.to), found.subject, found.text, found.html)
            sent = provider().send(message, idempotency_key)
            return {"provider": sent.provider, "id": sent.message_id}

        try:
            sent = once("send", send)
        except EmailRejectedError as exc:
            return self._finish(
                found, NotificationStatus.FAILED, provider=exc.provider, reason=f"REJECTED: {exc.reason}"
            )
        except PermanentJobError as exc:
            self._finish(found, NotificationStatus.FAILED, reason=exc.code)
            raise
        except RetryableJobError:
            if last_attempt:
                self._finish(found, NotificationStatus.FAILED, reason="PROVIDER_UNAVAILABLE")
            raise
        except Exception:
            if last_attempt:
                self._finish(found, NotificationStatus.FAILED, reason="SEND_FAILED")
            raise
        return self._finish(
            found,
            NotificationStatus.SENT,
            provider=str(sent["provider"]),
            provider_message_id=str(sent["id"]),
        )

    def _finish(self, found: Notification, status: NotificationStatus, **fields: str | None) -> Notification:
        after = self.store.finish(found.notification_id, status, self.now(), **fields)
        return after or found
