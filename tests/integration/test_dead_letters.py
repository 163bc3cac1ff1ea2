"""Dead-letter browsing, selective redrive and purge through the real API handler (moto)."""

from __future__ import annotations

import pytest

from tarefa import wiring
from tarefa.job import JobStatus
from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, enqueue, job_of, messages_in


def visible(app: LocalApp, name: str = "HighDeadLetterQueue") -> int:
    attributes = app.sqs.get_queue_attributes(
        QueueUrl=app.stack.queue_urls[name], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def dead_lettered_job(app: LocalApp) -> str:
    """A HIGH job whose message SQS moved to the DLQ after too many receives, and whose record
    the stuck-job recovery then failed: what an operator finds after an outage."""
    job = enqueue(app, {"type": "system.echo", "payload": {"n": 1}, "priority": "HIGH"})
    high = app.stack.queue_urls["HighQueue"]
    message = app.sqs.receive_message(QueueUrl=high, MaxNumberOfMessages=1)["Messages"][0]
    app.sqs.send_message(QueueUrl=app.stack.queue_urls["HighDeadLetterQueue"], MessageBody=message["Body"])
    app.sqs.delete_message(QueueUrl=high, ReceiptHandle=message["ReceiptHandle"])
    store = wiring.container().store
    record = store.get(job["jobId"])
    assert record is not None
    failed = record.transition(JobStatus.FAILED, record.updated_at, error="Job stuck", attempts=3)
    store.put(failed, expected_version=record.version)
    return str(job["jobId"])


@pytest.fixture
def three_dead_jobs(app: LocalApp) -> list[str]:
    return [dead_lettered_job(app) for _ in range(3)]


def test_browsing_lists_what_is_in_the_dlq_and_loses_none_of_it(
    app: LocalApp, three_dead_jobs: list[str]
) -> None:
    # When an admin lists the HIGH dead letters, twice
    first = app.api("GET", "/queues/high/dead-letters?limit=10", claims=ADMIN)
    second = app.api("GET", "/queues/HIGH/dead-letters", claims=ADMIN)
    # Then every dead job is there, described, and still in the queue (visible at once)
    assert first.status == second.status == 200
    assert sorted(i["jobId"] for i in first.body["items"]) == sorted(three_dead_jobs)
    assert sorted(i["jobId"] for i in second.body["items"]) == sorted(three_dead_jobs)
    entry = first.body["items"][0]
    assert set(entry) == {"jobId", "messageId", "type", "receiveCount", "lastError", "failedAt", "jobStatus"}
    assert (entry["type"], entry["lastError"], entry["jobStatus"]) == ("system.echo", "Job stuck", "FAILED")
    assert entry["receiveCount"] >= 1
    assert visible(app) == 3


def test_browsing_respects_the_limit(app: LocalApp, three_dead_jobs: list[str]) -> None:
    result = app.api("GET", "/queues/high/dead-letters?limit=2", claims=ADMIN)
    assert len(result.body["items"]) == 2
    assert visible(app) == 3


def test_a_selective_redrive_moves_only_the_chosen_job_and_restarts_it(
    app: LocalApp, three_dead_jobs: list[str]
) -> None:
    chosen, *others = three_dead_jobs
    # When an admin redrives one job
    result = app.api("POST", "/queues/high/dead-letters/redrive", {"jobIds": [chosen, "nope"]}, ADMIN)
    # Then it alone left the DLQ, and its job is PENDING with attempts reset
    assert result.status == 200
    assert result.body == {"jobIds": [chosen], "notFound": ["nope"], "skipped": [], "complete": True}
    assert messages_in(app, "HighDeadLetterQueue") == 2
    restarted = job_of(app, chosen)
    assert (restarted["status"], restarted["attempts"], restarted["error"]) == ("PENDING", 0, None)
    assert all(job_of(app, other)["status"] == "FAILED" for other in others)
    # And the worker runs it to completion
    app.drain()
    assert job_of(app, chosen)["status"] == "COMPLETED"


def test_redrive_all_moves_every_job_message_and_leaves_poison_where_it_is(
    app: LocalApp, three_dead_jobs: list[str]
) -> None:
    app.sqs.send_message(QueueUrl=app.stack.queue_urls["HighQueue"], MessageBody="not json")
    app.drain()  # the worker dead-letters the poison message itself
    result = app.api("POST", "/queues/high/dead-letters/redrive", {"all": True}, ADMIN)
    assert result.status == 200
    assert sorted(result.body["jobIds"]) == sorted(three_dead_jobs)
    assert result.body["complete"] is True
    [skipped] = result.body["skipped"]
    assert "not valid JSON" in skipped["reason"] and "purge" in skipped["reason"]
    assert messages_in(app, "HighDeadLetterQueue") == 1
    app.drain()
    assert all(job_of(app, j)["status"] == "COMPLETED" for j in three_dead_jobs)


def test_purge_deletes_the_chosen_messages_and_their_jobs_stay_visible_as_failed(
    app: LocalApp, three_dead_jobs: list[str]
) -> None:
    chosen = three_dead_jobs[0]
    result = app.api("POST", "/queues/high/dead-letters/purge", {"jobIds": [chosen]}, ADMIN)
    assert result.status == 200
    assert result.body["jobIds"] == [chosen] and result.body["notFound"] == []
    assert messages_in(app, "HighDeadLetterQueue") == 2
    purged = job_of(app, chosen)
    assert (purged["status"], purged["error"]) == ("FAILED", "Purged from the dead-letter queue")


def test_a_poison_message_can_be_purged_by_the_id_its_record_carries(app: LocalApp) -> None:
    sent = app.sqs.send_message(QueueUrl=app.stack.queue_urls["HighQueue"], MessageBody="{broken")
    app.drain()
    [entry] = app.api("GET", "/queues/high/dead-letters", claims=ADMIN).body["items"]
    assert entry["jobId"] == sent["MessageId"] and entry["jobStatus"] == "FAILED"
    assert "not valid JSON" in entry["lastError"]
    result = app.api("POST", "/queues/high/dead-letters/purge", {"jobIds": [entry["jobId"]]}, ADMIN)
    assert result.body["jobIds"] == [sent["MessageId"]]
    assert messages_in(app, "HighDeadLetterQueue") == 0
    assert job_of(app, sent["MessageId"], ADMIN)["status"] == "FAILED"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/queues/urgent/dead-letters", None, 404, "QUEUE_NOT_FOUND"),
        ("GET", "/queues/high/dead-letters?limit=0", None, 422, "VALIDATION_ERROR"),
        ("GET", "/queues/high/dead-letters?limit=101", None, 422, "VALIDATION_ERROR"),
        ("POST", "/queues/high/dead-letters/redrive", {}, 422, "VALIDATION_ERROR"),
        ("POST", "/queues/high/dead-letters/redrive", {"jobIds": []}, 422, "VALIDATION_ERROR"),
        (
            "POST",
            "/queues/high/dead-letters/redrive",
            {"jobIds": ["a"], "all": True},
            422,
            "VALIDATION_ERROR",
        ),
        ("POST", "/queues/high/dead-letters/purge", {}, 422, "VALIDATION_ERROR"),
        ("POST", "/queues/high/dead-letters/purge", {"jobIds": ["a"] * 101}, 422, "VALIDATION_ERROR"),
    ],
)
def test_bad_requests_get_a_clear_error(
    app: LocalApp, method: str, path: str, body: object, status: int, code: str
) -> None:
    result = app.api(method, path, body if body is not None else b"", ADMIN)
    assert (result.status, result.body["error"]["code"]) == (status, code)


def test_dead_letters_are_for_admins_only(app: LocalApp) -> None:
    assert app.api("GET", "/queues/high/dead-letters", claims=ALICE).status == 403
    assert app.api("POST", "/queues/high/dead-letters/redrive", {"all": True}, ALICE).status == 403
    assert app.api("POST", "/queues/high/dead-letters/purge", {"jobIds": ["x"]}, ALICE).status == 403
