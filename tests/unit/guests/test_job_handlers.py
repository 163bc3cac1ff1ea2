"""The guests job handlers (guests.jobs) with the in-memory store and hasher and a real
JobContext: what each returns, what it raises, what it records for the figures, and what the
phone cache learns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from guests import jobs
from guests.keys import SECRET_NAME, GuestKeys
from guests.models import EventRequest, OutcomeCode, Promoter
from guests.payloads import LoginJob, RegisterJob
from guests.service import ADMIT_TRIES, GuestService

from tarefa import JobContext, PermanentJobError, RetryableJobError
from tarefa.context import JobServices
from tarefa.jobtypes import declared

from ..fakes import Clock
from .fakes import SECRET, START, FakeGuestsStore, FakeHasher, fake_service

PASSWORD = "Sup3r-secret-pass"
PHONE = "+351912345678"


class RecordingCache:
    """What the handlers use of the platform cache: `set`."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], Any] = {}

    def set(self, family: str, key: str, value: Any, schema: int = 1) -> None:
        self.entries[(family, key)] = value


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def store() -> FakeGuestsStore:
    return FakeGuestsStore()


@pytest.fixture
def service(store: FakeGuestsStore, clock: Clock) -> GuestService:
    return fake_service(store, clock, FakeHasher())


@pytest.fixture(autouse=True)
def wired(monkeypatch: pytest.MonkeyPatch, service: GuestService) -> Iterator[None]:
    monkeypatch.setattr(jobs, "service", lambda: service)
    yield


@pytest.fixture
def cache() -> RecordingCache:
    return RecordingCache()


def context(
    cache: RecordingCache, attempt: int = 1, job_id: str = "job-1", secret: str = SECRET
) -> JobContext:
    def read(name: str, transform: str | None = None) -> str:
        assert name == SECRET_NAME
        return secret

    services = JobServices(cache=cache, secret=read)  # type: ignore[arg-type]  # the cache's `set` is all they use
    return JobContext(job_id, attempt, 3, "alice", job_type="guests.register", services=services)


def open_event(service: GuestService, capacity: int = 10) -> str:
    request = EventRequest(
        slug="festa",
        name="Festa",
        starts_at=START + timedelta(days=1),
        capacity=capacity,
        promoters=[Promoter(slug="miguel", name="Miguel")],
    )
    return service.create_event("alice", request).event_id


def registration(event_id: str, phone: str = PHONE, password: str = PASSWORD) -> RegisterJob:
    return RegisterJob(
        event_id=event_id,
        promoter_slug="miguel",
        phone=phone,
        first_name="Maria",
        last_name="Silva",
        password=password,
        submitted_at=START - timedelta(seconds=2),
    )


def test_the_types_are_declared_with_their_policy_aliases_and_sensitive_fields() -> None:
    register, login = declared.get("guests.register"), declared.get("guests.login")
    assert declared.get("register-guest") is register and declared.get("login-guest") is login
    assert register.sensitive_keys == ("password", "phone", "email")
    assert login.sensitive_keys == ("password", "phone")
    for found in (register, login):
        assert str(found.policy.priority) == "HIGH" and found.policy.max_attempts == 3
        assert found.policy.timeout_seconds <= 30
    assert register.payload_model is RegisterJob and login.payload_model is LoginJob


def test_a_registration_returns_the_guest_records_a_sample_and_teaches_the_phone_cache(
    store: FakeGuestsStore, service: GuestService, cache: RecordingCache, clock: Clock
) -> None:
    event_id = open_event(service)
    result = jobs.register(registration(event_id), context(cache))
    assert result["success"] is True and result["guest"]["name"] == "Maria Silva"
    assert set(result) == {"success", "guest", "alreadyRegistered"}  # no session or pass in a job
    phone_key = GuestKeys(SECRET).phone_key(PHONE)
    assert cache.entries == {("phone", phone_key): {"known": True}}
    sample = store.sample_items["job-1"]
    assert (sample.outcome, sample.kind, sample.promoter_slug, sample.already) == (
        OutcomeCode.ADMITTED,
        "register",
        "miguel",
        False,
    )
    assert (
        sample.submitted_at == START - timedelta(seconds=2)
        and sample.started_at == sample.finished_at == START
    )


def test_a_business_outcome_is_a_result_not_an_error(service: GuestService, cache: RecordingCache) -> None:
    event_id = open_event(service)
    jobs.register(registration(event_id), context(cache))
    cache.entries.clear()
    wrong = LoginJob(event_id=event_id, phone=PHONE, password="wrong-one", submitted_at=START)
    assert jobs.login(wrong, context(cache, job_id="job-2")) == {
        "success": False,
        "code": "INVALID_CREDENTIALS",
    }
    taken = registration(event_id, password="other-password")
    assert jobs.register(taken, context(cache, job_id="job-3")) == {"success": False, "code": "PHONE_TAKEN"}
    assert cache.entries == {}  # no account was made: nothing to write through


def test_contention_is_retryable_and_its_last_attempt_is_a_failed_sample(
    store: FakeGuestsStore, service: GuestService, cache: RecordingCache
) -> None:
    event_id = open_event(service)
    store.contend = ADMIT_TRIES
    with pytest.raises(RetryableJobError) as retry:
        jobs.register(registration(event_id), context(cache, attempt=1))
    assert retry.value.retry_after == 1 and PASSWORD not in str(retry.value) and PHONE not in str(retry.value)
    assert "job-1" not in store.sample_items  # more attempts to come
    # The account this attempt made before it failed is the phone's: the cache learns it now
    assert cache.entries == {("phone", GuestKeys(SECRET).phone_key(PHONE)): {"known": True}}
    store.contend = ADMIT_TRIES
    with pytest.raises(RetryableJobError):
        jobs.register(registration(event_id), context(cache, attempt=3))
    assert store.sample_items["job-1"].outcome == OutcomeCode.FAILED


def test_an_unexpected_error_is_raised_and_sampled_only_on_the_last_attempt(
    store: FakeGuestsStore, service: GuestService, cache: RecordingCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_id = open_event(service)

    def broken(*args: Any) -> Any:
        raise RuntimeError("the table is gone")

    monkeypatch.setattr(store, "seats", broken)
    with pytest.raises(RuntimeError):
        jobs.register(registration(event_id), context(cache, attempt=2))
    assert not store.sample_items and not cache.entries  # it failed before any account
    with pytest.raises(RuntimeError):
        jobs.register(registration(event_id), context(cache, attempt=3))
    assert store.sample_items["job-1"].outcome == OutcomeCode.FAILED


def test_keys_not_configured_fail_the_job_for_good(cache: RecordingCache, service: GuestService) -> None:
    event_id = open_event(service)
    with pytest.raises(PermanentJobError) as failed:
        jobs.register(registration(event_id), context(cache, secret="too-short"))
    assert failed.value.code == "GUESTS_NOT_CONFIGURED"


def test_a_sample_that_cannot_be_written_does_not_fail_the_job(
    store: FakeGuestsStore, service: GuestService, cache: RecordingCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_id = open_event(service)

    def refuse(sample: Any) -> None:
        raise RuntimeError("throttled")

    monkeypatch.setattr(store, "put_sample", refuse)
    assert jobs.register(registration(event_id), context(cache))["success"] is True
