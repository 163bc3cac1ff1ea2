"""One contract for every cache backend: Redis (a real server at REDIS_URL, under a per-test key
prefix), DynamoDB (moto, the template's table) and the in-memory fake the unit tests use.

Time is an epoch clock the tests move; Redis also expires keys on its own clock, so the one
test of physical expiry waits a few hundred real milliseconds there.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from tarefa.adapters.dynamodb_cache import DynamoCacheBackend
from tarefa.adapters.redis import RedisCacheBackend, connect
from tarefa.breaker import CircuitBreaker, GuardedBackend
from tarefa.cache import Cache, TtlTable
from tarefa.errors import SessionsUnavailableError
from tarefa.local.app import EmulatorClients
from tarefa.local.process import free_port
from tarefa.local.provision import provision
from tarefa.ports import CacheBackend
from tarefa.ratelimit import Rate, RateLimiter
from tarefa.sessions import SessionStore

from ..unit.fakes import EpochClock, MemoryCacheBackend


@dataclass
class Harness:
    kind: str
    backend: GuardedBackend
    clock: EpochClock
    prefix: str

    def cache(self, **ttls: int) -> Cache:
        return Cache(self.backend, TtlTable(ttls), self.prefix, self.clock)

    def limiter(self) -> RateLimiter:
        return RateLimiter(self.backend, self.prefix, self.clock)

    def sessions(self) -> SessionStore:
        return SessionStore(self.backend, 30 * 60, self.prefix, self.clock)

    def expire(self, seconds: float) -> None:
        """Let `seconds` pass for the physical TTL of keys too."""
        self.clock.advance(seconds)
        if self.kind == "redis":
            time.sleep(seconds)


class OneRequestAtATime:
    """DynamoDB applies each request to an item atomically; moto, under threads, does not
    (concurrent UpdateItems lose increments). Serialising requests restores that guarantee and
    nothing more: the backend's multi-request sequences still interleave freely."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name == "get_paginator":
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


def dynamodb_cache_table() -> str:
    """The template's cache table, created by the local stack's provisioner (moto is active)."""
    clients = EmulatorClients(boto3.client("sqs"), boto3.client("dynamodb"))
    return provision(clients).tables["CacheTable"]


@pytest.fixture(params=["redis", "dynamodb", "memory"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    clock = EpochClock()
    inner: CacheBackend
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        inner = RedisCacheBackend(connect(request.getfixturevalue("redis_url")))
        yield Harness("redis", GuardedBackend(inner), clock, prefix)
    elif request.param == "dynamodb":
        with mock_aws():
            client: Any = OneRequestAtATime(boto3.client("dynamodb"))
            inner = DynamoCacheBackend(client, dynamodb_cache_table(), clock)
            yield Harness("dynamodb", GuardedBackend(inner), clock, "tarefa-test:")
    else:
        yield Harness("memory", GuardedBackend(MemoryCacheBackend(clock)), clock, "tarefa-test:")


# -- plain operations and TTLs -----------------------------------------------------------------


def test_an_entry_is_served_for_its_family_ttl_then_missed(harness: Harness) -> None:
    # Given a phone check cached with the seed's 5-minute TTL
    cache = harness.cache()
    cache.set("phone", "+5511999990000", {"valid": True})
    # When 4 min 59 s pass, it is still served; when 5 min pass, it is not
    harness.clock.advance(299)
    assert cache.get("phone", "+5511999990000") == {"valid": True}
    harness.clock.advance(1.01)
    assert cache.get("phone", "+5511999990000") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_keys_expire_physically(harness: Harness) -> None:
    # Given a key with a 300 ms TTL and a held lock of the same length
    key = harness.prefix + "short"
    harness.backend.set(key, "v", 0.3)
    assert harness.backend.add(key + ":lock", "a", 0.3)
    assert not harness.backend.add(key + ":lock", "b", 0.3)
    assert harness.backend.get(key) == "v"
    # When the TTL passes, both are gone and the lock can be taken again
    harness.expire(0.4)
    assert harness.backend.get(key) is None
    assert harness.backend.add(key + ":lock", "b", 0.3)


def test_a_lock_is_released_only_by_its_owner(harness: Harness) -> None:
    lock = harness.prefix + "lock"
    assert harness.backend.add(lock, "owner", 10)
    harness.backend.release(lock, "someone-else")
    assert harness.backend.get(lock) == "owner"
    harness.backend.release(lock, "owner")
    assert harness.backend.get(lock) is None


def test_an_entry_of_another_schema_version_is_a_miss_not_a_crash(harness: Harness) -> None:
    cache = harness.cache()
    cache.set("user", "42", {"name": "Ana"}, schema=1)
    harness.backend.set(cache.key("user", "junk"), "not json {", 60)
    # When a deploy reads them with schema 2 (or finds garbage), it reloads from the source
    assert cache.get_or_load("user", "42", lambda: {"full_name": "Ana"}, schema=2) == {"full_name": "Ana"}
    assert cache.get_or_load("user", "junk", lambda: "reloaded") == "reloaded"
    assert cache.get("user", "42", schema=2) == {"full_name": "Ana"}


def test_write_through_saves_first_and_caches_only_what_was_saved(harness: Harness) -> None:
    cache = harness.cache()
    saved: list[Any] = []
    cache.write_through("event", "e1", {"capacity": 300}, saved.append)
    assert saved == [{"capacity": 300}]
    assert cache.get("event", "e1") == {"capacity": 300}

    def refuse(value: Any) -> None:
        raise RuntimeError("database said no")

    with pytest.raises(RuntimeError):
        cache.write_through("event", "e2", {"capacity": 1}, refuse)
    assert cache.get("event", "e2") is None


# -- invalidation ------------------------------------------------------------------------------


def test_prefix_invalidation_deletes_that_family_and_prefix_only(harness: Harness) -> None:
    # Given guest checks of two events, more than a batch of them, and a user entry
    cache = harness.cache()
    for n in range(30):
        cache.set("guest", f"event-1:{n}", n)
    cache.set("guest", "event-2:0", "other event")
    cache.set("user", "event-1:0", "other family")
    # When event 1's guest checks are invalidated
    deleted = cache.invalidate_prefix("guest", "event-1:")
    # Then exactly those are gone
    assert deleted == 30
    assert all(cache.get("guest", f"event-1:{n}") is None for n in range(30))
    assert cache.get("guest", "event-2:0") == "other event"
    assert cache.get("user", "event-1:0") == "other family"


def test_prefix_invalidation_takes_glob_characters_literally(harness: Harness) -> None:
    cache = harness.cache()
    cache.set("event", "a*b", 1)
    cache.set("event", "a-b", 2)
    cache.set("event", "[x]", 3)
    assert cache.invalidate_prefix("event", "a*") == 1
    assert cache.invalidate_prefix("event", "[") == 1
    assert cache.get("event", "a-b") == 2


def test_delete_removes_the_given_keys(harness: Harness) -> None:
    cache = harness.cache()
    cache.set("job", "j1", 1)
    cache.set("job", "j2", 2)
    cache.set("job", "j3", 3)
    cache.delete("job", "j1", "j2")
    assert [cache.get("job", j) for j in ("j1", "j2", "j3")] == [None, None, 3]


# -- stampede protection -----------------------------------------------------------------------


def test_concurrent_misses_run_the_loader_once(harness: Harness) -> None:
    # Given 16 threads that miss the same key at the same moment, and a slow source
    cache = harness.cache()
    calls: list[int] = []
    start = threading.Barrier(16)

    def slow_source() -> dict[str, int]:
        calls.append(1)
        time.sleep(0.3)
        return {"seats": 120}

    def reader(_: int) -> Any:
        start.wait()
        return cache.get_or_load("event", "sold-out-show", slow_source)

    # When they all ask for it
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(reader, range(16)))
    # Then the source was asked once and every thread got its answer
    assert len(calls) == 1
    assert results == [{"seats": 120}] * 16


def test_while_one_caller_reloads_the_others_serve_the_stale_value(harness: Harness) -> None:
    # Given an expired entry (within its stale grace) that another caller is reloading
    cache = harness.cache(event=60)
    cache.set("event", "e1", "old")
    harness.clock.advance(61)
    assert harness.backend.add(cache.key("event", "e1") + ":lock", "another-caller", 10)
    # When a second caller asks, it gets the stale value at once and never calls the source
    found = cache.lookup("event", "e1", lambda: pytest.fail("the source must not be called"))
    assert (found.value, found.hit) == ("old", True)
    # And when the lock goes, the next caller reloads it
    harness.backend.release(cache.key("event", "e1") + ":lock", "another-caller")
    assert cache.lookup("event", "e1", lambda: "new").value == "new"
    assert cache.get("event", "e1") == "new"


# -- sliding window ----------------------------------------------------------------------------


def hits(limiter: RateLimiter, rate: Rate, n: int, identity: str = "user:ana") -> list[bool]:
    return [limiter.hit("POST /jobs", identity, rate).allowed for _ in range(n)]


def test_the_window_slides_hit_by_hit_at_its_edge(harness: Harness) -> None:
    # Given a 5-per-minute limit: 3 hits at t0 and 2 at t0+30 s
    limiter, rate = harness.limiter(), Rate(5, 60)
    assert hits(limiter, rate, 3) == [True] * 3
    harness.clock.advance(30)
    assert hits(limiter, rate, 2) == [True] * 2
    # Then the 6th is refused, and says when the oldest hit leaves the window
    harness.clock.advance(1)
    refused = limiter.hit("POST /jobs", "user:ana", rate)
    assert not refused.allowed and refused.remaining == 0
    assert 29 <= refused.reset_after <= 30  # DynamoDB counts in 1/60-window buckets
    assert refused.headers()["Retry-After"] == str(refused.retry_after)
    # Still refused just inside the window (more than one bucket before its edge)...
    harness.clock.advance(27.5)  # t0 + 58.5 s
    assert hits(limiter, rate, 1) == [False]
    # ...and once the t0 hits have left it (edge + one bucket), exactly 3 slots free up
    harness.clock.advance(2.6)  # t0 + 61.1 s
    assert hits(limiter, rate, 4) == [True, True, True, False]
    # And when the t0+30 hits leave too, 2 more
    harness.clock.advance(30)  # t0 + 91.1 s
    assert hits(limiter, rate, 3) == [True, True, False]


def test_each_identity_and_scope_has_its_own_window(harness: Harness) -> None:
    limiter, rate = harness.limiter(), Rate(2, 60)
    assert hits(limiter, rate, 3, "user:ana") == [True, True, False]
    assert hits(limiter, rate, 2, "user:bia") == [True, True]
    assert limiter.hit("GET /jobs", "user:ana", rate).allowed


def test_a_hit_may_cost_several_and_counts_all_or_none(harness: Harness) -> None:
    # A batch of jobs (POST /jobs/batch) and a lease count several hits in one call
    limiter, rate = harness.limiter(), Rate(10, 60)
    first = limiter.hit("POST /jobs", "user:ana", rate, cost=7)
    assert first.allowed and first.remaining == 3
    # 4 more would pass the limit: none of them is counted...
    assert not limiter.hit("POST /jobs", "user:ana", rate, cost=4).allowed
    # ...so 3 still fit, and then nothing
    assert limiter.hit("POST /jobs", "user:ana", rate, cost=3).allowed
    assert hits(limiter, rate, 1) == [False]


def test_concurrent_hits_never_exceed_the_limit(harness: Harness) -> None:
    limiter, rate = harness.limiter(), Rate(10, 60)
    start = threading.Barrier(25)

    def hit(_: int) -> bool:
        start.wait()
        return limiter.hit("POST /jobs", "user:ana", rate).allowed

    with ThreadPoolExecutor(25) as pool:
        allowed = list(pool.map(hit, range(25)))
    assert allowed.count(True) == 10


def test_remaining_counts_down(harness: Harness) -> None:
    limiter, rate = harness.limiter(), Rate(3, 60)
    remaining = [limiter.hit("POST /jobs", "user:ana", rate).remaining for _ in range(4)]
    assert remaining == [2, 1, 0, 0]


# -- sessions ----------------------------------------------------------------------------------


def test_a_session_slides_for_30_minutes_of_inactivity(harness: Harness) -> None:
    sessions = harness.sessions()
    token, created = sessions.create("ana", {"event": "e1"})
    assert len(token) >= 43  # 256 random bits, URL-safe
    assert sessions.get(token) == created
    # Activity every 29 minutes keeps it alive past 30
    harness.clock.advance(29 * 60)
    assert sessions.refresh(token) is not None
    harness.clock.advance(29 * 60)
    assert sessions.get(token) is not None
    # 30 minutes without activity ends it
    harness.clock.advance(60 + 0.01)
    assert sessions.get(token) is None
    assert sessions.refresh(token) is None


def test_a_session_token_is_stored_only_as_its_hash(harness: Harness) -> None:
    sessions = harness.sessions()
    token, _ = sessions.create("ana")
    stored = harness.backend.get(f"{harness.prefix}session:{hashlib.sha256(token.encode()).hexdigest()}")
    assert stored is not None and token not in stored
    assert harness.backend.get(f"{harness.prefix}session:{token}") is None


def test_a_destroyed_or_unknown_session_is_gone(harness: Harness) -> None:
    sessions = harness.sessions()
    token, _ = sessions.create("ana")
    sessions.destroy(token)
    assert sessions.get(token) is None
    assert sessions.get("not-a-token") is None


# -- outage ------------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "dynamodb"])
def unreachable(request: pytest.FixtureRequest) -> Harness:
    """A backend whose server is not there: a closed port on loopback."""
    clock = EpochClock()
    port = free_port()
    inner: CacheBackend
    if request.param == "redis":
        inner = RedisCacheBackend(connect(f"redis://127.0.0.1:{port}/0"))
    else:
        client = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=0.5),
        )
        inner = DynamoCacheBackend(client, "tarefa-cache", clock)
    breaker = CircuitBreaker(request.param, failure_threshold=3, reset_after=30, clock=clock)
    return Harness(request.param, GuardedBackend(inner, breaker), clock, "tarefa-test:")


def test_an_outage_falls_back_to_the_source_and_opens_the_circuit(unreachable: Harness) -> None:
    cache = unreachable.cache()
    source: Callable[[], dict[str, str]] = lambda: {"name": "Ana"}  # noqa: E731
    # Every read still answers, from the source
    assert [cache.get_or_load("user", "42", source) for _ in range(5)] == [{"name": "Ana"}] * 5
    cache.set("user", "42", {"name": "Ana"})
    cache.delete("user", "42")
    assert cache.invalidate_prefix("user") == 0
    # After 3 failures the circuit is open: later calls fail fast instead of timing out
    assert unreachable.backend.breaker.state == "open"
    assert cache.stats.errors >= 3
    # After the reset time one trial call goes through, fails, and opens it again
    unreachable.clock.advance(30)
    assert unreachable.backend.breaker.state == "half-open"
    assert cache.get_or_load("user", "42", source) == {"name": "Ana"}
    assert unreachable.backend.breaker.state == "open"


def test_an_outage_lets_requests_through_unless_the_route_fails_closed(unreachable: Harness) -> None:
    limiter = unreachable.limiter()
    opened = limiter.hit("POST /jobs", "user:ana", Rate(1, 60))
    assert opened.allowed and opened.degraded
    closed = limiter.hit("POST /payments", "user:ana", Rate(1, 60), fail_open=False)
    assert not closed.allowed and closed.degraded and closed.retry_after == 30


def test_an_outage_makes_sessions_unavailable_rather_than_logging_users_out(unreachable: Harness) -> None:
    with pytest.raises(SessionsUnavailableError):
        unreachable.sessions().create("ana")
    with pytest.raises(SessionsUnavailableError):
        unreachable.sessions().get("token")


def test_a_window_item_on_dynamodb_stays_small_whatever_the_hit_pattern() -> None:
    """Sparse hits leave expired buckets behind; they never grow the item past one write unit."""
    from tarefa.adapters.dynamodb_cache import MAX_BUCKET_ATTRIBUTES

    clock = EpochClock()
    with mock_aws():
        client = boto3.client("dynamodb")
        table = dynamodb_cache_table()
        backend = DynamoCacheBackend(client, table, clock)
        limiter = RateLimiter(backend, "tarefa-test:", clock)
        for gap in [5.0] * 150 + [0.5] * 150 + [30.0] * 20:  # sparse, busy, then idle-ish
            assert limiter.hit("POST /jobs", "user:" + "x" * 36, Rate(600, 60)).allowed
            clock.advance(gap)
        items = client.scan(TableName=table)["Items"]
    assert len(items) == 1
    buckets = [name for name in items[0] if name.startswith("b")]
    assert len(buckets) <= MAX_BUCKET_ATTRIBUTES + 1
    item: dict[str, Any] = dict(items[0])
    size = sum(len(name) + len(str(next(iter(value.values())))) for name, value in item.items())
    assert size < 1024
