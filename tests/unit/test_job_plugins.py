"""Declaring job types where a workload lives, loading them, and the context their handlers get."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import tarefa
from tarefa import JobContext, JobPolicy, PermanentJobError, RetryableJobError, RetryLater
from tarefa.context import JobServices, ServiceUnavailableError
from tarefa.errors import UnknownJobTypeError
from tarefa.job import Job, JobStatus, Priority
from tarefa.jobs import Caller, EnqueueRequest, JobService
from tarefa.jobtypes import JobType, JobTypeError, JobTypeRegistry, default_registry
from tarefa.ports import QueueMessageRef
from tarefa.worker import DONE, MAX_JOB_ITEM_BYTES, Worker

from .fakes import Clock, MemoryQueue, MemoryStore

SAMPLES = "tests.unit.workload_samples"


class Order(BaseModel):
    order_id: str
    amount_cents: int


# -- the public face ---------------------------------------------------------------------------
def test_the_public_face_is_small_and_lazy() -> None:
    assert set(tarefa.__all__) >= {
        "job_type",
        "JobContext",
        "JobPolicy",
        "RetryableJobError",
        "PermanentJobError",
    }
    for name in tarefa.__all__:
        assert getattr(tarefa, name) is not None
    with pytest.raises(AttributeError):
        _ = tarefa.not_a_public_name


# -- the decorator and the registry ----------------------------------------------------------------
def test_the_decorator_takes_the_payload_model_from_the_annotation() -> None:
    registry = JobTypeRegistry()

    @registry.job_type("shop.charge", policy=JobPolicy(priority=Priority.HIGH), aliases=["SHOP_CHARGE"])
    def charge(payload: Order, ctx: JobContext) -> dict[str, Any]:
        return {"charged": payload.amount_cents}

    declared = registry.get("shop.charge")
    assert declared.payload_model is Order and declared.handler is charge
    assert registry.get("SHOP_CHARGE") is declared  # an alias answers with the canonical type
    assert registry.names() == ["shop.charge"]
    described = declared.describe()
    assert described["name"] == "shop.charge" and described["aliases"] == ["SHOP_CHARGE"]
    assert described["priority"] == "HIGH" and described["maxAttempts"] == 3
    assert described["payloadSchema"]["required"] == ["order_id", "amount_cents"]


def test_duplicate_names_and_aliases_are_refused_at_declaration() -> None:
    registry = JobTypeRegistry()

    @registry.job_type("a.one", aliases=["ONE"])
    def one(payload: Order, ctx: JobContext) -> None: ...

    with pytest.raises(JobTypeError, match=r"already taken by 'a\.one'"):

        @registry.job_type("a.one")
        def again(payload: Order, ctx: JobContext) -> None: ...

    with pytest.raises(JobTypeError, match="'ONE' is already taken"):

        @registry.job_type("a.two", aliases=["ONE"])
        def two(payload: Order, ctx: JobContext) -> None: ...

    assert registry.names() == ["a.one"]  # a refused type leaves nothing half-registered


@pytest.mark.parametrize(
    "handler",
    [
        lambda payload, ctx: None,  # no annotation
        lambda payload: None,  # no context parameter
    ],
)
def test_a_handler_without_a_payload_model_is_refused(handler: Any) -> None:
    with pytest.raises(JobTypeError, match=r"job type 'x\.y'"):
        JobTypeRegistry().job_type("x.y")(handler)


def test_a_payload_model_can_be_given_explicitly() -> None:
    registry = JobTypeRegistry()
    registry.job_type("x.y", payload_model=Order)(lambda payload, ctx: None)
    assert registry.get("x.y").payload_model is Order


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 26}, "max_attempts"),
        ({"timeout_seconds": 901}, "timeout_seconds"),
        ({"backoff": ()}, "backoff"),
        ({"backoff": (60, 50_000)}, "backoff"),
    ],
)
def test_impossible_policies_are_refused(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(JobTypeError, match=message):
        JobPolicy(**policy)


def test_bad_names_are_refused() -> None:
    with pytest.raises(JobTypeError, match="must match"):
        JobTypeRegistry().register(JobType("has spaces", Order, lambda p, c: None))


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownJobTypeError) as caught:
        default_registry(test_jobs=True).get("nope")
    assert caught.value.details == {"knownTypes": ["system.echo", "system.fail", "webhook.delivery"]}
    assert "known types: system.echo, system.fail, webhook.delivery" in caught.value.message


# -- loading modules ---------------------------------------------------------------------------
def test_modules_named_in_the_setting_add_their_types() -> None:
    registry = default_registry(test_jobs=False, modules=[f"{SAMPLES}.good"])
    assert registry.names() == ["samples.ping", "system.echo", "webhook.delivery"]
    assert registry.get("SAMPLES_PING").name == "samples.ping"


def test_a_package_brings_the_types_of_its_submodules() -> None:
    registry = default_registry(test_jobs=False, modules=[f"{SAMPLES}.good"])
    again = default_registry(test_jobs=False, modules=[SAMPLES])  # the package holds good (and slow)
    assert "samples.ping" in again.names() and registry.names() == [
        "samples.ping",
        "system.echo",
        "webhook.delivery",
    ]


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("no_such_workload_module", "cannot import 'no_such_workload_module': ModuleNotFoundError"),
        (f"{SAMPLES}.broken", "broken on purpose"),
        (f"{SAMPLES}.empty", "declares no job type"),
    ],
)
def test_a_module_that_cannot_load_is_a_clear_start_up_error(module: str, message: str) -> None:
    with pytest.raises(JobTypeError, match=message) as caught:
        default_registry(test_jobs=False, modules=[module])
    assert "TAREFA_JOB_MODULES" in str(caught.value)


def test_a_timeout_above_the_workers_is_refused_at_start_up() -> None:
    registry = default_registry(test_jobs=False, modules=[f"{SAMPLES}.slow"])
    with pytest.raises(
        JobTypeError, match=r"'samples.slow' .* timeout_seconds=600, above the worker's 120 s"
    ):
        registry.check_timeouts(120)
    registry.check_timeouts(900)


# -- the context -------------------------------------------------------------------------------
def test_step_keys_are_stable_per_job_and_step_and_differ_otherwise() -> None:
    first = JobContext("job-1", 1, 3, "alice")
    later = JobContext("job-1", 3, 3, "alice")
    other = JobContext("job-2", 1, 3, "alice")
    assert first.step_key("charge") == later.step_key("charge")  # every attempt: one key
    assert first.idempotency_key == later.idempotency_key
    assert len({first.step_key("charge"), first.step_key("refund"), other.step_key("charge")}) == 3
    assert len(first.step_key("charge")) == 36  # a UUID: fits every provider's key field


def test_once_runs_a_step_once_and_returns_its_record_on_later_attempts() -> None:
    store, calls = MemoryStore(), []

    def charge() -> dict[str, str]:
        calls.append(1)
        return {"paymentId": f"p-{len(calls)}"}

    services = JobServices(steps=store)
    first = JobContext("job-1", 1, 3, None, services=services).once("charge", charge)
    second = JobContext("job-1", 2, 3, None, services=services).once("charge", charge)
    assert first == second == {"paymentId": "p-1"} and len(calls) == 1
    # Another step, or another job, runs its own
    JobContext("job-1", 2, 3, None, services=services).once("refund", charge)
    JobContext("job-2", 1, 3, None, services=services).once("charge", charge)
    assert len(calls) == 3


def test_once_returns_json_the_same_way_on_every_attempt() -> None:
    store = MemoryStore()
    services = JobServices(steps=store)
    made = JobContext("j", 1, 3, None, services=services).once(
        "s", lambda: Order(order_id="o", amount_cents=5)
    )
    again = JobContext("j", 2, 3, None, services=services).once("s", lambda: None)
    assert made == again == {"order_id": "o", "amount_cents": 5}


def test_once_refuses_what_cannot_be_recorded() -> None:
    services = JobServices(steps=MemoryStore())
    with pytest.raises(PermanentJobError) as not_json:
        JobContext("j", 1, 3, None, services=services).once("s", object)
    assert not_json.value.code == "STEP_NOT_JSON"
    with pytest.raises(PermanentJobError) as too_large:
        JobContext("j", 1, 3, None, services=services).once("big", lambda: "x" * 400_000)
    assert too_large.value.code == "RESULT_TOO_LARGE"


def test_a_failing_step_is_not_recorded_and_runs_again() -> None:
    store, calls = MemoryStore(), []

    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RetryableJobError("provider down")
        return 7

    services = JobServices(steps=store)
    with pytest.raises(RetryableJobError):
        JobContext("j", 1, 3, None, services=services).once("s", flaky)
    assert JobContext("j", 2, 3, None, services=services).once("s", flaky) == 7


def test_services_a_deployment_lacks_say_so() -> None:
    ctx = JobContext("j", 1, 3, None)
    with pytest.raises(ServiceUnavailableError, match="HTTP"):
        _ = ctx.http
    with pytest.raises(ServiceUnavailableError, match="secrets"):
        ctx.secret("x")
    with pytest.raises(ServiceUnavailableError, match="step store"):
        ctx.once("s", lambda: 1)
    assert ctx.cache is None and ctx.limiter is None


def test_progress_is_checked_and_rounded() -> None:
    seen: list[tuple[int, str | None]] = []
    ctx = JobContext("j", 1, 3, None, report_progress=lambda p, m: seen.append((p, m)))
    ctx.progress(33.4, "a third")
    ctx.progress(100, "x" * 500)
    assert seen[0] == (33, "a third") and len(seen[1][1] or "") == 200
    with pytest.raises(ValueError, match=r"0\.\.100"):
        ctx.progress(101)


# -- the worker with declared types ------------------------------------------------------------
def plugin_worker(
    registry: JobTypeRegistry, store: MemoryStore | None = None
) -> tuple[Worker, MemoryStore, MemoryQueue, Clock]:
    store, queue, clock = store or MemoryStore(), MemoryQueue(), Clock()
    jobs = JobService(store, queue, registry, now=clock)
    services = JobServices(steps=store, enqueue=jobs.enqueue_for)
    worker = Worker(store, queue, registry, 30, 120, now=clock, services=services, sleep=lambda s: None)
    return worker, store, queue, clock


def ref(receive_count: int = 1) -> QueueMessageRef:
    return QueueMessageRef(Priority.MEDIUM, "rh", "msg-1", receive_count)


def pending(store: MemoryStore, job_type: str, payload: Any, **extra: Any) -> str:
    store.put(
        Job.model_validate(
            {"job_id": "j1", "type": job_type, "payload": payload, "user_id": "alice", **extra}
        ),
        None,
    )
    return json.dumps({"jobId": "j1", "type": job_type})


def test_progress_is_stored_on_the_job_and_the_outcome_still_lands() -> None:
    registry = JobTypeRegistry()

    @registry.job_type("p.steps")
    def steps(payload: Order, ctx: JobContext) -> str:
        ctx.progress(50, "half way")
        ctx.progress(90, "nearly")
        return "done"

    worker, store, _, _ = plugin_worker(registry)
    assert worker.process(pending(store, "p.steps", {"order_id": "o", "amount_cents": 1}), ref()) == DONE
    job = store.jobs["j1"]
    assert job.status == JobStatus.COMPLETED and job.result == "done"
    assert job.progress is not None and (job.progress["percent"], job.progress["message"]) == (90, "nearly")


def test_retry_after_replaces_the_backoff() -> None:
    registry = JobTypeRegistry()

    @registry.job_type("p.limited")
    def limited(payload: Order, ctx: JobContext) -> None:
        raise RetryableJobError("429 from the provider", retry_after=7)

    worker, store, _, _ = plugin_worker(registry)
    outcome = worker.process(pending(store, "p.limited", {"order_id": "o", "amount_cents": 1}), ref())
    assert outcome.visible_again_in == 7
    assert store.jobs["j1"].status == JobStatus.RETRYING and store.jobs["j1"].attempts == 1


def test_retry_later_waits_without_a_failure_and_ends_on_the_last_attempt() -> None:
    registry = JobTypeRegistry()

    @registry.job_type("p.poll", policy=JobPolicy(max_attempts=2))
    def poll(payload: Order, ctx: JobContext) -> None:
        raise RetryLater(60, "not paid yet")

    worker, store, _, clock = plugin_worker(registry)
    body = pending(store, "p.poll", {"order_id": "o", "amount_cents": 1}, max_attempts=2)
    assert worker.process(body, ref()).visible_again_in == 60
    waiting = store.jobs["j1"]
    assert waiting.status == JobStatus.RETRYING and waiting.error is None
    assert waiting.error_details == {"code": "WAITING", "reason": "not paid yet"}
    clock.advance(61)
    assert worker.process(body, ref(2)) == DONE
    ended = store.jobs["j1"]
    assert ended.status == JobStatus.FAILED and ended.error_details is not None
    assert ended.error_details["code"] == "ATTEMPTS_EXHAUSTED" and "not paid yet after 2 attempts" in (
        ended.error or ""
    )


def test_a_permanent_error_carries_its_code() -> None:
    registry = JobTypeRegistry()

    @registry.job_type("p.bad")
    def bad(payload: Order, ctx: JobContext) -> None:
        raise PermanentJobError("card number in the payload", code="CARD_DATA")

    worker, store, _, _ = plugin_worker(registry)
    worker.process(pending(store, "p.bad", {"order_id": "o", "amount_cents": 1}), ref())
    assert (
        store.jobs["j1"].error_details is not None and store.jobs["j1"].error_details["code"] == "CARD_DATA"
    )


def test_a_result_too_large_for_the_job_item_fails_the_job_clearly() -> None:
    registry = JobTypeRegistry()

    @registry.job_type("p.huge")
    def huge(payload: Order, ctx: JobContext) -> str:
        return "x" * (MAX_JOB_ITEM_BYTES + 1)

    worker, store, _, _ = plugin_worker(registry)
    assert worker.process(pending(store, "p.huge", {"order_id": "o", "amount_cents": 1}), ref()) == DONE
    job = store.jobs["j1"]
    assert job.status == JobStatus.FAILED and job.result is None
    assert job.error_details is not None and job.error_details["code"] == "RESULT_TOO_LARGE"


def test_a_job_enqueues_its_follow_up_once_across_attempts() -> None:
    registry = default_registry(test_jobs=False)

    @registry.job_type("p.chain", policy=JobPolicy(max_attempts=3))
    def chain(payload: Order, ctx: JobContext) -> str:
        child = ctx.enqueue("system.echo", {"for": payload.order_id})
        if ctx.attempt == 1:
            raise RetryableJobError("crash after the enqueue")
        return child

    worker, store, _queue, clock = plugin_worker(registry)
    body = pending(store, "p.chain", {"order_id": "o-1", "amount_cents": 1})
    worker.process(body, ref())
    clock.advance(3600)
    worker.process(body, ref(2))
    parent = store.jobs["j1"]
    assert parent.status == JobStatus.COMPLETED
    children = [j for j in store.jobs.values() if j.type == "system.echo"]
    assert [c.job_id for c in children] == [parent.result]  # one child, whatever the attempts
    assert children[0].user_id == "alice" and children[0].payload == {"for": "o-1"}


def test_the_outcome_write_is_retried_then_kept_for_the_next_delivery() -> None:
    """The handler succeeded but DynamoDB refuses the COMPLETED write: the next delivery
    records the kept outcome instead of running the handler again."""
    registry = JobTypeRegistry()
    runs: list[int] = []

    @registry.job_type("p.side")
    def side(payload: Order, ctx: JobContext) -> int:
        runs.append(ctx.attempt)
        return 42

    class FlakyStore(MemoryStore):
        failing = 0

        def put(self, job: Job, expected_version: int | None) -> None:
            if job.status == JobStatus.COMPLETED and self.failing:
                self.failing -= 1
                raise ConnectionError("DynamoDB timed out")
            super().put(job, expected_version)

    store = FlakyStore()
    worker, _, _, clock = plugin_worker(registry, store)
    body = pending(store, "p.side", {"order_id": "o", "amount_cents": 1})
    store.failing = 4  # the first write and its three retries
    outcome = worker.process(body, ref())
    assert outcome.visible_again_in == 1 and store.jobs["j1"].status == JobStatus.PROCESSING
    clock.advance(2)
    assert worker.process(body, ref(2)) == DONE
    job = store.jobs["j1"]
    assert (job.status, job.result, job.attempts) == (JobStatus.COMPLETED, 42, 1)
    assert runs == [1]  # never run twice


def test_a_transient_outcome_write_failure_is_absorbed_within_the_invocation() -> None:
    registry = default_registry(test_jobs=False)

    class FlakyStore(MemoryStore):
        failing = 2

        def put(self, job: Job, expected_version: int | None) -> None:
            if job.status == JobStatus.COMPLETED and self.failing:
                self.failing -= 1
                raise ConnectionError("throttled")
            super().put(job, expected_version)

    store = FlakyStore()
    worker, _, _, _ = plugin_worker(registry, store)
    assert worker.process(pending(store, "system.echo", 5), ref()) == DONE
    assert store.jobs["j1"].status == JobStatus.COMPLETED


def test_a_claim_whose_answer_was_lost_still_runs_the_job() -> None:
    registry = default_registry(test_jobs=False)

    class LostAnswer(MemoryStore):
        lose = True

        def put(self, job: Job, expected_version: int | None) -> None:
            super().put(job, expected_version)
            if job.status == JobStatus.PROCESSING and self.lose:
                self.lose = False
                raise ConnectionError("the write went through, the answer did not")

    store = LostAnswer()
    worker, _, _, _ = plugin_worker(registry, store)
    assert worker.process(pending(store, "system.echo", 5), ref()) == DONE
    assert (store.jobs["j1"].status, store.jobs["j1"].attempts) == (JobStatus.COMPLETED, 1)


# -- waking a waiting job ----------------------------------------------------------------------
def test_run_now_wakes_a_waiting_job_and_its_old_message_goes_stale() -> None:
    registry = JobTypeRegistry()
    answers = iter([RetryLater(300), None])

    @registry.job_type("p.wait", policy=JobPolicy(max_attempts=5))
    def wait(payload: Order, ctx: JobContext) -> str:
        answer = next(answers)
        if answer is not None:
            raise answer
        return "paid"

    worker, store, queue, _ = plugin_worker(registry)
    jobs = JobService(store, queue, registry, now=worker.now)
    old = pending(store, "p.wait", {"order_id": "o", "amount_cents": 1})
    worker.process(old, ref())
    assert store.jobs["j1"].status is JobStatus.RETRYING
    assert jobs.run_now("j1") is True
    _, woken_body, delay = queue.sent[-1]
    assert delay == 0 and json.loads(woken_body)["wake"] == 1
    assert worker.process(woken_body, QueueMessageRef(Priority.MEDIUM, "rh2", "msg-2", 1)) == DONE
    assert str(store.jobs["j1"].status) == "COMPLETED"
    assert jobs.run_now("j1") is False  # nothing waits any more
    assert worker.process(old, ref(2)) == DONE  # the old message is dropped


def test_run_now_leaves_jobs_that_do_not_wait_alone() -> None:
    store, queue = MemoryStore(), MemoryQueue()
    jobs = JobService(store, queue, default_registry(test_jobs=False))
    job = jobs.enqueue(Caller("alice"), EnqueueRequest(type="system.echo", payload=1)).job
    assert jobs.run_now(job.job_id) is False and jobs.run_now("missing") is False


def test_an_alias_is_stored_under_the_canonical_name() -> None:
    registry = default_registry(test_jobs=False, modules=[f"{SAMPLES}.good"])
    store, queue = MemoryStore(), MemoryQueue()
    job = (
        JobService(store, queue, registry)
        .enqueue(Caller("alice"), EnqueueRequest(type="SAMPLES_PING", payload={"n": 1}))
        .job
    )
    assert job.type == "samples.ping" and json.loads(queue.sent[0][1])["type"] == "samples.ping"


def test_step_records_live_longer_than_a_job() -> None:
    from tarefa.context import STEP_RECORD_LIFETIME

    assert timedelta(days=7 + 2) <= STEP_RECORD_LIFETIME
