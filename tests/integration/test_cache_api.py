"""Rate limits, the job cache and the cache's health through the real API handler, on the
DynamoDB cache table (moto) and on a real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import boto3
import pytest
from moto import mock_aws

from tarefa import wiring
from tarefa.local.app import LocalApp, redis_overrides
from tarefa.local.process import free_port

from .conftest import ALICE, BOB, Clock, enqueue

LIMITS = json.dumps(
    {
        "GET /health": {"rate": "2/60"},
        "POST /jobs/{jobId}/cancel": {"rate": "100/60", "failOpen": False},
    }
)
AppFactory = Callable[..., LocalApp]


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """A LocalApp on moto with these template parameters and function environment."""
    with mock_aws():

        def make(
            parameters: dict[str, str] | None = None, environment: dict[str, str] | None = None
        ) -> LocalApp:
            return LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), parameters, environment)

        yield make
    wiring.reset()


@pytest.fixture(params=["dynamodb", "redis"])
def limited(request: pytest.FixtureRequest, make_app: AppFactory) -> tuple[LocalApp, Clock]:
    """Enqueue limited to 3 a minute, /health to 2 a minute per IP, on either backend."""
    parameters = {"EnqueueRateLimit": "3/60", "RateLimits": LIMITS}
    environment: dict[str, str] = {}
    if request.param == "redis":
        redis_parameters, environment = redis_overrides(request.getfixturevalue("redis_url"))
        parameters.update(redis_parameters)
        environment["CACHE_KEY_PREFIX"] = request.getfixturevalue("redis_prefix")
    app = make_app(parameters, environment)
    clock = Clock()
    wiring.container().clock = clock
    return app, clock


def test_enqueue_past_the_limit_gets_429_with_the_rate_limit_headers(limited: tuple[LocalApp, Clock]) -> None:
    app, clock = limited
    # Given Alice enqueues 3 jobs: each answer says how many she has left
    answers = [app.api("POST", "/jobs", {"type": "system.echo"}, ALICE) for _ in range(3)]
    assert [a.status for a in answers] == [202, 202, 202]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
    # When she sends a 4th within the minute
    refused = app.api("POST", "/jobs", {"type": "system.echo"}, ALICE)
    # Then it is refused with 429, when to retry, and nothing is enqueued
    assert refused.status == 429
    assert refused.body["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["x-ratelimit-limit"] == "3"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # (the window plus, on DynamoDB, the rest of the 1-second bucket the first hit fell in)
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert int(refused.headers["x-ratelimit-reset"]) == int(refused.headers["retry-after"])
    assert len(app.api("GET", "/jobs", claims=ALICE).body["items"]) == 3
    # And Bob has his own window; Alice has hers back a minute later
    assert app.api("POST", "/jobs", {"type": "system.echo"}, BOB).status == 202
    clock.advance(62)
    assert app.api("POST", "/jobs", {"type": "system.echo"}, ALICE).status == 202


def test_the_enqueue_limit_counts_a_batch_as_its_jobs(limited: tuple[LocalApp, Clock]) -> None:
    app, clock = limited  # 3 jobs a minute, on DynamoDB and on Redis
    two = app.api("POST", "/jobs/batch", {"jobs": [{"type": "system.echo"}] * 2}, ALICE)
    assert two.status == 202
    assert (two.headers["x-ratelimit-limit"], two.headers["x-ratelimit-remaining"]) == ("3", "1")
    # Two more do not fit: 429 as a whole, with the usual headers, nothing enqueued
    refused = app.api("POST", "/jobs/batch", {"jobs": [{"type": "system.echo"}] * 2}, ALICE)
    assert refused.status == 429 and refused.body["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["x-ratelimit-remaining"] == "1" and int(refused.headers["retry-after"]) >= 1
    assert len(app.api("GET", "/jobs", claims=ALICE).body["items"]) == 2
    # The one left is POST /jobs's too: the batch and the single route share the window
    single = app.api("POST", "/jobs", {"type": "system.echo"}, ALICE)
    assert single.status == 202 and single.headers["x-ratelimit-remaining"] == "0"
    assert app.api("POST", "/jobs/batch", {"jobs": [{"type": "system.echo"}]}, ALICE).status == 429
    # Bob has his own window; a 422 batch counts nothing
    assert app.api("POST", "/jobs/batch", {"jobs": [{"type": "system.echo"}] * 101}, BOB).status == 422
    assert app.api("POST", "/jobs/batch", {"jobs": [{"type": "system.echo"}] * 3}, BOB).status == 202
    clock.advance(62)
    assert app.api("POST", "/jobs/batch", {"jobs": [{"type": "system.echo"}] * 3}, ALICE).status == 202


def test_an_anonymous_route_is_limited_by_the_gateways_source_ip_not_x_forwarded_for(
    limited: tuple[LocalApp, Clock],
) -> None:
    app, _ = limited
    spoofs = [{"x-forwarded-for": f"203.0.113.{n}"} for n in range(3)]
    statuses = [app.api("GET", "/health", headers=h, source_ip="198.51.100.7").status for h in spoofs]
    assert statuses == [200, 200, 429]
    assert app.api("GET", "/health", source_ip="198.51.100.8").status == 200


def test_a_finished_job_is_served_from_the_cache(limited: tuple[LocalApp, Clock]) -> None:
    app, _ = limited
    # Given a job that is still pending: every read goes to the table
    job = enqueue(app, {"type": "system.echo", "payload": {"n": 1}})
    reads = [app.api("GET", f"/jobs/{job['jobId']}", claims=ALICE) for _ in range(2)]
    assert [r.headers["x-cache"] for r in reads] == ["MISS", "MISS"]
    # When it completes, the first read caches it and the next is served from the cache
    app.drain()
    reads = [app.api("GET", f"/jobs/{job['jobId']}", claims=ALICE) for _ in range(2)]
    assert [r.headers["x-cache"] for r in reads] == ["MISS", "HIT"]
    assert reads[0].body == reads[1].body and reads[1].body["status"] == "COMPLETED"
    # And it is still Alice's alone
    assert app.api("GET", f"/jobs/{job['jobId']}", claims=BOB).status == 404
    health = app.api("GET", "/health", source_ip="192.0.2.1").body["cache"]
    assert health["state"] == "ok" and health["circuit"] == "closed"
    assert health["hits"] >= 1 and health["misses"] >= 1 and 0 < health["hitRate"] < 1


def test_a_failed_job_is_never_cached_so_a_retry_is_seen_at_once(limited: tuple[LocalApp, Clock]) -> None:
    app, _ = limited
    job = enqueue(app, {"type": "system.fail", "payload": {"failTimes": 1, "permanent": True}})
    app.drain()
    reads = [app.api("GET", f"/jobs/{job['jobId']}", claims=ALICE) for _ in range(2)]
    assert [(r.body["status"], r.headers["x-cache"]) for r in reads] == [("FAILED", "MISS")] * 2
    assert app.api("POST", f"/jobs/{job['jobId']}/retry", claims=ALICE).status == 202
    assert app.api("GET", f"/jobs/{job['jobId']}", claims=ALICE).body["status"] == "PENDING"


def test_with_the_cache_down_requests_still_succeed(make_app: AppFactory) -> None:
    # Given the Redis backend pointing at a server that is not there
    redis_parameters, environment = redis_overrides(f"redis://127.0.0.1:{free_port()}/0")
    app = make_app({"EnqueueRateLimit": "3/60", "RateLimits": LIMITS, **redis_parameters}, environment)
    # When Alice enqueues past her limit, the limiter fails open and every job is accepted
    jobs = [enqueue(app, {"type": "system.echo"}) for _ in range(5)]
    app.drain()
    # And reads of finished jobs come from the table
    assert app.api("GET", f"/jobs/{jobs[0]['jobId']}", claims=ALICE).body["status"] == "COMPLETED"
    # And health reports the cache as degraded without failing
    health = app.api("GET", "/health")
    assert health.status == 200 and health.body["status"] == "ok"
    assert health.body["cache"]["backend"] == "redis"
    assert health.body["cache"]["state"].startswith("degraded")
    assert health.body["cache"]["circuit"] == "open"
    # But a route configured to fail closed answers 503 rather than run unlimited
    refused = app.api("POST", f"/jobs/{jobs[1]['jobId']}/cancel", claims=ALICE)
    assert refused.status == 503
    assert refused.body["error"]["code"] == "RATE_LIMITER_UNAVAILABLE"
