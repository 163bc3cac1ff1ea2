"""Flow-control policies refused at import when impossible, what GET /job-types shows of them,
the waits of a job over its key's concurrency, the fair-queue groups, and the slot and unique-key
rules of tarefa.flow over an in-memory store (the DynamoDB one is exercised in
tests/integration/test_flow_control.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from tarefa.flow import (
    FULL,
    SLOT_MARGIN,
    SYSTEM_GROUP,
    DebounceRecord,
    FlowControl,
    UniqueHolder,
    UniqueKeyBusyError,
    digest,
    fairness_group,
    message_group,
)
from tarefa.job import Job, JobStatus
from tarefa.jobtypes import JobPolicy, JobTypeError, JobTypeRegistry


class Session(BaseModel):
    session: str
    n: int = 0


def _session(payload: Session) -> str:
    return payload.session


def handler(payload: Session, ctx: Any) -> None:
    return None


# -- validation at import ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ({"concurrency": 0}, "concurrency must be 1..1000"),
        ({"concurrency": 1001}, "concurrency must be 1..1000"),
        ({"concurrency": True}, "concurrency must be an int"),
        ({"concurrency": "2"}, "concurrency must be an int"),
        ({"concurrency_key": _session}, "concurrency_key needs concurrency"),
        ({"concurrency": 2, "concurrency_key": "session"}, "concurrency_key must be a function"),
        ({"debounce": 0}, "debounce must be 1..900"),
        ({"debounce": 901}, "debounce must be 1..900"),
        ({"debounce": 2.5}, "debounce must be whole seconds"),
        ({"debounce_key": _session}, "need debounce=seconds"),
        ({"debounce_max_wait": 60}, "need debounce=seconds"),
        ({"debounce": 10, "debounce_max_wait": 5}, "debounce_max_wait must be 10..43200"),
        ({"debounce": 10, "debounce_max_wait": 50_000}, "debounce_max_wait must be 10..43200"),
        ({"debounce": 10, "unique_key": _session}, "exclude each other"),
        ({"unique_key": "session"}, "unique_key must be a function"),
        ({"fairness_key": 3}, "fairness_key must be a function"),
    ],
)
def test_impossible_policies_are_refused_at_import(policy: dict[str, Any], says: str) -> None:
    with pytest.raises(JobTypeError, match=says):
        JobPolicy(**policy)


def test_possible_policies_are_accepted() -> None:
    JobPolicy(concurrency=1)
    JobPolicy(concurrency=1000, concurrency_key=_session)
    JobPolicy(debounce=900, debounce_key=_session, debounce_max_wait=43_200)
    JobPolicy(debounce=5, debounce_max_wait=5)
    JobPolicy(unique_key=_session, fairness_key=_session, concurrency=3)


def test_job_types_describe_what_is_on() -> None:
    registry = JobTypeRegistry()
    registry.job_type("t.plain")(handler)
    registry.job_type("t.session", policy=JobPolicy(concurrency=1, concurrency_key=_session))(handler)
    registry.job_type("t.sync", policy=JobPolicy(debounce=30))(handler)
    registry.job_type("t.once", policy=JobPolicy(unique_key=_session, fairness_key=_session))(handler)
    shown = {t.name: t.describe()["flowControl"] for t in registry.types()}
    assert shown == {
        "t.plain": {"fairness": "owner"},
        "t.session": {"concurrency": {"limit": 1, "perKey": True}, "fairness": "owner"},
        # the max wait defaults to ten periods
        "t.sync": {"debounce": {"seconds": 30, "maxWaitSeconds": 300, "perKey": False}, "fairness": "owner"},
        "t.once": {"uniqueWhileActive": True, "fairness": "fairness_key"},
    }


# -- waiting for a slot --------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [1, 10, 60, 900])
def test_a_wait_for_a_slot_grows_and_stays_bounded(timeout: int) -> None:
    for rand in (0.0, 0.5, 0.999):
        flow = FlowControl(MemoryFlowStore(), now=lambda: NOW, rand=lambda r=rand: r)  # type: ignore[misc]
        waits = [flow.slot_wait(n, timeout) for n in range(1, 40)]
        cap = min(30, timeout)
        assert all(1 <= w <= cap for w in waits)
        assert waits == sorted(waits)  # never shorter for a job that waited more
        assert waits[-1] >= cap // 2


def test_waiters_are_spread_by_jitter() -> None:
    import random

    rand = random.Random(7)
    flow = FlowControl(MemoryFlowStore(), now=lambda: NOW, rand=rand.random)
    assert len({flow.slot_wait(6, 60) for _ in range(50)}) > 5


# -- fair-queue groups ---------------------------------------------------------------------------


def test_the_group_is_a_digest_of_the_owner_or_the_system() -> None:
    assert fairness_group("ana@example.com") == "g:" + digest("ana@example.com")
    assert "ana" not in fairness_group("ana@example.com")
    assert fairness_group(None) == fairness_group("") == SYSTEM_GROUP
    assert len(fairness_group("x" * 5000)) <= 128


def test_a_message_group_comes_from_the_type_s_fairness_key_else_the_owner() -> None:
    registry = JobTypeRegistry()
    registry.job_type("t.fair", policy=JobPolicy(fairness_key=_session))(handler)
    registry.job_type("t.plain")(handler)

    def body(type_name: str, payload: Any, user: str | None = "alice") -> str:
        return json.dumps({"jobId": "j", "type": type_name, "payload": payload, "userId": user})

    alice = "g:" + digest("alice")
    assert message_group(body("t.fair", {"session": "s1"}), lambda: registry) == "g:" + digest("s1")
    assert message_group(body("t.plain", {"session": "s1"}), lambda: registry) == alice
    assert message_group(body("t.fair", {"bad": 1}), lambda: registry) == alice  # unreadable: owner
    assert message_group(body("t.unknown", {}), lambda: registry) == alice
    assert message_group(body("t.fair", {"session": "s1"}, None), None) == SYSTEM_GROUP
    assert message_group("not json") == SYSTEM_GROUP


# -- slots and unique keys over a store ---------------------------------------------------------

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class MemoryFlowStore:
    """The FlowStore contract as the DynamoDB adapter implements it, in a dict."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def take_slot(self, slot: str, holder: str, now: datetime, expires_at: datetime) -> bool:
        item = self.items.get(slot)
        if item is None or item["expires"] < now or item["holder"] == holder:
            self.items[slot] = {"holder": holder, "expires": expires_at}
            return True
        return False

    def free_slot(self, slot: str, holder: str) -> None:
        if self.items.get(slot, {}).get("holder") == holder:
            del self.items[slot]

    def take_unique(self, key: str, job_id: str, now: datetime, expires_at: datetime) -> UniqueHolder | None:
        item = self.items.get(key)
        if item is None or item["expires"] < now:
            self.items[key] = {"job": job_id, "since": now, "expires": expires_at}
            return None
        return UniqueHolder(item["job"], item["since"])

    def replace_unique(self, key: str, job_id: str, stale: str, now: datetime, expires_at: datetime) -> bool:
        if self.items.get(key, {}).get("job") != stale:
            return False
        self.items[key] = {"job": job_id, "since": now, "expires": expires_at}
        return True

    def release_unique(self, key: str, job_id: str) -> None:
        if self.items.get(key, {}).get("job") == job_id:
            del self.items[key]

    def debounce(self, key: str) -> DebounceRecord | None:
        record: DebounceRecord | None = self.items.get(key, {}).get("record")
        return record

    def debounce_join(
        self, key: str, job_id: str, now: datetime, expires_at: datetime
    ) -> DebounceRecord | None:
        record = self.debounce(key)
        if record is None or record.winner is not None:
            return None
        joined = replace(record, latest=job_id, latest_at=now)
        self.items[key] = {"record": joined}
        return joined

    def debounce_start(
        self, key: str, job_id: str, now: datetime, expires_at: datetime, replacing: DebounceRecord | None
    ) -> bool:
        if self.debounce(key) != replacing:
            return False
        previous = replacing.winner if replacing else None
        self.items[key] = {"record": DebounceRecord(now, job_id, now, None, previous)}
        return True

    def debounce_decide(self, key: str, latest: str, winner: str) -> bool:
        record = self.debounce(key)
        if record is None or record.latest != latest or record.winner is not None:
            return False
        self.items[key] = {"record": replace(record, winner=winner)}
        return True

    def debounce_adopt(self, key: str, job_id: str, ghost: str) -> bool:
        record = self.debounce(key)
        if record is None or record.latest != ghost or record.winner is not None:
            return False
        self.items[key] = {"record": replace(record, latest=job_id, winner=job_id)}
        return True

    def mark_won(self, job_id: str, expires_at: datetime) -> None:
        self.items[f"won#{job_id}"] = {}

    def has_won(self, job_id: str) -> bool:
        return f"won#{job_id}" in self.items


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> datetime:
        return self.at


def test_a_key_s_slots_are_shared_by_n_jobs_and_come_back_when_freed_or_expired() -> None:
    clock = Clock()
    flow = FlowControl(MemoryFlowStore(), now=clock)
    a = flow.take_slot("t", "s1", 2, "job-a", 60)
    b = flow.take_slot("t", "s1", 2, "job-b", 60)
    assert isinstance(a, str) and isinstance(b, str) and a != b
    assert flow.take_slot("t", "s1", 2, "job-c", 60) is FULL
    assert isinstance(flow.take_slot("t", "s2", 2, "job-c", 60), str)  # another key
    assert flow.take_slot("t", "s1", 2, "job-a", 60) == a  # a job retakes its own slot
    flow.free_slot(a, "job-a")
    assert flow.take_slot("t", "s1", 2, "job-c", 60) == a
    # a dead holder's slot comes back when its lease (timeout + margin) ends, not before
    clock.at += timedelta(seconds=60) + SLOT_MARGIN
    assert flow.take_slot("t", "s1", 2, "job-d", 60) is FULL
    clock.at += timedelta(seconds=1)
    assert isinstance(flow.take_slot("t", "s1", 2, "job-d", 60), str)


def test_a_freed_slot_is_only_freed_by_its_holder() -> None:
    flow = FlowControl(MemoryFlowStore(), now=Clock())
    slot = flow.take_slot("t", "k", 1, "job-a", 60)
    assert isinstance(slot, str)
    flow.free_slot(slot, "job-b")
    assert flow.take_slot("t", "k", 1, "job-b", 60) is FULL


def _job(job_id: str, status: JobStatus) -> Job:
    return Job(job_id=job_id, type="t", status=status, created_at=NOW, updated_at=NOW)


def test_a_unique_key_returns_its_active_holder_and_is_taken_over_from_a_finished_one() -> None:
    jobs: dict[str, Job] = {}
    flow = FlowControl(MemoryFlowStore(), now=Clock())
    lock, active = flow.claim_unique("t", "alice", "s1", "j1", jobs.get, lambda s: None)
    assert active is None
    jobs["j1"] = _job("j1", JobStatus.PENDING)
    assert flow.claim_unique("t", "alice", "s1", "j2", jobs.get, lambda s: None) == (lock, jobs["j1"])
    assert flow.claim_unique("t", "bob", "s1", "j3", jobs.get, lambda s: None)[1] is None  # per owner
    jobs["j1"] = _job("j1", JobStatus.COMPLETED)
    assert flow.claim_unique("t", "alice", "s1", "j4", jobs.get, lambda s: None) == (lock, None)


def test_a_holder_still_being_recorded_is_waited_for_then_refused_as_busy() -> None:
    flow = FlowControl(MemoryFlowStore(), now=Clock())
    flow.claim_unique("t", "alice", "s1", "j1", lambda j: None, lambda s: None)
    pauses: list[float] = []
    with pytest.raises(UniqueKeyBusyError):
        flow.claim_unique("t", "alice", "s1", "j2", lambda j: None, pauses.append)
    assert pauses and sum(pauses) <= 2


def test_a_holder_never_recorded_is_stale_after_the_grace() -> None:
    clock = Clock()
    flow = FlowControl(MemoryFlowStore(), now=clock)
    flow.claim_unique("t", "alice", "s1", "j1", lambda j: None, lambda s: None)
    clock.at += timedelta(seconds=31)
    assert flow.claim_unique("t", "alice", "s1", "j2", lambda j: None, lambda s: None)[1] is None


def test_debounce_a_superseded_job_waits_for_its_burst_then_names_the_winner() -> None:
    clock = Clock()
    jobs: dict[str, Job] = {}
    flow = FlowControl(MemoryFlowStore(), now=clock)
    for n in range(3):
        job = _job(f"j{n}", JobStatus.PENDING).model_copy(update={"created_at": clock.at})
        jobs[job.job_id] = job
        flow.debounce_enqueue("r", job, 5, 60)
        clock.at += timedelta(seconds=1)
    # j0 looks at 3 s: j2 (enqueued at 2 s) is the latest and undecided, so j0 waits until a
    # second after j2's turn (7 s)
    verdict = flow.debounce_turn("r", jobs["j0"], 5, 60, jobs.get)
    assert (verdict.run, verdict.wait) == (False, 7 - 3 + 1)
    clock.at += timedelta(seconds=4)
    assert flow.debounce_turn("r", jobs["j2"], 5, 60, jobs.get).run
    assert flow.debounce_turn("r", jobs["j0"], 5, 60, jobs.get).debounced_by == "j2"
    assert flow.debounce_turn("r", jobs["j1"], 5, 60, jobs.get).debounced_by == "j2"


def test_debounce_a_latest_that_was_cancelled_hands_the_run_to_another() -> None:
    clock = Clock()
    jobs = {n: _job(n, JobStatus.PENDING) for n in ("j0", "j1")}
    flow = FlowControl(MemoryFlowStore(), now=clock)
    flow.debounce_enqueue("r", jobs["j0"], 5, 60)
    flow.debounce_enqueue("r", jobs["j1"], 5, 60)
    jobs["j1"] = _job("j1", JobStatus.CANCELLED)  # its owner cancelled it
    assert flow.debounce_turn("r", jobs["j0"], 5, 60, jobs.get).run


def test_debounce_a_latest_never_recorded_is_given_up_after_the_grace() -> None:
    # Given a burst whose latest enqueue crashed after it updated the record, before its job
    # was recorded (so it will never come up)
    clock = Clock()
    jobs = {"j0": _job("j0", JobStatus.PENDING)}
    flow = FlowControl(MemoryFlowStore(), now=clock)
    flow.debounce_enqueue("r", jobs["j0"], 5, 60)
    flow.debounce_enqueue("r", _job("ghost", JobStatus.PENDING), 5, 60)
    # Then within the grace the earlier job waits for it, and after it the earlier job runs
    assert flow.debounce_turn("r", jobs["j0"], 5, 60, jobs.get).wait is not None
    clock.at += timedelta(seconds=61)
    assert flow.debounce_turn("r", jobs["j0"], 5, 60, jobs.get).run
