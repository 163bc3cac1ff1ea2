"""The messaging rules on the in-memory store: statuses only forward, FAILED terminal until a
retry, retry only FAILED, idempotency keys, the send claim, and who sees what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from messaging.models import (
    Direction,
    MessageError,
    MessageRequest,
    MessageStatus,
    ReceiveJob,
    SessionRequest,
)
from messaging.provider.port import ProviderStatus
from messaging.service import (
    InvalidStateError,
    KeyReusedError,
    MessagingService,
    NotFoundError,
    NumberTakenError,
    SessionNotConnectedError,
    apply_report,
    callback_data,
    parse_callback,
)

from ..fakes import Clock, Ids
from .fakes import FakeMessagingStore, fake_service

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ANA = "+5511987654321"


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def store() -> FakeMessagingStore:
    return FakeMessagingStore()


@pytest.fixture
def service(store: FakeMessagingStore, clock: Clock) -> MessagingService:
    return fake_service(store, clock, Ids("id"))


def connected(service: MessagingService, owner: str = "alice", number: str = "100") -> str:
    session = service.create_session(owner, SessionRequest(name="Loja", phone_number_id=number), "cloudapi")
    return service.session_connected(session.session_id, 0).session_id


def queued(service: MessagingService, session_id: str, text: str = "oi", key: str | None = None) -> str:
    request = MessageRequest(to=ANA, text=text, idempotency_key=key)
    message, _ = service.create_message(service.session(session_id), request, ANA)
    return message.message_id


def sent(service: MessagingService, session_id: str) -> str:
    message_id = queued(service, session_id)
    assert service.claim_send(message_id, 0).action == "send"
    service.record_sent(message_id, 0, f"wamid.{message_id}", "cloudapi")
    return message_id


def report(
    service: MessagingService, message_id: str, status: ProviderStatus, code: int | None = None
) -> MessageStatus:
    error = MessageError(code=f"WHATSAPP_{code}", reason="x") if code else None
    service.apply_status("cloudapi", f"wamid.{message_id}", status, None, error)
    return service.message(message_id).status


# -- statuses ------------------------------------------------------------------------------------


def test_statuses_only_move_forward(service: MessagingService) -> None:
    message_id = sent(service, connected(service))
    assert report(service, message_id, ProviderStatus.READ) == MessageStatus.READ
    assert (
        report(service, message_id, ProviderStatus.DELIVERED) == MessageStatus.READ
    )  # read before delivered
    assert report(service, message_id, ProviderStatus.SENT) == MessageStatus.READ
    assert (
        report(service, message_id, ProviderStatus.FAILED, 131026) == MessageStatus.READ
    )  # read is final word


def test_each_step_is_stamped_and_repeats_change_nothing(service: MessagingService, clock: Clock) -> None:
    message_id = sent(service, connected(service))
    clock.advance(1)
    assert report(service, message_id, ProviderStatus.DELIVERED) == MessageStatus.DELIVERED
    version = service.message(message_id).version
    assert report(service, message_id, ProviderStatus.DELIVERED) == MessageStatus.DELIVERED
    assert service.message(message_id).version == version
    message = service.message(message_id)
    assert message.sent_at == START and message.delivered_at == START + timedelta(seconds=1)


def test_failed_is_terminal_until_a_retry(service: MessagingService) -> None:
    message_id = sent(service, connected(service))
    assert report(service, message_id, ProviderStatus.FAILED, 131026) == MessageStatus.FAILED
    assert service.message(message_id).error == MessageError(code="WHATSAPP_131026", reason="x")
    for late in (ProviderStatus.SENT, ProviderStatus.DELIVERED, ProviderStatus.READ):
        assert report(service, message_id, late) == MessageStatus.FAILED
    retried = service.request_retry(service.message(message_id))
    assert retried.status == MessageStatus.QUEUED and retried.generation == 1 and retried.error is None
    assert retried.provider_message_id is None
    # a report about the first generation's send no longer touches it
    assert report(service, message_id, ProviderStatus.READ) == MessageStatus.QUEUED


def test_only_failed_outbound_messages_are_retried(service: MessagingService) -> None:
    session_id = connected(service)
    for message_id in (queued(service, session_id), sent(service, session_id)):
        with pytest.raises(InvalidStateError):
            service.request_retry(service.message(message_id))
    inbound, _ = service.record_inbound(
        service.session(session_id),
        ReceiveJob(session_id=session_id, provider_message_id="wamid.in", sender=ANA, text="a"),
    )
    with pytest.raises(InvalidStateError):
        service.request_retry(inbound)


def test_apply_report_ignores_other_generations_and_other_sends(service: MessagingService) -> None:
    message = service.message(sent(service, connected(service)))
    at = START
    assert apply_report(message, 1, ProviderStatus.READ, message.provider_message_id or "", at, None) is None
    assert apply_report(message, 0, ProviderStatus.READ, "wamid.another", at, None) is None
    moved = apply_report(message, 0, ProviderStatus.READ, message.provider_message_id or "", at, None)
    assert moved is not None and moved.status == MessageStatus.READ


# -- idempotency keys ----------------------------------------------------------------------------


def test_an_idempotency_key_with_the_same_body_is_the_same_message(service: MessagingService) -> None:
    session_id = connected(service)
    first = queued(service, session_id, key="k-1")
    request = MessageRequest(to=ANA, text="oi", idempotency_key="k-1")
    again, created = service.create_message(service.session(session_id), request, ANA)
    assert again.message_id == first and created is False
    with pytest.raises(KeyReusedError) as refused:
        service.create_message(
            service.session(session_id), MessageRequest(to=ANA, text="outro", idempotency_key="k-1"), ANA
        )
    assert refused.value.code == "IDEMPOTENCY_KEY_REUSED" and refused.value.status == 409
    with pytest.raises(KeyReusedError):  # another recipient is another body too
        other = "+5511912345678"
        service.create_message(
            service.session(session_id), MessageRequest(to=other, text="oi", idempotency_key="k-1"), other
        )
    # another session's key space is its own
    elsewhere = connected(service, number="200")
    assert queued(service, elsewhere, key="k-1") != first


def test_a_session_not_connected_takes_no_message(service: MessagingService) -> None:
    session = service.create_session("alice", SessionRequest(name="Loja", phone_number_id="100"), "cloudapi")
    with pytest.raises(SessionNotConnectedError):
        service.create_message(session, MessageRequest(to=ANA, text="oi"), ANA)


# -- sessions ------------------------------------------------------------------------------------


def test_one_open_session_per_number_and_a_closed_one_frees_it(service: MessagingService) -> None:
    session_id = connected(service)
    with pytest.raises(NumberTakenError):
        service.create_session("bob", SessionRequest(name="x", phone_number_id="100"), "cloudapi")
    service.session_closed(session_id)
    assert (
        service.create_session("bob", SessionRequest(name="x", phone_number_id="100"), "cloudapi").owner
        == "bob"
    )


def test_another_users_records_are_not_found(service: MessagingService) -> None:
    session_id = connected(service)
    message_id = queued(service, session_id)
    with pytest.raises(NotFoundError):
        service.session(session_id, "bob")
    with pytest.raises(NotFoundError):
        service.message(message_id, "bob")
    assert service.session(session_id, "alice").owner == "alice"
    assert service.message(message_id, None).owner == "alice"  # admins and jobs


def test_a_failed_session_cannot_connect_later(service: MessagingService) -> None:
    session = service.create_session("alice", SessionRequest(name="Loja", phone_number_id="100"), "cloudapi")
    service.session_failed(session.session_id, 0, "invalid_parameter")
    assert service.session_connected(session.session_id, 0).status == "FAILED"


# -- the send claim ------------------------------------------------------------------------------


def test_a_claimed_send_waits_for_the_providers_word_then_takes_over(
    service: MessagingService, clock: Clock
) -> None:
    message_id = queued(service, connected(service))
    assert service.claim_send(message_id, 0).action == "send"
    clock.advance(10)
    waiting = service.claim_send(message_id, 0)
    assert waiting.action == "wait" and waiting.seconds == 50
    clock.advance(51)
    assert service.claim_send(message_id, 0).action == "send"


def test_a_callback_recording_the_send_ends_the_wait(service: MessagingService) -> None:
    message = service.message(queued(service, connected(service)))
    assert service.claim_send(message.message_id, 0).action == "send"
    # the attempt crashed after the send; Meta's `sent` arrives with our callback data
    changed, applied = service.apply_status(
        "cloudapi", "wamid.X", ProviderStatus.SENT, callback_data(message), None
    )
    assert applied and changed is not None and changed.provider_message_id == "wamid.X"
    assert changed.status == MessageStatus.SENT
    assert service.claim_send(message.message_id, 0).action == "done"
    # and the record that comes later (a slow first attempt) changes nothing
    assert service.record_sent(message.message_id, 0, "wamid.X", "cloudapi").version == changed.version
    # its later statuses find it by provider id
    assert report_by_id(service, "wamid.X", ProviderStatus.READ) == MessageStatus.READ


def report_by_id(service: MessagingService, provider_id: str, status: ProviderStatus) -> MessageStatus:
    message, _ = service.apply_status("cloudapi", provider_id, status, None, None)
    assert message is not None
    return message.status


def test_a_released_claim_sends_at_once(service: MessagingService) -> None:
    message_id = queued(service, connected(service))
    service.claim_send(message_id, 0)
    service.release_claim(message_id, 0)
    assert service.claim_send(message_id, 0).action == "send"


def test_sent_or_failed_or_another_generation_is_nothing_to_do(service: MessagingService) -> None:
    session_id = connected(service)
    assert service.claim_send(sent(service, session_id), 0).action == "done"
    failed = queued(service, session_id)
    service.fail(failed, 0, "WHATSAPP_100", "invalid_parameter")
    assert service.claim_send(failed, 0).action == "done"
    assert service.claim_send(queued(service, session_id), 3).action == "done"


def test_callback_data_round_trips_and_refuses_strangers() -> None:
    assert parse_callback("tarefa:abc-1:2") == ("abc-1", 2)
    for other in ("", "tarefa:", "other:abc:1", "tarefa:abc:x", "tarefa::1"):
        assert parse_callback(other) is None


def test_an_inbound_message_is_stored_once_per_provider_id(service: MessagingService) -> None:
    session = service.session(connected(service))
    payload = ReceiveJob(
        session_id=session.session_id, provider_message_id="wamid.in", sender=ANA, text="olá"
    )
    first, created = service.record_inbound(session, payload)
    again, created_again = service.record_inbound(session, payload)
    assert created and not created_again and again.message_id == first.message_id
    assert (
        first.direction == Direction.INBOUND
        and first.status == MessageStatus.RECEIVED
        and first.sender == ANA
    )
