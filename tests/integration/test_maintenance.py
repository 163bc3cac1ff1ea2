"""Scheduled sweeps: cleanup, stuck-job recovery and delayed-job promotion."""

from __future__ import annotations

import json

from tarefa import wiring
from tarefa.local.app import LocalApp

from .conftest import ADMIN, Clock, enqueue, job_of, let_sqs_timers_pass


def test_cleanup_deletes_finished_jobs_past_retention_and_keeps_the_rest(app: LocalApp, clock: Clock) -> None:
    # Given a completed, a cancelled and a pending job
    done = enqueue(app, {"type": "system.echo", "payload": 1})
    app.drain()
    cancelled = enqueue(app, {"type": "system.echo", "payload": 2})
    app.api("POST", f"/jobs/{cancelled['jobId']}/cancel", claims=ADMIN)
    pending = enqueue(app, {"type": "system.echo", "payload": 3, "delaySeconds": 3600})
    # When the daily schedule runs before and after the 7-day retention
    assert app.fire("Cleanup") == {"deleted": 0}
    clock.advance(7 * 86_400 + 60)
    # Then only the finished jobs are gone
    assert app.fire("Cleanup") == {"deleted": 2}
    assert app.api("GET", f"/jobs/{done['jobId']}", claims=ADMIN).status == 404
    assert job_of(app, pending["jobId"])["status"] == "PENDING"


def test_cleanup_on_demand_takes_a_shorter_age(app: LocalApp, clock: Clock) -> None:
    enqueue(app, {"type": "system.echo", "payload": 1})
    app.drain()
    clock.advance(120)
    assert app.api("POST", "/maintenance/cleanup", {"olderThanSeconds": 60}, ADMIN).body == {"deleted": 1}


def test_stuck_job_is_recovered_once_its_worker_must_be_gone_and_then_completes(
    app: LocalApp, clock: Clock
) -> None:
    # Given a job whose worker claimed it and then died (its message deleted, e.g. redriven)
    job = enqueue(app, {"type": "system.echo", "payload": {"v": 1}})
    _claim_and_die(app, job["jobId"])
    assert job_of(app, job["jobId"])["status"] == "PROCESSING"
    # When recovery runs before the worker timeout (120 s) has passed, nothing happens
    clock.advance(100)
    assert app.fire("Recover") == {"recovered": 0}
    # And after the stuck threshold (300 s) it is RETRYING with "Job stuck", due a minute later
    clock.advance(250)
    assert app.fire("Recover") == {"recovered": 1}
    stuck = job_of(app, job["jobId"])
    assert stuck["status"] == "RETRYING"
    assert stuck["error"] == "Job stuck"
    # Then the requeued message runs it to completion
    clock.advance(61)
    let_sqs_timers_pass()
    app.drain()
    assert job_of(app, job["jobId"])["status"] == "COMPLETED"


def test_recovery_never_goes_below_the_worker_timeout(app: LocalApp, clock: Clock) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": 1})
    _claim_and_die(app, job["jobId"])
    clock.advance(30)
    # An admin asks for 10 s, but a 30 s old lease may still belong to a live worker
    assert app.api("POST", "/maintenance/recover", {"stuckAfterSeconds": 10}, ADMIN).body == {"recovered": 0}


def test_delay_beyond_15_minutes_is_held_and_promoted_when_due(app: LocalApp, clock: Clock) -> None:
    # Given a job delayed by an hour
    job = enqueue(app, {"type": "system.echo", "payload": 1, "delaySeconds": 3600})
    assert app.drain() == 0  # nothing in SQS yet
    # When the per-minute schedule runs early, nothing is promoted
    assert app.fire("Promote") == {"promoted": 0}
    # And once the job falls within 15 minutes it is queued with the remaining delay
    clock.advance(3600 - 600)
    assert app.fire("Promote") == {"promoted": 1}
    assert app.fire("Promote") == {"promoted": 0}
    clock.advance(601)
    let_sqs_timers_pass()
    app.drain()
    assert job_of(app, job["jobId"])["status"] == "COMPLETED"


def _claim_and_die(app: LocalApp, job_id: str) -> None:
    """Claim the job as a worker would, then lose the message without finishing."""
    medium = app.stack.queue_urls["MediumQueue"]
    message = app.sqs.receive_message(QueueUrl=medium)["Messages"][0]
    worker = wiring.container().worker
    assert worker._claim(worker.store.get(job_id)) is not None  # type: ignore[arg-type]
    app.sqs.delete_message(QueueUrl=medium, ReceiptHandle=message["ReceiptHandle"])
    assert json.loads(message["Body"])["jobId"] == job_id
