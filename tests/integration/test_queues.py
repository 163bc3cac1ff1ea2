"""Queue depths, pause and resume through the real API handler (moto)."""

from __future__ import annotations

from typing import Any

import pytest

from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, Clock, enqueue, job_of


def queues(app: LocalApp) -> dict[str, dict[str, Any]]:
    result = app.api("GET", "/queues", claims=ADMIN)
    assert result.status == 200
    return {q["priority"]: q for q in result.body["queues"]}


def overview(app: LocalApp) -> dict[str, Any]:
    result = app.api("GET", "/queues", claims=ADMIN)
    assert result.status == 200
    body: dict[str, Any] = result.body
    return body


def test_queues_show_their_depths_and_state(app: LocalApp) -> None:
    # Given two HIGH jobs waiting and one LOW job delayed
    enqueue(app, {"type": "system.echo", "priority": "HIGH"})
    enqueue(app, {"type": "system.echo", "priority": "HIGH"})
    enqueue(app, {"type": "system.echo", "priority": "LOW", "delaySeconds": 300})
    # When an admin looks at the queues
    found = queues(app)
    # Then each priority is there, in order, with what SQS counts
    assert list(found) == ["HIGH", "MEDIUM", "LOW"]
    assert set(found["HIGH"]) == {
        "name", "priority", "waiting", "inFlight", "delayed", "deadLetter", "state", "paused", "jobs", "windows",
    }  # fmt: skip
    assert (found["HIGH"]["waiting"], found["HIGH"]["name"]) == (2, "tarefa-dev-high")
    assert found["LOW"]["delayed"] == 1
    assert all(q["state"] == "running" and q["paused"] is False for q in found.values())


def test_a_paused_queue_holds_its_jobs_pending_until_resumed(app: LocalApp) -> None:
    # Given the HIGH queue is paused
    paused = app.api("POST", "/queues/high/pause", claims=ADMIN)
    assert paused.status == 200
    assert (paused.body["priority"], paused.body["state"], paused.body["paused"]) == ("HIGH", "paused", True)
    # When a job is enqueued on it (enqueue keeps working) and the workers poll
    job = enqueue(app, {"type": "system.echo", "priority": "HIGH"})
    other = enqueue(app, {"type": "system.echo", "priority": "MEDIUM"})
    app.drain()
    # Then it waits, PENDING, while the other queues run
    assert job_of(app, job["jobId"])["status"] == "PENDING"
    assert job_of(app, other["jobId"])["status"] == "COMPLETED"
    assert queues(app)["HIGH"]["waiting"] == 1
    # And once resumed it runs
    resumed = app.api("POST", "/queues/HIGH/resume", claims=ADMIN)
    assert (resumed.body["state"], resumed.body["paused"]) == ("running", False)
    app.drain()
    assert job_of(app, job["jobId"])["status"] == "COMPLETED"


def test_queue_operations_are_for_admins_and_known_queues(app: LocalApp) -> None:
    assert app.api("GET", "/queues", claims=ALICE).status == 403
    assert app.api("POST", "/queues/high/pause", claims=ALICE).status == 403
    missing = app.api("POST", "/queues/urgent/pause", claims=ADMIN)
    assert (missing.status, missing.body["error"]["code"]) == (404, "QUEUE_NOT_FOUND")


def test_job_counts_and_recent_figures_come_from_the_jobs_stream(app: LocalApp, clock: Clock) -> None:
    # Given three HIGH jobs that complete, one MEDIUM job that fails and one LOW job still delayed
    for _ in range(3):
        enqueue(app, {"type": "system.echo", "priority": "HIGH"})
    enqueue(app, {"type": "system.fail", "priority": "MEDIUM", "payload": {"failTimes": 5}, "maxAttempts": 1})
    enqueue(app, {"type": "system.echo", "priority": "LOW", "delaySeconds": 300})
    clock.advance(2)  # they wait two seconds before a worker takes them
    app.drain()  # the workers run, then the stream consumer folds in every change
    # When an admin looks at the queues
    found = overview(app)
    by_priority = {q["priority"]: q for q in found["queues"]}
    # Then the counts by status are exact, per queue and in total
    assert by_priority["HIGH"]["jobs"] == {**ZERO, "COMPLETED": 3}
    assert by_priority["MEDIUM"]["jobs"] == {**ZERO, "FAILED": 1}
    assert by_priority["LOW"]["jobs"] == {**ZERO, "PENDING": 1}
    assert found["jobs"] == {**ZERO, "COMPLETED": 3, "FAILED": 1, "PENDING": 1}
    # And the last minute's figures say what ran, how fast and how long it waited
    last_minute = found["windows"]["1m"]
    assert (last_minute["completed"], last_minute["failed"], last_minute["retried"]) == (3, 1, 0)
    assert last_minute["processingRatePerMinute"] == 4.0
    assert last_minute["errorRate"] == 0.25
    assert last_minute["avgQueueWaitMs"] >= 2000
    assert 0 <= last_minute["avgProcessingMs"] <= last_minute["p95ProcessingMs"] * 1.25
    assert by_priority["HIGH"]["windows"]["1m"]["errorRate"] == 0.0
    assert by_priority["MEDIUM"]["windows"]["1m"]["errorRate"] == 1.0
    assert by_priority["LOW"]["windows"]["1m"]["avgProcessingMs"] is None  # nothing ran there

    # When two minutes pass, the 1-minute window is empty and the 5- and 60-minute ones are not
    clock.advance(120)
    later = overview(app)
    assert (later["windows"]["1m"]["completed"], later["windows"]["1m"]["processingRatePerMinute"]) == (
        0,
        0.0,
    )
    assert later["windows"]["5m"]["completed"] == 3
    assert later["windows"]["5m"]["processingRatePerMinute"] == 0.8
    assert later["windows"]["60m"]["failed"] == 1
    # And an hour later only the counts remain
    clock.advance(3600)
    assert overview(app)["windows"]["60m"]["completed"] == 0
    assert overview(app)["jobs"]["COMPLETED"] == 3


def test_deleted_and_retried_jobs_move_between_counts(app: LocalApp, clock: Clock) -> None:
    # Given a failed job that an operator retries and then cancels, and a completed one
    failed = enqueue(app, {"type": "system.fail", "payload": {"failTimes": 1}, "maxAttempts": 1})
    enqueue(app, {"type": "system.echo"})
    app.drain()
    assert overview(app)["jobs"] == {**ZERO, "COMPLETED": 1, "FAILED": 1}
    # When it is retried, it moves from FAILED to PENDING, and back when it fails again
    assert app.api("POST", f"/jobs/{failed['jobId']}/retry", claims=ALICE).status == 202
    app.pump_streams()
    assert overview(app)["jobs"] == {**ZERO, "COMPLETED": 1, "PENDING": 1}
    app.drain()
    assert overview(app)["jobs"] == {**ZERO, "COMPLETED": 1, "FAILED": 1}
    # And when it is cancelled it counts as CANCELLED
    assert app.api("POST", f"/jobs/{failed['jobId']}/cancel", claims=ALICE).status == 200
    app.pump_streams()
    assert overview(app)["jobs"] == {**ZERO, "COMPLETED": 1, "CANCELLED": 1}
    # And when cleanup deletes finished jobs, they leave the counts
    clock.advance(120)
    deleted = app.api("POST", "/maintenance/cleanup", {"olderThanSeconds": 60}, ADMIN).body["deleted"]
    app.drain()
    assert deleted == 2
    assert overview(app)["jobs"] == ZERO


def test_a_retried_stream_batch_is_counted_once(app: LocalApp) -> None:
    # Given a stream consumer that fails once after its batch was already recorded
    enqueue(app, {"type": "system.echo"})
    poller = app.stream_pollers[0]
    handler = app.handlers[poller.function.logical_id]
    calls = 0

    def fails_once_after_recording(event: dict[str, Any], context: Any) -> Any:
        nonlocal calls
        calls += 1
        result = handler(event, context)
        if calls == 1:
            raise TimeoutError("the invocation timed out after its write")
        return result

    # When Lambda offers the batch again, as it does after a failed invocation
    with pytest.raises(TimeoutError):
        poller.deliver(fails_once_after_recording)
    assert poller.deliver(fails_once_after_recording) == 1
    # Then the job is counted once
    assert calls == 2
    assert overview(app)["jobs"]["PENDING"] == 1


ZERO = {"PENDING": 0, "PROCESSING": 0, "COMPLETED": 0, "FAILED": 0, "CANCELLED": 0, "RETRYING": 0}
