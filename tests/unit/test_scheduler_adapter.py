"""The EventBridge Scheduler adapter's requests (a fake client records them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from tarefa.adapters.scheduler import EventBridgeScheduler
from tarefa.job import Priority
from tarefa.schedules import Schedule

QUEUES = {p: f"arn:aws:sqs:us-east-1:123456789012:tarefa-dev-{p.lower()}" for p in Priority}


class FakeScheduler:
    def __init__(self, existing: set[str] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.existing = existing or set()

    def create_schedule(self, **request: Any) -> None:
        self.calls.append(("create", request))
        if request["Name"] in self.existing:
            raise ClientError({"Error": {"Code": "ConflictException", "Message": "exists"}}, "CreateSchedule")
        self.existing.add(request["Name"])

    def update_schedule(self, **request: Any) -> None:
        self.calls.append(("update", request))

    def delete_schedule(self, **request: Any) -> None:
        self.calls.append(("delete", request))
        if request["Name"] not in self.existing:
            raise ClientError(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "DeleteSchedule"
            )
        self.existing.discard(request["Name"])


def schedule(expression: str, since: datetime, priority: Priority = Priority.HIGH) -> Schedule:
    return Schedule(
        owner="alice",
        name="nightly",
        type="shop.report",
        payload={"x": 1},
        expression=expression,
        timezone="America/Sao_Paulo",
        priority=priority,
        since=since,
        created_at=since,
        updated_at=since,
    )


def test_a_cron_schedule_targets_its_priority_queue_with_the_job_message() -> None:
    client = FakeScheduler()
    adapter = EventBridgeScheduler(
        client, "tarefa-dev-schedules", "arn:aws:iam::1:role/tarefa-dev-scheduler", QUEUES
    )
    adapter.put(schedule("cron(0 3 * * ? *)", datetime.now(UTC)))
    ((verb, request),) = client.calls
    assert verb == "create"
    assert request["GroupName"] == "tarefa-dev-schedules" and len(request["Name"]) == 24
    assert request["ScheduleExpressionTimezone"] == "America/Sao_Paulo"
    assert request["FlexibleTimeWindow"] == {"Mode": "OFF"} and request["State"] == "ENABLED"
    assert "StartDate" not in request
    target = request["Target"]
    assert target["Arn"] == QUEUES[Priority.HIGH] and target["RoleArn"].endswith("tarefa-dev-scheduler")
    message = json.loads(target["Input"])
    assert message["jobId"].endswith("-<aws.scheduler.scheduled-time>") and message["userId"] == "alice"
    assert "alice" not in request["Description"] and "nightly" not in request["Description"]


def test_a_retried_create_updates_and_a_delete_of_nothing_is_fine() -> None:
    client = FakeScheduler()
    adapter = EventBridgeScheduler(client, "g", "role", QUEUES)
    item = schedule("cron(0 3 * * ? *)", datetime.now(UTC))
    adapter.put(item)
    adapter.put(item.model_copy(update={"enabled": False}))
    assert [verb for verb, _ in client.calls] == ["create", "create", "update"]
    assert client.calls[-1][1]["State"] == "DISABLED"
    adapter.delete(item)
    adapter.delete(item)  # already gone: no error


def test_a_rate_keeps_its_phase_and_never_starts_in_the_past() -> None:
    client = FakeScheduler()
    adapter = EventBridgeScheduler(client, "g", "role", QUEUES)
    soon = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
    adapter.put(schedule("rate(5 minutes)", soon))
    assert client.calls[-1][1]["StartDate"] == soon
    long_ago = soon - timedelta(days=3, minutes=2)  # created three days ago, changed now
    adapter.put(schedule("rate(5 minutes)", long_ago))
    start = client.calls[-1][1]["StartDate"]
    now = datetime.now(UTC)
    assert now < start <= now + timedelta(minutes=5)
    assert (start - long_ago).total_seconds() % 300 == 0  # on the schedule's own phase
