"""The cache, limiter and breaker's own rules, over the in-memory backend: no network."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

import pytest

from tarefa.breaker import BackendUnavailableError, CircuitBreaker, GuardedBackend
from tarefa.cache import DEFAULT_TTLS, Cache, TtlTable
from tarefa.job import JobStatus
from tarefa.jobs import JOB_CACHE_SCHEMA, Caller, EnqueueRequest, JobService
from tarefa.jobtypes import default_registry
from tarefa.maintenance import Maintenance
from tarefa.ratelimit import Decision, Rate, RateLimiter
from tarefa.settings import Settings

from .fakes import Clock, EpochClock, MemoryCacheBackend, MemoryQueue, MemoryStore

ALICE = Caller("alice")


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rate"), [("600/60", Rate(600, 60)), (" 80/60 ", Rate(80, 60))])
def test_a_rate_is_n_per_seconds(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate
    assert str(rate) == text.strip()


@pytest.mark.parametrize("text", ["600", "600/", "/60", "0/60", "10/0", "ten/60", "-1/60", "1.5/60"])
def test_a_malformed_rate_is_refused_with_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="N/SECONDS"):
        Rate.parse(text)


def test_ttls_default_to_the_seeds_and_can_be_overridden() -> None:
    assert (DEFAULT_TTLS["session"], DEFAULT_TTLS["phone"], DEFAULT_TTLS["user"]) == (1800, 300, 3600)
    assert (DEFAULT_TTLS["event"], DEFAULT_TTLS["guest"]) == (1800, 600)
    assert TtlTable({"phone": 60})["phone"] == 60
    with pytest.raises(ValueError, match="unknown cache key family 'phones'"):
        TtlTable()["phones"]


def test_route_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the enqueue limit and a fail-closed limit for another route
    monkeypatch.setenv("TAREFA_ENQUEUE_RATE_LIMIT", "100/60")
    monkeypatch.setenv("TAREFA_RATE_LIMITS", json.dumps({"GET /jobs": {"rate": "5/1", "failOpen": False}}))
    monkeypatch.setenv("TAREFA_CACHE_TTLS", '{"phone": 120}')
    settings = Settings.from_environment()
    limits = settings.route_limits()
    assert limits["POST /jobs"].rate == Rate(100, 60) and limits["POST /jobs"].fail_open
    assert limits["GET /jobs"].rate == Rate(5, 1) and not limits["GET /jobs"].fail_open
    assert settings.cache_ttls == {"phone": 120}


def test_the_enqueue_limit_defaults_to_600_a_minute_and_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TAREFA_ENQUEUE_RATE_LIMIT", raising=False)
    monkeypatch.delenv("TAREFA_RATE_LIMITS", raising=False)
    assert Settings.from_environment().route_limits()["POST /jobs"].rate == Rate(600, 60)
    monkeypatch.setenv("TAREFA_ENQUEUE_RATE_LIMIT", "off")
    assert "POST /jobs" not in Settings.from_environment().route_limits()


def test_a_bad_limit_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAREFA_RATE_LIMITS", json.dumps({"GET /jobs": {"rate": "fast"}}))
    with pytest.raises(ValueError, match="N/SECONDS"):
        Settings.from_environment()


def test_a_refusal_says_when_to_come_back() -> None:
    refused = Decision(allowed=False, limit=3, remaining=0, reset_after=0)
    assert refused.headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "0",
        "Retry-After": "1",  # never "come back in 0 seconds"
    }
    assert "Retry-After" not in Decision(True, 3, 2, 60).headers()


# -- circuit breaker ---------------------------------------------------------------------------


def guarded() -> tuple[GuardedBackend, MemoryCacheBackend, EpochClock]:
    clock = EpochClock()
    inner = MemoryCacheBackend(clock)
    return GuardedBackend(inner, CircuitBreaker("memory", 3, 30, clock)), inner, clock


def test_the_breaker_opens_after_three_failures_and_then_spares_the_backend() -> None:
    backend, inner, _ = guarded()
    inner.down = True
    for _ in range(3):
        with pytest.raises(BackendUnavailableError):
            backend.get("k")
    assert backend.breaker.state == "open"
    calls = inner.calls
    with pytest.raises(BackendUnavailableError, match="circuit is open"):
        backend.get("k")
    assert inner.calls == calls  # failed fast, no timeout paid


def test_the_breaker_lets_one_trial_through_and_closes_when_it_succeeds() -> None:
    backend, inner, clock = guarded()
    inner.down = True
    for _ in range(3):
        with pytest.raises(BackendUnavailableError):
            backend.ping()
    inner.down = False
    clock.advance(30)
    assert backend.breaker.state == "half-open"
    backend.ping()
    assert backend.breaker.state == "closed"


def test_a_success_resets_the_failure_count() -> None:
    backend, inner, _ = guarded()
    for down in (True, True, False, True, True):
        inner.down = down
        with contextlib.suppress(BackendUnavailableError):
            backend.ping()
    assert backend.breaker.state == "closed"


# -- the cache over an outage ------------------------------------------------------------------


def test_an_outage_is_a_miss_and_the_source_answers() -> None:
    backend, inner, clock = guarded()
    cache = Cache(backend, clock=clock)
    cache.set("user", "1", "cached")
    inner.down = True
    assert cache.get_or_load("user", "1", lambda: "from source") == "from source"
    assert cache.stats.errors >= 1


def test_the_limiter_fails_open_by_default_and_closed_when_asked() -> None:
    backend, inner, clock = guarded()
    limiter = RateLimiter(backend, clock=clock)
    inner.down = True
    assert limiter.hit("POST /jobs", "user:a", Rate(1, 60)).allowed
    closed = limiter.hit("POST /jobs", "user:a", Rate(1, 60), fail_open=False)
    assert not closed.allowed and closed.degraded


# -- job reads ---------------------------------------------------------------------------------


def job_service(retention_days: int = 7) -> tuple[JobService, MemoryStore, Cache, Clock]:
    clock = Clock()
    store = MemoryStore()
    cache = Cache(MemoryCacheBackend(lambda: clock().timestamp()), clock=lambda: clock().timestamp())
    service = JobService(
        store, MemoryQueue(), default_registry(True), clock, cache, timedelta(days=retention_days)
    )
    return service, store, cache, clock


def test_a_finished_job_is_read_from_the_cache_and_a_live_one_never() -> None:
    jobs, store, _, clock = job_service()
    job = jobs.enqueue(ALICE, EnqueueRequest(type="system.echo")).job
    assert [jobs.read(ALICE, job.job_id).hit for _ in range(2)] == [False, False]  # PENDING
    store.jobs[job.job_id] = job.transition(JobStatus.CANCELLED, clock())
    assert [jobs.read(ALICE, job.job_id).hit for _ in range(2)] == [False, True]
    assert jobs.read(ALICE, job.job_id).value.status == JobStatus.CANCELLED


def test_a_cached_job_is_still_only_its_owners() -> None:
    jobs, store, _, clock = job_service()
    job = jobs.enqueue(ALICE, EnqueueRequest(type="system.echo")).job
    store.jobs[job.job_id] = job.transition(JobStatus.CANCELLED, clock())
    jobs.read(ALICE, job.job_id)
    from tarefa.errors import JobNotFoundError

    with pytest.raises(JobNotFoundError):
        jobs.read(Caller("bob"), job.job_id)


def test_a_job_close_to_its_deletion_is_not_cached() -> None:
    # Given a job cancelled 7 days minus 30 minutes ago, deleted at 7 days
    jobs, store, _, clock = job_service(retention_days=7)
    job = jobs.enqueue(ALICE, EnqueueRequest(type="system.echo")).job
    store.jobs[job.job_id] = job.transition(JobStatus.CANCELLED, clock())
    clock.advance(7 * 86400 - 1800)
    # Then reads go to the table: an entry would outlive the record
    assert [jobs.read(ALICE, job.job_id).hit for _ in range(2)] == [False, False]


def test_an_early_cleanup_drops_the_cached_jobs_it_deleted() -> None:
    jobs, store, cache, clock = job_service()
    job = jobs.enqueue(ALICE, EnqueueRequest(type="system.echo")).job
    store.jobs[job.job_id] = job.transition(JobStatus.CANCELLED, clock())
    jobs.read(ALICE, job.job_id)
    assert cache.get("job", job.job_id, schema=JOB_CACHE_SCHEMA) is not None
    clock.advance(120)
    maintenance = Maintenance(store, MemoryQueue(), 7 * 86400, 300, 120, now=clock, cache=cache)
    assert maintenance.cleanup(older_than_seconds=60) == 1
    assert cache.get("job", job.job_id, schema=JOB_CACHE_SCHEMA) is None


# -- leases (the API's route limits on the DynamoDB backend) -------------------------------------


def leasing(leases: bool = True) -> tuple[RateLimiter, MemoryCacheBackend, EpochClock]:
    """The fake counts its calls: on DynamoDB each hit_window is a billed write."""
    clock = EpochClock(1_000_000.0)
    backend = MemoryCacheBackend(clock)
    return RateLimiter(backend, clock=clock, leases=leases), backend, clock


def test_a_steady_stream_is_counted_in_leases_and_admits_exactly_the_limit() -> None:
    limiter, backend, _ = leasing()
    rate = Rate(600, 60)
    decisions = [limiter.hit("POST /jobs", "user:a", rate, lease=True) for _ in range(700)]
    assert sum(d.allowed for d in decisions) == 600  # near the limit the hits are exact again
    assert all(d.allowed for d in decisions[:600]) and not any(d.allowed for d in decisions[600:])
    # leases grow 1, 2, 4, 8, 16: one write per 16 hits, then exact hits near the limit and a
    # write per refused hit (the 100 over it)
    assert backend.calls < 600 / 8 + 100
    # the headers still count down one by one
    assert [d.remaining for d in decisions[:5]] == [599, 598, 597, 596, 595]


def test_without_leases_or_for_small_limits_every_hit_is_a_write() -> None:
    limiter, backend, _ = leasing(leases=False)
    for _ in range(50):
        limiter.hit("POST /jobs", "user:a", Rate(600, 60), lease=True)
    assert backend.calls == 50
    limiter, backend, _ = leasing()
    for _ in range(20):
        limiter.hit("POST /jobs", "user:a", Rate(30, 60), lease=True)  # under 2 x LEASE_SHARE
    assert backend.calls == 20
    limiter, backend, _ = leasing()
    for _ in range(20):
        limiter.hit("job:t", "k", Rate(600, 60))  # the worker's job rates never lease
    assert backend.calls == 20


def test_a_lease_expires_unused_and_the_next_is_smaller() -> None:
    limiter, backend, clock = leasing()
    rate = Rate(600, 60)
    for _ in range(31):  # leases of 1, 2, 4, 8 and 16, all used
        limiter.hit("POST /jobs", "user:a", rate, lease=True)
    held = limiter._leases["tarefa:rl:POST /jobs:user:a"]
    assert held.size == 16 and held.left == 0
    limiter.hit("POST /jobs", "user:a", rate, lease=True)  # a new lease of 16: 15 left
    clock.advance(60 * 0.1 + 0.5)  # past the lease's life: its 15 hits are never spent
    limiter.hit("POST /jobs", "user:a", rate, lease=True)
    assert limiter._leases["tarefa:rl:POST /jobs:user:a"].size == 8
    # the unused 15 stay counted: the window's allowance shrank by them (the price of leases)
    total = 1 + 2 + 4 + 8 + 16 + 16 + 8
    assert len(backend.windows["tarefa:rl:POST /jobs:user:a"]) == total


def test_a_batch_larger_than_the_lease_is_counted_whole() -> None:
    limiter, _, _ = leasing()
    rate = Rate(600, 60)
    assert limiter.hit("POST /jobs/batch", "user:a", rate, cost=100, lease=True).allowed
    assert limiter.hit("POST /jobs/batch", "user:a", rate, cost=500, lease=True).allowed
    refused = limiter.hit("POST /jobs/batch", "user:a", rate, cost=1, lease=True)
    assert not refused.allowed and refused.remaining == 0


def test_two_instances_never_admit_more_than_the_limit_together() -> None:
    clock = EpochClock(1_000_000.0)
    backend = MemoryCacheBackend(clock)
    one, two = (RateLimiter(backend, clock=clock, leases=True) for _ in range(2))
    rate = Rate(200, 60)
    allowed = 0
    for n in range(400):
        allowed += (one if n % 2 else two).hit("POST /jobs", "user:a", rate, lease=True).allowed
    assert allowed <= 200
    assert allowed >= 200 - 2 * 10  # at most a lease (limit / 20) per instance refused early
