"""The user schedules' reconciler on moto, run as the template runs it (the maintenance
function's ReconcileSchedules schedule): definitions and Scheduler's group made to drift apart
every way they can, then repaired; a second run finds nothing to do; work younger than the
grace (a request that may still be making it) is left alone."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import boto3

from tarefa import wiring
from tarefa.local.app import LocalApp
from tarefa.schedules import RECONCILE_GRACE, schedule_key

from .conftest import ALICE, BOB, Clock


def create(app: LocalApp, name: str, claims: dict[str, Any] = ALICE, **fields: Any) -> None:
    body = {
        "name": name,
        "type": "system.echo",
        "payload": {"n": name},
        "cron": "cron(0 3 * * ? *)",
        **fields,
    }
    answer = app.api("POST", "/schedules", body, claims)
    assert answer.status == 201, answer.body


def on_scheduler(owner: str, name: str) -> dict[str, Any] | None:
    client = boto3.client("scheduler")
    try:
        found: dict[str, Any] = client.get_schedule(
            Name=schedule_key(owner, name), GroupName=os.environ["SCHEDULE_GROUP"]
        )
    except client.exceptions.ResourceNotFoundException:
        return None
    return found


def reconcile(app: LocalApp) -> dict[str, int]:
    result: dict[str, int] = app.fire("ReconcileSchedules")
    return result


def test_missing_drifted_and_orphaned_schedules_are_repaired(app: LocalApp, clock: Clock) -> None:
    scheduler = boto3.client("scheduler")
    group = os.environ["SCHEDULE_GROUP"]
    # Given four schedules made through the API
    create(app, "kept")
    create(app, "lost", rate="rate(5 minutes)", cron=None)
    create(app, "drifted", timezone="America/Sao_Paulo")
    create(app, "gone", claims=BOB)
    # ... and then: one's Scheduler schedule lost (a create whose Scheduler call failed after
    # its definition was written), one's expression, state and input changed behind the API's
    # back, one's definition deleted while its schedule stayed (an orphan)
    scheduler.delete_schedule(Name=schedule_key("alice", "lost"), GroupName=group)
    drifted = on_scheduler("alice", "drifted")
    assert drifted is not None
    changed_target = {
        **drifted["Target"],
        "Input": json.dumps({"type": "system.echo", "payload": {"n": "evil"}}),
    }
    scheduler.update_schedule(
        Name=drifted["Name"],
        GroupName=group,
        ScheduleExpression="cron(0 4 * * ? *)",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        State="DISABLED",
        Target=changed_target,
    )
    wiring.container().engine_store.delete_schedule("bob", "gone")
    kept_before = on_scheduler("alice", "kept")
    # When the reconciler runs past the grace (nothing of this is a request still at work)
    clock.advance((RECONCILE_GRACE + timedelta(minutes=1)).total_seconds())
    report = reconcile(app)
    # Then the lost schedule is back as its definition says, the drifted one is put back, the
    # orphan is deleted, and the one that was right was not touched
    assert report == {
        "definitions": 3,
        "deployed": 3,
        "recreated": 1,
        "updated": 1,
        "deleted": 1,
        "skipped": 0,
        "failed": 0,
        "unchecked": 0,
    }
    lost = on_scheduler("alice", "lost")
    assert lost is not None and lost["ScheduleExpression"] == "rate(5 minutes)" and lost["State"] == "ENABLED"
    assert json.loads(lost["Target"]["Input"])["payload"] == {"n": "lost"}
    repaired = on_scheduler("alice", "drifted")
    assert repaired is not None
    assert (repaired["ScheduleExpression"], repaired["ScheduleExpressionTimezone"], repaired["State"]) == (
        "cron(0 3 * * ? *)",
        "America/Sao_Paulo",
        "ENABLED",
    )
    assert json.loads(repaired["Target"]["Input"])["payload"] == {"n": "drifted"}
    assert on_scheduler("bob", "gone") is None
    kept_after = on_scheduler("alice", "kept")
    assert kept_after is not None and kept_before is not None
    assert kept_after["LastModificationDate"] == kept_before["LastModificationDate"]
    # And the API still shows the three, unchanged
    names = [s["name"] for s in app.api("GET", "/schedules", claims=ALICE).body["items"]]
    assert names == ["drifted", "kept", "lost"]
    # And a second run has nothing to repair
    again = reconcile(app)
    assert (again["recreated"], again["updated"], again["deleted"], again["failed"]) == (0, 0, 0, 0)
    assert (again["definitions"], again["deployed"]) == (3, 3)


def test_work_younger_than_the_grace_is_left_to_the_next_run(app: LocalApp, clock: Clock) -> None:
    scheduler = boto3.client("scheduler")
    group = os.environ["SCHEDULE_GROUP"]
    # Given a definition just written whose schedule is not there yet (a create at work), and
    # a schedule just made whose definition is not there (a delete at work)
    create(app, "fresh")
    scheduler.delete_schedule(Name=schedule_key("alice", "fresh"), GroupName=group)
    create(app, "deleting")
    wiring.container().engine_store.delete_schedule("alice", "deleting")
    # When the reconciler runs within the grace
    report = reconcile(app)
    # Then it changes neither
    assert (report["recreated"], report["deleted"], report["skipped"]) == (0, 0, 2)
    assert on_scheduler("alice", "fresh") is None and on_scheduler("alice", "deleting") is not None
    # And past the grace the next run repairs both
    clock.advance((RECONCILE_GRACE + timedelta(minutes=1)).total_seconds())
    report = reconcile(app)
    assert (report["recreated"], report["deleted"], report["skipped"]) == (1, 1, 0)
    assert on_scheduler("alice", "fresh") is not None and on_scheduler("alice", "deleting") is None


def test_the_group_and_the_definitions_are_read_page_by_page(app: LocalApp, clock: Clock) -> None:
    # Given more schedules than one page of either listing holds (100 a page), one drifted
    for n in range(130):
        create(app, f"s{n:03d}", claims={"sub": f"user-{n % 7}"})
    boto3.client("scheduler").delete_schedule(
        Name=schedule_key("user-3", "s059"), GroupName=os.environ["SCHEDULE_GROUP"]
    )
    clock.advance((RECONCILE_GRACE + timedelta(minutes=1)).total_seconds())
    # When it runs, every one of them is seen, and the one missing is re-created
    report = reconcile(app)
    assert (report["definitions"], report["deployed"], report["recreated"]) == (130, 129, 1)
    assert report["deleted"] == 0 and report["updated"] == 0
