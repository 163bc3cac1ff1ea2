"""The guests rules (guests.service) against the in-memory store, hasher and failure counter:
places and shards, once per phone, once per event and client, the password checks and what they
count, the door, and an event's figures."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from guests.keys import GuestKeys
from guests.models import EventChange, EventRequest, OutcomeCode, Promoter, Sample, Seats
from guests.payloads import LoginJob, RegisterJob
from guests.service import (
    ADMIT_TRIES,
    WRITE_TRIES,
    AlreadyCheckedIn,
    BusyError,
    EventNotFoundError,
    GuestService,
    InvalidPassError,
    LinkTakenError,
    guest_id_for,
    p95,
    places_left,
    split_caps,
)
from guests.store import SEAT_SHARDS, ContentionError, StaleRecordError
from hypothesis import given, settings
from hypothesis import strategies as st

from ..fakes import Clock, Ids
from .fakes import SECRET, START, FakeFailures, FakeGuestsStore, FakeHasher, fake_service

PASSWORD = "Sup3r-secret-pass"
KEYS = GuestKeys(SECRET)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def store() -> FakeGuestsStore:
    return FakeGuestsStore()


@pytest.fixture
def hasher() -> FakeHasher:
    return FakeHasher()


@pytest.fixture
def failures(clock: Clock) -> FakeFailures:
    return FakeFailures(clock)


@pytest.fixture
def service(store: FakeGuestsStore, clock: Clock, hasher: FakeHasher) -> GuestService:
    return fake_service(store, clock, hasher, Ids("ev"))


def event_request(capacity: int = 100, **fields: Any) -> EventRequest:
    return EventRequest(
        slug=fields.pop("slug", "festa-verao"),
        name="Festa",
        starts_at=START + timedelta(days=3),
        capacity=capacity,
        promoters=fields.pop("promoters", [Promoter(slug="miguel", name="Miguel", team="A")]),
        **fields,
    )


def registration(
    event_id: str, phone: str = "+351912345678", password: str = PASSWORD, **fields: Any
) -> RegisterJob:
    return RegisterJob(
        event_id=event_id,
        phone=phone,
        first_name=fields.pop("first_name", "Maria"),
        last_name="Silva",
        password=password,
        submitted_at=START,
        **fields,
    )


def login(event_id: str, phone: str = "+351912345678", password: str = PASSWORD, **fields: Any) -> LoginJob:
    return LoginJob(event_id=event_id, phone=phone, password=password, submitted_at=START, **fields)


def key(phone: str = "+351912345678") -> str:
    return KEYS.phone_key(phone)


# -- events and places ----------------------------------------------------------------------------


def test_an_event_s_places_are_split_over_the_shards_and_its_links_taken_once(
    service: GuestService, store: FakeGuestsStore
) -> None:
    event = service.create_event("alice", event_request(capacity=21))
    seats = store.seats(event.event_id)
    assert [s.cap for s in seats] == [3, 3, 3, 3, 3, 2, 2, 2] and sum(s.cap for s in seats) == 21
    assert all(s.open and s.registered == 0 for s in seats) and len(seats) == SEAT_SHARDS
    assert store.event_id_for("miguel", "festa-verao") == event.event_id
    with pytest.raises(LinkTakenError) as taken:
        service.create_event(
            "bob",
            event_request(promoters=[Promoter(slug="rita", name="R"), Promoter(slug="miguel", name="M")]),
        )
    assert taken.value.details == {"links": ["miguel/festa-verao"]} and taken.value.status == 409
    assert store.event_id_for("rita", "festa-verao") is None  # all or nothing
    with pytest.raises(EventNotFoundError):
        service.event("nope")


@settings(max_examples=200, deadline=None)
@given(
    registered=st.lists(st.integers(0, 50), min_size=SEAT_SHARDS, max_size=SEAT_SHARDS),
    capacity=st.integers(1, 1000),
)
def test_new_caps_never_undercut_a_shard_and_never_overbook(registered: list[int], capacity: int) -> None:
    seats = [Seats(shard=n, cap=r, registered=r) for n, r in enumerate(registered)]
    caps = split_caps(capacity, seats)
    assert all(c >= r for c, r in zip(caps, registered, strict=True))  # no shard below what it gave
    assert sum(caps) == max(capacity, sum(registered))  # exactly the capacity, or who is in already
    assert max(caps) - min(c - r for c, r in zip(caps, registered, strict=True)) >= 0
    after = [s.model_copy(update={"cap": c}) for s, c in zip(seats, caps, strict=True)]
    assert sum(registered) + places_left(after) == max(capacity, sum(registered))


def test_closing_needs_no_quiet_moment_and_a_capacity_change_holds_the_counts(
    service: GuestService, store: FakeGuestsStore
) -> None:
    event = service.create_event("alice", event_request(capacity=16))
    closed = service.change_event(event.event_id, EventChange(registration_open=False))
    assert closed.registration_open is False and store.event_changes == [False]
    assert not any(s.open for s in store.seats(event.event_id))
    bigger = service.change_event(event.event_id, EventChange(capacity=24, registration_open=True))
    assert bigger.capacity == 24 and store.event_changes == [False, True]
    assert sum(s.cap for s in store.seats(event.event_id)) == 24 and bigger.version == 2


def test_a_change_that_keeps_meeting_registrations_is_tried_again_then_busy(
    service: GuestService, store: FakeGuestsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = service.create_event("alice", event_request())
    real = store.change_event
    calls = {"n": 0}

    def stale_twice(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise StaleRecordError("moved")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "change_event", stale_twice)
    assert service.change_event(event.event_id, EventChange(capacity=50)).capacity == 50
    assert calls["n"] == 3
    monkeypatch.setattr(store, "change_event", lambda *a, **k: (_ for _ in ()).throw(StaleRecordError("x")))
    with pytest.raises(BusyError):
        service.change_event(event.event_id, EventChange(capacity=60))
    assert WRITE_TRIES >= 5


# -- registration ----------------------------------------------------------------------------------


def test_a_registration_makes_the_client_once_hashes_the_password_and_takes_a_place(
    service: GuestService, store: FakeGuestsStore, hasher: FakeHasher, failures: FakeFailures
) -> None:
    event = service.create_event("alice", event_request(capacity=10))
    outcome = service.register(registration(event.event_id, promoter_slug="miguel"), key(), "job-1", failures)
    assert outcome.code == OutcomeCode.ADMITTED and outcome.success and outcome.new_client
    client = store.client_of(key())
    assert client is not None and client.phone == "+351912345678" and client.created_by_job == "job-1"
    assert PASSWORD not in client.password_hash and hasher.hashed == [PASSWORD]
    guest = outcome.guest
    assert guest is not None and guest.guest_id == guest_id_for(event.event_id, client.client_id)
    assert (guest.name, guest.promoter_slug, guest.team) == ("Maria Silva", "miguel", "A")
    assert places_left(store.seats(event.event_id)) == 9
    assert outcome.as_result() == {
        "success": True,
        "guest": {"guestId": guest.guest_id, "name": "Maria Silva"},
        "alreadyRegistered": False,
    }
    assert not hasher.checked  # nothing to check for a new phone


def test_a_double_submit_is_one_client_one_guest_one_place(
    service: GuestService, store: FakeGuestsStore, hasher: FakeHasher, failures: FakeFailures
) -> None:
    event = service.create_event("alice", event_request(capacity=10))
    first = service.register(registration(event.event_id), key(), "job-1", failures)
    second = service.register(registration(event.event_id), key(), "job-2", failures)
    assert second.code == OutcomeCode.ADMITTED and second.already and not second.new_client
    assert (
        first.guest is not None and second.guest is not None and first.guest.guest_id == second.guest.guest_id
    )
    assert len(store.clients) == 1 and len(store.guests) == 1
    assert places_left(store.seats(event.event_id)) == 9
    assert hasher.hashed == [PASSWORD] and hasher.checked == [(PASSWORD, store.clients[key()].password_hash)]
    assert failures.failures == {}


def test_a_repeated_attempt_of_the_same_job_checks_no_password(
    service: GuestService, store: FakeGuestsStore, hasher: FakeHasher, failures: FakeFailures
) -> None:
    event = service.create_event("alice", event_request())
    store.contend = ADMIT_TRIES  # the first attempt made the client and met contention every try
    with pytest.raises(ContentionError):
        service.register(registration(event.event_id), key(), "job-1", failures)
    assert len(store.clients) == 1 and not store.guests
    again = service.register(registration(event.event_id), key(), "job-1", failures)
    assert again.code == OutcomeCode.ADMITTED and not again.already and again.new_client
    assert hasher.hashed == [PASSWORD] and hasher.checked == []


def test_a_taken_phone_with_another_password_is_phone_taken_and_a_failed_login(
    service: GuestService, store: FakeGuestsStore, failures: FakeFailures
) -> None:
    event = service.create_event("alice", event_request())
    service.register(registration(event.event_id), key(), "job-1", failures)
    taken = service.register(
        registration(event.event_id, password="another-one", first_name="Eve"), key(), "job-2", failures
    )
    assert taken.code == OutcomeCode.PHONE_TAKEN and taken.guest is None
    assert taken.as_result() == {"success": False, "code": "PHONE_TAKEN"}
    assert len(failures.failures[key()]) == 1
    assert store.clients[key()].first_name == "Maria"  # the account is untouched


def test_a_full_or_closed_event_makes_no_account(
    service: GuestService, store: FakeGuestsStore, hasher: FakeHasher, failures: FakeFailures
) -> None:
    event = service.create_event("alice", event_request(capacity=1))
    service.register(registration(event.event_id), key(), "job-1", failures)
    full = service.register(
        registration(event.event_id, "+351935886310"), key("+351935886310"), "job-2", failures
    )
    assert full.code == OutcomeCode.EVENT_FULL and key("+351935886310") not in store.clients
    service.change_event(event.event_id, EventChange(registration_open=False, capacity=5))
    closed = service.register(
        registration(event.event_id, "+351935886310"), key("+351935886310"), "job-3", failures
    )
    assert closed.code == OutcomeCode.REGISTRATION_CLOSED and key("+351935886310") not in store.clients
    assert hasher.hashed == [PASSWORD]  # no hash spent on either
    gone = service.register(registration("no-such-event"), key(), "job-4", failures)
    assert gone.code == OutcomeCode.EVENT_NOT_FOUND


def test_a_shard_that_filled_meanwhile_sends_the_guest_to_another(
    service: GuestService, store: FakeGuestsStore, failures: FakeFailures
) -> None:
    event = service.create_event("alice", event_request(capacity=16))
    store.no_room = 2  # the first two shards chosen filled between the read and the write
    store.contend = 1  # and one transaction met another
    outcome = service.register(registration(event.event_id), key(), "job-1", failures)
    assert outcome.code == OutcomeCode.ADMITTED and len(store.admits) == 4
    assert sum(s.registered for s in store.seats(event.event_id)) == 1


def test_concurrent_registrations_never_overbook(clock: Clock) -> None:
    store = FakeGuestsStore()
    import random

    service = GuestService(
        store,  # type: ignore[arg-type]
        FakeHasher(),
        now=clock,
        new_id=Ids("c"),
        choose=random.choice,
        pause=lambda seconds: None,
    )
    event = service.create_event("alice", event_request(capacity=20))
    outcomes: list[OutcomeCode] = []
    lock = threading.Lock()

    def guest(n: int) -> None:
        phone = f"+3519123450{n:02d}"
        outcome = service.register(
            registration(event.event_id, phone), key(phone), f"job-{n}", FakeFailures(clock)
        )
        with lock:
            outcomes.append(outcome.code)

    threads = [threading.Thread(target=guest, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(OutcomeCode.ADMITTED) == 20 and outcomes.count(OutcomeCode.EVENT_FULL) == 30
    assert sum(s.registered for s in store.seats(event.event_id)) == 20 == len(store.guests)


# -- login -------------------------------------------------------------------------------------------


def test_a_login_checks_the_password_and_counts_each_failure(
    service: GuestService, store: FakeGuestsStore, hasher: FakeHasher, failures: FakeFailures
) -> None:
    event = service.create_event("alice", event_request())
    service.register(registration(event.event_id), key(), "job-1", failures)
    wrong = service.login(login(event.event_id, password="wrong-one"), key(), "job-2", failures)
    assert wrong.code == OutcomeCode.INVALID_CREDENTIALS and len(failures.failures[key()]) == 1
    unknown_key = key("+351935886310")
    unknown = service.login(login(event.event_id, "+351935886310"), unknown_key, "job-3", failures)
    assert unknown.code == OutcomeCode.INVALID_CREDENTIALS
    assert hasher.checked[-1] == (PASSWORD, None)  # an unknown phone still costs a check
    assert len(failures.failures[unknown_key]) == 1
    right = service.login(login(event.event_id, promoter_slug="miguel"), key(), "job-4", failures)
    assert right.code == OutcomeCode.ADMITTED and right.already


def test_past_the_failure_limit_no_password_is_checked(
    service: GuestService, hasher: FakeHasher, failures: FakeFailures, clock: Clock
) -> None:
    event = service.create_event("alice", event_request())
    service.register(registration(event.event_id), key(), "job-1", failures)
    for n in range(5):
        service.login(login(event.event_id, password=f"guess-{n}"), key(), f"job-g{n}", failures)
    checks = len(hasher.checked)
    blocked = service.login(login(event.event_id), key(), "job-x", failures)
    assert blocked.code == OutcomeCode.TOO_MANY_ATTEMPTS and len(hasher.checked) == checks
    also = service.register(registration(event.event_id), key(), "job-y", failures)
    assert also.code == OutcomeCode.TOO_MANY_ATTEMPTS
    clock.advance(seconds=61)
    assert service.login(login(event.event_id), key(), "job-z", failures).code == OutcomeCode.ADMITTED


def test_a_login_rehashes_a_password_hashed_at_a_lower_cost(
    store: FakeGuestsStore, clock: Clock, failures: FakeFailures
) -> None:
    old = fake_service(store, clock, FakeHasher(rounds=8))
    event = old.create_event("alice", event_request())
    old.register(registration(event.event_id), key(), "job-1", failures)
    assert store.clients[key()].password_hash.startswith("fake$8$")
    new = fake_service(store, clock, FakeHasher(rounds=10))
    assert new.login(login(event.event_id), key(), "job-2", failures).code == OutcomeCode.ADMITTED
    assert store.clients[key()].password_hash.startswith("fake$10$") and store.clients[key()].version == 1


# -- the door ---------------------------------------------------------------------------------------


def test_check_in_once_and_only_with_a_pass_of_this_event(
    service: GuestService, store: FakeGuestsStore, failures: FakeFailures, clock: Clock
) -> None:
    event = service.create_event("alice", event_request())
    other = service.create_event("alice", event_request(slug="other"))
    guest = service.register(registration(event.event_id), key(), "job-1", failures).guest
    assert guest is not None
    token = KEYS.pass_token(event.event_id, guest.guest_id)
    for forged in (
        token[:-2] + "AA",
        KEYS.pass_token(other.event_id, guest.guest_id),  # signed for the other event
        GuestKeys("z" * 48).pass_token(event.event_id, guest.guest_id),  # another secret
        guest.guest_id,
    ):
        with pytest.raises(InvalidPassError):
            service.check_in(event, forged, KEYS)
    with pytest.raises(InvalidPassError):  # a valid signature for a guest of another event
        service.check_in(other, KEYS.pass_token(other.event_id, guest.guest_id), KEYS)
    admitted = service.check_in(event, token, KEYS)
    assert admitted.checked_in_at == clock()
    clock.advance(minutes=5)
    with pytest.raises(AlreadyCheckedIn) as again:
        service.check_in(event, token, KEYS)
    details = again.value.details
    assert isinstance(details, dict) and details["checkedInAt"] == START.isoformat()
    assert again.value.status == 409
    assert sum(s.checked_in for s in store.seats(event.event_id)) == 1


# -- figures ----------------------------------------------------------------------------------------


def test_p95_is_the_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95([float(n) for n in range(1, 101)]) == 95.0
    assert p95([float(n) for n in range(1, 21)]) == 19.0


def test_the_metrics_count_per_minute_per_promoter_and_time_the_jobs(
    service: GuestService, store: FakeGuestsStore, clock: Clock
) -> None:
    event = service.create_event("alice", event_request())
    store.shards[(event.event_id, 0)] = store.shards[(event.event_id, 0)].model_copy(
        update={"registered": 3, "by_promoter": {"miguel": 2, "-": 1}, "checked_in": 1}
    )
    store.shards[(event.event_id, 1)] = store.shards[(event.event_id, 1)].model_copy(
        update={"registered": 1, "by_promoter": {"miguel": 1}}
    )

    def sample(
        n: int, minute: int, outcome: OutcomeCode, wait: float, work: float, already: bool = False
    ) -> None:
        submitted = START + timedelta(minutes=minute)
        started = submitted + timedelta(seconds=wait)
        store.put_sample(
            Sample(
                job_id=f"j{n}",
                event_id=event.event_id,
                kind="register",
                outcome=outcome,
                already=already,
                submitted_at=submitted,
                started_at=started,
                finished_at=started + timedelta(seconds=work),
            )
        )

    for n in range(19):
        sample(n, n % 2, OutcomeCode.ADMITTED, wait=0.1, work=0.2)
    sample(19, 1, OutcomeCode.ADMITTED, wait=2.0, work=1.0)  # the slow one
    sample(20, 1, OutcomeCode.ADMITTED, wait=0.1, work=0.2, already=True)  # a repeat: no new guest
    sample(21, 1, OutcomeCode.INVALID_CREDENTIALS, wait=0.1, work=0.2)
    sample(22, 1, OutcomeCode.FAILED, wait=9.0, work=9.0)  # a failure of the system
    sample(23, -120, OutcomeCode.ADMITTED, wait=0.1, work=0.2)  # outside the window
    clock.advance(minutes=2)
    figures = service.metrics(event, minutes=60)
    assert figures["guests"] == {
        "total": 4,
        "capacity": 100,
        "placesLeft": 96,
        "checkedIn": 1,
        "perPromoter": {"-": 1, "miguel": 3},
    }
    per_minute = {m["minute"]: m["count"] for m in figures["registrationsPerMinute"]}
    assert per_minute == {START.isoformat(): 10, (START + timedelta(minutes=1)).isoformat(): 10}
    jobs = figures["jobs"]
    assert jobs["finished"] == 23 and jobs["successRate"] == round(22 / 23, 4)
    assert jobs["outcomes"] == {"ADMITTED": 21, "FAILED": 1, "INVALID_CREDENTIALS": 1}
    # 22 samples that are not failures: the 95th percentile is the 21st fastest
    assert jobs["queueWaitP95Ms"] == 100.0 and jobs["processingP95Ms"] == 200.0
    assert jobs["submitToDoneP95Ms"] == 300.0
    clock.advance(minutes=5)
    assert service.metrics(event, minutes=1)["jobs"]["finished"] == 0
