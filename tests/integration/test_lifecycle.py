"""The job lifecycle end to end: the real API and worker handlers against moto (in-process)."""

from __future__ import annotations

import json

from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, BOB, Clock, enqueue, job_of, let_sqs_timers_pass, messages_in


def test_enqueued_echo_job_completes_with_its_payload_as_result(app: LocalApp) -> None:
    # Given a user enqueues an echo job
    job = enqueue(app, {"type": "system.echo", "payload": {"hello": "world"}, "orderId": "o-1"})
    assert job["status"] == "PENDING"
    assert job["priority"] == "MEDIUM"
    # When the worker drains the queues
    app.drain()
    # Then the job is COMPLETED with its payload as result
    done = job_of(app, job["jobId"])
    assert done["status"] == "COMPLETED"
    assert done["result"] == {"hello": "world"}
    assert done["attempts"] == 1
    assert done["processingStartedAt"] and done["processingCompletedAt"]
    assert done["userId"] == "alice" and done["orderId"] == "o-1"


def test_every_documented_job_field_is_returned(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 1})
    assert set(job) == {
        "jobId", "type", "status", "priority", "payload", "result", "error", "errorDetails", "attempts",
        "maxAttempts", "nextRetryAt", "lastAttemptAt", "userId", "orderId", "createdAt", "updatedAt",
        "processingStartedAt", "processingCompletedAt", "deadLettered", "progress", "callbackUrl",
    }  # fmt: skip


def test_retryable_failure_goes_through_retrying_with_backoff_then_completes(
    app: LocalApp, clock: Clock
) -> None:
    # Given a job that fails its first attempt, with the default backoff ladder (60 s first)
    job = enqueue(app, {"type": "system.fail", "payload": {"failTimes": 1}})
    # When the worker runs it once
    app.drain()
    # Then it is RETRYING, retries in about 60 s, and its message is hidden until then
    retrying = job_of(app, job["jobId"])
    assert retrying["status"] == "RETRYING"
    assert retrying["attempts"] == 1
    assert "planned failures" in retrying["error"]
    assert retrying["errorDetails"]["code"] == "RETRYABLE"
    assert app.drain() == 0
    # When the backoff has passed (visibility expires, the clock moves on)
    clock.advance(70)
    let_sqs_timers_pass()
    app.drain()
    # Then the second attempt completes it
    done = job_of(app, job["jobId"])
    assert done["status"] == "COMPLETED"
    assert done["attempts"] == 2
    assert done["error"] is None


def test_backoff_delay_follows_the_chosen_base(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.fail", "payload": {"failTimes": 5}, "retryDelaySeconds": 100})
    app.drain()
    retrying = job_of(app, job["jobId"])
    from datetime import datetime

    wait = datetime.fromisoformat(retrying["nextRetryAt"]) - datetime.fromisoformat(retrying["updatedAt"])
    assert 90 <= wait.total_seconds() <= 110  # 100 s +-10% jitter


def test_exhausted_attempts_leave_the_job_failed(app: LocalApp) -> None:
    # Given a job that always fails, with two attempts and no backoff
    job = enqueue(
        app, {"type": "system.fail", "payload": {"failTimes": 99}, "maxAttempts": 2, "retryDelaySeconds": 0}
    )
    # When the worker has tried everything
    app.drain()
    # Then the job is FAILED after exactly two attempts and no message is left
    failed = job_of(app, job["jobId"])
    assert failed["status"] == "FAILED"
    assert failed["attempts"] == 2
    assert failed["errorDetails"]["code"] == "ATTEMPTS_EXHAUSTED"
    assert _waiting(app) == 0


def test_permanent_failure_fails_at_once(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.fail", "payload": {"failTimes": 3, "permanent": True}})
    app.drain()
    failed = job_of(app, job["jobId"])
    assert failed["status"] == "FAILED"
    assert failed["attempts"] == 1
    assert failed["errorDetails"]["code"] == "PERMANENT"


def test_message_that_is_not_json_goes_to_the_dlq_and_gets_a_failed_record(app: LocalApp) -> None:
    # Given a producer sends garbage to the HIGH queue beside a good job
    high = app.stack.queue_urls["HighQueue"]
    sent = app.sqs.send_message(QueueUrl=high, MessageBody="{not json")
    good = app.sqs.send_message(QueueUrl=high, MessageBody=json.dumps({"type": "system.echo", "payload": 1}))
    # When the worker drains
    app.drain()
    # Then the garbage is in the DLQ at once, and the good job did not wait for it
    dlq = app.stack.queue_urls["HighDeadLetterQueue"]
    dead = app.sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in dead] == ["{not json"]
    assert "not valid JSON" in dead[0]["MessageAttributes"]["tarefa-error"]["StringValue"]
    assert job_of(app, good["MessageId"], ADMIN)["status"] == "COMPLETED"
    record = job_of(app, sent["MessageId"], ADMIN)
    assert record["status"] == "FAILED"
    assert record["deadLettered"] is True


def test_unknown_type_sent_to_sqs_is_dead_lettered_with_its_job_record(app: LocalApp) -> None:
    low = app.stack.queue_urls["LowQueue"]
    app.sqs.send_message(
        QueueUrl=low, MessageBody=json.dumps({"type": "nope", "jobId": "j-x", "userId": "alice"})
    )
    app.drain()
    record = job_of(app, "j-x")
    assert record["status"] == "FAILED"
    assert record["deadLettered"] is True
    assert record["type"] == "nope"
    assert messages_in(app, "LowDeadLetterQueue") == 1


def test_cancelled_job_is_dropped_when_its_message_arrives(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": {}})
    cancelled = app.api("POST", f"/jobs/{job['jobId']}/cancel", {"reason": "changed my mind"}, ALICE)
    assert cancelled.status == 200
    assert cancelled.body["status"] == "CANCELLED"
    assert cancelled.body["error"] == "changed my mind"
    app.drain()
    assert job_of(app, job["jobId"])["status"] == "CANCELLED"
    assert job_of(app, job["jobId"])["attempts"] == 0
    assert _waiting(app) == 0


def test_only_pending_retrying_or_failed_jobs_can_be_cancelled(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": {}})
    app.drain()
    result = app.api("POST", f"/jobs/{job['jobId']}/cancel", claims=ALICE)
    assert result.status == 409
    assert result.body["error"]["code"] == "INVALID_STATE"


def test_failed_job_can_be_retried_and_runs_again(app: LocalApp) -> None:
    # Given a job that failed permanently
    job = enqueue(app, {"type": "system.fail", "payload": {"failTimes": 1, "permanent": True}})
    app.drain()
    assert job_of(app, job["jobId"])["status"] == "FAILED"
    # When its owner retries it
    retried = app.api("POST", f"/jobs/{job['jobId']}/retry", claims=ALICE)
    # Then it is PENDING with attempts reset, and runs again (system.fail fails attempt 1 again)
    assert retried.status == 202
    assert retried.body["status"] == "PENDING"
    assert retried.body["attempts"] == 0
    assert retried.body["error"] is None
    assert retried.body["processingStartedAt"] is None and retried.body["processingCompletedAt"] is None
    app.drain()
    again = job_of(app, job["jobId"])
    assert again["status"] == "FAILED" and again["attempts"] == 1
    assert again["lastAttemptAt"] > retried.body["updatedAt"]


def test_only_failed_jobs_can_be_retried(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": {}})
    app.drain()
    result = app.api("POST", f"/jobs/{job['jobId']}/retry", claims=ALICE)
    assert result.status == 409


def test_same_idempotency_key_returns_the_same_job(app: LocalApp) -> None:
    body = {"type": "system.echo", "payload": {"n": 1}, "idempotencyKey": "order-42"}
    first = app.api("POST", "/jobs", body, ALICE)
    again = app.api("POST", "/jobs", body, ALICE)
    by_header = app.api(
        "POST", "/jobs", {"type": "system.echo", "payload": {"n": 1}}, ALICE, {"Idempotency-Key": "order-42"}
    )
    other_user = app.api("POST", "/jobs", body, BOB)
    assert first.status == 202
    assert again.status == 200 and again.body["jobId"] == first.body["jobId"]
    assert by_header.status == 200 and by_header.body["jobId"] == first.body["jobId"]
    assert other_user.status == 202 and other_user.body["jobId"] != first.body["jobId"]
    assert _waiting(app) == 2  # one message per job, not per request


def test_duplicate_delivery_runs_the_job_once(app: LocalApp) -> None:
    # Given a job whose message SQS delivers twice
    job = enqueue(app, {"type": "system.echo", "payload": {}})
    medium = app.stack.queue_urls["MediumQueue"]
    app.sqs.send_message(
        QueueUrl=medium, MessageBody=json.dumps({"jobId": job["jobId"], "type": "system.echo"})
    )
    # When the worker receives both
    app.drain()
    # Then it ran once: one attempt, one claim
    done = job_of(app, job["jobId"])
    assert done["status"] == "COMPLETED"
    assert done["attempts"] == 1
    assert _waiting(app) == 0


def test_job_sent_straight_to_sqs_is_tracked(app: LocalApp) -> None:
    # Given a producer that only knows SQS
    high = app.stack.queue_urls["HighQueue"]
    app.sqs.send_message(
        QueueUrl=high,
        MessageBody=json.dumps(
            {"type": "system.echo", "payload": {"x": 1}, "jobId": "ext-1", "userId": "alice"}
        ),
    )
    sent = app.sqs.send_message(QueueUrl=high, MessageBody=json.dumps({"type": "system.echo", "payload": 2}))
    app.drain()
    # Then its owner reads it by the id it chose, and an admin by the SQS message id
    mine = job_of(app, "ext-1")
    assert mine["status"] == "COMPLETED" and mine["priority"] == "HIGH" and mine["result"] == {"x": 1}
    assert app.api("GET", "/jobs/ext-1", claims=BOB).status == 404
    anonymous = job_of(app, sent["MessageId"], ADMIN)
    assert anonymous["status"] == "COMPLETED" and anonymous["userId"] is None


def test_external_job_with_invalid_payload_is_failed_not_lost(app: LocalApp) -> None:
    app.sqs.send_message(
        QueueUrl=app.stack.queue_urls["LowQueue"],
        MessageBody=json.dumps({"type": "system.fail", "payload": {"failTimes": "x"}, "jobId": "bad-1"}),
    )
    app.drain()
    record = job_of(app, "bad-1", ADMIN)
    assert record["status"] == "FAILED"
    assert record["errorDetails"]["code"] == "INVALID_PAYLOAD"
    assert record["errorDetails"]["fields"][0]["field"] == "payload.failTimes"


def _waiting(app: LocalApp) -> int:
    return sum(messages_in(app, logical) for logical in ("HighQueue", "MediumQueue", "LowQueue"))
