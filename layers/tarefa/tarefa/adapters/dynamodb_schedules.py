"""Schedules' definitions and bulk operations' records in DynamoDB (the schedules table).

One item per schedule (`owner`, `item = schedule#<name>`) and per bulk operation (`owner`,
`item = bulk#<id>`), the model as JSON in `data`. A user's listing is a Query of their partition;
an admin's is a Query of each of the four shards of the sparse index AllSchedules (written for
schedules only). No scans.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tarefa.bulk import BulkOperation
from tarefa.errors import ConflictError, MalformedRequestError
from tarefa.schedules import Schedule, SchedulePage

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

ALL_SHARDS = 4
SCHEDULE = "schedule#"
BULK = "bulk#"


class DynamoEngineStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    # -- schedules ---------------------------------------------------------------------------
    def get_schedule(self, owner: str, name: str) -> Schedule | None:
        item = self._get(owner, SCHEDULE + name)
        return Schedule.model_validate_json(item["data"]["S"]) if item else None

    def create_schedule(self, schedule: Schedule) -> None:
        self._put(self._schedule_item(schedule), None)

    def replace_schedule(self, schedule: Schedule, expected_version: int) -> None:
        self._put(self._schedule_item(schedule), expected_version)

    def delete_schedule(self, owner: str, name: str) -> None:
        self.client.delete_item(TableName=self.table, Key=_key(owner, SCHEDULE + name))

    def list_schedules(self, owner: str | None, limit: int, cursor: dict[str, Any] | None) -> SchedulePage:
        if owner is not None:
            values: dict[str, AttributeValueTypeDef] = {":o": {"S": owner}, ":p": {"S": SCHEDULE}}
            extra: dict[str, Any] = {}
            if cursor and isinstance(cursor.get("after"), str):
                extra["ExclusiveStartKey"] = _key(owner, SCHEDULE + str(cursor["after"]))
            page = self.client.query(
                TableName=self.table,
                KeyConditionExpression="#o = :o AND begins_with(#i, :p)",
                ExpressionAttributeNames={"#o": "owner", "#i": "item"},
                ExpressionAttributeValues=values,
                Limit=limit,
                **extra,
            )
            items = [Schedule.model_validate_json(i["data"]["S"]) for i in page["Items"]]
            more = "LastEvaluatedKey" in page and items
            return SchedulePage(items, {"after": items[-1].name} if more else None)
        shard = int(cursor.get("shard", 0)) if cursor else 0
        start = cursor.get("key") if cursor else None
        found: list[Schedule] = []
        while shard < ALL_SHARDS and len(found) < limit:
            extra = {}
            if isinstance(start, str):
                extra["ExclusiveStartKey"] = _start_key(start)
            page = self.client.query(
                TableName=self.table,
                IndexName="AllSchedules",
                KeyConditionExpression="allShard = :s",
                ExpressionAttributeValues={":s": {"S": f"all#{shard}"}},
                Limit=limit - len(found),
                **extra,
            )
            found += [Schedule.model_validate_json(i["data"]["S"]) for i in page["Items"]]
            if "LastEvaluatedKey" in page:
                start = json.dumps(page["LastEvaluatedKey"], separators=(",", ":"))
            else:
                shard, start = shard + 1, None
        if shard >= ALL_SHARDS:
            return SchedulePage(found, None)
        return SchedulePage(found, {"shard": shard, "key": start} if start else {"shard": shard})

    def _schedule_item(self, schedule: Schedule) -> dict[str, AttributeValueTypeDef]:
        shard = zlib.crc32(f"{schedule.owner}\x00{schedule.name}".encode()) % ALL_SHARDS
        return {
            **_key(schedule.owner, SCHEDULE + schedule.name),
            "data": {"S": schedule.model_dump_json(by_alias=True)},
            "version": {"N": str(schedule.version)},
            "allShard": {"S": f"all#{shard}"},
            "listKey": {"S": f"{schedule.name}#{schedule.owner}"},
        }

    # -- bulk operations ---------------------------------------------------------------------
    def get_operation(self, requester: str, operation_id: str) -> BulkOperation | None:
        item = self._get(requester, BULK + operation_id)
        return BulkOperation.model_validate_json(item["data"]["S"]) if item else None

    def put_operation(self, operation: BulkOperation, expected_version: int | None) -> None:
        self._put(
            {
                **_key(operation.requester, BULK + operation.operation_id),
                "data": {"S": operation.model_dump_json(by_alias=True)},
                "version": {"N": str(operation.version)},
            },
            expected_version,
        )

    # -- plumbing ----------------------------------------------------------------------------
    def _get(self, owner: str, item: str) -> dict[str, Any] | None:
        found = self.client.get_item(TableName=self.table, Key=_key(owner, item), ConsistentRead=True)
        return found.get("Item")

    def _put(self, item: dict[str, AttributeValueTypeDef], expected_version: int | None) -> None:
        if expected_version is None:
            check: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(#i)"}
            check["ExpressionAttributeNames"] = {"#i": "item"}
        else:
            check = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(expected_version)}},
            }
        try:
            self.client.put_item(TableName=self.table, Item=item, **check)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(item["item"]) from None
            raise


def _start_key(text: str) -> dict[str, Any]:
    """An admin listing's cursor, as this adapter wrote it: the index's four string keys."""
    try:
        key = json.loads(text)
    except ValueError:
        key = None
    names = {"owner", "item", "allShard", "listKey"}
    if not (isinstance(key, dict) and set(key) == names and all(_is_string(v) for v in key.values())):
        raise MalformedRequestError("cursor is not one this API returned")
    return key


def _is_string(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"S"} and isinstance(value["S"], str)


def _key(owner: str, item: str) -> dict[str, AttributeValueTypeDef]:
    return {"owner": {"S": owner}, "item": {"S": item}}
