"""Idempotency keys as payment APIs treat them: the same request again returns the first job, a
different request under the same key is refused, and keys belong to their user."""

from __future__ import annotations

from tarefa import wiring
from tarefa.local.app import LocalApp

from .conftest import ALICE, BOB, job_of

BODY = {"type": "system.echo", "payload": {"amountCents": 1000}, "orderId": "o-1"}


def test_the_same_request_again_returns_the_first_job(app: LocalApp) -> None:
    first = app.api("POST", "/jobs", BODY, ALICE, {"Idempotency-Key": "pay-1"})
    again = app.api("POST", "/jobs", BODY, ALICE, {"Idempotency-Key": "pay-1"})
    assert (first.status, again.status) == (202, 200)
    assert again.body["jobId"] == first.body["jobId"]


def test_another_body_under_the_same_key_is_409_and_changes_nothing(app: LocalApp) -> None:
    first = app.api("POST", "/jobs", BODY, ALICE, {"Idempotency-Key": "pay-2"})
    other = {**BODY, "payload": {"amountCents": 999}}
    refused = app.api("POST", "/jobs", other, ALICE, {"Idempotency-Key": "pay-2"})
    assert refused.status == 409
    assert refused.body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert first.body["jobId"] in refused.body["error"]["message"]
    # the body field is the same key as the header
    refused_again = app.api("POST", "/jobs", {**other, "idempotencyKey": "pay-2"}, ALICE)
    assert refused_again.status == 409
    assert [j["jobId"] for j in app.api("GET", "/jobs", claims=ALICE).body["items"]] == [first.body["jobId"]]


def test_a_key_belongs_to_its_user(app: LocalApp) -> None:
    alices = app.api("POST", "/jobs", BODY, ALICE, {"Idempotency-Key": "shared"})
    bobs = app.api("POST", "/jobs", {**BODY, "payload": 1}, BOB, {"Idempotency-Key": "shared"})
    assert (alices.status, bobs.status) == (202, 202)
    assert alices.body["jobId"] != bobs.body["jobId"]


def test_a_job_the_worker_recorded_keeps_its_request_fingerprint(app: LocalApp) -> None:
    """The API could not record the job; the worker did, from the message: the key still
    refuses a different body."""
    dynamodb = wiring.container().dynamodb
    failures = [4]

    def refuse(**_: object) -> None:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("injected")

    dynamodb.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", refuse)
    try:
        first = app.api("POST", "/jobs", BODY, ALICE, {"Idempotency-Key": "pay-3"})
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb.TransactWriteItems", refuse)
    assert first.status == 202
    app.drain()
    assert job_of(app, first.body["jobId"])["status"] == "COMPLETED"
    other = {**BODY, "payload": {"amountCents": 1}}
    assert app.api("POST", "/jobs", other, ALICE, {"Idempotency-Key": "pay-3"}).status == 409
    assert (
        app.api("POST", "/jobs", BODY, ALICE, {"Idempotency-Key": "pay-3"}).body["jobId"]
        == first.body["jobId"]
    )
