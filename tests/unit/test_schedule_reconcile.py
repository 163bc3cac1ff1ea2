"""ScheduleService.reconcile against in-memory fakes of its two sides: what it repairs, what it
leaves (a definition changed since it was listed, work younger than the grace), and that one
failed repair does not stop the others."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tarefa.jobtypes import JobTypeRegistry
from tarefa.schedules import (
    RECONCILE_GRACE,
    Deployed,
    Listed,
    Schedule,
    SchedulePage,
    ScheduleService,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
OLD = NOW - RECONCILE_GRACE - timedelta(minutes=1)


class Definitions:
    def __init__(self, *schedules: Schedule) -> None:
        self.items = {(s.owner, s.name): s for s in schedules}
        self.reads = 0

    def get_schedule(self, owner: str, name: str) -> Schedule | None:
        self.reads += 1
        return self.items.get((owner, name))

    def list_schedules(self, owner: str | None, limit: int, cursor: dict[str, Any] | None) -> SchedulePage:
        ordered = sorted(self.items.values(), key=lambda s: (s.name, s.owner))
        start = int(cursor["at"]) if cursor else 0
        page = ordered[start : start + 2]  # small pages: the reconciler must follow the cursor
        more = start + 2 < len(ordered)
        return SchedulePage(page, {"at": start + 2} if more else None)

    def create_schedule(self, schedule: Schedule) -> None: ...
    def replace_schedule(self, schedule: Schedule, expected_version: int) -> None: ...
    def delete_schedule(self, owner: str, name: str) -> None: ...


class Group:
    """Scheduler's group: deployed schedules by key, with their modification times."""

    def __init__(self) -> None:
        self.deployed_: dict[str, tuple[Deployed, datetime]] = {}
        self.puts: list[str] = []
        self.deletes: list[str] = []
        self.broken: set[str] = set()  # keys whose put fails

    def wanted(self, schedule: Schedule) -> Deployed:
        return Deployed(
            schedule.key,
            schedule.expression,
            schedule.timezone,
            schedule.enabled,
            f"queue-{schedule.priority}",
            "role",
            schedule.message_template(),
        )

    def put(self, schedule: Schedule) -> None:
        if schedule.key in self.broken:
            raise RuntimeError("Scheduler is down for this one")
        self.puts.append(schedule.name)
        self.deployed_[schedule.key] = (self.wanted(schedule), NOW)

    def delete(self, schedule: Schedule) -> None:
        self.delete_key(schedule.key)

    def delete_key(self, key: str) -> None:
        self.deletes.append(key)
        self.deployed_.pop(key, None)

    def listed(self) -> Iterator[Listed]:
        for key, (_, at) in self.deployed_.items():
            yield Listed(key, at)

    def deployed(self, key: str) -> Deployed | None:
        found = self.deployed_.get(key)
        return found[0] if found else None


class NoJobs:
    def get(self, job_id: str) -> None:
        return None


def schedule(name: str, owner: str = "alice", updated: datetime = OLD, **fields: Any) -> Schedule:
    return Schedule(
        owner=owner,
        name=name,
        type="shop.report",
        payload={"n": name},
        expression=fields.pop("expression", "cron(0 3 * * ? *)"),
        since=OLD,
        created_at=OLD,
        updated_at=updated,
        **fields,
    )


def service(definitions: Definitions, group: Group) -> ScheduleService:
    return ScheduleService(definitions, group, JobTypeRegistry(), NoJobs(), now=lambda: NOW)  # type: ignore[arg-type]


def test_it_repairs_each_kind_of_drift_and_leaves_what_is_right() -> None:
    right, missing, drifted = (
        schedule("right"),
        schedule("missing"),
        schedule("drifted", timezone="Europe/Lisbon"),
    )
    definitions = Definitions(right, missing, drifted)
    group = Group()
    group.deployed_[right.key] = (group.wanted(right), OLD)
    group.deployed_[drifted.key] = (group.wanted(drifted.model_copy(update={"enabled": False})), OLD)
    group.deployed_["orphan-key"] = (group.wanted(schedule("orphan")), OLD)
    report = service(definitions, group).reconcile()
    assert (report.definitions, report.deployed) == (3, 3)
    assert (report.recreated, report.updated, report.deleted, report.skipped, report.failed) == (
        1,
        1,
        1,
        0,
        0,
    )
    assert sorted(group.puts) == ["drifted", "missing"] and group.deletes == ["orphan-key"]
    assert group.deployed(drifted.key) == group.wanted(drifted)
    assert definitions.reads == 2  # each repair read its definition again; the right one was not


def test_a_definition_changed_since_it_was_listed_is_left_to_the_next_run() -> None:
    listed = schedule("moving")
    definitions = Definitions(listed)
    group = Group()
    svc = service(definitions, group)
    # the definition moves on (a PATCH) between the listing and the repair
    original = definitions.get_schedule

    def moved(owner: str, name: str) -> Schedule | None:
        found = original(owner, name)
        return found.model_copy(update={"version": found.version + 1}) if found else None

    definitions.get_schedule = moved  # type: ignore[method-assign]
    report = svc.reconcile()
    assert (report.recreated, report.skipped) == (0, 1) and group.puts == []


def test_recent_work_is_skipped_and_one_failed_repair_does_not_stop_the_others() -> None:
    fresh = schedule("fresh", updated=NOW - timedelta(seconds=20))
    broken, fine = schedule("broken"), schedule("fine")
    definitions = Definitions(fresh, broken, fine)
    group = Group()
    group.broken.add(broken.key)
    young_orphan = group.wanted(schedule("young"))
    group.deployed_["young-orphan"] = (young_orphan, NOW - timedelta(seconds=5))
    report = service(definitions, group).reconcile()
    assert (report.recreated, report.failed, report.skipped, report.deleted) == (1, 1, 2, 0)
    assert group.puts == ["fine"] and "young-orphan" in group.deployed_


def test_out_of_time_the_missing_and_orphans_are_repaired_and_the_rest_left_unchecked() -> None:
    present = [schedule(f"p{n}") for n in range(5)]
    missing = schedule("missing")
    definitions = Definitions(*present, missing)
    group = Group()
    for item in present:  # all five drifted
        group.deployed_[item.key] = (group.wanted(item.model_copy(update={"enabled": False})), OLD)
    group.deployed_["orphan-key"] = (group.wanted(schedule("orphan")), OLD)
    looks: list[int] = []

    def out_of_time() -> bool:
        looks.append(1)
        return len(looks) > 2  # time for two comparisons

    report = service(definitions, group).reconcile(out_of_time)
    assert (report.recreated, report.deleted, report.updated, report.unchecked) == (1, 1, 2, 3)
    assert "missing" in group.puts and group.deletes == ["orphan-key"]
