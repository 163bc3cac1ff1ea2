"""The cache's Redis stopped and restarted mid-traffic, through the real handlers on moto.

Requests keep succeeding while Redis is down (cache misses come from the table, limits fail
open), the one route configured `failOpen: false` answers 503 RATE_LIMITER_UNAVAILABLE, the
breaker opens and closes again after its cool-down (on its own clock, moved forward, never
slept through), and every job accepted is COMPLETED: none lost, no other 5xx.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import redis
from moto import mock_aws

from tarefa import wiring
from tarefa.local.app import HttpResult, LocalApp, redis_overrides
from tarefa.local.process import free_port

from .conftest import ALICE, BOB, Clock, messages_in

CAROL: dict[str, Any] = {"sub": "carol"}
USERS = (ALICE, BOB, CAROL)
PRIORITIES = ("HIGH", "MEDIUM", "LOW")
SMALL_LIMIT = 5  # GET /job-types: 5 a minute per user
LIMITS = json.dumps(
    {
        "GET /jobs": {"rate": "10000/60"},
        "GET /health": {"rate": "10000/60"},
        "GET /job-types": {"rate": f"{SMALL_LIMIT}/60"},
        "POST /jobs/{jobId}/cancel": {"rate": "10000/60", "failOpen": False},
    }
)
TEST_BUDGET_SECONDS = 60


class RedisServer:
    """A throw-away redis-server of this test's own, stopped and started on the same port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.2, retry=None)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        assert self.process is None, "already running"
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None
        assert not self.answers(), "redis-server still answers after it was stopped"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("the Redis outage suite needs a redis-server on PATH to stop and restart")
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class BreakerClock:
    """The breaker's monotonic clock, frozen: it moves only when the test moves it, so the
    circuit's cool-down never runs out on its own however slow the machine."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Ledger:
    """What the traffic sent and got, by phase: the jobs accepted (and whose), statuses, the
    X-Cache of job reads, the slowest request, and every 5xx that was not documented."""

    phase: str = "setup"
    finished: list[str] = field(default_factory=list)  # jobIds accepted before the last drain
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # jobId -> owner's claims
    accepted_in: Counter[str] = field(default_factory=Counter)
    keys: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key -> (jobId, owner)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    cache: Counter[tuple[str, str]] = field(default_factory=Counter)
    slowest: dict[str, float] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def record(self, method: str, path: str, result: HttpResult, seconds: float, documented: bool) -> None:
        self.statuses[self.phase, result.status] += 1
        self.slowest[self.phase] = max(self.slowest.get(self.phase, 0.0), seconds)
        if result.status >= 500 and not documented:
            self.server_errors.append(f"{self.phase}: {method} {path} -> {result.status} {result.text[:200]}")

    def accept(self, job_id: str, owner: dict[str, Any]) -> None:
        self.accepted[job_id] = owner
        self.accepted_in[self.phase] += 1

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.unexpected.append(f"{self.phase}: {what}")

    def total(self, status: int | None = None) -> int:
        return sum(n for (_, code), n in self.statuses.items() if status is None or code == status)

    def in_phase(self, phase: str) -> dict[int, int]:
        return {code: n for (name, code), n in sorted(self.statuses.items()) if name == phase}


@dataclass
class Rig:
    app: LocalApp
    redis: RedisServer
    clock: Clock  # the container's: cache freshness and rate-limit windows
    breaker_clock: BreakerClock
    ledger: Ledger = field(default_factory=Ledger)

    def call(
        self,
        method: str,
        path: str,
        body: Any = b"",
        claims: dict[str, Any] | None = ALICE,
        headers: dict[str, str] | None = None,
        documented_5xx: bool = False,
    ) -> HttpResult:
        started = time.monotonic()
        result = self.app.api(method, path, body, claims, headers)
        self.ledger.record(method, path, result, time.monotonic() - started, documented_5xx)
        return result

    @property
    def breaker_state(self) -> str:
        backend = wiring.container().cache_backend
        assert backend is not None
        return backend.breaker.state

    def health(self) -> HttpResult:
        return self.call("GET", "/health", claims=None)


@pytest.fixture
def rig(own_redis: RedisServer) -> Iterator[Rig]:
    redis_parameters, environment = redis_overrides(own_redis.url)
    environment["CACHE_KEY_PREFIX"] = f"tarefa-test:{uuid.uuid4().hex[:12]}:"
    parameters = {"EnqueueRateLimit": "10000/60", "RateLimits": LIMITS, **redis_parameters}
    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), parameters, environment)
        # The emulator waits out each partial batch's window in real time; nothing here needs it.
        for function in app.stack.functions.values():
            function.sqs = [replace(source, batching_window_seconds=0) for source in function.sqs]
        clock, breaker_clock = Clock(), BreakerClock()
        container = wiring.container()
        container.clock = clock
        backend = container.cache_backend
        assert backend is not None and backend.name == "redis"
        backend.breaker.clock = breaker_clock
        yield Rig(app, own_redis, clock, breaker_clock)
    wiring.reset()


def drain(rig: Rig) -> None:
    """Run the workers until the queues are empty; what was accepted so far is now finished."""
    rig.app.drain()
    rig.ledger.finished = sorted(rig.ledger.accepted)


def traffic(rig: Rig, count: int, drain_every: int = 50) -> None:
    """`count` requests, deterministically mixed: enqueues (with a fresh Idempotency-Key, a
    repeated one, none; every priority), reads of finished jobs (the cache path), lists and
    health checks; the queues drained every `drain_every` requests and at the end."""
    ledger, phase = rig.ledger, rig.ledger.phase
    for n in range(count):
        owner = USERS[n % len(USERS)]
        kind = n % 10
        if kind in (0, 1, 2, 3):
            headers = {"idempotency-key": f"{phase}-{n}"} if kind == 3 else None
            body = {"type": "system.echo", "payload": {"phase": phase, "n": n}, "priority": PRIORITIES[n % 3]}
            result = rig.call("POST", "/jobs", body, owner, headers)
            ledger.expect(result.status == 202, f"POST /jobs #{n}: {result.status} {result.text[:200]}")
            if result.status == 202:
                ledger.accept(result.body["jobId"], owner)
                if headers:
                    ledger.keys[headers["idempotency-key"]] = (result.body["jobId"], owner)
        elif kind == 4 and ledger.keys:
            key, (job_id, key_owner) = sorted(ledger.keys.items())[n % len(ledger.keys)]
            # the same request again (another body under the key is 409 IDEMPOTENCY_KEY_REUSED)
            first_phase, _, first_n = key.rpartition("-")
            body = {
                "type": "system.echo",
                "payload": {"phase": first_phase, "n": int(first_n)},
                "priority": PRIORITIES[int(first_n) % 3],
            }
            result = rig.call("POST", "/jobs", body, key_owner, {"idempotency-key": key})
            ledger.expect(
                result.status == 200 and result.body.get("jobId") == job_id,
                f"repeated key {key}: {result.status} {result.text[:200]}",
            )
        elif kind in (5, 6, 9) and ledger.finished:
            job_id = ledger.finished[(n * 7) % len(ledger.finished)]
            result = rig.call("GET", f"/jobs/{job_id}", claims=ledger.accepted[job_id])
            ledger.expect(
                result.status == 200 and result.body["status"] == "COMPLETED",
                f"GET /jobs/{job_id}: {result.status} {result.text[:200]}",
            )
            ledger.cache[phase, result.headers.get("x-cache", "")] += 1
        elif kind == 7:
            result = rig.call("GET", "/jobs?limit=20", claims=owner)
            ledger.expect(result.status == 200, f"GET /jobs: {result.status} {result.text[:200]}")
        else:
            result = rig.health()
            ledger.expect(result.status == 200, f"GET /health: {result.status} {result.text[:200]}")
        if (n + 1) % drain_every == 0:
            drain(rig)
    drain(rig)


def read_finished(rig: Rig, sample: int = 10) -> list[str]:
    """Read `sample` finished jobs twice each; the X-Cache of each read."""
    seen: list[str] = []
    for job_id in rig.ledger.finished[:sample]:
        for _ in range(2):
            result = rig.call("GET", f"/jobs/{job_id}", claims=rig.ledger.accepted[job_id])
            rig.ledger.expect(
                result.status == 200 and result.body["status"] == "COMPLETED",
                f"read {job_id}: {result.status} {result.text[:200]}",
            )
            seen.append(result.headers.get("x-cache", ""))
    return seen


def small_limit_statuses(rig: Rig, claims: dict[str, Any], hits: int = SMALL_LIMIT + 1) -> list[int]:
    return [rig.call("GET", "/job-types", claims=claims).status for _ in range(hits)]


def listed_job_ids(rig: Rig, claims: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        page = rig.call(
            "GET", "/jobs?limit=100" + (f"&cursor={quote(cursor)}" if cursor else ""), claims=claims
        )
        assert page.status == 200, page.text
        ids.update(item["jobId"] for item in page.body["items"])
        cursor = page.body["nextCursor"]
        if not cursor:
            return ids


def test_requests_survive_a_redis_outage_and_nothing_is_lost(rig: Rig) -> None:
    started = time.monotonic()
    ledger = rig.ledger

    # Phase 1, Redis up: finished jobs come from the cache, the limiter counts
    ledger.phase = "up"
    traffic(rig, 100)
    assert "HIT" in read_finished(rig)
    assert small_limit_statuses(rig, ALICE) == [200] * SMALL_LIMIT + [429]
    health = rig.health()
    assert health.status == 200 and health.body["cache"]["state"] == "ok"
    assert health.body["cache"]["circuit"] == "closed"

    # Phase 2, Redis down: the first failures open the breaker and every request still succeeds
    rig.redis.stop()
    ledger.phase = "down"
    traffic(rig, 130)
    assert rig.breaker_state == "open"
    assert set(read_finished(rig)) == {"MISS"}, "served from the table while the cache is away"
    health = rig.health()  # the cache never decides health
    assert health.status == 200 and health.body["status"] == "ok", health.body
    assert health.body["cache"]["backend"] == "redis"
    assert health.body["cache"]["state"].startswith("degraded")
    assert health.body["cache"]["circuit"] == "open"
    # limits fail open: more than a window's worth gets through, without misleading headers ...
    rig.clock.advance(61)
    degraded = [rig.call("GET", "/job-types", claims=BOB) for _ in range(SMALL_LIMIT + 3)]
    assert [r.status for r in degraded] == [200] * (SMALL_LIMIT + 3)
    assert all("x-ratelimit-limit" not in r.headers for r in degraded)
    # ... except on the route configured `failOpen: false`
    some_job = ledger.finished[0]
    owner = ledger.accepted[some_job]
    refused = rig.call("POST", f"/jobs/{some_job}/cancel", claims=owner, documented_5xx=True)
    assert refused.status == 503 and refused.body["error"]["code"] == "RATE_LIMITER_UNAVAILABLE"
    assert int(refused.headers["retry-after"]) >= 1
    assert set(ledger.in_phase("down")) <= {200, 202, 503} and ledger.in_phase("down")[503] == 1

    # Phase 3, Redis back: the circuit stays open (and the cache unused) until its cool-down
    rig.redis.start()
    ledger.phase = "back-open"
    traffic(rig, 30)
    assert rig.breaker_state == "open"
    assert ledger.cache["back-open", "HIT"] == 0
    health = rig.health()
    assert health.status == 200 and health.body["cache"]["circuit"] == "open"
    # then one trial call closes it
    rig.breaker_clock.advance(31)
    assert rig.breaker_state == "half-open"
    ledger.phase = "back"
    traffic(rig, 100)
    assert rig.breaker_state == "closed"
    health = rig.health()
    assert health.status == 200 and health.body["cache"]["state"] == "ok", health.body
    assert health.body["cache"]["circuit"] == "closed"
    assert "HIT" in read_finished(rig), "the cache serves finished jobs again"
    # the limiter counts again: N a minute, then 429 ...
    rig.clock.advance(61)
    assert small_limit_statuses(rig, CAROL) == [200] * SMALL_LIMIT + [429]
    # ... and the fail-closed route is answered again (a finished job cannot be cancelled)
    assert rig.call("POST", f"/jobs/{some_job}/cancel", claims=owner).status == 409

    # Nothing lost: every job accepted is COMPLETED and listed for its owner; no message is left
    ledger.phase = "audit"
    assert rig.app.drain() == 0
    outcomes: Counter[str] = Counter()
    for job_id, job_owner in ledger.accepted.items():
        read = rig.call("GET", f"/jobs/{job_id}", claims=job_owner)
        outcomes[read.body["status"] if read.status == 200 else f"HTTP {read.status}"] += 1
    lost = len(ledger.accepted) - outcomes["COMPLETED"]
    for user in USERS:
        assert listed_job_ids(rig, user) == {j for j, o in ledger.accepted.items() if o is user}
    for queue in rig.app.stack.queue_urls:
        assert messages_in(rig.app, queue) == 0, queue

    requests, server_errors = ledger.total(), len(ledger.server_errors)
    print(
        f"\nrequests={requests} accepted={len(ledger.accepted)} {dict(ledger.accepted_in)} "
        f"lost={lost} undocumented 5xx={server_errors} documented 503={ledger.total(503) - server_errors}"
        f"\nstatuses by phase={ {p: ledger.in_phase(p) for p in dict.fromkeys(k for k, _ in ledger.statuses)} }"
        f"\nX-Cache={dict(sorted(ledger.cache.items()))} slowest={ {p: round(t, 3) for p, t in ledger.slowest.items()} }"
        f" seconds={time.monotonic() - started:.1f}"
    )
    assert ledger.unexpected == []
    assert ledger.server_errors == []
    assert lost == 0, outcomes
    assert ledger.total(503) == 1  # the fail-closed route during the outage, nothing else
    assert ledger.total(429) == 2  # the two checks that the limiter counts
    assert all(ledger.accepted_in[p] > 0 for p in ("up", "down", "back-open", "back"))
    assert requests >= 300
    assert time.monotonic() - started < TEST_BUDGET_SECONDS
