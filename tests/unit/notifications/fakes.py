"""In-memory stand-ins for the notifications workload's unit tests: the table, a scripted
provider and a step store that ctx.once-style calls record into."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from notifications.models import Notification, NotificationStatus
from notifications.provider.port import EmailMessage, SentEmail
from notifications.store import NotificationExistsError


class FakeNotificationsStore:
    def __init__(self) -> None:
        self.items: dict[str, Notification] = {}
        self.fail_next_finish = False  # a crash between the send and the record

    def create(self, notification: Notification) -> None:
        if notification.notification_id in self.items:
            raise NotificationExistsError(self.items[notification.notification_id])
        self.items[notification.notification_id] = notification

    def get(self, notification_id: str) -> Notification | None:
        return self.items.get(notification_id)

    def set_job(self, notification_id: str, job_id: str) -> Notification | None:
        found = self.items.get(notification_id)
        if found is not None and found.job_id is None:
            found = self.items[notification_id] = found.model_copy(update={"job_id": job_id})
        return found

    def finish(
        self,
        notification_id: str,
        status: NotificationStatus,
        at: datetime,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> Notification | None:
        if self.fail_next_finish:
            self.fail_next_finish = False
            raise ConnectionError("the worker died before the record")
        found = self.items.get(notification_id)
        if found is None or found.status != NotificationStatus.QUEUED:
            return found
        update: dict[str, Any] = {"status": status, "updated_at": at}
        for name, value in (
            ("provider", provider),
            ("provider_message_id", provider_message_id),
            ("reason", reason),
        ):
            if value is not None:
                update[name] = value
        found = self.items[notification_id] = found.model_copy(update=update)
        return found


class ScriptedProvider:
    """Answers from a script: an exception to raise, or None to accept (id msg-1, msg-2...)."""

    name = "fake"

    def __init__(self, *script: BaseException | None) -> None:
        self.script = list(script)
        self.sent: list[tuple[EmailMessage, str]] = []
        self.calls = 0

    def send(self, message: EmailMessage, idempotency_key: str) -> SentEmail:
        self.calls += 1
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        self.sent.append((message, idempotency_key))
        return SentEmail(self.name, f"msg-{len(self.sent)}")


class Steps:
    """ctx.once's contract on a dict: run unless recorded, record after it returns."""

    def __init__(self) -> None:
        self.recorded: dict[str, str] = {}

    def once(self, step: str, fn: Callable[[], Any]) -> Any:
        if step in self.recorded:
            return json.loads(self.recorded[step])
        value = fn()
        self.recorded[step] = json.dumps(value)
        return json.loads(self.recorded[step])
