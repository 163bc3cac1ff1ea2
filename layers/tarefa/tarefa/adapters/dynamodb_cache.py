"""The cache backend on DynamoDB, for teams that keep their functions out of a VPC.

Items: `pk` (one of SHARDS partitions, by key hash: no hot partition), `sk` (the key), `value`,
`until` (exact expiry, checked on every read because TTL deletes items only eventually) and
`expiresAt` (whole seconds, the table's TTL attribute). Prefix deletion queries each shard with
`begins_with`, never a Scan.

Sliding windows are bucketed: one attribute `b<n>` per 1/60 of the window, so an item stays
under 1 KB (one write unit) whatever the limit. A hit is one UpdateItem that ADDs its cost (1, or
a batch's jobs) to the current bucket, drops the buckets that just expired and returns the item;
a hit over the limit is taken back with a second update. Concurrent hits are serialised by DynamoDB, so the limit is never exceeded; a
bucket counts until its end leaves the window, so the window errs by at most 1/60 on the strict
side.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tarefa.ports import WindowCount

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

SHARDS = 64
BUCKETS_PER_WINDOW = 60
# Every hit removes the buckets that expired in the last few bucket-widths, which keeps the item
# of a busy key clean in one write. Buckets of sparse hits stay (they are not counted) until
# the item holds more than MAX_BUCKET_ATTRIBUTES; then one extra write removes them all.
RECENTLY_EXPIRED = 4
MAX_BUCKET_ATTRIBUTES = 60
BATCH = 25


def _shard(key: str) -> str:
    return f"s{zlib.crc32(key.encode()) % SHARDS:02d}"


def _key(key: str) -> dict[str, Any]:
    return {"pk": {"S": _shard(key)}, "sk": {"S": key}}


def _conditional_failure(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class DynamoCacheBackend:
    name = "dynamodb"

    def __init__(self, client: DynamoDBClient, table: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    def get(self, key: str) -> str | None:
        item = self.client.get_item(TableName=self.table, Key=_key(key), ConsistentRead=True).get("Item")
        if item is None or "value" not in item or float(item["until"]["N"]) <= self.clock():
            return None
        return item["value"]["S"]

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        self.client.put_item(TableName=self.table, Item=self._item(key, value, ttl_seconds))

    def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(key, value, ttl_seconds),
                ConditionExpression="attribute_not_exists(sk) OR #until <= :now",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues={":now": {"N": repr(self.clock())}},
            )
            return True
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise

    def release(self, key: str, value: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=_key(key),
                ConditionExpression="#value = :value",
                ExpressionAttributeNames={"#value": "value"},
                ExpressionAttributeValues={":value": {"S": value}},
            )
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise

    def delete(self, keys: Iterable[str]) -> None:
        self._delete_keys([_key(k) for k in dict.fromkeys(keys)])

    def delete_prefix(self, prefix: str) -> int:
        found: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("query")
        for shard in range(SHARDS):
            pages = paginator.paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": {"S": f"s{shard:02d}"}, ":prefix": {"S": prefix}},
                ProjectionExpression="pk, sk",
            )
            for page in pages:
                found.extend(page.get("Items", []))
        self._delete_keys(found)
        return len(found)

    def hit_window(
        self, key: str, limit: int, window_seconds: float, now: float, cost: int = 1
    ) -> WindowCount:
        width = window_seconds / BUCKETS_PER_WINDOW
        current = math.floor(now / width)
        first_live = math.floor((now - window_seconds) / width)  # ends inside the window
        just_expired = [f"b{n}" for n in range(first_live - RECENTLY_EXPIRED, first_live)]
        names = {f"#e{i}": name for i, name in enumerate(just_expired)}
        item = self.client.update_item(
            TableName=self.table,
            Key=_key(key),
            UpdateExpression="ADD #b :cost SET #exp = :exp REMOVE " + ", ".join(names),
            ExpressionAttributeNames={"#b": f"b{current}", "#exp": "expiresAt", **names},
            ExpressionAttributeValues={
                ":cost": {"N": str(cost)},
                ":exp": {"N": str(math.ceil(now + window_seconds + width))},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        buckets = {int(name[1:]): int(v["N"]) for name, v in item.items() if name.startswith("b")}
        live = {n: c for n, c in buckets.items() if n >= first_live and c > 0}
        count = sum(live.values())
        over = count > limit
        if over:  # over: take these hits back (rare, so the common path is one write)
            self.client.update_item(
                TableName=self.table,
                Key=_key(key),
                UpdateExpression="ADD #b :minus",
                ExpressionAttributeNames={"#b": f"b{current}"},
                ExpressionAttributeValues={":minus": {"N": str(-cost)}},
            )
            live[current] -= cost
            count -= cost
        stale = [n for n in buckets if n < first_live]
        if stale and len(buckets) > MAX_BUCKET_ATTRIBUTES:  # left by sparse hits; keeps it < 1 KB
            self.client.update_item(
                TableName=self.table,
                Key=_key(key),
                UpdateExpression="REMOVE " + ", ".join(f"#s{i}" for i in range(len(stale))),
                ExpressionAttributeNames={f"#s{i}": f"b{n}" for i, n in enumerate(stale)},
            )
        oldest = min((n for n, c in live.items() if c > 0), default=None)
        return WindowCount(
            allowed=not over,
            count=count,
            oldest_at=(oldest + 1) * width if oldest is not None else None,
        )

    def ping(self) -> None:
        """A data-plane read (DescribeTable is throttled at a few calls a second)."""
        self.client.get_item(TableName=self.table, Key=_key("ping"), ProjectionExpression="pk")

    # -- internals -------------------------------------------------------------------------
    def _item(self, key: str, value: str, ttl_seconds: float) -> dict[str, Any]:
        until = self.clock() + ttl_seconds
        return {
            **_key(key),
            "value": {"S": value},
            "until": {"N": repr(until)},
            "expiresAt": {"N": str(math.ceil(until))},
        }

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        for start in range(0, len(keys), BATCH):
            requests: Any = {self.table: [{"DeleteRequest": {"Key": k}} for k in keys[start : start + BATCH]]}
            for _ in range(5):
                unprocessed = self.client.batch_write_item(RequestItems=requests).get("UnprocessedItems")
                if not unprocessed:
                    break
                requests = unprocessed
