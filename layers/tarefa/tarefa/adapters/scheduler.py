"""EventBridge Scheduler: one schedule per user schedule, in the stage's schedule group.

The target is the job type's priority queue (an SQS target), assumed through the role the
template scopes to sqs:SendMessage on the three priority queues; its Input is the job message
(tarefa.schedules.Schedule.message_template) in which Scheduler replaces
<aws.scheduler.scheduled-time> with the firing's time. The only boto3 code of schedules.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tarefa.cron import Rate
from tarefa.job import Priority
from tarefa.schedules import Schedule

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
        try:
            self.client.delete_schedule(Name=schedule.key, GroupName=self.group)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
