"""EventBridge Scheduler: one schedule per user schedule, in the stage's schedule group.

The target is the job type's priority queue (an SQS target), assumed through the role the
template scopes to sqs:SendMessage on the three priority queues; its Input is the job message
(tarefa.schedules.Schedule.message_template) in which Scheduler replaces
<aws.scheduler.scheduled-time> with the firing's time. The only boto3 code of schedules.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tarefa.cron import Rate
from tarefa.job import Priority
from tarefa.schedules import Deployed, Listed, Schedule

RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10}


class EventBridgeScheduler:
    def __init__(self, client: Any, group: str, role_arn: str, queue_arns: dict[Priority, str]) -> None:
        self.client = client
        self.group = group
        self.role_arn = role_arn
        self.queue_arns = queue_arns

    def put(self, schedule: Schedule) -> None:
        request: dict[str, Any] = {
            "Name": schedule.key,
            "GroupName": self.group,
            "ScheduleExpression": schedule.expression,
            "ScheduleExpressionTimezone": schedule.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if schedule.enabled else "DISABLED",
            "Description": f"tarefa schedule {schedule.key} ({schedule.type})",
            "Target": {
                "Arn": self.queue_arns[schedule.priority],
                "RoleArn": self.role_arn,
                "Input": schedule.message_template(),
                "RetryPolicy": RETRY_POLICY,
            },
        }
        parsed = schedule.parsed
        if isinstance(parsed, Rate):
            # A rate's firings count from `since`. Scheduler refuses a StartDate more than 5
            # minutes past (and an update without one restarts the rate now): so the first of
            # its firings still to come, which keeps the phase.
            request["StartDate"] = max(schedule.since, parsed.next_after(datetime.now(UTC), schedule.since))
        try:
            self.client.create_schedule(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConflictException":
                raise
            self.client.update_schedule(**request)  # a retried create, or a change

    def delete(self, schedule: Schedule) -> None:
        self.delete_key(schedule.key)

    def delete_key(self, key: str) -> None:
        try:
            self.client.delete_schedule(Name=key, GroupName=self.group)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise

    def listed(self) -> Iterator[Listed]:
        """ListSchedules of the group, every page (up to 100 a page)."""
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            page = self.client.list_schedules(GroupName=self.group, MaxResults=100, **extra)
            for entry in page.get("Schedules", []):
                if entry.get("GroupName", self.group) != self.group:
                    continue  # a group whose name merely contains ours (as an emulator may match)
                yield Listed(str(entry["Name"]), _moment(entry.get("LastModificationDate")))
            token = page.get("NextToken")
            if not token:
                return

    def deployed(self, key: str) -> Deployed | None:
        try:
            found = self.client.get_schedule(Name=key, GroupName=self.group)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        target = found.get("Target") or {}
        return Deployed(
            key=key,
            expression=str(found.get("ScheduleExpression", "")),
            timezone=str(found.get("ScheduleExpressionTimezone") or "UTC"),
            enabled=found.get("State", "ENABLED") == "ENABLED",
            target=str(target.get("Arn", "")),
            role=str(target.get("RoleArn", "")),
            input=str(target.get("Input", "")),
        )

    def wanted(self, schedule: Schedule) -> Deployed:
        return Deployed(
            key=schedule.key,
            expression=schedule.expression,
            timezone=schedule.timezone,
            enabled=schedule.enabled,
            target=self.queue_arns[schedule.priority],
            role=self.role_arn,
            input=schedule.message_template(),
        )


def _moment(value: Any) -> datetime | None:
    """botocore gives a datetime; an emulator's JSON may give seconds since the epoch."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None
