"""Batch enqueue (JobService.enqueue_many, SqsJobQueue.send_batch, the limiter's cost) with no
network: each job answered as `enqueue` would answer it alone, plain jobs sent in batches before
they are recorded, the others through the single path."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from tarefa.adapters.sqs import BATCH_MAX_BYTES, SqsJobQueue
from tarefa.errors import (
    EncryptionUnavailableError,
    IdempotencyKeyReusedError,
    PayloadTooLargeError,
    QueueUnavailableError,
    UnknownJobTypeError,
    ValidationFailedError,
)
from tarefa.job import Job, JobStatus, Priority
from tarefa.jobs import Caller, Enqueued, EnqueueRequest, JobService
from tarefa.jobtypes import JobPolicy, JobType, default_registry
from tarefa.ratelimit import Rate, RateLimiter

from .fakes import Clock, EpochClock, MemoryCacheBackend, MemoryQueue, MemoryStore

ALICE = Caller("alice")
BOB = Caller("bob")


class SentFirstStore(MemoryStore):
    """Fails the test if a new job is recorded PENDING before its message was sent."""

    def __init__(self, queue: MemoryQueue) -> None:
        super().__init__()
        self.queue = queue

    def put(self, job: Job, expected_version: int | None) -> None:
        if expected_version is None and job.status == JobStatus.PENDING and not job.held:
            assert any(json.loads(body)["jobId"] == job.job_id for _, body, _ in self.queue.sent)
        super().put(job, expected_version)


class Secret(BaseModel):
    password: str


def service(
    queue: MemoryQueue | None = None, store: MemoryStore | None = None
) -> tuple[JobService, MemoryStore, MemoryQueue]:
    queue = queue or MemoryQueue()
    store = store or SentFirstStore(queue)
    registry = default_registry(True)
    registry.register(JobType("test.secret", Secret, lambda p, ctx: None, JobPolicy(sensitive=("password",))))
    return JobService(store, queue, registry, now=Clock(), sleep=lambda s: None), store, queue


def echo(payload: Any = None, **fields: Any) -> EnqueueRequest:
    return EnqueueRequest.model_validate({"type": "system.echo", "payload": payload, **fields})


def jobs_of(outcomes: list[Enqueued | Exception]) -> list[Job]:
    return [o.job for o in outcomes if isinstance(o, Enqueued)]


def test_a_batch_is_sent_in_one_call_per_priority_and_each_job_written_once_after_its_message() -> None:
    jobs, store, queue = service()
    requests = [echo(n, priority=("HIGH", "MEDIUM", "LOW")[n % 3]) for n in range(30)]
    outcomes = jobs.enqueue_many(ALICE, requests)
    assert all(isinstance(o, Enqueued) and o.created for o in outcomes)
    assert [o.job.payload for o in outcomes if isinstance(o, Enqueued)] == list(range(30))  # request order
    assert sorted(queue.batches) == [(Priority.HIGH, 10), (Priority.LOW, 10), (Priority.MEDIUM, 10)]
    assert store.writes == 30 and len(queue.sent) == 30
    assert {j.status for j in store.jobs.values()} == {JobStatus.PENDING}


def test_a_batched_job_is_the_job_enqueue_makes() -> None:
    jobs, _, queue = service()
    single = jobs.enqueue(ALICE, echo({"a": 1}, maxAttempts=5, orderId="o-1", delaySeconds=30)).job
    (many,) = jobs_of(
        jobs.enqueue_many(ALICE, [echo({"a": 1}, maxAttempts=5, orderId="o-1", delaySeconds=30)])
    )
    different = {"job_id", "created_at", "updated_at", "run_at"}
    assert many.model_dump(exclude=different) == single.model_dump(exclude=different)
    (_, body, delay) = queue.sent[-1]
    assert (
        delay == 30 and json.loads(body)["jobId"] == many.job_id and json.loads(body)["payload"] == {"a": 1}
    )


def test_one_bad_item_never_sinks_the_others_and_gets_the_error_enqueue_raises() -> None:
    jobs, store, _ = service()
    outcomes = jobs.enqueue_many(
        ALICE,
        [
            echo(1),
            EnqueueRequest(type="no.such.type"),
            EnqueueRequest(type="system.fail", payload={"failTimes": -1}),
            echo("x" * 270_000),
            echo(5),
        ],
    )
    assert isinstance(outcomes[1], UnknownJobTypeError)
    assert isinstance(outcomes[2], ValidationFailedError)
    assert outcomes[2].details == [
        {"field": "payload.failTimes", "message": "Input should be greater than or equal to 0"}
    ]
    assert isinstance(outcomes[3], PayloadTooLargeError)
    assert [j.payload for j in jobs_of(outcomes)] == [1, 5]
    assert len(store.jobs) == 2


def test_keys_per_item_an_existing_job_is_the_answer_and_a_reuse_with_another_body_is_refused() -> None:
    jobs, store, queue = service()
    first = jobs.enqueue(ALICE, echo(1, idempotencyKey="k1")).job
    outcomes = jobs.enqueue_many(
        ALICE,
        [
            echo(1, idempotencyKey="k1"),  # the same request again
            echo(2, idempotencyKey="k1"),  # another body
            echo(3, idempotencyKey="k2"),
            echo(3, idempotencyKey="k2"),  # twice in the batch: one job
            echo(4, idempotencyKey="k2"),  # twice, another body
        ],
    )
    assert isinstance(outcomes[0], Enqueued) and (outcomes[0].job.job_id, outcomes[0].created) == (
        first.job_id,
        False,
    )
    assert isinstance(outcomes[1], IdempotencyKeyReusedError)
    assert isinstance(outcomes[2], Enqueued) and outcomes[2].created
    assert isinstance(outcomes[3], Enqueued) and (outcomes[3].job.job_id, outcomes[3].created) == (
        outcomes[2].job.job_id,
        False,
    )
    assert isinstance(outcomes[4], IdempotencyKeyReusedError)
    assert len(store.jobs) == 2 and len(queue.sent) == 2  # no orphan message either


def test_keys_are_per_user() -> None:
    jobs, store, _ = service()
    (alices,) = jobs_of(jobs.enqueue_many(ALICE, [echo(1, idempotencyKey="same")]))
    (bobs,) = jobs_of(jobs.enqueue_many(BOB, [echo(2, idempotencyKey="same")]))
    assert alices.job_id != bobs.job_id and (alices.user_id, bobs.user_id) == ("alice", "bob")
    assert len(store.jobs) == 2


def test_an_entry_sqs_refused_is_failed_enqueue_failed_and_named_as_the_single_path_does() -> None:
    queue = MemoryQueue(refuse=lambda body: json.loads(body)["payload"] in (2, 3))
    jobs, store, _ = service(queue)
    outcomes = jobs.enqueue_many(ALICE, [echo(1), echo(2), echo(3, idempotencyKey="k"), echo(4)])
    unkeyed, keyed = outcomes[1], outcomes[2]
    # Without a key: recorded FAILED (ENQUEUE_FAILED), retryable, and the error names it
    assert isinstance(unkeyed, QueueUnavailableError) and isinstance(unkeyed.details, dict)
    failed = store.jobs[unkeyed.details["jobId"]]
    assert failed.status == JobStatus.FAILED and failed.error_details == {
        "code": "ENQUEUE_FAILED",
        "exception": "RuntimeError",
    }
    # With a key: nothing written, retry with the same key
    assert isinstance(keyed, QueueUnavailableError) and "same idempotency key" in keyed.message
    assert isinstance(keyed.details, dict) and keyed.details["jobId"] not in store.jobs
    assert [j.payload for j in jobs_of(outcomes)] == [1, 4]
    assert len(store.jobs) == 3


def test_when_sqs_is_down_every_job_of_the_batch_is_accounted_for() -> None:
    jobs, store, _ = service(MemoryQueue(fail_sends=True))
    outcomes = jobs.enqueue_many(ALICE, [echo(n) for n in range(12)])
    assert all(isinstance(o, QueueUnavailableError) for o in outcomes)
    named = {
        o.details["jobId"]
        for o in outcomes
        if isinstance(o, QueueUnavailableError) and isinstance(o.details, dict)
    }
    assert named == set(store.jobs) and len(named) == 12
    assert {j.status for j in store.jobs.values()} == {JobStatus.FAILED}


def test_held_and_sensitive_jobs_take_the_single_path() -> None:
    jobs, store, queue = service()
    outcomes = jobs.enqueue_many(
        ALICE,
        [echo(1), echo(2, delaySeconds=3600), EnqueueRequest(type="test.secret", payload={"password": "pw"})],
    )
    assert queue.batches == [(Priority.MEDIUM, 1)]  # only the plain job rides the batch
    held = outcomes[1]
    assert isinstance(held, Enqueued) and held.job.held and held.job.job_id in store.jobs
    # The single path's refusal: no key seals sensitive fields here (nothing stored or sent)
    assert isinstance(outcomes[2], EncryptionUnavailableError)
    assert len(queue.sent) == 1 and len(store.jobs) == 2


def test_a_record_write_that_fails_leaves_the_job_to_the_worker_as_the_single_path_does() -> None:
    class Flaky(SentFirstStore):
        def put(self, job: Job, expected_version: int | None) -> None:
            if job.payload == 2:
                raise RuntimeError("DynamoDB is down")
            super().put(job, expected_version)

    queue = MemoryQueue()
    jobs, store, _ = service(queue, Flaky(queue))
    outcomes = jobs.enqueue_many(ALICE, [echo(1), echo(2)])
    assert all(isinstance(o, Enqueued) and o.created for o in outcomes)
    assert len(queue.sent) == 2 and len(store.jobs) == 1  # its message carries what the record needs


# -- SqsJobQueue.send_batch ----------------------------------------------------------------------
class StubSqs:
    """send_message_batch as SQS answers it, failing the entries `fail` names."""

    def __init__(
        self, fail: dict[str, tuple[str, bool]] | None = None, raises: Exception | None = None
    ) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail or {}  # body -> (code, sender fault); each fails once when not a sender fault
        self.raises = raises

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        assert len(Entries) <= 10 and sum(len(e["MessageBody"].encode()) for e in Entries) <= BATCH_MAX_BYTES
        if self.raises is not None:
            raise self.raises
        ok, failed = [], []
        for entry in Entries:
            if entry["MessageBody"] in self.fail:
                code, sender = self.fail[entry["MessageBody"]]
                if not sender:
                    del self.fail[entry["MessageBody"]]  # SQS's own failure: the next try works
                failed.append({"Id": entry["Id"], "SenderFault": sender, "Code": code, "Message": "no"})
            else:
                ok.append({"Id": entry["Id"], "MessageId": f"m-{entry['MessageBody']}"})
        return {"Successful": ok, "Failed": failed}


def sqs_queue(client: StubSqs) -> SqsJobQueue:
    urls = {p: f"https://sqs/{p.lower()}" for p in Priority}
    return SqsJobQueue(client, urls, urls, group_of=lambda body: f"g-{json.loads(body)['n'] % 2}")  # type: ignore[arg-type]


def body(n: int, size: int = 0) -> str:
    return json.dumps({"n": n, "pad": "x" * size})


def test_send_batch_sends_ten_a_call_with_each_messages_group_and_delay() -> None:
    client = StubSqs()
    messages = [(body(n), n) for n in range(25)]
    ids = sqs_queue(client).send_batch(Priority.HIGH, messages)
    assert ids == [f"m-{b}" for b, _ in messages]
    assert [len(c) for c in client.calls] == [10, 10, 5]
    first = client.calls[0][3]
    assert (first["MessageGroupId"], first["DelaySeconds"]) == ("g-1", 3)


def test_send_batch_cuts_a_call_before_its_bodies_pass_sqss_size_limit() -> None:
    client = StubSqs()
    big = 100_000
    ids = sqs_queue(client).send_batch(Priority.LOW, [(body(n, big), 0) for n in range(5)])
    assert all(isinstance(i, str) for i in ids)
    assert [len(c) for c in client.calls] == [2, 2, 1]


def test_send_batch_tries_sqss_own_failures_again_and_reports_the_senders() -> None:
    client = StubSqs({body(1): ("InternalError", False), body(2): ("InvalidMessageContents", True)})
    ids = sqs_queue(client).send_batch(Priority.MEDIUM, [(body(n), 0) for n in range(4)])
    assert ids[0] == f"m-{body(0)}" and ids[1] == f"m-{body(1)}" and ids[3] == f"m-{body(3)}"
    refused = ids[2]
    assert type(refused).__name__ == "ClientError" and "InvalidMessageContents" in str(refused)
    assert [len(c) for c in client.calls] == [4, 1]  # one more call, for the entry SQS failed on


def test_send_batch_gives_every_entry_of_a_call_that_raised_its_error() -> None:
    lost = TimeoutError("read timeout")
    ids = sqs_queue(StubSqs(raises=lost)).send_batch(Priority.HIGH, [(body(n), 0) for n in range(12)])
    assert ids == [lost] * 12


# -- the limiter counts a batch as its jobs ------------------------------------------------------
def test_a_hit_of_cost_n_counts_n_or_nothing() -> None:
    clock = EpochClock(1_000_000.0)
    limiter = RateLimiter(MemoryCacheBackend(clock), clock=clock)
    rate = Rate(10, 60)
    first = limiter.hit("POST /jobs", "user:alice", rate, cost=7)
    assert (first.allowed, first.remaining) == (True, 3)
    refused = limiter.hit("POST /jobs", "user:alice", rate, cost=4)
    assert (refused.allowed, refused.remaining) == (False, 3)  # nothing counted
    assert limiter.hit("POST /jobs", "user:alice", rate, cost=3).remaining == 0
    assert not limiter.hit("POST /jobs", "user:alice", rate).allowed
    clock.advance(61)
    assert limiter.hit("POST /jobs", "user:alice", rate, cost=10).allowed


def test_the_single_path_is_unchanged_by_the_prepare_step() -> None:
    jobs, store, queue = service()
    job = jobs.enqueue(ALICE, echo({"x": 1})).job
    assert store.writes == 1 and len(queue.sent) == 1 and queue.batches == []
    assert isinstance(job.created_at, datetime) and job.user_id == "alice"
