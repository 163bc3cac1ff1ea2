"""POST /jobs/batch through the real API handler and worker on moto: each job answered as POST
/jobs answers it alone, sent with SendMessageBatch, recorded by the same conditional writes, and
counted job by job in the enqueue limit (test_cache_api.py, on both cache backends)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tarefa import wiring
from tarefa.local.app import LocalApp

from .conftest import ALICE, BOB, job_of


def batch(app: LocalApp, jobs: list[Any], claims: dict[str, Any] = ALICE) -> list[dict[str, Any]]:
    answer = app.api("POST", "/jobs/batch", {"jobs": jobs}, claims)
    assert answer.status == 202, answer.body
    items: list[dict[str, Any]] = answer.body["items"]
    assert [item["index"] for item in items] == list(range(len(jobs)))
    return items


@pytest.fixture
def calls(app: LocalApp) -> Iterator[Counter[str]]:
    """The AWS operations the API's clients make, by name."""
    seen: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        seen[event_name.rsplit(".", 1)[-1]] += 1

    clients = (wiring.container().queue.client, wiring.container().store.client)
    for client in clients:
        client.meta.events.register("before-parameter-build.*.*", count)
    yield seen
    for client in clients:
        client.meta.events.unregister("before-parameter-build.*.*", count)


def test_a_hundred_jobs_in_one_request_all_run(app: LocalApp, calls: Counter[str]) -> None:
    items = batch(app, [{"type": "system.echo", "payload": {"n": n}} for n in range(100)])
    assert all(item["created"] is True and item["job"]["status"] == "PENDING" for item in items)
    assert [item["job"]["payload"] for item in items] == [{"n": n} for n in range(100)]
    # Ten SendMessageBatch calls (one priority), no SendMessage; one conditional PutItem per job
    assert (calls["SendMessageBatch"], calls["SendMessage"], calls["PutItem"]) == (10, 0, 100)
    app.drain()
    for item in items:
        done = job_of(app, item["job"]["jobId"])
        assert (done["status"], done["result"], done["attempts"]) == ("COMPLETED", item["job"]["payload"], 1)


BAD_JOBS: list[Any] = [
    {"type": "no.such.type"},
    {"type": "system.fail", "payload": {"failTimes": -1}},
    {"type": "system.echo", "maxAttempts": "3"},
    {"type": "system.echo", "surprise": True},
    {"type": "system.echo", "callbackUrl": "https://example.com/not-mine"},
    ["not", "an", "object"],
    {"type": "system.echo", "payload": "x" * 262_000},
]


def test_a_bad_item_gets_the_error_post_jobs_answers_and_the_good_ones_run(app: LocalApp) -> None:
    good = [{"type": "system.echo", "payload": n} for n in range(3)]
    items = batch(app, [good[0], *BAD_JOBS, good[1], good[2]])
    for bad, item in zip(BAD_JOBS, items[1:-2], strict=True):
        alone = app.api("POST", "/jobs", bad, ALICE)
        assert alone.status in (400, 413, 422)
        assert item == {"index": item["index"], "error": alone.body["error"]}
    assert [items[i]["job"]["payload"] for i in (0, len(items) - 2, len(items) - 1)] == [0, 1, 2]
    app.drain()
    assert sorted(j["payload"] for j in app.api("GET", "/jobs", claims=ALICE).body["items"]) == [0, 1, 2]


def test_a_repeated_key_names_the_job_and_a_reused_key_is_that_items_409(app: LocalApp) -> None:
    first = app.api("POST", "/jobs", {"type": "system.echo", "payload": 1, "idempotencyKey": "k1"}, ALICE)
    items = batch(
        app,
        [
            {"type": "system.echo", "payload": 1, "idempotencyKey": "k1"},  # the same request again
            {"type": "system.echo", "payload": 2, "idempotencyKey": "k1"},  # the key, another body
            {"type": "system.echo", "payload": 3, "idempotencyKey": "k2"},
            {"type": "system.echo", "payload": 3, "idempotencyKey": "k2"},  # twice in one batch
        ],
    )
    assert (items[0]["job"]["jobId"], items[0]["created"]) == (first.body["jobId"], False)
    reused = app.api("POST", "/jobs", {"type": "system.echo", "payload": 2, "idempotencyKey": "k1"}, ALICE)
    assert reused.status == 409 and items[1] == {"index": 1, "error": reused.body["error"]}
    assert items[1]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert items[2]["created"] is True
    assert (items[3]["job"]["jobId"], items[3]["created"]) == (items[2]["job"]["jobId"], False)
    # The same batch again: every keyed job is found, none made
    again = batch(app, [{"type": "system.echo", "payload": 3, "idempotencyKey": "k2"}])
    assert (again[0]["job"]["jobId"], again[0]["created"]) == (items[2]["job"]["jobId"], False)
    app.drain()
    assert len(app.api("GET", "/jobs", claims=ALICE).body["items"]) == 2


def test_another_users_keys_never_collide(app: LocalApp) -> None:
    job = {"type": "system.echo", "payload": 1, "idempotencyKey": "same"}
    (alices,) = batch(app, [job], ALICE)
    (bobs,) = batch(app, [{**job, "payload": 2}], BOB)  # another body: no reuse across users
    assert alices["created"] and bobs["created"] and alices["job"]["jobId"] != bobs["job"]["jobId"]
    assert job_of(app, bobs["job"]["jobId"], BOB)["userId"] == "bob"
    assert app.api("GET", f"/jobs/{bobs['job']['jobId']}", claims=ALICE).status == 404


class RefusingSqs:
    """The queue's client, with SendMessageBatch failing the entries whose payload is refused
    (SQS's own fault each time, so the adapter's retry fails too); everything else is SQS's."""

    def __init__(self, real: Any, refused: set[Any]) -> None:
        self.real = real
        self.refused = refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        refused = [e for e in Entries if json.loads(e["MessageBody"])["payload"] in self.refused]
        sent: dict[str, Any] = {"Successful": [], "Failed": []}
        rest = [e for e in Entries if e not in refused]
        if rest:
            sent = dict(self.real.send_message_batch(QueueUrl=QueueUrl, Entries=rest))
        failed = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in refused
        ]
        return {"Successful": sent.get("Successful", []), "Failed": [*sent.get("Failed", []), *failed]}


def test_an_entry_sqs_fails_is_failed_enqueue_failed_and_named_as_the_single_path_does(app: LocalApp) -> None:
    queue = wiring.container().queue
    real = queue.client
    queue.client = RefusingSqs(real, {2, 3})  # type: ignore[assignment]
    items = batch(
        app,
        [
            {"type": "system.echo", "payload": 1},
            {"type": "system.echo", "payload": 2},
            {"type": "system.echo", "payload": 3, "idempotencyKey": "k"},
            {"type": "system.echo", "payload": 4},
        ],
    )
    unkeyed, keyed = items[1]["error"], items[2]["error"]
    # Without a key: 503-style QUEUE_UNAVAILABLE naming the job, which is FAILED (ENQUEUE_FAILED)
    assert unkeyed["code"] == "QUEUE_UNAVAILABLE" and "ENQUEUE_FAILED" in unkeyed["message"]
    failed = job_of(app, unkeyed["details"]["jobId"])
    assert (failed["status"], failed["errorDetails"]["code"], failed["attempts"]) == (
        "FAILED",
        "ENQUEUE_FAILED",
        0,
    )
    # With a key: nothing exists; the answer says to retry with the key
    assert keyed["code"] == "QUEUE_UNAVAILABLE" and "same idempotency key" in keyed["message"]
    assert app.api("GET", f"/jobs/{keyed['details']['jobId']}", claims=ALICE).status == 404
    queue.client = real
    app.drain()
    assert [job_of(app, items[i]["job"]["jobId"])["status"] for i in (0, 3)] == ["COMPLETED", "COMPLETED"]
    # Both are recovered as the single path's answers say
    assert app.api("POST", f"/jobs/{failed['jobId']}/retry", claims=ALICE).status == 202
    (retried,) = batch(app, [{"type": "system.echo", "payload": 3, "idempotencyKey": "k"}])
    assert retried["created"] is True
    app.drain()
    assert job_of(app, failed["jobId"])["status"] == "COMPLETED"
    assert job_of(app, retried["job"]["jobId"])["result"] == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"jobs": []}, "at least 1 item"),
        ({"jobs": [{"type": "system.echo"}] * 101}, "at most 100 items"),
        ({"jobs": {"type": "system.echo"}}, "valid array"),
        ({}, "Field required"),
    ],
)
def test_a_batch_of_none_or_over_a_hundred_is_422_naming_jobs(app: LocalApp, body: Any, message: str) -> None:
    answer = app.api("POST", "/jobs/batch", body, ALICE)
    assert answer.status == 422 and answer.body["error"]["code"] == "VALIDATION_ERROR"
    (field,) = answer.body["error"]["details"]
    assert field["field"] == "jobs" and message in field["message"]
    assert app.api("GET", "/jobs", claims=ALICE).body["items"] == []


def test_a_batch_needs_a_token(app: LocalApp) -> None:
    answer = app.api("POST", "/jobs/batch", {"jobs": [{"type": "system.echo"}]}, {})
    assert answer.status == 401
