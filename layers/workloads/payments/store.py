"""The payments table (one table, `PAYMENTS_TABLE`): the workload's only boto3 importer.

Items, by `pk`:
- `payment#<id>`: a payment; `doc` holds the record as JSON, `version` guards every write.
- `order#<owner>#<orderId>`: which payment an order made, written in one transaction with it,
  so the same orderId can never make two payments.
- `subscription#<id>`: a subscription.

Indexes:
- `ByOwner` (`ownerKind`, `createdAt`): a user's payments or subscriptions, newest first.
- `RenewalsDue` (`renewShard`, `paidUntil`), sparse: only ACTIVE subscriptions carry the shard,
  one of `RENEW_SHARDS`, so the daily run reads the subscriptions that fall due with a Query per
  shard (never a scan) and no one partition takes every subscription's writes.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from payments.models import Payment, Subscription, SubscriptionStatus
from tarefa import Refusal

RENEW_SHARDS = 8
TABLE_VARIABLE = "PAYMENTS_TABLE"
Record = TypeVar("Record", Payment, Subscription)


class StaleRecordError(Exception):
    """The record changed since it was read: read it again and decide again."""


class OrderExistsError(Exception):
    def __init__(self, payment_id: str, fingerprint: str) -> None:
        super().__init__(payment_id)
        self.payment_id = payment_id
        self.fingerprint = fingerprint


def _doc(record: BaseModel) -> str:
    """The record as JSON, with the fields every view leaves out (a card token): the store is
    the one place that keeps them."""
    body = record.model_dump(mode="json", by_alias=True)
    for name, info in type(record).model_fields.items():
        value = getattr(record, name)
        if info.exclude and value is not None:
            body[info.alias or name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(body, separators=(",", ":"))


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def renew_shard(subscription_id: str) -> str:
    return str(zlib.crc32(subscription_id.encode()) % RENEW_SHARDS)


class PaymentsStore:
    def __init__(self, table: str | None = None, client: Any = None) -> None:
        self.table = table or os.environ[TABLE_VARIABLE]
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.client = client

    # -- payments ------------------------------------------------------------------------------
    def get_payment(self, payment_id: str) -> Payment | None:
        return self._get(f"payment#{payment_id}", Payment)

    def order(self, owner: str, order_id: str) -> tuple[str, str] | None:
        """(paymentId, fingerprint) of the payment an order made, if any."""
        item = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"order#{owner}#{order_id}"}}, ConsistentRead=True
        ).get("Item")
        return (item["paymentId"]["S"], item["fingerprint"]["S"]) if item else None

    def create_payment(self, payment: Payment, fingerprint: str) -> None:
        """The payment and its order in one transaction; OrderExistsError if the order made one."""
        order_key = f"order#{payment.owner}#{payment.order_id}"
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": order_key},
                                "paymentId": {"S": payment.payment_id},
                                "fingerprint": {"S": fingerprint},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._payment_item(payment),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException:
            found = self.order(payment.owner, payment.order_id)
            if found is None:  # the payment id was taken (a uuid4 twice: never), or a race lost
                raise StaleRecordError(payment.payment_id) from None
            raise OrderExistsError(*found) from None

    def put_payment(self, payment: Payment, expected_version: int) -> Payment:
        """Write `payment` as version expected+1; StaleRecordError if someone wrote first."""
        written = payment.model_copy(update={"version": expected_version + 1})
        self._put(self._payment_item(written), expected_version)
        return written

    def list_payments(
        self, owner: str, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Payment], str | None]:
        return self._list(f"{owner}#payment", Payment, status, cursor, limit)

    # -- subscriptions -------------------------------------------------------------------------
    def get_subscription(self, subscription_id: str) -> Subscription | None:
        return self._get(f"subscription#{subscription_id}", Subscription)

    def create_subscription(self, subscription: Subscription) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=self._subscription_item(subscription),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def put_subscription(self, subscription: Subscription, expected_version: int) -> Subscription:
        written = subscription.model_copy(update={"version": expected_version + 1})
        self._put(self._subscription_item(written), expected_version)
        return written

    def due_subscriptions(self, until: datetime) -> Iterator[tuple[str, int]]:
        """(subscriptionId, nextPeriod) of every ACTIVE subscription paid until `until` or less."""
        for shard in range(RENEW_SHARDS):
            start: dict[str, Any] | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "TableName": self.table,
                    "IndexName": "RenewalsDue",
                    "KeyConditionExpression": "renewShard = :s AND paidUntil <= :u",
                    "ExpressionAttributeValues": {":s": {"S": str(shard)}, ":u": {"S": _stamp(until)}},
                }
                if start:
                    kwargs["ExclusiveStartKey"] = start
                page = self.client.query(**kwargs)
                for item in page.get("Items", []):
                    yield item["pk"]["S"].removeprefix("subscription#"), int(item["nextPeriod"]["N"])
                start = page.get("LastEvaluatedKey")
                if not start:
                    break

    # -- items -----------------------------------------------------------------------------------
    def _payment_item(self, payment: Payment) -> dict[str, Any]:
        return {
            "pk": {"S": f"payment#{payment.payment_id}"},
            "ownerKind": {"S": f"{payment.owner}#payment"},
            "createdAt": {"S": _stamp(payment.created_at)},
            "status": {"S": str(payment.status)},
            "version": {"N": str(payment.version)},
            "doc": {"S": _doc(payment)},
        }

    def _subscription_item(self, subscription: Subscription) -> dict[str, Any]:
        item = {
            "pk": {"S": f"subscription#{subscription.subscription_id}"},
            "ownerKind": {"S": f"{subscription.owner}#subscription"},
            "createdAt": {"S": _stamp(subscription.created_at)},
            "status": {"S": str(subscription.status)},
            "version": {"N": str(subscription.version)},
            "doc": {"S": _doc(subscription)},
        }
        if subscription.status == SubscriptionStatus.ACTIVE:  # in RenewalsDue only while active
            item["renewShard"] = {"S": renew_shard(subscription.subscription_id)}
            item["paidUntil"] = {"S": _stamp(subscription.paid_until)}
            item["nextPeriod"] = {"N": str(subscription.next_period)}
        return item

    def _get(self, key: str, model: type[Record]) -> Record | None:
        item = self.client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True).get(
            "Item"
        )
        return model.model_validate_json(item["doc"]["S"]) if item else None

    def _put(self, item: dict[str, Any], expected_version: int) -> None:
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": str(expected_version)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise StaleRecordError(item["pk"]["S"]) from None

    def _list(
        self, owner_kind: str, model: type[Record], status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Record], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "ByOwner",
            "KeyConditionExpression": "ownerKind = :o",
            "ExpressionAttributeValues": {":o": {"S": owner_kind}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if status:
            kwargs["FilterExpression"] = "#s = :s"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"][":s"] = {"S": status}
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_cursor(cursor, owner_kind)
        page = self.client.query(**kwargs)
        records = [model.model_validate_json(item["doc"]["S"]) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return records, (encode_cursor(last) if last else None)


class BadCursorError(Refusal):
    code = "VALIDATION_ERROR"
    status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message, [{"field": "cursor", "message": message}])


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, owner_kind: str) -> dict[str, Any]:
    """The page's start key, refused unless it is one of this owner's (no peeking elsewhere)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(key, dict) or key.get("ownerKind", {}).get("S") != owner_kind:
            raise ValueError
        return {k: {"S": str(v["S"])} for k, v in key.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BadCursorError("cursor is not one this listing gave") from None
