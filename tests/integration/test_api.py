"""The HTTP contract: validation, status codes, errors, isolation and listing."""

from __future__ import annotations

from typing import Any

import pytest

from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, BOB, enqueue


def test_health_needs_no_token_and_reports_its_dependencies(app: LocalApp) -> None:
    result = app.api("GET", "/health")
    assert result.status == 200
    assert result.body["checks"] == {"dynamodb": "ok", "sqs": "ok"}


def test_health_is_503_and_names_what_failed(app: LocalApp) -> None:
    app.sqs.delete_queue(QueueUrl=app.stack.queue_urls["LowQueue"])
    result = app.api("GET", "/health")
    assert result.status == 503
    assert result.body["failed"] == ["sqs"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("GET", "/jobs/x"),
        ("POST", "/jobs/x/cancel"),
        ("POST", "/jobs/x/retry"),
    ],
)
def test_every_job_route_needs_a_token(app: LocalApp, method: str, path: str) -> None:
    assert app.api(method, path, {}).status == 401


def test_idempotency_key_header_is_validated(app: LocalApp) -> None:
    result = app.api("POST", "/jobs", {"type": "system.echo"}, ALICE, {"Idempotency-Key": "k" * 257})
    assert result.status == 422
    assert result.body["error"]["details"][0]["field"] == "idempotencyKey"


def test_unknown_type_is_400(app: LocalApp) -> None:
    result = app.api("POST", "/jobs", {"type": "payments.nope", "payload": {}}, ALICE)
    assert result.status == 400
    assert result.body["error"]["code"] == "UNKNOWN_JOB_TYPE"


def test_payload_that_fails_the_type_model_is_422_with_field_errors(app: LocalApp) -> None:
    result = app.api("POST", "/jobs", {"type": "system.fail", "payload": {"failTimes": "lots"}}, ALICE)
    assert result.status == 422
    assert result.body["error"]["code"] == "VALIDATION_ERROR"
    assert result.body["error"]["details"][0]["field"] == "payload.failTimes"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "system.echo", "maxAttempts": 26},
        {"type": "system.echo", "maxAttempts": 0},
        {"type": "system.echo", "retryDelaySeconds": 43_201},
        {"type": "system.echo", "delaySeconds": 31_536_001},
        {"type": "system.echo", "priority": "URGENT"},
        {"type": "system.echo", "surprise": True},
        {"payload": {}},
    ],
)
def test_out_of_range_fields_are_422(app: LocalApp, body: dict[str, object]) -> None:
    assert app.api("POST", "/jobs", body, ALICE).status == 422


def test_malformed_json_is_400(app: LocalApp) -> None:
    result = app.api("POST", "/jobs", b'{"type": "system.echo",', ALICE)
    assert result.status == 400
    assert result.body["error"]["code"] == "MALFORMED_REQUEST"
    assert app.api("POST", "/jobs", b"[1, 2]", ALICE).status == 400


def test_body_over_256_kib_is_413_and_nothing_is_queued(app: LocalApp) -> None:
    big = '{"type": "system.echo", "payload": "' + "x" * (256 * 1024) + '"}'
    result = app.api("POST", "/jobs", big, ALICE)
    assert result.status == 413
    assert app.drain() == 0


def test_someone_elses_job_is_404_like_a_missing_one(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 1})
    theirs = app.api("GET", f"/jobs/{job['jobId']}", claims=BOB)
    missing = app.api("GET", "/jobs/does-not-exist", claims=BOB)
    assert theirs.status == missing.status == 404
    assert theirs.body["error"]["code"] == missing.body["error"]["code"] == "JOB_NOT_FOUND"
    assert app.api("POST", f"/jobs/{job['jobId']}/cancel", claims=BOB).status == 404
    assert app.api("GET", f"/jobs/{job['jobId']}", claims=ADMIN).status == 200


def test_listing_shows_only_the_callers_jobs_newest_first_with_a_cursor(app: LocalApp) -> None:
    # Given alice has 5 jobs and bob 2
    mine = [enqueue(app, {"type": "system.echo", "payload": i})["jobId"] for i in range(5)]
    for i in range(2):
        enqueue(app, {"type": "system.echo", "payload": i}, BOB)
    # When alice lists two at a time
    first = app.api("GET", "/jobs?limit=2", claims=ALICE).body
    second = app.api("GET", f"/jobs?limit=2&cursor={first['nextCursor']}", claims=ALICE).body
    third = app.api("GET", f"/jobs?limit=2&cursor={second['nextCursor']}", claims=ALICE).body
    # Then she walks her own jobs, newest first, and the cursor ends
    seen = [j["jobId"] for page in (first, second, third) for j in page["items"]]
    assert seen == list(reversed(mine))
    assert third["nextCursor"] is None
    # And an admin sees everyone's
    assert len(app.api("GET", "/jobs?limit=100", claims=ADMIN).body["items"]) == 7


def test_listing_filters_by_status_type_and_order(app: LocalApp) -> None:
    echo = enqueue(app, {"type": "system.echo", "payload": 1, "orderId": "order-7"})
    enqueue(app, {"type": "system.fail", "payload": {"failTimes": 0}})
    enqueue(app, {"type": "system.echo", "payload": 2}, BOB)
    app.drain()
    cancelled = enqueue(app, {"type": "system.echo", "payload": 3})
    app.api("POST", f"/jobs/{cancelled['jobId']}/cancel", claims=ALICE)

    def ids(query: str, claims: dict[str, Any] = ALICE) -> list[str]:
        result = app.api("GET", f"/jobs?{query}", claims=claims)
        assert result.status == 200, result.body
        return [j["jobId"] for j in result.body["items"]]

    assert ids("status=CANCELLED") == [cancelled["jobId"]]
    assert len(ids("status=COMPLETED")) == 2
    assert len(ids("type=system.echo")) == 2
    assert ids("orderId=order-7") == [echo["jobId"]]
    assert ids("orderId=order-7", BOB) == []


def test_bad_list_queries_are_422(app: LocalApp) -> None:
    assert app.api("GET", "/jobs?limit=101", claims=ALICE).status == 422
    assert app.api("GET", "/jobs?status=DONE", claims=ALICE).status == 422
    assert app.api("GET", "/jobs?cursor=%%%", claims=ALICE).status == 400


def test_enqueue_while_sqs_is_down_leaves_a_failed_job_the_error_names(app: LocalApp) -> None:
    # Given the MEDIUM queue is gone
    medium = app.stack.queue_urls["MediumQueue"]
    app.sqs.delete_queue(QueueUrl=medium)
    # When a job is enqueued
    result = app.api("POST", "/jobs", {"type": "system.echo", "payload": 1}, ALICE)
    # Then the caller gets a 503 naming the job, which is on record as FAILED (never PENDING
    # without a message), for the user to retry
    assert result.status == 503
    assert result.body["error"]["code"] == "QUEUE_UNAVAILABLE"
    job_id = result.body["error"]["details"]["jobId"]
    listed = app.api("GET", "/jobs", claims=ALICE).body["items"]
    assert [(j["jobId"], j["status"], j["errorDetails"]["code"]) for j in listed] == [
        (job_id, "FAILED", "ENQUEUE_FAILED")
    ]


def test_maintenance_routes_are_for_admins(app: LocalApp) -> None:
    assert app.api("POST", "/maintenance/cleanup", {}, ALICE).status == 403
    assert app.api("POST", "/maintenance/recover", {}, ALICE).status == 403
    assert app.api("POST", "/maintenance/cleanup", {}, ADMIN).body == {"deleted": 0}
    assert app.api("POST", "/maintenance/recover", {}, ADMIN).body == {"recovered": 0}
    assert app.api("POST", "/maintenance/cleanup", {"olderThanSeconds": -1}, ADMIN).status == 422


def test_unknown_route_is_404(app: LocalApp) -> None:
    assert app.api("DELETE", "/jobs", claims=ALICE).status == 404
