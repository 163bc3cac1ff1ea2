"""Messages SQS's redrive moved to a dead-letter queue show on their jobs: the dead-letter
sweep (a schedule of its own) records them FAILED and deadLettered, and leaves the DLQ as it was."""

from __future__ import annotations

import json

from tarefa import wiring
from tarefa.job import JobStatus
from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, Clock, enqueue, job_of


def redriven(app: LocalApp, queue: str = "MediumQueue") -> dict[str, str]:
    """Move the next message of `queue` to its DLQ, as SQS does after maxReceiveCount."""
    url = app.stack.queue_urls[queue]
    message = app.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
    app.sqs.send_message(
        QueueUrl=app.stack.queue_urls[queue.replace("Queue", "DeadLetterQueue")], MessageBody=message["Body"]
    )
    app.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    body: dict[str, str] = json.loads(message["Body"])
    return body


def in_dlq(app: LocalApp, queue: str = "MediumDeadLetterQueue") -> int:
    attributes = app.sqs.get_queue_attributes(
        QueueUrl=app.stack.queue_urls[queue], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_pending_job_whose_message_was_redriven_ends_failed_and_dead_lettered(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 1})
    redriven(app)
    assert job_of(app, job["jobId"])["status"] == "PENDING"  # before the sweep: stranded
    assert app.fire("DeadLetters") == {"deadLettered": 1}
    dead = job_of(app, job["jobId"])
    assert (dead["status"], dead["deadLettered"]) == ("FAILED", True)
    assert dead["errorDetails"]["code"] == "DEAD_LETTERED"
    assert "dead-letter queue" in dead["error"]
    assert in_dlq(app) == 1  # looked at, never taken
    # A second sweep changes nothing; the operator can redrive it as any dead letter
    assert app.fire("DeadLetters") == {"deadLettered": 0}
    redrive = app.api("POST", "/queues/medium/dead-letters/redrive", {"jobIds": [job["jobId"]]}, ADMIN)
    assert redrive.body["jobIds"] == [job["jobId"]]
    app.drain()
    assert job_of(app, job["jobId"])["status"] == "COMPLETED"


def test_a_job_the_api_never_recorded_is_recorded_from_its_dead_letter(app: LocalApp) -> None:
    # The API sends a new job's message before its record; here the record never came
    store = wiring.container().store
    job = enqueue(app, {"type": "system.echo", "payload": 2})
    body = redriven(app)
    store.client.delete_item(TableName=store.table, Key={"jobId": {"S": job["jobId"]}})
    assert body["jobId"] == job["jobId"] and body["userId"] == "alice"
    app.fire("DeadLetters")
    dead = job_of(app, job["jobId"], ALICE)
    assert (dead["status"], dead["deadLettered"], dead["payload"]) == ("FAILED", True, 2)


def test_a_job_running_on_another_message_is_left_to_its_worker(app: LocalApp, clock: Clock) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 3})
    redriven(app)
    store = wiring.container().store
    record = store.get(job["jobId"])
    assert record is not None
    store.put(
        record.transition(JobStatus.PROCESSING, clock(), attempts=1, processing_started_at=clock()),
        record.version,
    )
    assert app.fire("DeadLetters") == {"deadLettered": 0}
    assert job_of(app, job["jobId"])["status"] == "PROCESSING"
    clock.advance(wiring.container().settings.worker_timeout_seconds + 1)  # its worker is gone
    assert app.fire("DeadLetters") == {"deadLettered": 1}
    assert job_of(app, job["jobId"])["status"] == "FAILED"


def test_finished_jobs_are_left_alone(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 4})
    app.drain()
    app.sqs.send_message(
        QueueUrl=app.stack.queue_urls["MediumDeadLetterQueue"],
        MessageBody=json.dumps({"jobId": job["jobId"], "type": "system.echo"}),
    )
    assert app.fire("DeadLetters") == {"deadLettered": 0}
    assert job_of(app, job["jobId"])["status"] == "COMPLETED"
