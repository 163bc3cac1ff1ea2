"""The job type as declared: its name, alias, policy and rate, the provider it picks from the
environment, and its result (no address, no body)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from notifications import jobs
from notifications.payloads import EmailJob
from notifications.provider.resend import ResendEmail
from notifications.provider.ses import SesEmail
from pydantic import ValidationError

from tarefa import JobContext, PermanentJobError, Priority, Rate
from tarefa.context import JobServices
from tarefa.jobtypes import declared


def test_the_declaration() -> None:
    job_type = declared.get("send-email")  # the seed's name is an alias
    assert job_type.name == "notifications.email.send"
    policy = job_type.policy
    assert (policy.priority, policy.max_attempts, tuple(policy.backoff)) == (
        Priority.MEDIUM,
        5,
        (2, 6, 18, 54),
    )
    assert policy.rate == Rate(2, 1) and policy.rate_key is None  # one window for the whole team
    assert job_type.payload_model is EmailJob
    with pytest.raises(ValidationError):
        EmailJob.model_validate({"notificationId": "x", "to": "ana@example.com"})  # nothing else in a job


def context(secret: Any = None) -> JobContext:
    return JobContext(
        "job-1",
        1,
        5,
        "alice",
        services=JobServices(secret=lambda name, transform: secret, http=object),  # type: ignore[arg-type]
    )


def test_the_provider_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    jobs._ses.cache_clear()
    monkeypatch.delenv(jobs.PROVIDER_VARIABLE, raising=False)
    assert isinstance(jobs.provider(context()), SesEmail)
    monkeypatch.setenv(jobs.PROVIDER_VARIABLE, "resend")
    monkeypatch.setenv(jobs.RESEND_URL_VARIABLE, "http://127.0.0.1:4620")
    chosen = jobs.provider(context({"apiKey": "re_x"}))
    assert isinstance(chosen, ResendEmail) and chosen.base_url == "http://127.0.0.1:4620"
    with pytest.raises(PermanentJobError) as no_key:
        jobs.provider(context({"apiKey": ""}))
    assert no_key.value.code == "EMAIL_NOT_CONFIGURED"
    monkeypatch.setenv(jobs.PROVIDER_VARIABLE, "sendgrid")
    with pytest.raises(PermanentJobError) as unknown:
        jobs.provider(context())
    assert unknown.value.code == "EMAIL_NOT_CONFIGURED"
    jobs._ses.cache_clear()


def test_the_sender_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(jobs.FROM_VARIABLE, raising=False)
    with pytest.raises(PermanentJobError) as missing:
        jobs.sender()
    assert missing.value.code == "EMAIL_NOT_CONFIGURED"
    monkeypatch.setenv(jobs.FROM_VARIABLE, "no-reply@tarefa.example")
    assert jobs.sender() == "no-reply@tarefa.example"


def test_the_result_names_the_outcome_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications.models import EmailRequest
    from notifications.service import NotificationService

    from .fakes import FakeNotificationsStore, ScriptedProvider, Steps

    service = NotificationService(FakeNotificationsStore(), retention_seconds=60)
    notification, _ = service.submit(
        "alice", EmailRequest.model_validate({"to": "ana@example.com", "subject": "Oi", "text": "Corpo"})
    )
    steps = Steps()
    monkeypatch.setattr(jobs, "service", lambda: service)
    monkeypatch.setattr(jobs, "provider", lambda ctx: ScriptedProvider())
    monkeypatch.setenv(jobs.FROM_VARIABLE, "no-reply@tarefa.example")
    ctx = context()
    monkeypatch.setattr(ctx, "once", steps.once)
    result = jobs.send_email(EmailJob(notification_id=notification.notification_id), ctx)
    assert result == {
        "notificationId": notification.notification_id,
        "status": "SENT",
        "providerMessageId": "msg-1",
    }
    assert "ana@example.com" not in json.dumps(result) and "Corpo" not in json.dumps(result)
