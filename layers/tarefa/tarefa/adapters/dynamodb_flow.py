"""Flow-control records in the idempotency table (tarefa.flow): concurrency slots, unique keys
and debounce bursts, each an item of its own under its prefix, each write conditional. Times are
epoch seconds; `expiration` is the table's TTL attribute, checked in every condition too (TTL
deletes late), so an expired item reads as absent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tarefa.flow import DebounceRecord, UniqueHolder

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

CHECK_FAILED = "ConditionalCheckFailedException"


class DynamoFlowStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    # -- concurrency slots ---------------------------------------------------------------------
    def take_slot(self, slot: str, holder: str, now: datetime, expires_at: datetime) -> bool:
        return self._put(
            {"id": _s(slot), "holder": _s(holder), "expiration": _n(expires_at)},
            "attribute_not_exists(id) OR expiration < :now OR holder = :holder",
            {":now": _n(now), ":holder": _s(holder)},
        )

    def free_slot(self, slot: str, holder: str) -> None:
        self._delete(slot, "holder = :holder", {":holder": _s(holder)})

    # -- unique keys ---------------------------------------------------------------------------
    def take_unique(self, key: str, job_id: str, now: datetime, expires_at: datetime) -> UniqueHolder | None:
        for _ in range(3):
            item = {"id": _s(key), "jobId": _s(job_id), "since": _ms(now), "expiration": _n(expires_at)}
            if self._put(item, "attribute_not_exists(id) OR expiration < :now", {":now": _n(now)}):
                return None
            found = self._get(key)
            if found is not None and int(found["expiration"]["N"]) >= int(now.timestamp()):
                return UniqueHolder(found["jobId"]["S"], _time(found["since"]))
        raise RuntimeError(f"unique key {key} neither taken nor held")

    def replace_unique(self, key: str, job_id: str, stale: str, now: datetime, expires_at: datetime) -> bool:
        item = {"id": _s(key), "jobId": _s(job_id), "since": _ms(now), "expiration": _n(expires_at)}
        return self._put(item, "jobId = :stale", {":stale": _s(stale)})

    def release_unique(self, key: str, job_id: str) -> None:
        self._delete(key, "jobId = :job", {":job": _s(job_id)})

    # -- debounce bursts -----------------------------------------------------------------------
    def debounce(self, key: str) -> DebounceRecord | None:
        item = self._get(key)  # an expired burst is replaced like a decided one: by its winner's state
        return None if item is None else _record(item)

    def debounce_join(
        self, key: str, job_id: str, now: datetime, expires_at: datetime
    ) -> DebounceRecord | None:
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key={"id": _s(key)},
                UpdateExpression="SET latest = :job, latestAt = :now, expiration = :expires",
                ConditionExpression="attribute_exists(id) AND attribute_not_exists(winner)",
                ExpressionAttributeValues={":job": _s(job_id), ":now": _ms(now), ":expires": _n(expires_at)},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == CHECK_FAILED:
                return None
            raise
        return _record(answer["Attributes"])

    def debounce_start(
        self, key: str, job_id: str, now: datetime, expires_at: datetime, replacing: DebounceRecord | None
    ) -> bool:
        item = {
            "id": _s(key),
            "firstAt": _ms(now),
            "latest": _s(job_id),
            "latestAt": _ms(now),
            "expiration": _n(expires_at),
        }
        if replacing is not None and replacing.winner is not None:
            item["previousWinner"] = _s(replacing.winner)
        if replacing is None:
            return self._put(item, "attribute_not_exists(id)", {})
        values: dict[str, Any] = {":latest": _s(replacing.latest), ":first": _ms(replacing.first_at)}
        condition = "latest = :latest AND firstAt = :first"
        if replacing.winner is not None:
            condition += " AND winner = :winner"
            values[":winner"] = _s(replacing.winner)
        return self._put(item, condition, values)

    def debounce_decide(self, key: str, latest: str, winner: str) -> bool:
        return self._update(
            key,
            "SET winner = :winner",
            "latest = :latest AND attribute_not_exists(winner)",
            {":winner": _s(winner), ":latest": _s(latest)},
        )

    def debounce_adopt(self, key: str, job_id: str, ghost: str) -> bool:
        return self._update(
            key,
            "SET latest = :job, winner = :job",
            "latest = :ghost AND attribute_not_exists(winner)",
            {":job": _s(job_id), ":ghost": _s(ghost)},
        )

    def mark_won(self, job_id: str, expires_at: datetime) -> None:
        item = {"id": _s(f"debounce-won#{job_id}"), "expiration": _n(expires_at)}
        self.client.put_item(TableName=self.table, Item=item)

    def has_won(self, job_id: str) -> bool:
        return self._get(f"debounce-won#{job_id}") is not None

    # -- the conditional writes ---------------------------------------------------------------
    def _get(self, key: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.client.get_item(
            TableName=self.table, Key={"id": _s(key)}, ConsistentRead=True
        ).get("Item")
        return item

    def _put(self, item: dict[str, Any], condition: str, values: dict[str, Any]) -> bool:
        extra: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition, **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == CHECK_FAILED:
                return False
            raise
        return True

    def _update(self, key: str, expression: str, condition: str, values: dict[str, Any]) -> bool:
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"id": _s(key)},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == CHECK_FAILED:
                return False
            raise
        return True

    def _delete(self, key: str, condition: str, values: dict[str, Any]) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"id": _s(key)},
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != CHECK_FAILED:
                raise


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(moment: datetime) -> dict[str, str]:
    """Epoch seconds: the TTL attribute's unit."""
    return {"N": str(int(moment.timestamp()))}


def _ms(moment: datetime) -> dict[str, str]:
    """Epoch milliseconds, floored: a burst's times, compared with its jobs' creation."""
    return {"N": str(int(moment.timestamp() * 1000))}


def _time(value: dict[str, str]) -> datetime:
    return datetime.fromtimestamp(int(value["N"]) / 1000, UTC)


def _record(item: dict[str, Any]) -> DebounceRecord:
    return DebounceRecord(
        first_at=_time(item["firstAt"]),
        latest=item["latest"]["S"],
        latest_at=_time(item["latestAt"]),
        winner=item["winner"]["S"] if "winner" in item else None,
        previous_winner=item["previousWinner"]["S"] if "previousWinner" in item else None,
    )
