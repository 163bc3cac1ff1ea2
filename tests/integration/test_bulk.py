"""Bulk cancel and retry by filter on the real handlers against moto: the built-in job
system.bulk pages through the jobs table's sparse ByStatus index, records its cursor and counts
as it goes, reports progress, and resumes where a crashed run stopped."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from tarefa import wiring
from tarefa.context import JobContext
from tarefa.job import Job, JobStatus, utcnow
from tarefa.local.app import LocalApp

from .conftest import ADMIN, ALICE, BOB, Clock, job_of, let_sqs_timers_pass, messages_in


def failed_jobs(count: int, user: str, job_type: str = "system.echo", **extra: Any) -> list[str]:
    """FAILED jobs written straight to the store (as the worker would leave them)."""
    store = wiring.container().store
    now = utcnow()
    ids = []
    for n in range(count):
        job = Job(
            job_id=str(uuid.uuid4()),
            type=job_type,
            status=JobStatus.FAILED,
            payload={"n": n} if job_type == "system.echo" else {"failTimes": 0},
            user_id=user,
            attempts=3,
            error="boom",
            created_at=now - timedelta(seconds=count - n),
            updated_at=now,
            version=3,
            **extra,
        )
        store.put(job, expected_version=None)
        ids.append(job.job_id)
    return ids


def operation(app: LocalApp, operation_id: str, claims: dict[str, Any] = ALICE) -> dict[str, Any]:
    result = app.api("GET", f"/jobs/bulk/{operation_id}", claims=claims)
    assert result.status == 200, result.body
    found: dict[str, Any] = result.body
    return found


def test_a_bulk_retry_of_1000_failed_jobs_pages_reports_progress_and_counts(
    app: LocalApp, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = failed_jobs(1000, "alice")
    progress: list[int] = []
    original = JobContext.progress

    def spy(self: JobContext, percent: float, message: str | None = None) -> None:
        if self.job_type == "system.bulk":
            progress.append(round(percent))
        original(self, percent, message)

    monkeypatch.setattr(JobContext, "progress", spy)
    dry = app.api("POST", "/jobs/bulk/retry", {"status": "FAILED", "dryRun": True}, ALICE)
    assert dry.status == 200 and dry.body["matched"] == 1000
    started = app.api("POST", "/jobs/bulk/retry", {"status": "FAILED", "type": "system.echo"}, ALICE)
    assert started.status == 202, started.body
    op_id = started.body["operationId"]
    low = [(f, s) for f, s in app.sqs_sources() if s.queue_logical_id == "LowQueue"]
    for _ in range(10):  # the bulk job only (LOW; the retried wait on MEDIUM). A slow machine
        app.poll(*low[0])  # may use up a run's time budget: the next attempt goes on from there
        if operation(app, op_id)["status"] == "COMPLETED":
            break
        let_sqs_timers_pass()
    done = operation(app, op_id)
    assert (done["status"], done["matched"], done["processed"], done["failed"]) == (
        "COMPLETED",
        1000,
        1000,
        0,
    )
    # a page of 100 at a time: progress rose in steps to 100
    assert len(progress) >= 10 and progress == sorted(progress) and progress[-1] == 100
    bulk_job = job_of(app, started.body["jobId"])
    assert bulk_job["status"] == "COMPLETED" and bulk_job["progress"]["percent"] == 100
    assert bulk_job["result"] == {"matched": 1000, "processed": 1000, "failed": 0}
    for job_id in ids[::97]:
        job = job_of(app, job_id)
        assert job["status"] == "PENDING" and job["attempts"] == 0, job  # retried
    assert messages_in(app, "MediumQueue") == 1000  # each on its queue again, once
    after = app.api("POST", "/jobs/bulk/retry", {"dryRun": True}, ALICE)
    assert after.body["matched"] == 0  # nothing FAILED is left in the index


def test_a_dry_run_changes_nothing(app: LocalApp, clock: Clock) -> None:
    ids = failed_jobs(5, "alice")
    for action in ("retry", "cancel"):
        answer = app.api("POST", f"/jobs/bulk/{action}", {"dryRun": True}, ALICE)
        assert answer.status == 200 and answer.body == {"matched": 5, "dryRun": True}
    assert all(job_of(app, j)["status"] == "FAILED" for j in ids)
    assert messages_in(app, "LowQueue") == 0 and messages_in(app, "MediumQueue") == 0  # no bulk job


def test_filters_by_type_and_creation_time(app: LocalApp, clock: Clock) -> None:
    echo = failed_jobs(4, "alice")
    failed_jobs(3, "alice", job_type="system.fail")
    by_type = app.api("POST", "/jobs/bulk/retry", {"type": "system.fail", "dryRun": True}, ALICE)
    assert by_type.body["matched"] == 3
    created = [job_of(app, j)["createdAt"] for j in echo]
    window = {"createdAfter": created[1], "createdBefore": created[3], "type": "system.echo", "dryRun": True}
    assert app.api("POST", "/jobs/bulk/cancel", window, ALICE).body["matched"] == 2  # [1], [2]
    admin = app.api("POST", "/jobs/bulk/cancel", window, ADMIN)
    assert admin.body["matched"] == 2  # the same filter over every owner
    bad = app.api("POST", "/jobs/bulk/retry", {"status": "PENDING"}, ALICE)
    assert bad.status == 422 and bad.body["error"]["details"][0]["field"] == "status"
    backwards = app.api(
        "POST",
        "/jobs/bulk/cancel",
        {**window, "createdAfter": created[3], "createdBefore": created[1]},
        ALICE,
    )
    assert backwards.status == 422
    assert app.api("POST", "/jobs/bulk/cancel", {"status": "COMPLETED"}, ALICE).status == 422
    assert app.api("POST", "/jobs/bulk/cancel", {"dryRun": "yes"}, ALICE).status == 422
    assert app.api("POST", "/jobs/bulk/cancel", {"dryRun": True}).status == 401


def test_a_users_bulk_operation_acts_on_nothing_of_another_user(app: LocalApp, clock: Clock) -> None:
    alices = failed_jobs(3, "alice")
    bobs = failed_jobs(2, "bob")
    started = app.api("POST", "/jobs/bulk/cancel", {}, BOB)
    assert started.status == 202
    app.drain()
    done = operation(app, started.body["operationId"], BOB)
    assert (done["matched"], done["processed"], done["failed"]) == (2, 2, 0)
    assert all(job_of(app, j, BOB)["status"] == "CANCELLED" for j in bobs)
    assert all(job_of(app, j)["status"] == "FAILED" for j in alices)
    # nor may anyone read another's operation; an admin names its requester with ?owner=
    assert app.api("GET", f"/jobs/bulk/{started.body['operationId']}", claims=ALICE).status == 404
    assert operation(app, started.body["operationId"] + "?owner=bob", ADMIN)["processed"] == 2
    # a system.bulk job enqueued by hand names no operation of its own: it fails, touching nothing
    forged = app.api(
        "POST",
        "/jobs",
        {"type": "system.bulk", "payload": {"operationId": started.body["operationId"]}},
        ALICE,
    )
    assert forged.status == 202
    app.drain()
    assert job_of(app, forged.body["jobId"])["status"] == "FAILED"
    assert job_of(app, forged.body["jobId"])["errorDetails"]["code"] == "NO_OPERATION"
    again = app.api(
        "POST", "/jobs", {"type": "system.bulk", "payload": {"operationId": started.body["operationId"]}}, BOB
    )  # Bob's own operation, by a job of his own: not the job that runs it
    app.drain()
    assert job_of(app, again.body["jobId"], BOB)["errorDetails"]["code"] == "NOT_ITS_JOB"
    assert all(job_of(app, j)["status"] == "FAILED" for j in alices)
    # an admin's operation covers every owner
    admin = app.api("POST", "/jobs/bulk/cancel", {"dryRun": True}, ADMIN)
    assert admin.body["matched"] == 5  # Alice's three and her forged job, Bob's second; his first are gone


def test_an_interrupted_bulk_job_resumes_from_its_cursor_and_retries_no_job_twice(
    app: LocalApp, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = failed_jobs(250, "alice")
    jobs = wiring.container().jobs
    original = jobs.retry
    calls = {"n": 0}

    def crashing(caller: Any, job_id: str) -> Job:
        retried = original(caller, job_id)  # the side effect happened...
        calls["n"] += 1
        if calls["n"] == 150:
            raise RuntimeError("the worker died before the operation recorded it")  # ...its record did not
        return retried

    monkeypatch.setattr(jobs, "retry", crashing)
    started = app.api("POST", "/jobs/bulk/retry", {}, ALICE)
    for _ in range(10):  # the crashed attempt is retried after the type's backoff
        app.drain()
        if operation(app, started.body["operationId"])["status"] == "COMPLETED":
            break
        clock.advance(60)
        let_sqs_timers_pass()
    assert calls["n"] >= 150
    bulk_job = job_of(app, started.body["jobId"])
    assert bulk_job["status"] == "COMPLETED" and bulk_job["attempts"] == 2  # one crash, one resume
    done = operation(app, started.body["operationId"])
    assert (done["status"], done["matched"], done["processed"], done["failed"]) == ("COMPLETED", 250, 250, 0)
    store = wiring.container().store
    wakes = {store.get(j).wake for j in ids}  # type: ignore[union-attr]
    assert wakes == {1}  # each job was retried exactly once
    assert all(store.get(j).status == JobStatus.COMPLETED for j in ids)  # type: ignore[union-attr]


def test_a_run_that_uses_up_its_time_budget_goes_on_in_its_next_attempt(
    app: LocalApp, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = failed_jobs(30, "alice")
    ticks = iter(range(0, 10_000, 50))  # every look at the clock: 50 s later
    monkeypatch.setattr(wiring.container().bulk, "clock", lambda: float(next(ticks)))
    started = app.api("POST", "/jobs/bulk/retry", {}, ALICE)
    for _ in range(30):
        app.drain()
        if operation(app, started.body["operationId"])["status"] == "COMPLETED":
            break
        let_sqs_timers_pass()
    done = operation(app, started.body["operationId"])
    assert (done["status"], done["matched"], done["processed"], done["failed"]) == ("COMPLETED", 30, 30, 0)
    assert job_of(app, started.body["jobId"])["attempts"] > 2  # one page per attempt here
    store = wiring.container().store
    assert {store.get(j).wake for j in ids} == {1}  # type: ignore[union-attr]
