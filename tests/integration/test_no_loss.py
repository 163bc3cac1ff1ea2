"""Nothing lost under faults: one AWS failure injected at a time, with botocore's event hooks on
the container's own clients, through the real handlers against moto.

Each test names the gap it closes: a job accepted and never sent, a success recorded as FAILED,
an infrastructure failure that used up an attempt, a 5xx that left a job the client cannot find.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from tarefa import wiring
from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, Clock, enqueue, job_of, let_sqs_timers_pass

Hook = Callable[..., Any]


class Faults:
    """Registers botocore hooks on the container's clients and removes them afterwards."""

    def __init__(self) -> None:
        self.hooks: list[tuple[Any, str, Hook]] = []

    def on(self, client: Any, event: str, hook: Hook) -> None:
        client.meta.events.register(event, hook)
        self.hooks.append((client, event, hook))

    def clear(self) -> None:
        for client, event, hook in self.hooks:
            client.meta.events.unregister(event, hook)
        self.hooks.clear()


@pytest.fixture
def faults() -> Iterator[Faults]:
    injected = Faults()
    yield injected
    injected.clear()


def throttled(operation: str) -> ClientError:
    response: Any = {
        "Error": {"Code": "ThrottlingException", "Message": "injected"},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    return ClientError(response, operation)


def fail_times(
    count: int, error: Callable[[], Exception], only: Callable[[dict[str, Any]], bool] = lambda p: True
) -> Hook:
    """A hook that raises `error()` for the first `count` calls whose params match `only`.
    On `before-parameter-build` it sees the call's own parameters (the item written)."""
    left = [count]

    def hook(params: dict[str, Any] | None = None, **_: Any) -> None:
        if left[0] > 0 and only(params or {}):
            left[0] -= 1
            raise error()

    return hook


def timeout() -> Exception:
    return ReadTimeoutError(endpoint_url="injected")


def jobs_item_status(params: dict[str, Any]) -> str | None:
    item: dict[str, Any] = params.get("Item") or {}
    status = item.get("status", {}).get("S")
    return str(status) if status is not None else None


# -- enqueue -------------------------------------------------------------------------------------
def test_a_keyed_enqueue_whose_send_fails_creates_nothing_and_the_retry_runs(
    app: LocalApp, faults: Faults
) -> None:
    sqs = wiring.container().queue.client
    faults.on(sqs, "before-parameter-build.sqs.SendMessage", fail_times(99, lambda: throttled("SendMessage")))
    first = app.api("POST", "/jobs", {"type": "system.echo", "payload": 1}, ALICE, {"Idempotency-Key": "k1"})
    assert first.status == 503 and first.body["error"]["code"] == "QUEUE_UNAVAILABLE"
    assert app.api("GET", "/jobs", claims=ALICE).body["items"] == []
    faults.clear()
    again = app.api("POST", "/jobs", {"type": "system.echo", "payload": 1}, ALICE, {"Idempotency-Key": "k1"})
    assert again.status == 202
    app.drain()
    assert job_of(app, again.body["jobId"])["status"] == "COMPLETED"


def test_a_send_whose_answer_is_lost_runs_once_and_the_503_names_the_job(
    app: LocalApp, faults: Faults
) -> None:
    """SendMessage went through but its answer was lost: the API cannot know, so it records the
    job FAILED (ENQUEUE_FAILED) and names it; the message that did get through finds it finished
    and is dropped, and the user's retry runs it once."""
    sqs = wiring.container().queue.client
    faults.on(sqs, "after-call.sqs.SendMessage", fail_times(1, timeout))
    lost = app.api("POST", "/jobs", {"type": "system.echo", "payload": 8}, ALICE)
    assert lost.status == 503
    job_id = lost.body["error"]["details"]["jobId"]
    app.drain()  # the message that got through
    failed = job_of(app, job_id)
    assert (failed["status"], failed["errorDetails"]["code"], failed["attempts"]) == (
        "FAILED",
        "ENQUEUE_FAILED",
        0,
    )
    assert app.api("POST", f"/jobs/{job_id}/retry", claims=ALICE).status == 202
    app.drain()
    done = job_of(app, job_id)
    assert (done["status"], done["attempts"], done["result"]) == ("COMPLETED", 1, 8)


def test_a_create_that_commits_but_loses_its_answer_is_still_202_and_runs(
    app: LocalApp, faults: Faults
) -> None:
    dynamodb = wiring.container().dynamodb
    # The transaction goes through, then the answer is lost (after-call raises)
    faults.on(dynamodb, "after-call.dynamodb.TransactWriteItems", fail_times(1, timeout))
    result = app.api("POST", "/jobs", {"type": "system.echo", "payload": 2}, ALICE, {"Idempotency-Key": "k2"})
    assert result.status == 202, result.body
    app.drain()
    assert job_of(app, result.body["jobId"])["status"] == "COMPLETED"
    # A client that retried anyway gets the same job
    again = app.api("POST", "/jobs", {"type": "system.echo", "payload": 2}, ALICE, {"Idempotency-Key": "k2"})
    assert (again.status, again.body["jobId"]) == (200, result.body["jobId"])


@pytest.mark.parametrize("keyed", [True, False])
def test_a_job_whose_record_cannot_be_written_is_recorded_by_the_worker(
    app: LocalApp, faults: Faults, keyed: bool
) -> None:
    dynamodb = wiring.container().dynamodb
    for operation in ("TransactWriteItems", "PutItem"):
        faults.on(dynamodb, f"before-parameter-build.dynamodb.{operation}", fail_times(4, timeout))
    headers = {"Idempotency-Key": "k3"} if keyed else {}
    result = app.api("POST", "/jobs", {"type": "system.echo", "payload": 3}, ALICE, headers)
    # Accepted: the job's message is on the queue with everything its record needs
    assert result.status == 202, result.body
    job_id = result.body["jobId"]
    assert app.api("GET", f"/jobs/{job_id}", claims=ALICE).status == 404
    faults.clear()
    app.drain()
    done = job_of(app, job_id)
    assert (done["status"], done["result"], done["userId"]) == ("COMPLETED", 3, "alice")
    if keyed:  # and the key names it
        again = app.api("POST", "/jobs", {"type": "system.echo", "payload": 3}, ALICE, headers)
        assert (again.status, again.body["jobId"]) == (200, job_id)


def test_a_keyed_retry_that_races_an_unrecorded_job_leaves_exactly_one(app: LocalApp, faults: Faults) -> None:
    dynamodb = wiring.container().dynamodb
    faults.on(dynamodb, "before-parameter-build.dynamodb.TransactWriteItems", fail_times(4, timeout))
    first = app.api("POST", "/jobs", {"type": "system.echo", "payload": 4}, ALICE, {"Idempotency-Key": "k4"})
    assert first.status == 202
    faults.clear()
    # The client retries before any worker saw the first message: a second job takes the key
    second = app.api("POST", "/jobs", {"type": "system.echo", "payload": 4}, ALICE, {"Idempotency-Key": "k4"})
    assert second.status == 202 and second.body["jobId"] != first.body["jobId"]
    app.drain()
    # The first message names a key another job owns: the worker drops it
    assert app.api("GET", f"/jobs/{first.body['jobId']}", claims=ALICE).status == 404
    assert job_of(app, second.body["jobId"])["status"] == "COMPLETED"
    assert [j["jobId"] for j in app.api("GET", "/jobs", claims=ALICE).body["items"]] == [second.body["jobId"]]


# -- completion ----------------------------------------------------------------------------------
def test_a_success_whose_completed_write_fails_is_recorded_on_the_next_delivery(
    app: LocalApp, clock: Clock, faults: Faults
) -> None:
    job = enqueue(app, {"type": "system.fail", "payload": {"failTimes": 0}, "maxAttempts": 1})
    dynamodb = wiring.container().dynamodb
    # Every COMPLETED write of this invocation fails (the first and its retries)
    faults.on(
        dynamodb,
        "before-parameter-build.dynamodb.PutItem",
        fail_times(4, timeout, only=lambda p: jobs_item_status(p) == "COMPLETED"),
    )
    app.drain()
    faults.clear()
    clock.advance(2)
    let_sqs_timers_pass()
    app.drain()
    done = job_of(app, job["jobId"])
    # Not "Job stuck", not "crashed on the last attempt": the success it was, on its one attempt
    assert (done["status"], done["attempts"], done["result"]) == ("COMPLETED", 1, {"ok": True})
    # recorded from the outcome the first invocation kept, not by running the handler again
    kept = app.stack.tables["IdempotencyTable"]
    items = wiring.container().dynamodb.scan(TableName=kept)["Items"]  # a test may scan
    assert [i["id"]["S"].split("#")[:2] for i in items] == [["outcome", job["jobId"]]]


def test_a_claim_that_fails_does_not_use_up_an_attempt(app: LocalApp, clock: Clock, faults: Faults) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 5, "maxAttempts": 1})
    dynamodb = wiring.container().dynamodb
    faults.on(
        dynamodb,
        "before-parameter-build.dynamodb.PutItem",
        fail_times(1, lambda: throttled("PutItem"), only=lambda p: jobs_item_status(p) == "PROCESSING"),
    )
    app.drain()
    faults.clear()
    clock.advance(800)
    let_sqs_timers_pass()
    app.drain()
    done = job_of(app, job["jobId"])
    assert (done["status"], done["attempts"]) == ("COMPLETED", 1)


def test_a_worker_that_dies_after_its_claim_gives_the_attempt_back(
    app: LocalApp, clock: Clock, faults: Faults
) -> None:
    """An invocation abandoned after the claim (Lambda timed out, the host died): the stuck
    sweep or the next delivery runs the job again without counting the lost attempt."""
    job = enqueue(app, {"type": "system.echo", "payload": 6, "maxAttempts": 1})
    dynamodb = wiring.container().dynamodb

    class Abandoned(BaseException):
        pass

    def note(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["status"] = jobs_item_status(params)

    def abandon(context: dict[str, Any], **_: Any) -> None:
        if context.get("status") == "PROCESSING":
            raise Abandoned  # past the claim, the invocation is gone

    faults.on(dynamodb, "before-parameter-build.dynamodb.PutItem", note)
    faults.on(dynamodb, "after-call.dynamodb.PutItem", abandon)
    with pytest.raises(Abandoned):
        app.drain()
    faults.clear()
    assert job_of(app, job["jobId"])["status"] == "PROCESSING"
    clock.advance(wiring.container().settings.stuck_after_seconds + 1)
    app.fire("Recover")
    clock.advance(61)
    let_sqs_timers_pass()
    app.drain()
    done = job_of(app, job["jobId"])
    assert (done["status"], done["attempts"]) == ("COMPLETED", 1), done


# -- retry ---------------------------------------------------------------------------------------
def test_retrying_while_sqs_is_down_leaves_the_job_failed_and_retryable(
    app: LocalApp, faults: Faults
) -> None:
    job = enqueue(app, {"type": "system.fail", "payload": {"permanent": True, "failTimes": 1}})
    app.drain()
    assert job_of(app, job["jobId"])["status"] == "FAILED"
    sqs = wiring.container().queue.client
    faults.on(sqs, "before-parameter-build.sqs.SendMessage", fail_times(1, lambda: throttled("SendMessage")))
    before = job_of(app, job["jobId"])
    refused = app.api("POST", f"/jobs/{job['jobId']}/retry", claims=ALICE)
    assert refused.status == 503
    assert job_of(app, job["jobId"]) == before  # untouched, still retryable
    retried = app.api("POST", f"/jobs/{job['jobId']}/retry", claims=ALICE)
    assert (retried.status, retried.body["status"]) == (202, "PENDING")
    app.drain()
    ran = job_of(app, job["jobId"])  # it ran again (and fails again: its payload says so)
    assert ran["status"] == "FAILED" and ran["lastAttemptAt"] > before["lastAttemptAt"]


def test_retrying_a_poison_job_is_refused_with_what_to_do(app: LocalApp) -> None:
    queue_url = app.stack.queue_urls["MediumQueue"]
    app.sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps({"type": "no.such.type", "jobId": "poison-1"})
    )
    app.drain()
    poisoned = job_of(app, "poison-1", ADMIN)
    assert poisoned["status"] == "FAILED" and poisoned["deadLettered"] is True
    refused = app.api("POST", "/jobs/poison-1/retry", claims=ADMIN)
    assert refused.status == 409
    assert "dead-letter queue" in refused.body["error"]["message"]


# -- the API under faults --------------------------------------------------------------------------
@pytest.mark.parametrize("error", [timeout, lambda: throttled("GetItem")])
def test_an_aws_fault_is_a_503_with_retry_after_never_a_500(
    app: LocalApp, faults: Faults, error: Callable[[], Exception]
) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 7})
    faults.on(wiring.container().dynamodb, "before-parameter-build.dynamodb.GetItem", fail_times(99, error))
    result = app.api("GET", f"/jobs/{job['jobId']}", claims=ALICE)
    assert result.status == 503
    assert result.body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert result.headers["retry-after"] == "1"


@pytest.mark.parametrize("path", ["/dashboard", "/docs"])
def test_the_pages_that_hold_a_token_send_security_headers(app: LocalApp, path: str) -> None:
    page = app.api("GET", path)
    assert page.status == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
