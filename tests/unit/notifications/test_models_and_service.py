"""The notifications' rules on fakes: what a request may be, one notification per idempotency
key, and a send that happens once in effect and ends in a state the user can read."""

from __future__ import annotations

from typing import Any

import pytest
from notifications.models import EmailRequest, NotificationStatus, check_address
from notifications.provider.port import EmailNotConfiguredError, EmailRejectedError
from notifications.service import IdempotencyKeyReusedError, NotificationNotFoundError, NotificationService
from pydantic import ValidationError

from tarefa import PermanentJobError, RetryableJobError
from tarefa.jobs import field_errors

from .fakes import FakeNotificationsStore, ScriptedProvider, Steps

SENDER = "no-reply@tarefa.example"


def request(**fields: Any) -> EmailRequest:
    body = {"to": "ana@example.com", "subject": "Olá", "text": "O seu pedido chegou."}
    body.update(fields)
    return EmailRequest.model_validate(body)


def deliver(
    service: NotificationService,
    notification_id: str,
    provider: ScriptedProvider,
    steps: Steps,
    last: bool = False,
) -> Any:
    return service.deliver(notification_id, lambda: SENDER, lambda: provider, steps.once, "key-1", last)


# -- requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["ana@example.com", "a.b+tag@sub.example.com.br", "x_y-z@xn--bcher-kva.example", "Ana@EXAMPLE.com"],
)
def test_addresses_that_are_accepted(address: str) -> None:
    assert check_address(address).split("@")[1] == address.split("@")[1].lower()


@pytest.mark.parametrize(
    "address",
    [
        "ana",
        "ana@",
        "@example.com",
        "ana@@example.com",
        "ana@example",
        "ana@example.c",
        "ana @example.com",
        "Ana <ana@example.com>",
        "ana@example.com\r\nBcc: eve@example.com",
        "a..b@example.com",
        ".a@example.com",
        "ana@-example.com",
        "ana@exa_mple.com",
        "ana@[127.0.0.1]",
        '"quoted"@example.com',
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "ç@example.com",
    ],
)
def test_addresses_that_are_refused_without_repeating_them(address: str) -> None:
    with pytest.raises(ValidationError) as refused:
        request(to=address)
    answered = field_errors(refused.value)  # what the API answers
    assert any(
        e["field"] in ("to", "to.0") and "must be one e-mail address" in e["message"] for e in answered
    )
    assert address not in str(answered)


def test_subject_text_and_recipients_limits() -> None:
    with pytest.raises(ValidationError, match="one line"):
        request(subject="Olá\r\nBcc: eve@example.com")
    with pytest.raises(ValidationError):
        request(subject="x" * 999)
    with pytest.raises(ValidationError):
        request(text="")
    with pytest.raises(ValidationError):
        request(text="x" * 100_001)
    with pytest.raises(ValidationError):
        request(html="")
    with pytest.raises(ValidationError, match="1 to 50"):
        request(to=[f"u{i}@example.com" for i in range(51)])
    with pytest.raises(ValidationError, match="1 to 50"):
        request(to=[])
    with pytest.raises(ValidationError):
        request(cc="eve@example.com")  # no field the workload does not know
    with pytest.raises(ValidationError):
        request(idempotencyKey="has a space")
    many = request(to=["a@example.com", "b@example.com", "a@example.com"])
    assert many.recipients() == ["a@example.com", "b@example.com"]


# -- submit --------------------------------------------------------------------------------------


def test_the_same_idempotency_key_is_the_same_notification(service: NotificationService) -> None:
    first, created = service.submit("alice", request(idempotencyKey="order-1"))
    again, created_again = service.submit("alice", request(idempotencyKey="order-1"))
    assert (created, created_again) == (True, False)
    assert again.notification_id == first.notification_id
    with pytest.raises(IdempotencyKeyReusedError):
        service.submit("alice", request(idempotencyKey="order-1", subject="Another"))
    bobs, created_bob = service.submit("bob", request(idempotencyKey="order-1"))
    assert created_bob and bobs.notification_id != first.notification_id  # keys are per user
    unkeyed = [service.submit("alice", request())[0].notification_id for _ in range(2)]
    assert len(set(unkeyed)) == 2  # without a key every request is a new notification


def test_expiry_follows_the_retention(service: NotificationService, clock: Any) -> None:
    notification, _ = service.submit("alice", request())
    assert notification.expires_at == int(clock.now.timestamp()) + 3600
    assert notification.status == NotificationStatus.QUEUED


def test_owner_or_admin_only(service: NotificationService) -> None:
    notification, _ = service.submit("alice", request())
    assert service.visible(notification.notification_id, "alice", False) == notification
    assert service.visible(notification.notification_id, "root", True) == notification
    with pytest.raises(NotificationNotFoundError):
        service.visible(notification.notification_id, "bob", False)
    with pytest.raises(NotificationNotFoundError):
        service.visible("nope", "alice", False)


def test_the_public_view_has_no_address_or_body(service: NotificationService) -> None:
    notification, _ = service.submit("alice", request(html="<p>secret body</p>"))
    view = str(notification.public())
    assert "ana@example.com" not in view and "O seu pedido" not in view and "secret body" not in view


# -- deliver -----------------------------------------------------------------------------------


def test_a_send_is_recorded_sent_with_the_providers_id(service: NotificationService, steps: Steps) -> None:
    notification, _ = service.submit("alice", request(html="<b>oi</b>"))
    provider = ScriptedProvider()
    after = deliver(service, notification.notification_id, provider, steps)
    assert (after.status, after.provider, after.provider_message_id) == (
        NotificationStatus.SENT,
        "fake",
        "msg-1",
    )
    message, key = provider.sent[0]
    assert (message.sender, message.to, message.html, key) == (
        SENDER,
        ("ana@example.com",),
        "<b>oi</b>",
        "key-1",
    )
    assert deliver(service, notification.notification_id, provider, steps).status == NotificationStatus.SENT
    assert provider.calls == 1  # a SENT notification is never sent again


def test_a_crash_between_the_send_and_the_record_sends_once(
    service: NotificationService, store: FakeNotificationsStore, steps: Steps
) -> None:
    notification, _ = service.submit("alice", request())
    provider = ScriptedProvider()
    store.fail_next_finish = True
    with pytest.raises(ConnectionError):
        deliver(service, notification.notification_id, provider, steps)
    assert store.items[notification.notification_id].status == NotificationStatus.QUEUED
    after = deliver(service, notification.notification_id, provider, steps)  # the next attempt
    assert (after.status, after.provider_message_id, provider.calls) == (NotificationStatus.SENT, "msg-1", 1)


def test_a_refused_message_is_its_outcome(service: NotificationService, steps: Steps) -> None:
    notification, _ = service.submit("alice", request())
    after = deliver(
        service,
        notification.notification_id,
        ScriptedProvider(EmailRejectedError("fake", "validation_error", 422)),
        steps,
    )
    assert (after.status, after.reason) == (NotificationStatus.FAILED, "REJECTED: validation_error")
    assert (
        deliver(service, notification.notification_id, ScriptedProvider(), steps).status
        == NotificationStatus.FAILED
    )


def test_retryable_failures_raise_and_the_last_marks_it_failed(
    service: NotificationService, steps: Steps
) -> None:
    notification, _ = service.submit("alice", request())
    provider = ScriptedProvider(
        RetryableJobError("fake answered 503"), RetryableJobError("fake answered 503")
    )
    with pytest.raises(RetryableJobError):
        deliver(service, notification.notification_id, provider, steps)
    assert service.store.get(notification.notification_id).status == NotificationStatus.QUEUED  # type: ignore[union-attr]
    with pytest.raises(RetryableJobError):
        deliver(service, notification.notification_id, provider, steps, last=True)
    after = service.store.get(notification.notification_id)
    assert after is not None and (after.status, after.reason) == (
        NotificationStatus.FAILED,
        "PROVIDER_UNAVAILABLE",
    )


def test_a_provider_not_configured_fails_the_job_and_the_notification(
    service: NotificationService, steps: Steps
) -> None:
    notification, _ = service.submit("alice", request())
    with pytest.raises(PermanentJobError) as failed:
        deliver(
            service, notification.notification_id, ScriptedProvider(EmailNotConfiguredError("no key")), steps
        )
    assert failed.value.code == "EMAIL_NOT_CONFIGURED"
    after = service.store.get(notification.notification_id)
    assert after is not None and (after.status, after.reason) == (
        NotificationStatus.FAILED,
        "EMAIL_NOT_CONFIGURED",
    )


def test_a_missing_sender_is_a_configuration_failure(service: NotificationService, steps: Steps) -> None:
    notification, _ = service.submit("alice", request())

    def no_sender() -> str:
        raise EmailNotConfiguredError("EMAIL_FROM is not set")

    with pytest.raises(PermanentJobError):
        service.deliver(notification.notification_id, no_sender, ScriptedProvider, steps.once, "k", False)
    assert service.store.get(notification.notification_id).status == NotificationStatus.FAILED  # type: ignore[union-attr]


def test_an_unknown_notification_fails_permanently(service: NotificationService, steps: Steps) -> None:
    with pytest.raises(PermanentJobError) as failed:
        deliver(service, "gone", ScriptedProvider(), steps)
    assert failed.value.code == "NOT_FOUND"


def test_only_the_owners_job_sends_it(service: NotificationService, steps: Steps) -> None:
    notification, _ = service.submit("alice", request())
    provider = ScriptedProvider()
    with pytest.raises(PermanentJobError) as refused:
        service.deliver(
            notification.notification_id,
            lambda: SENDER,
            lambda: provider,
            steps.once,
            "k",
            False,
            owner="bob",
        )
    assert refused.value.code == "NOT_FOUND" and provider.calls == 0
    assert service.store.get(notification.notification_id).status == NotificationStatus.QUEUED  # type: ignore[union-attr]
    after = service.deliver(
        notification.notification_id, lambda: SENDER, lambda: provider, steps.once, "k", False, owner="alice"
    )
    assert after.status == NotificationStatus.SENT


def test_a_recorded_send_is_recorded_sent_even_if_the_provider_is_gone_now(
    service: NotificationService, store: FakeNotificationsStore, steps: Steps
) -> None:
    """The crash came after the send; by the next attempt the key was removed: the recorded
    answer is used, no provider is built, nothing fails."""
    notification, _ = service.submit("alice", request())
    store.fail_next_finish = True
    with pytest.raises(ConnectionError):
        deliver(service, notification.notification_id, ScriptedProvider(), steps)

    def gone() -> ScriptedProvider:
        raise EmailNotConfiguredError("the key was removed")

    after = service.deliver(notification.notification_id, lambda: SENDER, gone, steps.once, "key-1", False)
    assert (after.status, after.provider_message_id) == (NotificationStatus.SENT, "msg-1")
