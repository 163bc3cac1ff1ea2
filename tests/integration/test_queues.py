"""Queue depths, pause and resume through the real API handler (moto)."""

from __future__ import annotations

from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, enqueue, job_of


def queues(app: LocalApp) -> dict[str, dict[str, object]]:
    result = app.api("GET", "/queues", claims=ADMIN)
    assert result.status == 200
    return {q["priority"]: q for q in result.body["queues"]}


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
        "name", "priority", "waiting", "inFlight", "delayed", "deadLetter", "state", "paused",
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
