"""Flow control on the real handlers against moto: per-key concurrency (a limit that holds across
invocations, and a slot a killed worker held coming back with its lease), unique while active
under 20 concurrent enqueues, a debounced burst that runs once with its last payload, a
never-quiet stream that still runs by its max wait, and every SQS send carrying its fair-queue
group. Time is the services' clock, moved by the tests; SQS timers are made to pass."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tarefa import wiring
from tarefa.flow import digest
from tarefa.job import utcnow
from tarefa.local.app import HttpResult, LocalApp, http_result
from tarefa.local.runtime import deliver, invoke

from .conftest import ALICE, BOB, Clock, job_of, let_sqs_timers_pass
from .flow_workload.jobs import RECORDER, Recorder, WorkerKilled

MODULES = "tests.integration.flow_workload"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


class OneRequestAtATime:
    """DynamoDB applies each request to an item atomically; moto, under threads, does not.
    Serialising requests restores that and nothing more: an enqueue's several requests still
    interleave with the other threads' (the race the conditional writes must settle)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name == "get_paginator":
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


class FrozenClock(Clock):
    """The services' time moves only when a test moves it (debounce compares seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.start = utcnow()

    def __call__(self) -> datetime:
        return self.start + self.offset


class Rig:
    def __init__(self, app: LocalApp, clock: Clock) -> None:
        self.app = app
        self.clock = clock
        worker = app.stack.functions["WorkerFunction"]
        self.worker = worker
        self.sources = {s.queue_logical_id: s for s in worker.sqs}
        self.copies = [app.new_handler(worker) for _ in range(RECORDER.max_depth)]

    def enqueue(self, type_name: str, claims: dict[str, Any] = ALICE, **payload: Any) -> HttpResult:
        return self.app.api("POST", "/jobs", {"type": type_name, "payload": payload}, claims)

    def job(self, type_name: str, claims: dict[str, Any] = ALICE, **payload: Any) -> str:
        answer = self.enqueue(type_name, claims, **payload)
        assert answer.status == 202, answer.body
        job_id: str = answer.body["jobId"]
        return job_id

    def nested_poll(self) -> None:
        """Another worker invocation (its own execution environment) while a handler runs."""
        source = self.sources["MediumQueue"]
        deliver(self.app.sqs, self.worker, self.copies[RECORDER.depth - 1], source)

    def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()

    def settle(self, job_ids: list[str], step: float = 1, rounds: int = 60) -> list[dict[str, Any]]:
        for _ in range(rounds):
            jobs = [job_of(self.app, j) for j in job_ids]
            if all(j["status"] in TERMINAL for j in jobs):
                return jobs
            self.later(step)
        raise AssertionError("jobs did not finish")


@pytest.fixture
def rig() -> Iterator[Rig]:
    RECORDER.__init__()  # type: ignore[misc]
    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), {"JobModules": MODULES})
        container = wiring.container()
        clock = FrozenClock()
        container.clock = clock
        # threads enqueue at once in one test: each DynamoDB request applied whole, as on AWS
        container.dynamodb = OneRequestAtATime(container.dynamodb)
        yield Rig(app, clock)
    wiring.reset()


# -- per-key concurrency -------------------------------------------------------------------------


def _overlapping_run(rig: Rig, type_name: str) -> list[dict[str, Any]]:
    """50 jobs on key a and 2 on key b; while a handler runs it starts another invocation
    (three deep), so up to four jobs would run at once without a limit."""
    ids = [rig.job(type_name, key="b", seq=n) for n in range(2)]
    ids += [rig.job(type_name, key="a", seq=n) for n in range(50)]
    RECORDER.nested = rig.nested_poll
    return rig.settle(ids)


def test_no_more_than_the_limit_of_one_key_run_at_once_and_all_complete(rig: Rig) -> None:
    # Given 52 jobs of a type with concurrency=2 per key, run by overlapping invocations
    jobs = _overlapping_run(rig, "flow.pair")
    # Then all completed, each in one attempt (waiting for a slot is not an attempt)
    assert {j["status"] for j in jobs} == {"COMPLETED"}
    assert {j["attempts"] for j in jobs} == {1}
    assert sorted(seq for t, k, seq in RECORDER.ran if k == "a") == list(range(50))
    # And never more than two of a key ran at once, while the limit was reached
    assert RECORDER.most["a"] == 2
    assert RECORDER.most["b"] <= 2
    assert RECORDER.running == {"a": 0, "b": 0}


def test_without_a_limit_the_same_run_overlaps_more(rig: Rig) -> None:
    # The control: the same overlapping invocations with no concurrency policy
    jobs = _overlapping_run(rig, "flow.free")
    assert {j["status"] for j in jobs} == {"COMPLETED"}
    assert RECORDER.most["a"] > 2


def test_a_slot_held_by_a_killed_worker_frees_itself_after_its_lease(rig: Rig) -> None:
    # Given a session:init whose worker is killed while it runs (its slot still held)
    killed = rig.job("flow.session", key="s1", kill=True)
    with pytest.raises(WorkerKilled):
        rig.app.drain()
    assert job_of(rig.app, killed)["status"] == "PROCESSING"
    # When a second one for the same session arrives before the slot's lease (60 s + 30 s) ends
    second = rig.job("flow.session", key="s1", seq=2)
    other = rig.job("flow.session", key="s2", seq=3)  # another session is not held up
    rig.later(1)
    rig.later(60)
    waiting = job_of(rig.app, second)
    # Then it waits, unclaimed, its attempts untouched
    assert (waiting["status"], waiting["attempts"]) == ("PENDING", 0)
    assert job_of(rig.app, other)["status"] == "COMPLETED"
    # And once the lease is over it runs, while the killed job is still PROCESSING
    rig.later(30)
    done = job_of(rig.app, second)
    assert (done["status"], done["attempts"]) == ("COMPLETED", 1)
    assert job_of(rig.app, killed)["status"] == "PROCESSING"
    # And the killed job itself is taken over after the worker's lease, and completes
    assert rig.settle([killed], step=60)[0]["status"] == "COMPLETED"


def test_a_worker_killed_between_taking_a_slot_and_claiming_the_job_retakes_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker killed right after it took the job's slot, before its claim was written
    worker = wiring.container().worker
    claim = worker._claim
    killed: list[str] = []

    def dies_once(job: Any) -> Any:
        if not killed:
            killed.append(job.job_id)
            raise WorkerKilled("gone between the slot and the claim")
        return claim(job)

    monkeypatch.setattr(worker, "_claim", dies_once)
    job = rig.job("flow.session", key="s1")
    with pytest.raises(WorkerKilled):
        rig.app.drain()
    assert job_of(rig.app, job)["status"] == "PENDING"
    # When its message comes back, well before the slot's lease ends, the job takes its own
    # slot again and runs once
    rig.later(1)
    done = job_of(rig.app, job)
    assert (done["status"], done["attempts"]) == ("COMPLETED", 1)
    assert [seq for t, _, seq in RECORDER.ran if t == "flow.session"] == [0]


# -- unique while active -------------------------------------------------------------------------


def test_twenty_concurrent_enqueues_with_one_unique_key_make_one_job(rig: Rig) -> None:
    # Given 20 execution environments of the API, each sending the same session start at once
    routed = [rig.app.route("POST", "/jobs", {"type": "flow.start", "payload": {"key": "s9"}}, ALICE)]
    function, event = routed[0]  # type: ignore[misc]
    handlers = [rig.app.new_handler(function) for _ in range(20)]
    start = threading.Barrier(20)

    def send(n: int) -> HttpResult:
        start.wait()
        return http_result(invoke(function, handlers[n], event))

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))
    # Then one request made the job (202) and the 19 others were answered with it (200)
    assert sorted(a.status for a in answers) == [200] * 19 + [202]
    assert len({a.body["jobId"] for a in answers}) == 1
    first = answers[0].body["jobId"]
    # And another owner's start with the same key is a job of its own
    bobs = rig.job("flow.start", BOB, key="s9")
    assert bobs != first
    # And once the first ended, a new start makes a new job
    rig.settle([first])
    assert job_of(rig.app, bobs, BOB)["status"] == "COMPLETED"
    again = rig.enqueue("flow.start", key="s9")
    assert again.status == 202 and again.body["jobId"] != first
    # And while that one is active, it is the answer
    assert rig.enqueue("flow.start", key="s9").body["jobId"] == again.body["jobId"]


def test_a_cancelled_holder_is_stale_and_taken_over(rig: Rig) -> None:
    first = rig.job("flow.start", key="s1", seq=1)
    assert rig.app.api("POST", f"/jobs/{first}/cancel", {}, ALICE).status == 200
    second = rig.enqueue("flow.start", key="s1", seq=2)
    assert second.status == 202 and second.body["jobId"] != first


# -- debounce -------------------------------------------------------------------------------------


def test_a_debounced_burst_of_30_runs_once_with_the_last_payload(rig: Rig) -> None:
    # Given 30 enqueues for one key over 9 s (the period is 5 s: never quiet; the max wait 12 s),
    # each delivered as it falls due
    ids: list[str] = []
    for n in range(30):
        ids.append(rig.job("flow.sync", key="k", seq=n))
        rig.later(0.3)
    # When the key is quiet for the period
    jobs = rig.settle(ids, step=3)
    # Then exactly one ran, the last, with the last payload
    ran = [(t, k, s) for t, k, s in RECORDER.ran if t == "flow.sync"]
    assert ran == [("flow.sync", "k", 29)]
    assert [j["status"] for j in jobs] == ["CANCELLED"] * 29 + ["COMPLETED"]
    # And the others say they were debounced, by the one that ran
    for job in jobs[:-1]:
        assert job["errorDetails"] == {"code": "DEBOUNCED", "debouncedBy": ids[-1]}
        assert job["attempts"] == 0


def test_a_never_quiet_stream_still_runs_by_the_max_wait(rig: Rig) -> None:
    # Given an enqueue every 2 s for 40 s (the period is 5 s, the max wait 12 s)
    ids: list[str] = []
    ran_at: list[tuple[float, int, int]] = []  # (when, the latest enqueued, the payload that ran)
    for n in range(21):
        ids.append(rig.job("flow.sync", key="k", seq=n))
        before = len(RECORDER.ran)
        rig.later(2)
        ran_at += [(2.0 * (n + 1), n, seq) for _, _, seq in RECORDER.ran[before:]]
    # Then a run came no later than the max wait after each burst's first enqueue
    assert ran_at, "nothing ran during the stream"
    assert ran_at[0][0] <= 12 + 2  # the first burst began at 0 s; deliveries come every 2 s
    assert len(ran_at) >= 3
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(ran_at)]
    assert max(gaps) <= 12 + 2 + 2
    # And each run had the latest payload at its time
    assert [latest for _, latest, _ in ran_at] == [seq for _, _, seq in ran_at]
    # And the rest were debounced by a job that ran
    jobs = rig.settle(ids, step=3)
    completed = [j["jobId"] for j in jobs if j["status"] == "COMPLETED"]
    assert len(completed) == len(RECORDER.ran)
    for job in jobs:
        if job["status"] == "CANCELLED":
            assert job["errorDetails"]["code"] == "DEBOUNCED"
            assert job["errorDetails"]["debouncedBy"] in completed


def test_a_debounced_job_retried_by_its_owner_runs_whatever_its_key_did_since(rig: Rig) -> None:
    # Given a debounced job that ran and failed, and a new burst for its key since
    failed = rig.job("flow.sync", key="k", seq=1, fail=True)
    rig.later(6)
    assert job_of(rig.app, failed)["status"] == "FAILED"
    later = rig.job("flow.sync", key="k", seq=2)
    # When its owner retries it, it runs (a retry is not debounced), and so does the new burst
    assert rig.app.api("POST", f"/jobs/{failed}/retry", {}, ALICE).status == 202
    rig.later(1)
    assert job_of(rig.app, failed)["status"] == "COMPLETED"
    rig.later(6)
    assert job_of(rig.app, later)["status"] == "COMPLETED"


def test_another_key_and_another_owner_debounce_apart(rig: Rig) -> None:
    ids = [rig.job("flow.sync", key="k", seq=1), rig.job("flow.sync", key="j", seq=2)]
    ids.append(rig.job("flow.sync", BOB, key="k", seq=3))
    jobs = [job_of(rig.app, j, c) for j, c in zip(ids, (ALICE, ALICE, BOB), strict=True)]
    rig.later(6)
    jobs = [job_of(rig.app, j, c) for j, c in zip(ids, (ALICE, ALICE, BOB), strict=True)]
    assert [j["status"] for j in jobs] == ["COMPLETED"] * 3


# -- fairness ---------------------------------------------------------------------------------------


def test_every_sqs_send_carries_a_group_the_owner_or_the_fairness_key(rig: Rig) -> None:
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    client = wiring.container().queue.client
    client.meta.events.register("provide-client-params.sqs.SendMessage", record)
    # A new job, a chained resend (a job over its key's limit past the receive budget), a held
    # job promoted by the maintenance, a poison message dead-lettered, and a type with a key
    plain = rig.job("flow.pair", key="a")
    rig.job("flow.pair", BOB, key="a")
    held = rig.app.api(
        "POST", "/jobs", {"type": "flow.free", "payload": {"key": "x"}, "delaySeconds": 3600}, ALICE
    )
    assert held.status == 202
    fair = rig.job("flow.fair", key="tenant-7")
    rig.app.sqs.send_message(QueueUrl=rig.app.stack.queue_urls["MediumQueue"], MessageBody="not json")
    rig.later(1)
    rig.clock.advance(3600)
    rig.app.fire("Promote")
    rig.later(1)
    assert sent, "no message was sent"
    assert all(p.get("MessageGroupId") for p in sent)  # every send, dead letters included
    groups = {p["MessageBody"]: p["MessageGroupId"] for p in sent if p["MessageBody"].startswith("{")}
    by_job = {b.split('"jobId":"', 1)[1].split('"', 1)[0]: g for b, g in groups.items() if '"jobId":"' in b}
    assert by_job[plain] == "g:" + digest("alice")
    assert by_job[fair] == "g:" + digest("tenant-7")
    assert "g:" + digest("bob") in groups.values()
    assert job_of(rig.app, held.body["jobId"])["status"] == "COMPLETED"


# -- what GET /job-types shows ------------------------------------------------------------------------


def test_job_types_show_the_flow_control_policies(rig: Rig) -> None:
    answer = rig.app.api("GET", "/job-types", claims=ALICE)
    assert answer.status == 200
    items = answer.body["items"] if isinstance(answer.body, dict) else answer.body
    shown = {t["name"]: t["flowControl"] for t in items}
    assert shown["flow.pair"] == {"concurrency": {"limit": 2, "perKey": True}, "fairness": "owner"}
    assert shown["flow.start"] == {"uniqueWhileActive": True, "fairness": "owner"}
    assert shown["flow.sync"]["debounce"] == {"seconds": 5, "maxWaitSeconds": 12, "perKey": True}
    assert shown["flow.fair"] == {"fairness": "fairness_key"}
    assert shown["system.echo"] == {"fairness": "owner"}


def test_the_recorder_counts_overlap() -> None:
    recorder = Recorder()
    recorder.enter("a")
    recorder.run("t", "a", 1)
    assert recorder.most["a"] == 2 and recorder.running["a"] == 1
