"""The job handlers on the in-memory store with a scripted provider: what each outcome of a
send does to the message (and to the job), the wait for a send that may have gone, and init."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from messaging import jobs
from messaging.models import MessageRequest, MessageStatus, SendJob, SessionJob, SessionRequest
from messaging.provider.port import (
    Outgoing,
    ProviderName,
    ProviderPermanentError,
    ProviderRetryableError,
    Sent,
    SessionRef,
    SessionState,
)
from messaging.service import MessagingService

from tarefa import JobContext, PermanentJobError, RetryLater

from ..fakes import Clock, Ids
from .fakes import FakeMessagingStore, fake_service
from .test_service import ANA, START


class ScriptedProvider:
    name: ProviderName = "cloudapi"

    def __init__(self) -> None:
        self.outcomes: list[Exception | None] = []
        self.sent: list[Outgoing] = []
        self.state = SessionState(state="connected")

    def open_session(self, session: SessionRef) -> SessionState:
        self._next()
        return self.state

    def session_state(self, session: SessionRef) -> SessionState:
        return self.state

    def close_session(self, session: SessionRef) -> None:
        self._next()

    def send(self, session: SessionRef, message: Outgoing) -> Sent:
        self._next()
        self.sent.append(message)
        return Sent(provider_message_id=f"wamid.{len(self.sent)}")

    def _next(self) -> None:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def service(clock: Clock) -> MessagingService:
    return fake_service(FakeMessagingStore(), clock, Ids("id"))


@pytest.fixture
def provider(service: MessagingService, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedProvider]:
    scripted = ScriptedProvider()
    monkeypatch.setattr(jobs, "service", lambda: service)
    monkeypatch.setattr(jobs, "provider", lambda ctx, name: scripted)
    yield scripted


def ctx(attempt: int = 1, max_attempts: int = 5) -> JobContext:
    return JobContext("job-1", attempt, max_attempts, "alice")


def queued(service: MessagingService) -> SendJob:
    session = service.create_session("alice", SessionRequest(name="Loja", phone_number_id="100"), "cloudapi")
    service.session_connected(session.session_id, 0)
    message, _ = service.create_message(
        service.session(session.session_id), MessageRequest(to=ANA, text="oi"), ANA
    )
    return SendJob(message_id=message.message_id, session_id=session.session_id)


def test_a_send_records_the_providers_id(service: MessagingService, provider: ScriptedProvider) -> None:
    job = queued(service)
    result = jobs.send_message(job, ctx())
    assert result["status"] == "SENT" and result["providerMessageId"] == "wamid.1"
    assert provider.sent[0].callback_data == f"tarefa:{job.message_id}:0"
    assert jobs.send_message(job, ctx(2))["status"] == "SENT" and len(provider.sent) == 1  # a duplicate: done


def test_a_permanent_refusal_fails_the_message_and_the_job(
    service: MessagingService, provider: ScriptedProvider
) -> None:
    job = queued(service)
    provider.outcomes = [ProviderPermanentError("x", code="WHATSAPP_100", provider_code=100)]
    with pytest.raises(PermanentJobError):
        jobs.send_message(job, ctx())
    message = service.message(job.message_id)
    assert message.status == MessageStatus.FAILED and message.error is not None
    assert (message.error.code, message.error.reason) == ("WHATSAPP_100", "invalid_parameter")


def test_an_error_answer_releases_the_claim_and_the_last_attempt_fails_it(
    service: MessagingService, provider: ScriptedProvider
) -> None:
    job = queued(service)
    provider.outcomes = [ProviderRetryableError("429", code="WHATSAPP_130429", provider_code=130429)] * 2
    with pytest.raises(ProviderRetryableError):
        jobs.send_message(job, ctx(1))
    assert service.message(job.message_id).send_claimed is None  # nothing went: no wait next time
    with pytest.raises(ProviderRetryableError):
        jobs.send_message(job, ctx(5))
    message = service.message(job.message_id)
    assert message.status == MessageStatus.FAILED and message.error is not None
    assert message.error.reason == "rate_limited"


def test_a_timeout_keeps_the_claim_so_the_next_attempt_waits(
    service: MessagingService, provider: ScriptedProvider, clock: Clock
) -> None:
    job = queued(service)
    provider.outcomes = [ProviderRetryableError("timeout", code="PROVIDER_UNREACHABLE", ambiguous=True)]
    with pytest.raises(ProviderRetryableError):
        jobs.send_message(job, ctx(1))
    clock.advance(2)
    with pytest.raises(RetryLater) as later:
        jobs.send_message(job, ctx(2))
    assert later.value.seconds == 58 and provider.sent == []
    with pytest.raises(PermanentJobError) as unconfirmed:  # no attempt left to wait with
        jobs.send_message(job, ctx(5))
    assert unconfirmed.value.code == "SEND_UNCONFIRMED"
    assert service.message(job.message_id).status == MessageStatus.FAILED


def test_after_the_grace_the_send_goes_again(
    service: MessagingService, provider: ScriptedProvider, clock: Clock
) -> None:
    job = queued(service)
    provider.outcomes = [ProviderRetryableError("timeout", code="PROVIDER_UNREACHABLE", ambiguous=True)]
    with pytest.raises(ProviderRetryableError):
        jobs.send_message(job, ctx(1))
    clock.advance(61)
    assert jobs.send_message(job, ctx(3))["status"] == "SENT" and len(provider.sent) == 1


def test_a_closed_session_fails_its_queued_messages(
    service: MessagingService, provider: ScriptedProvider
) -> None:
    job = queued(service)
    service.session_closed(job.session_id)
    with pytest.raises(PermanentJobError) as closed:
        jobs.send_message(job, ctx())
    assert closed.value.code == "SESSION_NOT_CONNECTED" and provider.sent == []


def test_init_connects_fails_with_the_reason_or_waits_for_the_qr_code(
    service: MessagingService, provider: ScriptedProvider
) -> None:
    session = service.create_session("alice", SessionRequest(name="a", phone_number_id="1"), "cloudapi")
    assert jobs.session_init(SessionJob(session_id=session.session_id), ctx(1, 3))["status"] == "CONNECTED"
    refused = service.create_session("alice", SessionRequest(name="b", phone_number_id="2"), "cloudapi")
    provider.outcomes = [ProviderPermanentError("x", code="WHATSAPP_190", provider_code=190)]
    result = jobs.session_init(SessionJob(session_id=refused.session_id), ctx(1, 3))
    assert (result["status"], result["reason"]) == ("FAILED", "invalid_access_token")
    waiting = service.create_session("alice", SessionRequest(name="c", phone_number_id="3"), "cloudapi")
    provider.state = SessionState(state="waiting", qr="data:image/png;base64,AAA")
    with pytest.raises(RetryLater):
        jobs.session_init(SessionJob(session_id=waiting.session_id), ctx(1, 3))
    assert service.session(waiting.session_id).qr == "data:image/png;base64,AAA"
    result = jobs.session_init(SessionJob(session_id=waiting.session_id), ctx(3, 3))
    assert (result["status"], result["reason"]) == ("FAILED", "qr_not_scanned")
