"""Webhook subscriptions and their delivery log in DynamoDB (the WebhooksTable).

One table, keys `pk`/`sk`:
- `SUB#<id>` / `SUB`: a subscription (its JSON in `doc`, `version` for optimistic locking);
  `ownerKey` + `createdKey` put it in ByOwner (a user's subscriptions, newest first),
  `allShard` ("all#0..3") + `createdKey` in ByCreated (every one, for admins).
- `URL#<sha256(owner, url)>` / `URL`: the owner's URL is taken (written with the subscription in
  one transaction, so one URL is one subscription per owner), naming the subscription.
- `DLV#<id>#<0..3>` / `DLV#<delivery id>`: a delivery and its attempts, over four partitions per
  subscription (a busy subscription's log is no hot key); ids sort by creation.
- `KEY#<hash>` / `KEY`: a publish key's delivery (written with it in one transaction).
Deliveries and keys expire (`expiresAt`, the table's TTL). Nothing here scans.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from tarefa.errors import ConflictError
from tarefa.webhooks import Delivery, Subscription

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

LIST_SHARDS = 4
DELIVERY_SHARDS = 4


def _url_key(user_id: str, url: str) -> str:
    return "URL#" + hashlib.sha256(f"{user_id}\x00{url}".encode()).hexdigest()


def _shard(subscription_id: str) -> str:
    return f"all#{zlib.crc32(subscription_id.encode()) % LIST_SHARDS}"


def _delivery_partition(subscription_id: str, delivery_id: str) -> str:
    return f"DLV#{subscription_id}#{zlib.crc32(delivery_id.encode()) % DELIVERY_SHARDS}"


class DynamoWebhookStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    # -- subscriptions ---------------------------------------------------------------------
    def _item(self, subscription: Subscription) -> dict[str, AttributeValueTypeDef]:
        return {
            "pk": {"S": f"SUB#{subscription.id}"},
            "sk": {"S": "SUB"},
            "doc": {"S": subscription.model_dump_json(by_alias=True)},
            "version": {"N": str(subscription.version)},
            "ownerKey": {"S": subscription.user_id},
            "allShard": {"S": _shard(subscription.id)},
            "createdKey": {"S": subscription.listing_key},
        }

    def create(self, subscription: Subscription) -> None:
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": _url_key(subscription.user_id, subscription.url)},
                                "sk": {"S": "URL"},
                                "subscriptionId": {"S": subscription.id},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._item(subscription),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConflictError(subscription.id) from None
            raise

    def get(self, subscription_id: str) -> Subscription | None:
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"SUB#{subscription_id}"}, "sk": {"S": "SUB"}},
            ConsistentRead=True,
        ).get("Item")
        return Subscription.model_validate_json(item["doc"]["S"]) if item else None

    def by_url(self, user_id: str, url: str) -> Subscription | None:
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": _url_key(user_id, url)}, "sk": {"S": "URL"}},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return None
        found = self.get(item["subscriptionId"]["S"])
        return found if found is not None and found.user_id == user_id and found.url == url else None

    def for_user(
        self, user_id: str | None, limit: int, before_key: str | None
    ) -> tuple[list[Subscription], str | None]:
        if user_id is not None:
            partitions = [("ByOwner", "ownerKey", user_id)]
        else:
            partitions = [("ByCreated", "allShard", f"all#{n}") for n in range(LIST_SHARDS)]
        entries: list[tuple[str, str]] = []
        more = False
        for index, attribute, value in partitions:
            condition = "#p = :p" + (" AND createdKey < :before" if before_key else "")
            values: dict[str, AttributeValueTypeDef] = {":p": {"S": value}}
            if before_key:
                values[":before"] = {"S": before_key}
            page = self.client.query(
                TableName=self.table,
                IndexName=index,
                KeyConditionExpression=condition,
                ExpressionAttributeNames={"#p": attribute},
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                Limit=limit,
            )
            entries += [(e["createdKey"]["S"], e["pk"]["S"].removeprefix("SUB#")) for e in page["Items"]]
            more = more or "LastEvaluatedKey" in page
        entries.sort(reverse=True)
        more = more or len(entries) > limit
        entries = entries[:limit]
        found = self._batch_get([sid for _, sid in entries])
        ordered = [found[sid] for _, sid in entries if sid in found]
        return ordered, (entries[-1][0] if more and entries else None)

    def _batch_get(self, ids: list[str]) -> dict[str, Subscription]:
        found: dict[str, Subscription] = {}
        keys: list[dict[str, AttributeValueTypeDef]] = [
            {"pk": {"S": f"SUB#{i}"}, "sk": {"S": "SUB"}} for i in ids
        ]
        while keys:
            response = self.client.batch_get_item(RequestItems={self.table: {"Keys": keys[:100]}})
            for item in response["Responses"].get(self.table, []):
                subscription = Subscription.model_validate_json(item["doc"]["S"])
                found[subscription.id] = subscription
            unprocessed = response.get("UnprocessedKeys") or {}
            keys = keys[100:] + list(unprocessed[self.table]["Keys"] if self.table in unprocessed else [])
        return found

    def save(self, subscription: Subscription, expected_version: int) -> None:
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(subscription),
                ConditionExpression="version = :version",
                ExpressionAttributeValues={":version": {"N": str(expected_version)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(subscription.id) from None
            raise

    def delete(self, subscription: Subscription) -> None:
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": {"pk": {"S": f"SUB#{subscription.id}"}, "sk": {"S": "SUB"}},
                    }
                },
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": {
                            "pk": {"S": _url_key(subscription.user_id, subscription.url)},
                            "sk": {"S": "URL"},
                        },
                        "ConditionExpression": "attribute_not_exists(pk) OR subscriptionId = :id",
                        "ExpressionAttributeValues": {":id": {"S": subscription.id}},
                    }
                },
            ]
        )

    # -- deliveries ------------------------------------------------------------------------
    @staticmethod
    def _delivery_item(delivery: Delivery, expires_at: datetime) -> dict[str, AttributeValueTypeDef]:
        return {
            "pk": {"S": _delivery_partition(delivery.subscription_id, delivery.id)},
            "sk": {"S": f"DLV#{delivery.id}"},
            "doc": {"S": delivery.model_dump_json(by_alias=True)},
            "expiresAt": {"N": str(int(expires_at.timestamp()))},
        }

    def claim_delivery(self, delivery: Delivery, key_hash: str, expires_at: datetime) -> Delivery | None:
        key = {"pk": {"S": f"KEY#{key_hash}"}, "sk": {"S": "KEY"}}
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                **key,
                                "deliveryId": {"S": delivery.id},
                                "expiresAt": {"N": str(int(expires_at.timestamp()))},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._delivery_item(delivery, expires_at),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
            return None
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if not item:  # the claim failed for another reason (a conflicting transaction): try again
            raise ConflictError(delivery.id)
        earlier = self.get_delivery(delivery.subscription_id, item["deliveryId"]["S"])
        if earlier is None:
            raise ConflictError(delivery.id)
        return earlier

    def get_delivery(self, subscription_id: str, delivery_id: str) -> Delivery | None:
        item = self.client.get_item(
            TableName=self.table,
            Key={
                "pk": {"S": _delivery_partition(subscription_id, delivery_id)},
                "sk": {"S": f"DLV#{delivery_id}"},
            },
            ConsistentRead=True,
        ).get("Item")
        return Delivery.model_validate_json(item["doc"]["S"]) if item else None

    def put_delivery(self, delivery: Delivery, expires_at: datetime) -> None:
        self.client.put_item(TableName=self.table, Item=self._delivery_item(delivery, expires_at))

    def deliveries(
        self, subscription_id: str, limit: int, after: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first across the subscription's partitions (ids sort by creation time)."""
        found: list[Delivery] = []
        more = False
        for shard in range(DELIVERY_SHARDS):
            values: dict[str, AttributeValueTypeDef] = {":pk": {"S": f"DLV#{subscription_id}#{shard}"}}
            condition = "pk = :pk"
            if after:
                condition += " AND sk < :before"
                values[":before"] = {"S": f"DLV#{after}"}
            page = self.client.query(
                TableName=self.table,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                Limit=limit,
            )
            found += [Delivery.model_validate_json(i["doc"]["S"]) for i in page["Items"]]
            more = more or "LastEvaluatedKey" in page
        found.sort(key=lambda d: d.id, reverse=True)
        more = more or len(found) > limit
        found = found[:limit]
        return found, (found[-1].id if more and found else None)
