"""User schedules on the real API handler against moto: definitions, validation, ownership, and
firings on the local runtime (the local scheduler playing EventBridge Scheduler) with time
controlled by the tests' clock."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tarefa.local.app import LocalApp
from tarefa.local.schedules import UserScheduleRunner

from .conftest import ADMIN, ALICE, BOB, Clock, job_of, messages_in

NIGHTLY: dict[str, Any] = {
    "name": "nightly",
    "type": "system.echo",
    "payload": {"report": "sales"},
    "cron": "cron(0 3 * * ? *)",
    "timezone": "America/Sao_Paulo",
}


def create(app: LocalApp, body: dict[str, Any], claims: dict[str, Any] = ALICE) -> dict[str, Any]:
    result = app.api("POST", "/schedules", body, claims)
    assert result.status == 201, result.body
    created: dict[str, Any] = result.body
    return created


def runner(app: LocalApp) -> UserScheduleRunner:
    return UserScheduleRunner(boto3.client("scheduler"), app.sqs, os.environ["SCHEDULE_GROUP"])


def at_second(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- definitions ---------------------------------------------------------------------------------
def test_a_schedule_is_created_read_listed_changed_and_deleted(app: LocalApp, clock: Clock) -> None:
    created = create(app, NIGHTLY)
    assert created["cron"] == "cron(0 3 * * ? *)" and created["enabled"] is True
    assert created["lastRunAt"] is None
    # 03:00 in São Paulo (UTC-3, no daylight saving time since 2019) is 06:00 UTC
    next_run = datetime.fromisoformat(created["nextRunAt"])
    assert (next_run.hour, next_run.minute) == (6, 0)
    assert timedelta(0) < next_run - clock() <= timedelta(days=1)
    assert "owner" not in created  # a user's own schedule does not name its owner

    assert app.api("GET", "/schedules/nightly", claims=ALICE).body == created
    listed = app.api("GET", "/schedules", claims=ALICE).body
    assert [s["name"] for s in listed["items"]] == ["nightly"] and listed["nextCursor"] is None

    changed = app.api("PATCH", "/schedules/nightly", {"rate": "rate(2 hours)", "enabled": False}, ALICE)
    assert changed.status == 200, changed.body
    assert changed.body["rate"] == "rate(2 hours)" and "cron" not in changed.body
    assert changed.body["enabled"] is False and changed.body["nextRunAt"] is None
    on_scheduler = boto3.client("scheduler").get_schedule(
        Name=_key("alice", "nightly"), GroupName=os.environ["SCHEDULE_GROUP"]
    )
    assert on_scheduler["ScheduleExpression"] == "rate(2 hours)" and on_scheduler["State"] == "DISABLED"
    target = on_scheduler["Target"]
    assert target["Arn"].endswith(":" + os.environ["MEDIUM_QUEUE_URL"].rsplit("/", 1)[-1])
    message = json.loads(target["Input"])
    assert message == {
        "type": "system.echo",
        "payload": {"report": "sales"},
        "jobId": f"sched-{_key('alice', 'nightly')}-<aws.scheduler.scheduled-time>",
        "userId": "alice",
    }

    deleted = app.api("DELETE", "/schedules/nightly", claims=ALICE)
    assert deleted.status == 204
    assert app.api("GET", "/schedules/nightly", claims=ALICE).status == 404
    assert boto3.client("scheduler").list_schedules(GroupName=os.environ["SCHEDULE_GROUP"])["Schedules"] == []


def test_listing_pages(app: LocalApp, clock: Clock) -> None:
    for n in range(5):
        create(app, {**NIGHTLY, "name": f"s{n}"})
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = app.api("GET", "/schedules" + query, claims=ALICE).body
        seen += [s["name"] for s in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ["s0", "s1", "s2", "s3", "s4"]
    assert app.api("GET", "/schedules?cursor=not-ours!", claims=ALICE).status == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "cron(0 3 * * * *)"}, "cron"),  # neither day field is ?
        ({"cron": "cron(0 3 ? * ? *)"}, "cron"),  # both are
        ({"cron": "cron(0 3 * * ?)"}, "cron"),  # five fields
        ({"cron": "cron(60 3 * * ? *)"}, "cron"),
        ({"cron": "cron(0 24 * * ? *)"}, "cron"),
        ({"cron": "cron(0 3 32 * ? *)"}, "cron"),
        ({"cron": "cron(0 3 ? FOO MON *)"}, "cron"),
        ({"cron": "cron(0 3 ? * MON#6 *)"}, "cron"),
        ({"cron": "cron(0 3 5-1 * ? *)"}, "cron"),
        ({"cron": "cron(0/0 3 * * ? *)"}, "cron"),
        ({"cron": "cron(0 3 * * ? 2300)"}, "cron"),
        ({"cron": "0 3 * * ? *"}, "cron"),
        ({"cron": "rate(5 minutes)"}, "cron"),  # a rate in the cron field
        ({"cron": "cron(0 0 30 2 ? *)"}, "cron"),  # 30 February: never fires
        ({"cron": "cron(0 0 1 1 ? 2020)"}, "cron"),  # in the past
        ({"rate": "rate(0 minutes)"}, "rate"),
        ({"rate": "rate(5 minute)"}, "rate"),
        ({"rate": "rate(1 minutes)"}, "rate"),
        ({"rate": "rate(5 seconds)"}, "rate"),
        ({"rate": "rate(five minutes)"}, "rate"),
        ({"rate": "rate(5  minutes)"}, "rate"),
        ({"rate": "cron(0 3 * * ? *)"}, "rate"),
        ({"rate": "rate(5 minutes)", "cron": "cron(0 3 * * ? *)"}, "cron"),  # both
        ({}, "cron"),  # neither
        ({"rate": "rate(5 minutes)", "timezone": "Mars/Olympus"}, "timezone"),
        ({"rate": "rate(5 minutes)", "timezone": "../../etc/passwd"}, "timezone"),
    ],
)
def test_bad_expressions_are_refused_with_a_clear_422(
    app: LocalApp, clock: Clock, body: dict[str, Any], field: str
) -> None:
    request = {"name": "x", "type": "system.echo", "payload": 1, **body}
    result = app.api("POST", "/schedules", request, ALICE)
    assert result.status == 422, result.body
    assert result.body["error"]["code"] == "VALIDATION_ERROR"
    assert result.body["error"]["details"][0]["field"] == field
    assert result.body["error"]["details"][0]["message"]


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 3 * * ? *)",
        "cron(0/15 8-18 ? * MON-FRI *)",
        "cron(0 9 L * ? *)",
        "cron(0 9 L-2 * ? *)",
        "cron(0 9 15W * ? *)",
        "cron(0 9 LW * ? *)",
        "cron(0 9 ? * 6L *)",
        "cron(0 9 ? * MON#2 *)",
        "cron(0 12 1,15 JAN,JUL ? 2027-2030)",
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 day)",
    ],
)
def test_good_expressions_are_taken(app: LocalApp, clock: Clock, expression: str) -> None:
    field = "cron" if expression.startswith("cron") else "rate"
    created = create(app, {"name": "x", "type": "system.echo", "payload": 1, field: expression})
    assert created[field] == expression and created["nextRunAt"] is not None


def test_a_payload_is_validated_against_its_type_at_creation_and_at_patch(
    app: LocalApp, clock: Clock
) -> None:
    bad = app.api(
        "POST", "/schedules", {**NIGHTLY, "type": "system.fail", "payload": {"failTimes": "many"}}, ALICE
    )
    assert bad.status == 422 and bad.body["error"]["details"][0]["field"] == "payload.failTimes"
    unknown = app.api("POST", "/schedules", {**NIGHTLY, "type": "no.such.type"}, ALICE)
    assert unknown.status == 400 and unknown.body["error"]["code"] == "UNKNOWN_JOB_TYPE"
    internal = app.api(
        "POST", "/schedules", {**NIGHTLY, "type": "system.bulk", "payload": {"operationId": "x"}}, ALICE
    )
    assert internal.status == 422
    assert app.api("GET", "/schedules", claims=ALICE).body["items"] == []
    assert boto3.client("scheduler").list_schedules(GroupName=os.environ["SCHEDULE_GROUP"])["Schedules"] == []

    create(app, {**NIGHTLY, "type": "system.fail", "payload": {"failTimes": 1}})
    patched = app.api("PATCH", "/schedules/nightly", {"payload": {"failTimes": -1}}, ALICE)
    assert patched.status == 422 and patched.body["error"]["details"][0]["field"] == "payload.failTimes"
    assert app.api("GET", "/schedules/nightly", claims=ALICE).body["payload"] == {
        "failTimes": 1,
        "permanent": False,
        "sleepSeconds": 0,
    }
    unknown_field = app.api("PATCH", "/schedules/nightly", {"type": "system.echo"}, ALICE)
    assert unknown_field.status == 422  # the type is fixed: make a new schedule for another


def test_users_see_and_change_only_their_own_schedules(app: LocalApp, clock: Clock) -> None:
    create(app, NIGHTLY, ALICE)
    for method, body in (("GET", b""), ("PATCH", {"enabled": False}), ("DELETE", b"")):
        refused = app.api(method, "/schedules/nightly", body, BOB)
        assert refused.status == 404, (method, refused.body)
        assert refused.body["error"]["code"] == "SCHEDULE_NOT_FOUND"
    assert app.api("GET", "/schedules", claims=BOB).body["items"] == []
    # Bob may have a "nightly" of his own: names are unique per user, and never revealed
    bobs = create(app, {**NIGHTLY, "payload": {"report": "bob"}}, BOB)
    assert bobs["payload"] == {"report": "bob"}
    taken = app.api("POST", "/schedules", NIGHTLY, ALICE)
    assert taken.status == 409 and taken.body["error"]["code"] == "SCHEDULE_EXISTS"
    assert app.api("GET", "/schedules/nightly", claims=ALICE).body["payload"] == {"report": "sales"}
    # an admin lists everyone's, and names another user's with ?owner=
    listed = app.api("GET", "/schedules", claims=ADMIN).body["items"]
    assert sorted((s["owner"], s["name"]) for s in listed) == [("alice", "nightly"), ("bob", "nightly")]
    assert app.api("GET", "/schedules/nightly?owner=bob", claims=ADMIN).body["payload"] == {"report": "bob"}
    assert (
        app.api("GET", "/schedules/nightly?owner=bob", claims=ALICE).status == 200
    )  # her own: ?owner= ignored
    assert app.api("GET", "/schedules/nightly?owner=bob", claims=ALICE).body["payload"] == {"report": "sales"}
    assert app.api("DELETE", "/schedules/nightly?owner=bob", claims=ADMIN).status == 204
    assert app.api("GET", "/schedules/nightly", claims=BOB).status == 404
    assert app.api("GET", "/schedules/nightly", claims=ALICE).status == 200


def test_routes_need_a_token(app: LocalApp) -> None:
    assert app.api("GET", "/schedules").status == 401
    assert app.api("POST", "/schedules", NIGHTLY).status == 401


# -- firings ---------------------------------------------------------------------------------------
def test_a_schedule_fires_on_the_local_runtime_one_job_per_firing(app: LocalApp, clock: Clock) -> None:
    created = create(app, {**NIGHTLY, "cron": None, "rate": "rate(5 minutes)", "timezone": "UTC"})
    first = datetime.fromisoformat(created["nextRunAt"])
    local = runner(app)
    assert local.tick(clock()) == []  # not yet due
    clock.advance((first - clock()).total_seconds() + 1)
    sent = local.tick(clock())
    assert len(sent) == 1
    job_id = f"sched-{_key('alice', 'nightly')}-{at_second(first)}"
    assert json.loads(sent[0])["jobId"] == job_id
    assert local.tick(clock()) == []  # once per firing
    app.drain()
    job = job_of(app, job_id)
    assert job["status"] == "COMPLETED" and job["result"] == {"report": "sales"} and job["userId"] == "alice"
    assert app.api("GET", f"/jobs/{job_id}", claims=BOB).status == 404
    shown = app.api("GET", "/schedules/nightly", claims=ALICE).body
    assert shown["lastRunAt"] == at_second(first) and shown["lastJobId"] == job_id
    assert datetime.fromisoformat(shown["nextRunAt"]) == first + timedelta(minutes=5)

    clock.advance(300)
    assert len(local.tick(clock())) == 1
    app.drain()
    second = f"sched-{_key('alice', 'nightly')}-{at_second(first + timedelta(minutes=5))}"
    assert job_of(app, second)["status"] == "COMPLETED"

    app.api("PATCH", "/schedules/nightly", {"enabled": False}, ALICE)
    clock.advance(300)
    assert local.tick(clock()) == []  # disabled: Scheduler fires nothing


def test_a_repeated_delivery_of_one_firing_makes_one_job(app: LocalApp, clock: Clock) -> None:
    create(app, {**NIGHTLY, "type": "system.fail", "payload": {"failTimes": 0}})
    scheduler = boto3.client("scheduler")
    detail = scheduler.get_schedule(Name=_key("alice", "nightly"), GroupName=os.environ["SCHEDULE_GROUP"])
    local = runner(app)
    fired_at = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    local.fire(detail, fired_at)
    local.fire(detail, fired_at)  # Scheduler's retry of a send whose answer was lost
    app.drain()
    local.fire(detail, fired_at)  # and one after the job finished
    app.drain()
    assert messages_in(app, "MediumQueue") == 0
    jobs = app.api("GET", "/jobs?type=system.fail", claims=ALICE).body["items"]
    assert [j["jobId"] for j in jobs] == [f"sched-{_key('alice', 'nightly')}-2026-12-03T06:00:00Z"]
    assert jobs[0]["status"] == "COMPLETED" and jobs[0]["attempts"] == 1


def test_a_firing_of_a_payload_that_no_longer_validates_fails_visibly(app: LocalApp, clock: Clock) -> None:
    """The worker validates a scheduled message's payload again (a type's model may change
    between creation and firing): the job is FAILED with INVALID_PAYLOAD, not lost."""
    create(app, {**NIGHTLY, "type": "system.fail", "payload": {"failTimes": 0}})
    scheduler = boto3.client("scheduler")
    detail = scheduler.get_schedule(Name=_key("alice", "nightly"), GroupName=os.environ["SCHEDULE_GROUP"])
    detail["Target"]["Input"] = detail["Target"]["Input"].replace('"failTimes":0', '"failTimes":"x"')
    runner(app).fire(detail, datetime(2026, 12, 3, 6, 0, tzinfo=UTC))
    app.drain()
    job = job_of(app, f"sched-{_key('alice', 'nightly')}-2026-12-03T06:00:00Z")
    assert job["status"] == "FAILED" and job["errorDetails"]["code"] == "INVALID_PAYLOAD"


def _key(owner: str, name: str) -> str:
    from tarefa.schedules import schedule_key

    return schedule_key(owner, name)


def test_when_scheduler_fails_nothing_is_half_made(
    app: LocalApp, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tarefa import wiring

    service = wiring.container().schedules
    real_put = service.scheduler.put

    def down(schedule: Any) -> None:
        raise ConnectionError("scheduler unreachable")

    monkeypatch.setattr(service.scheduler, "put", down)
    refused = app.api("POST", "/schedules", NIGHTLY, ALICE)
    assert refused.status == 503 and refused.body["error"]["code"] == "QUEUE_UNAVAILABLE"
    assert app.api("GET", "/schedules/nightly", claims=ALICE).status == 404  # no definition left
    monkeypatch.setattr(service.scheduler, "put", real_put)
    create(app, NIGHTLY)
    monkeypatch.setattr(service.scheduler, "put", down)
    changed = app.api("PATCH", "/schedules/nightly", {"cron": "cron(0 4 * * ? *)"}, ALICE)
    assert changed.status == 503
    assert app.api("GET", "/schedules/nightly", claims=ALICE).body["cron"] == "cron(0 3 * * ? *)"  # put back
    monkeypatch.setattr(service.scheduler, "put", real_put)
    again = app.api("PATCH", "/schedules/nightly", {"cron": "cron(0 4 * * ? *)"}, ALICE)
    assert again.status == 200 and again.body["cron"] == "cron(0 4 * * ? *)"


def test_an_admin_listing_pages_over_the_shards(app: LocalApp, clock: Clock) -> None:
    for n in range(6):
        create(app, {**NIGHTLY, "name": f"n{n}"}, ALICE if n % 2 else BOB)
    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(10):
        page = app.api(
            "GET", "/schedules?limit=2" + (f"&cursor={cursor}" if cursor else ""), claims=ADMIN
        ).body
        seen += [(s["owner"], s["name"]) for s in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(("alice" if n % 2 else "bob", f"n{n}") for n in range(6))
    import base64

    forged = base64.urlsafe_b64encode(b'{"shard":1,"key":"{\\"owner\\":\\"S\\"}"}').decode().rstrip("=")
    assert app.api("GET", f"/schedules?cursor={forged}", claims=ADMIN).status == 400
