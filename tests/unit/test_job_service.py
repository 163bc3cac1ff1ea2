from __future__ import annotations

import pytest

from tarefa.errors import QueueUnavailableError, ValidationFailedError
from tarefa.job import JobStatus
from tarefa.jobs import Caller, EnqueueRequest, JobService
from tarefa.jobtypes import default_registry

from .fakes import Clock, MemoryQueue, MemoryStore

ALICE = Caller("alice")


def service(queue: MemoryQueue | None = None) -> tuple[JobService, MemoryStore, MemoryQueue]:
    store, queue = MemoryStore(), queue or MemoryQueue()
    return JobService(store, queue, default_registry(True), now=Clock()), store, queue


def test_enqueue_costs_one_write_and_one_send() -> None:
    jobs, store, queue = service()
    job = jobs.enqueue(ALICE, EnqueueRequest(type="system.echo", payload={"x": 1})).job
    assert store.writes == 1 and len(queue.sent) == 1
    assert job.status == JobStatus.PENDING and job.user_id == "alice"


def test_short_delays_ride_on_sqs_and_long_ones_are_held() -> None:
    jobs, _store, queue = service()
    jobs.enqueue(ALICE, EnqueueRequest(type="system.echo", delay_seconds=900))
    held = jobs.enqueue(ALICE, EnqueueRequest(type="system.echo", delay_seconds=901)).job
    assert [d for _, _, d in queue.sent] == [900]
    assert held.held is True


def test_policy_defaults_apply_when_the_request_is_silent() -> None:
    jobs, _, _ = service()
    job = jobs.enqueue(ALICE, EnqueueRequest(type="system.echo")).job
    assert (job.max_attempts, job.priority) == (3, "MEDIUM")


def test_invalid_payload_names_the_field() -> None:
    jobs, store, _ = service()
    with pytest.raises(ValidationFailedError) as raised:
        jobs.enqueue(ALICE, EnqueueRequest(type="system.fail", payload={"failTimes": -1}))
    details = raised.value.details
    assert isinstance(details, list) and details[0]["field"] == "payload.failTimes"
    assert store.jobs == {}


def test_sqs_outage_leaves_a_visible_failed_job_named_in_the_error() -> None:
    # The message goes first; when it fails, the job is recorded FAILED (never PENDING without a
    # message) and the 503 names it, so the client can find it and retry it.
    jobs, store, _ = service(MemoryQueue(fail_sends=True))
    with pytest.raises(QueueUnavailableError) as raised:
        jobs.enqueue(ALICE, EnqueueRequest(type="system.echo"))
    (job,) = store.jobs.values()
    assert job.status == JobStatus.FAILED
    assert job.error_details and job.error_details["code"] == "ENQUEUE_FAILED"
    assert raised.value.details == {"jobId": job.job_id}


def test_sqs_outage_with_a_key_writes_nothing_and_names_the_job() -> None:
    jobs, store, _ = service(MemoryQueue(fail_sends=True))
    with pytest.raises(QueueUnavailableError, match="same idempotency key") as raised:
        jobs.enqueue(ALICE, EnqueueRequest(type="system.echo", idempotency_key="k"))
    assert store.jobs == {} and isinstance(raised.value.details, dict) and "jobId" in raised.value.details
