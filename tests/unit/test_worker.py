"""The worker's decisions, with in-memory ports: no AWS, no network."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from tarefa.breaker import GuardedBackend
from tarefa.job import Job, JobStatus, Priority
from tarefa.jobtypes import JobPolicy, JobType, JobTypeRegistry, default_registry
from tarefa.ports import QueueMessageRef
from tarefa.ratelimit import Rate, RateLimiter
from tarefa.worker import DONE, Worker

from .fakes import Clock, MemoryCacheBackend, MemoryQueue, MemoryStore


@pytest.fixture
def parts() -> tuple[Worker, MemoryStore, MemoryQueue, Clock]:
    store, queue, clock = MemoryStore(), MemoryQueue(), Clock()
    worker = Worker(
        store, queue, default_registry(test_jobs=True), max_receive_count=30, lease_seconds=120, now=clock
    )
    return worker, store, queue, clock


def ref(receive_count: int = 1) -> QueueMessageRef:
    return QueueMessageRef(Priority.MEDIUM, "rh", "msg-1", receive_count)


def pending(
    store: MemoryStore, job_type: str = "system.echo", payload: object = None, **extra: object
) -> Job:
    job = Job.model_validate({"job_id": "j1", "type": job_type, "payload": payload, **extra})
    store.put(job, None)
    return job


def running(store: MemoryStore, job: Job, clock: Clock) -> None:
    """The job as a worker left it after claiming attempt 1 (and, maybe, dying)."""
    store.put(
        job.transition(JobStatus.PROCESSING, clock(), attempts=1, processing_started_at=clock()), job.version
    )


def body(job_type: str = "system.echo") -> str:
    return json.dumps({"jobId": "j1", "type": job_type})


def test_success_costs_two_writes_and_deletes_the_message(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, queue, _ = parts
    pending(store, payload={"a": 1})
    store.writes = 0
    assert worker.process(body(), ref()) == DONE
    assert store.jobs["j1"].status == JobStatus.COMPLETED
    assert store.writes == 2  # claim + complete
    assert queue.sent == [] and queue.visibility == []


def test_retryable_failure_hides_the_message_for_the_backoff(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, queue, _ = parts
    pending(store, "system.fail", {"failTimes": 1}, retry_delay_seconds=30)
    outcome = worker.process(body("system.fail"), ref())
    assert outcome.visible_again_in is not None and 27 <= outcome.visible_again_in <= 33
    assert queue.visibility == [("rh", outcome.visible_again_in)]
    assert store.jobs["j1"].status == JobStatus.RETRYING


def test_early_arrival_waits_for_the_retry_time(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, _, clock = parts
    pending(store, "system.fail", {"failTimes": 1}, retry_delay_seconds=100)
    worker.process(body("system.fail"), ref())
    clock.advance(10)
    outcome = worker.process(body("system.fail"), ref(2))  # a duplicate shows up early
    assert outcome.visible_again_in is not None and outcome.visible_again_in >= 80
    assert store.jobs["j1"].attempts == 1


def test_at_the_receive_limit_a_retry_is_requeued_instead_of_dead_lettered(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, queue, _ = parts
    pending(store, "system.fail", {"failTimes": 1}, retry_delay_seconds=5)
    assert worker.process(body("system.fail"), ref(receive_count=30)) == DONE
    assert len(queue.sent) == 1 and queue.sent[0][2] in range(4, 7)
    assert store.jobs["j1"].status == JobStatus.RETRYING


def test_long_retry_past_the_receive_limit_is_held_in_the_table(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, queue, _ = parts
    pending(store, "system.fail", {"failTimes": 1}, retry_delay_seconds=3600)
    assert worker.process(body("system.fail"), ref(receive_count=30)) == DONE
    assert queue.sent == []
    assert store.jobs["j1"].held is True


def test_a_live_lease_is_never_run_twice(parts: tuple[Worker, MemoryStore, MemoryQueue, Clock]) -> None:
    worker, store, _, clock = parts
    running(store, pending(store), clock)
    outcome = worker.process(body(), ref(2))
    assert outcome.visible_again_in is not None and outcome.visible_again_in > 100
    assert store.jobs["j1"].status == JobStatus.PROCESSING


def test_a_dead_workers_lease_is_taken_over_without_using_an_attempt(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, _, clock = parts
    running(store, pending(store), clock)
    clock.advance(121)
    assert worker.process(body(), ref(2)) == DONE
    job = store.jobs["j1"]
    assert job.status == JobStatus.COMPLETED
    # The attempt whose worker died is given back: only the handler's own failures count.
    assert (job.attempts, job.crashes) == (1, 1)


def test_a_crash_on_the_last_attempt_runs_the_job_again(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, _, clock = parts
    running(store, pending(store, max_attempts=1), clock)
    clock.advance(121)
    assert worker.process(body(), ref(2)) == DONE
    assert store.jobs["j1"].status == JobStatus.COMPLETED


def test_a_job_whose_workers_keep_dying_fails_with_worker_crashed(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    from tarefa.job import MAX_CRASHES

    worker, store, _, clock = parts
    job = pending(store, max_attempts=5)
    job = store.jobs["j1"].model_copy(update={"crashes": MAX_CRASHES - 1})
    store.jobs["j1"] = job
    running(store, job, clock)
    clock.advance(121)
    assert worker.process(body(), ref(2)) == DONE
    failed = store.jobs["j1"]
    assert failed.status == JobStatus.FAILED
    assert failed.error_details is not None and failed.error_details["code"] == "WORKER_CRASHED"


def test_not_enough_time_left_returns_the_message_at_once(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    worker, store, _queue, _ = parts
    pending(store)
    assert worker.process(body(), ref(), remaining_seconds=5).visible_again_in == 0
    assert store.jobs["j1"].status == JobStatus.PENDING


def test_handler_returning_something_that_is_not_json_fails_permanently(
    parts: tuple[Worker, MemoryStore, MemoryQueue, Clock],
) -> None:
    from tarefa.jobtypes import EchoPayload, JobType

    worker, store, _, _ = parts
    worker.registry.register(JobType("odd", EchoPayload, lambda payload, ctx: object()))
    pending(store, "odd", 1)
    assert worker.process(body("odd"), ref()) == DONE
    assert store.jobs["j1"].status == JobStatus.FAILED


# -- per-key rates (seed 003: 80 messages a minute per WhatsApp session) ------------------------


class SendPayload(BaseModel):
    session: str
    text: str


def throttled_worker() -> tuple[Worker, MemoryStore, MemoryQueue, MemoryCacheBackend, list[str]]:
    sent: list[str] = []
    registry = JobTypeRegistry()
    registry.register(
        JobType(
            "whatsapp.send",
            SendPayload,
            lambda p, ctx: sent.append(p.text),
            JobPolicy(rate=Rate(2, 60), rate_key=lambda payload: payload.session),  # validated
        )
    )
    store, queue, clock = MemoryStore(), MemoryQueue(), Clock()
    backend = MemoryCacheBackend(lambda: clock().timestamp())
    limiter = RateLimiter(GuardedBackend(backend), clock=lambda: clock().timestamp())
    worker = Worker(store, queue, registry, 30, 120, now=clock, limiter=limiter)
    return worker, store, queue, backend, sent


def send_job(store: MemoryStore, job_id: str, session: str) -> str:
    payload = {"session": session, "text": job_id}
    store.put(Job.model_validate({"job_id": job_id, "type": "whatsapp.send", "payload": payload}), None)
    return json.dumps({"jobId": job_id, "type": "whatsapp.send"})


def test_a_job_over_its_rate_waits_in_the_queue_instead_of_failing() -> None:
    worker, store, queue, _, sent = throttled_worker()
    # Given three messages for one session and a rate of 2 a minute
    bodies = [send_job(store, f"j{n}", "session-1") for n in range(3)]
    # When the worker takes them, the third is put back for the rest of the window
    outcomes = [worker.process(b, ref()) for b in bodies]
    assert outcomes[:2] == [DONE, DONE]
    assert outcomes[2].visible_again_in is not None and 1 <= outcomes[2].visible_again_in <= 60
    assert sent == ["j0", "j1"]
    # Then it has not used an attempt, and another session is not held back
    assert (store.jobs["j2"].status, store.jobs["j2"].attempts) == (JobStatus.PENDING, 0)
    assert worker.process(send_job(store, "j3", "session-2"), ref()) == DONE
    assert queue.visibility == [("rh", outcomes[2].visible_again_in)]


def test_a_rate_limiter_outage_never_holds_jobs_back() -> None:
    worker, store, _, backend, sent = throttled_worker()
    backend.down = True
    assert [worker.process(send_job(store, f"j{n}", "s"), ref()) for n in range(3)] == [DONE] * 3
    assert sent == ["j0", "j1", "j2"]
