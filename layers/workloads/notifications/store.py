"""The notifications table (`NOTIFICATIONS_TABLE`): the package's only DynamoDB code.

One item per notification, `pk = notification#<id>` (a UUID: no hot key): `doc` holds the
message as written once (its owner's addresses and body: personal data, encrypted at rest,
never logged), the top-level attributes what changes: `status`, `jobId`, `provider`,
`providerMessageId`, `reason`, `updatedAt`. `expiresAt` is the TTL: the platform's job retention
after the notification was made. Every change is conditional: a notification leaves QUEUED once.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from notifications.models import Notification, NotificationStatus

TABLE_VARIABLE = "NOTIFICATIONS_TABLE"
MUTABLE = ("status", "jobId", "provider", "providerMessageId", "reason", "updatedAt")


class NotificationExistsError(Exception):
    def __init__(self, existing: Notification) -> None:
        super().__init__(existing.notification_id)
        self.existing = existing


class NotificationsStore:
    def __init__(self, table: str | None = None, client: Any = None) -> None:
        self.table = table or os.environ[TABLE_VARIABLE]
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.client = client

    def create(self, notification: Notification) -> None:
        """Write it if its id is free; NotificationExistsError (with the stored one) if not."""
        fixed = notification.model_dump(mode="json", by_alias=True, exclude=set(_names(MUTABLE)))
        item: dict[str, Any] = {
            "pk": {"S": _key(notification.notification_id)},
            "owner": {"S": notification.owner},
            "doc": {"S": json.dumps(fixed, separators=(",", ":"))},
            "status": {"S": str(notification.status)},
            "updatedAt": {"S": notification.updated_at.isoformat()},
            "expiresAt": {"N": str(notification.expires_at)},
        }
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            existing = self.get(notification.notification_id)
            if existing is None:  # expired between the two calls: never in practice
                raise
            raise NotificationExistsError(existing) from None

    def get(self, notification_id: str) -> Notification | None:
        item = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": _key(notification_id)}}, ConsistentRead=True
        ).get("Item")
        return _notification(item) if item else None

    def set_job(self, notification_id: str, job_id: str) -> Notification | None:
        """Note its job (once); the notification as it is now."""
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": _key(notification_id)}},
                UpdateExpression="SET jobId = :j",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(jobId)",
                ExpressionAttributeValues={":j": {"S": job_id}},
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return self.get(notification_id)
        return _notification(answer["Attributes"])

    def finish(
        self,
        notification_id: str,
        status: NotificationStatus,
        at: datetime,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> Notification | None:
        """QUEUED -> SENT or FAILED, only from QUEUED (a late or repeated attempt changes
        nothing); the notification as it is now."""
        names = {"#s": "status"}
        values: dict[str, Any] = {
            ":s": {"S": str(status)},
            ":q": {"S": str(NotificationStatus.QUEUED)},
            ":u": {"S": at.isoformat()},
        }
        sets = ["#s = :s", "updatedAt = :u"]
        for attribute, value in (
            ("provider", provider),
            ("providerMessageId", provider_message_id),
            ("reason", reason),
        ):
            if value is not None:
                sets.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = {"S": value}
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": _key(notification_id)}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(pk) AND #s = :q",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return self.get(notification_id)
        return _notification(answer["Attributes"])


def _key(notification_id: str) -> str:
    return f"notification#{notification_id}"


def _names(aliases: tuple[str, ...]) -> list[str]:
    fields = Notification.model_fields
    return [name for name, info in fields.items() if (info.alias or name) in aliases]


def _notification(item: dict[str, Any]) -> Notification:
    data: dict[str, Any] = json.loads(item["doc"]["S"])
    for attribute in MUTABLE:
        if attribute in item:
            data[attribute] = item[attribute]["S"]
    return Notification.model_validate(data)
