"""Job counts and per-minute figures in DynamoDB (the stats table).

Items: the counts ("counts"/"all", one number per priority and status), one item per minute
("minutes"/"2026-11-22T10:31Z", numbers per priority: the sums of MinuteFigures and the
histogram's h<i>), and one marker per recorded batch
("batches"/<token>). A batch is one transaction: its marker's condition makes a retried batch a
no-op, on AWS and on the emulator alike. Writes come from the stream consumer, a few a second at
1,000 jobs/s, so the fixed keys are not hot; a read is one GetItem and one Query.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tarefa.job import JobStatus, Priority
from tarefa.stats import SUMS, MinuteFigures, StatsSnapshot, Tally

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

COUNTS_KEY = {"pk": {"S": "counts"}, "sk": {"S": "all"}}
MINUTE_FORMAT = "%Y-%m-%dT%H:%MZ"
MINUTES_KEPT = timedelta(hours=2)  # the longest window is one hour; TTL removes the rest
BATCH_MARKER_KEPT = timedelta(days=2)  # longer than a stream keeps its records (24 h)
TRANSACTION_ITEMS = 100


class DynamoStatsStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    def add(self, tally: Tally, token: str) -> None:
        updates = [u for u in [self._counts_update(tally), *self._minute_updates(tally)] if u]
        per_transaction = TRANSACTION_ITEMS - 1  # one place for the batch marker
        for part, start in enumerate(range(0, len(updates), per_transaction)):
            self._transact(updates[start : start + per_transaction], f"{token}-{part}")

    def _transact(self, updates: list[dict[str, Any]], marker: str) -> None:
        expires = _epoch(datetime.now(UTC) + BATCH_MARKER_KEPT)  # only for TTL to tidy up
        items: Any = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {"pk": {"S": "batches"}, "sk": {"S": marker}, "expiresAt": {"N": expires}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            *({"Update": {"TableName": self.table, **update}} for update in updates),
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return  # this batch was recorded before: a retry
            raise

    @staticmethod
    def _counts_update(tally: Tally) -> dict[str, Any] | None:
        deltas = {f"{p}#{s}": n for (p, s), n in tally.counts.items() if n}
        return _add_update(COUNTS_KEY, deltas, None) if deltas else None

    @staticmethod
    def _minute_updates(tally: Tally) -> list[dict[str, Any]]:
        by_minute: dict[datetime, dict[str, float]] = defaultdict(dict)
        for (minute, priority), figures in tally.minutes.items():
            by_minute[minute].update(_encode(priority, figures))
        return [
            _add_update(
                {"pk": {"S": "minutes"}, "sk": {"S": minute.strftime(MINUTE_FORMAT)}},
                {k: v for k, v in values.items() if v},
                _epoch(minute + MINUTES_KEPT),
            )
            for minute, values in sorted(by_minute.items())
            if any(values.values())
        ]

    def read(self, since: datetime) -> StatsSnapshot:
        counts_item = self.client.get_item(TableName=self.table, Key=COUNTS_KEY).get("Item", {})
        counts: dict[tuple[Priority, JobStatus], int] = {}
        for name, value in counts_item.items():
            priority, _, status = name.partition("#")
            if priority in Priority.__members__ and status in JobStatus.__members__:
                counts[(Priority(priority), JobStatus(status))] = int(value["N"])
        minutes: dict[tuple[datetime, Priority], MinuteFigures] = {}
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk >= :since",
            "ExpressionAttributeValues": {
                ":pk": {"S": "minutes"},
                ":since": {"S": since.astimezone(UTC).strftime(MINUTE_FORMAT)},
            },
        }
        while True:
            page = self.client.query(**query)
            for item in page.get("Items", []):
                begins = datetime.strptime(item["sk"]["S"], MINUTE_FORMAT).replace(tzinfo=UTC)
                for priority in Priority:
                    figures = _decode(priority, item)
                    if figures is not None:
                        minutes[(begins, priority)] = figures
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return StatsSnapshot(counts, minutes)


def _encode(priority: Priority, figures: MinuteFigures) -> dict[str, float]:
    values = {name: getattr(figures, name) for name in SUMS}
    values.update({f"h{bucket}": runs for bucket, runs in figures.histogram.items()})
    return {f"{priority}#{name}": value for name, value in values.items()}


def _decode(priority: Priority, item: dict[str, Any]) -> MinuteFigures | None:
    prefix = f"{priority}#"
    values = {k[len(prefix) :]: float(v["N"]) for k, v in item.items() if k.startswith(prefix)}
    if not values:
        return None
    return MinuteFigures(
        **{name: values.get(name, 0) for name in SUMS},
        histogram={int(k[1:]): v for k, v in values.items() if k.startswith("h") and k[1:].isdigit()},
    )


def _add_update(key: dict[str, Any], deltas: Mapping[str, float], expires: str | None) -> dict[str, Any]:
    names = {f"#a{i}": name for i, name in enumerate(deltas)}
    values: dict[str, Any] = {f":a{i}": {"N": _number(v)} for i, v in enumerate(deltas.values())}
    expression = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(deltas)))
    if expires is not None:
        names["#expires"] = "expiresAt"
        values[":expires"] = {"N": expires}
        expression = "SET #expires = :expires " + expression
    return {
        "Key": key,
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _epoch(moment: datetime) -> str:
    return str(int(moment.timestamp()))
