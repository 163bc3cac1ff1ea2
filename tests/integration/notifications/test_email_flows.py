"""E-mail notifications through the real handlers on moto: SES (moto's, its sent messages read
back) and Resend (the sandbox over loopback HTTP), the states a user reads, the idempotency of
requests, and a send that happens once in effect when the worker dies at the worst moment."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest
from notifications.provider.resend import ResendEmail
from notifications.provider.ses import SesEmail
from notifications.store import NotificationsStore

from tarefa.context import STEP_NAMESPACE

from ..conftest import ADMIN, ALICE, BOB, Clock, job_of
from .conftest import SECRETS_PREFIX, SENDER, Mail, clock_for, ses_sent


class WorkerDied(BaseException):
    """The Lambda's process going away: nothing in the worker catches it."""


def accepted(mail: Mail, **fields: Any) -> tuple[str, str]:
    answer = mail.send(**fields)
    assert answer.status == 202, answer.body
    notification = answer.body["notification"]
    assert notification["status"] == "QUEUED" and answer.body["jobId"] == notification["jobId"]
    return notification["notificationId"], answer.body["jobId"]


def settle(mail: Mail, clock: Clock, rounds: int = 8, seconds: float = 60) -> None:
    for _ in range(rounds):
        mail.run(clock, seconds)


# -- SES -----------------------------------------------------------------------------------------


def test_ses_sends_it_and_the_notification_says_sent_with_its_message_id(ses_mail: Mail) -> None:
    notification_id, job_id = accepted(
        ses_mail, to=["ana@example.com", "bia@example.com"], html="<p>Chegou</p>"
    )
    assert ses_sent() == []
    ses_mail.app.drain()
    found = ses_mail.notification(notification_id)
    (message,) = ses_sent()
    assert (found["status"], found["provider"], found["providerMessageId"]) == ("SENT", "ses", message.id)
    assert message.source == SENDER
    assert message.destinations == {"ToAddresses": ["ana@example.com", "bia@example.com"]}
    assert (message.subject, message.body) == ("Seu pedido", "<p>Chegou</p>")  # moto keeps the html part
    job = job_of(ses_mail.app, job_id)
    assert (job["type"], job["status"], job["attempts"]) == ("notifications.email.send", "COMPLETED", 1)
    assert job["result"] == {
        "notificationId": notification_id,
        "status": "SENT",
        "providerMessageId": message.id,
    }
    assert job["payload"] == {"notificationId": notification_id}  # no address, no body in the job


def test_an_unverified_sender_fails_the_job_and_the_notification(ses_mail: Mail) -> None:
    boto3.client("sesv2").delete_email_identity(EmailIdentity="example.com")
    notification_id, job_id = accepted(ses_mail)
    ses_mail.app.drain()
    found = ses_mail.notification(notification_id)
    assert (found["status"], found["reason"]) == ("FAILED", "EMAIL_NOT_CONFIGURED")
    job = job_of(ses_mail.app, job_id)
    assert (job["status"], job["errorDetails"]["code"]) == ("FAILED", "EMAIL_NOT_CONFIGURED")
    assert "example.com" not in json.dumps(job)  # SES's message quotes the sender: never kept


def test_a_worker_that_dies_after_ses_sent_never_sends_twice(
    ses_mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES has no idempotency key: the send's answer is recorded by ctx.once before the
    notification is; a death between the two (the worker dies, nothing of the attempt is
    recorded on the job) sends nothing more on the next attempt."""
    clock = clock_for(ses_mail)
    notification_id, job_id = accepted(ses_mail)
    finish = NotificationsStore.finish
    died: list[bool] = []

    def die_once(self: NotificationsStore, *args: Any, **kwargs: Any) -> Any:
        if not died:
            died.append(True)
            raise WorkerDied
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(NotificationsStore, "finish", die_once)
    with pytest.raises(WorkerDied):
        ses_mail.app.drain()
    assert len(ses_sent()) == 1 and ses_mail.notification(notification_id)["status"] == "QUEUED"
    ses_mail.run(clock, 721)  # the message comes back after its visibility; the lease is over
    ses_mail.app.fire("Recover")
    settle(ses_mail, clock, 3)
    found = ses_mail.notification(notification_id)
    assert len(ses_sent()) == 1, "sent twice"
    assert (found["status"], found["providerMessageId"]) == ("SENT", ses_sent()[0].id)
    assert job_of(ses_mail.app, job_id)["status"] == "COMPLETED"


def test_the_window_that_remains_on_ses_a_death_before_the_step_is_recorded(
    ses_mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one place a second e-mail can go out (README): SES answered and the worker died before
    ctx.once wrote its record. Resend's Idempotency-Key closes it (the next test)."""
    clock = clock_for(ses_mail)
    notification_id, _ = accepted(ses_mail)
    send = SesEmail.send
    died: list[bool] = []

    def send_then_die(self: SesEmail, *args: Any) -> Any:
        sent = send(self, *args)
        if not died:
            died.append(True)
            raise WorkerDied
        return sent

    monkeypatch.setattr(SesEmail, "send", send_then_die)
    with pytest.raises(WorkerDied):
        ses_mail.app.drain()
    ses_mail.run(clock, 721)
    ses_mail.app.fire("Recover")
    settle(ses_mail, clock, 3)
    assert ses_mail.notification(notification_id)["status"] == "SENT"
    assert len(ses_sent()) == 2


# -- Resend --------------------------------------------------------------------------------------


def test_resend_sends_it_with_the_jobs_idempotency_key(resend_mail: Mail) -> None:
    notification_id, job_id = accepted(resend_mail, text="Olá", html="<p>Olá</p>")
    resend_mail.app.drain()
    (email,) = resend_mail.sandbox.sent
    found = resend_mail.notification(notification_id)
    assert (found["status"], found["provider"], found["providerMessageId"]) == ("SENT", "resend", email.id)
    assert (email.sender, email.to, email.subject, email.text, email.html) == (
        SENDER,
        ("ana@example.com",),
        "Seu pedido",
        "Olá",
        "<p>Olá</p>",
    )
    assert email.idempotency_key == str(uuid.uuid5(STEP_NAMESPACE, f"{job_id}/"))  # ctx.idempotency_key


def test_a_worker_that_dies_after_resend_accepted_never_sends_twice(
    resend_mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a death before ctx.once's record: the next attempt sends the same Idempotency-Key and
    Resend (the sandbox, as Resend documents) answers the first response without sending."""
    clock = clock_for(resend_mail)
    notification_id, _ = accepted(resend_mail)
    send = ResendEmail.send
    died: list[bool] = []

    def send_then_die(self: ResendEmail, *args: Any) -> Any:
        sent = send(self, *args)
        if not died:
            died.append(True)
            raise WorkerDied
        return sent

    monkeypatch.setattr(ResendEmail, "send", send_then_die)
    with pytest.raises(WorkerDied):
        resend_mail.app.drain()
    resend_mail.run(clock, 721)
    resend_mail.app.fire("Recover")
    settle(resend_mail, clock, 3)
    found = resend_mail.notification(notification_id)
    assert resend_mail.sandbox.requests == 2 and len(resend_mail.sandbox.sent) == 1, "sent twice"
    assert (found["status"], found["providerMessageId"]) == ("SENT", resend_mail.sandbox.sent[0].id)


def test_a_bounce_is_the_notifications_outcome_not_a_failed_job(resend_mail: Mail) -> None:
    notification_id, job_id = accepted(resend_mail, to="bounce@example.com")
    resend_mail.app.drain()
    found = resend_mail.notification(notification_id)
    assert (found["status"], found["reason"]) == ("FAILED", "REJECTED: validation_error")
    job = job_of(resend_mail.app, job_id)
    assert (job["status"], job["attempts"], job["result"]["status"]) == ("COMPLETED", 1, "FAILED")
    assert resend_mail.sandbox.sent == []


@pytest.mark.parametrize("recipient", ["fail@example.com", "ratelimit@example.com", "slow@example.com"])
def test_provider_faults_retry_and_send_once(resend_mail: Mail, recipient: str) -> None:
    clock = clock_for(resend_mail)
    notification_id, job_id = accepted(resend_mail, to=recipient)
    resend_mail.app.drain()
    assert job_of(resend_mail.app, job_id)["status"] == "RETRYING"
    settle(resend_mail, clock, 6)
    found = resend_mail.notification(notification_id)
    job = job_of(resend_mail.app, job_id)
    assert (found["status"], job["status"]) == ("SENT", "COMPLETED")
    assert len(resend_mail.sandbox.sent_to(recipient)) == 1
    assert job["attempts"] == (2 if recipient == "slow@example.com" else 3)


def test_the_provider_down_through_every_attempt_fails_it(resend_mail: Mail) -> None:
    clock = clock_for(resend_mail)
    resend_mail.sandbox.stop()
    notification_id, job_id = accepted(resend_mail)
    settle(resend_mail, clock, 8)
    found = resend_mail.notification(notification_id)
    job = job_of(resend_mail.app, job_id)
    assert (found["status"], found["reason"]) == ("FAILED", "PROVIDER_UNAVAILABLE")
    assert (job["status"], job["attempts"]) == ("FAILED", 5)


def test_a_missing_api_key_is_a_configuration_failure(resend_mail: Mail) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=SECRETS_PREFIX + "notifications/resend", SecretString='{"apiKey": ""}'
    )
    notification_id, job_id = accepted(resend_mail)
    resend_mail.app.drain()
    assert resend_mail.notification(notification_id)["reason"] == "EMAIL_NOT_CONFIGURED"
    assert job_of(resend_mail.app, job_id)["errorDetails"]["code"] == "EMAIL_NOT_CONFIGURED"


def test_a_burst_waits_for_the_rate_and_none_fails(resend_mail: Mail) -> None:
    """Resend allows 2 requests a second (the sandbox too, now): the job type's rate holds the
    others back in their queue, so 5 sends take over 2 s and none fails. The limiter counts when
    a job starts, Resend when the request lands, so at a window's edge one may still meet a 429:
    it is retried after Retry-After, never sent twice."""
    resend_mail.sandbox.rate = 2
    began = time.monotonic()
    ids = [accepted(resend_mail, to=f"user{n}@example.com")[1] for n in range(5)]
    deadline = began + 30
    while time.monotonic() < deadline:
        resend_mail.run()
        if all(job_of(resend_mail.app, j)["status"] == "COMPLETED" for j in ids):
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - began
    assert [job_of(resend_mail.app, j)["status"] for j in ids] == ["COMPLETED"] * 5
    assert len(resend_mail.sandbox.sent) == 5 and len({e.to for e in resend_mail.sandbox.sent}) == 5
    assert elapsed >= 2.0, elapsed  # 5 sends at 2 a second: the rate held them back
    refused = resend_mail.sandbox.requests - 5  # the sandbox's 429s, at a window's edge
    assert refused <= 2, refused


# -- the routes --------------------------------------------------------------------------------


def test_the_same_idempotency_key_is_the_same_notification_and_job(ses_mail: Mail) -> None:
    first = ses_mail.send(idempotencyKey="welcome-ana")
    again = ses_mail.send(idempotencyKey="welcome-ana")
    assert (first.status, again.status) == (202, 202)
    assert again.body == first.body
    other = ses_mail.send(idempotencyKey="welcome-ana", subject="Another")
    assert other.status == 409 and other.body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    ses_mail.app.drain()
    after = ses_mail.send(idempotencyKey="welcome-ana")
    assert after.status == 202 and after.body["notification"]["status"] == "SENT"
    assert len(ses_sent()) == 1


def test_only_the_owner_or_an_admin_reads_it(ses_mail: Mail) -> None:
    notification_id, _ = accepted(ses_mail)
    assert ses_mail.app.api("GET", f"/notifications/{notification_id}", claims=BOB).status == 404
    assert ses_mail.notification(notification_id, ADMIN)["notificationId"] == notification_id
    assert ses_mail.app.api("GET", f"/notifications/{notification_id}").status == 401
    assert ses_mail.app.api("GET", "/notifications/nope", claims=ALICE).body["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": "not-an-address"}, "to.0"),
        ({"to": ["ok@example.com", "bad@"]}, "to.1"),
        ({"to": []}, "to"),
        ({"subject": "a\nBcc: eve@example.com"}, "subject"),
        ({"subject": ""}, "subject"),
        ({"text": ""}, "text"),
        ({"text": 3}, "text"),
        ({"cc": "eve@example.com"}, "cc"),
    ],
)
def test_bad_requests_are_422_naming_the_field(ses_mail: Mail, fields: dict[str, Any], field: str) -> None:
    answer = ses_mail.send(**fields)
    assert answer.status == 422, answer.body
    assert field in [d["field"] for d in answer.body["error"]["details"]]
    assert "eve@example.com" not in json.dumps(answer.body) and "not-an-address" not in json.dumps(
        answer.body
    )
    assert ses_mail.app.api("POST", "/notifications/email", "not json", ALICE).status == 400
    assert ses_mail.app.api("POST", "/notifications/email", {"to": "a@example.com"}).status == 401


def test_a_cancelled_job_reads_failed(ses_mail: Mail) -> None:
    notification_id, job_id = accepted(ses_mail)
    assert ses_mail.app.api("POST", f"/jobs/{job_id}/cancel", {}, ALICE).status == 200
    found = ses_mail.notification(notification_id)
    assert (found["status"], found["reason"]) == ("FAILED", "JOB_CANCELLED")
    ses_mail.app.drain()
    assert ses_sent() == []


def test_another_users_job_cannot_send_or_touch_it(ses_mail: Mail) -> None:
    """POST /jobs with the alias and someone else's notification id: refused by the job, the
    notification untouched, nothing sent; its own job then sends it."""
    notification_id, _ = accepted(ses_mail)
    forged = ses_mail.app.api(
        "POST", "/jobs", {"type": "send-email", "payload": {"notificationId": notification_id}}, BOB
    )
    assert forged.status == 202, forged.body
    seed_shaped = ses_mail.app.api(
        "POST",
        "/jobs",
        {"type": "send-email", "payload": {"to": "ana@example.com", "subject": "x", "html": "y"}},
        BOB,
    )
    assert seed_shaped.status == 422
    ses_mail.app.drain()
    job = job_of(ses_mail.app, forged.body["jobId"], BOB)
    assert (job["status"], job["errorDetails"]["code"]) == ("FAILED", "NOT_FOUND")
    assert ses_mail.notification(notification_id)["status"] == "SENT"  # by its own job, once
    assert len(ses_sent()) == 1


def test_an_id_that_cannot_be_a_notification_is_404(ses_mail: Mail) -> None:
    for wanted in ("x" * 3000, "NOT-A-UUID", "%00"):
        answer = ses_mail.app.api("GET", f"/notifications/{wanted}", claims=ALICE)
        assert answer.status == 404 and answer.body["error"]["code"] == "NOT_FOUND"
        assert len(answer.body["error"]["message"]) < 200
