"""Jobs and idempotency keys in DynamoDB.

Items are written whole with a condition on the version read (optimistic locking); the index
attributes are derived here from the job, so the core never sees them. The four listing and
sweep indexes are KEYS_ONLY, ByStatus (bulk operations) projects type, createdAt and version;
all are sharded: at 1,000 jobs/s no index partition takes more than a few hundred writes.

Index writes are what a job costs beyond its own writes, so only what a sweep could not find
otherwise is indexed (issue 14): a PROCESSING lease (recovery) and a held job (promotion) are;
finished jobs are not (TTL deletes them, and the cleanup of stragglers walks ByCreated, whose
entries every job has anyway), and neither are PENDING ones (a bulk action on them walks the
owner's ByUser entries, or ByCreated, in its creation range and reads the statuses).
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tarefa.errors import ConflictError
from tarefa.job import TERMINAL, Job, JobStatus
from tarefa.ports import IdempotencyEntry, ListPage, ListQuery, Sweep

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from tarefa.bulk import BulkFilter, IndexPage

LIST_SHARDS = 4  # ByUser and ByCreated: written once per job
SWEEP_SHARDS = 8  # Sweep: written on every claim and finish
JSON_FIELDS = ("payload", "result", "errorDetails", "progress", "sealed")  # sealed: tarefa.sensitive
INDEX_ATTRIBUTES = (
    "userShard",
    "allShard",
    "createdKey",
    "sweepShard",
    "sweepAt",
    "expiresAt",
    "bulkShard",
    "bulkKey",
)
# ByStatus (bulk cancel and retry, tarefa.bulk): written only while a job is in one of these,
# sharded by job id (tarefa.bulk.BULK_SHARDS, pinned equal by a test). PENDING is every new job's
# status: indexing it would cost two index writes per job (in at creation, out at the claim), so
# bulk actions find PENDING jobs through the listing indexes instead (_pending_page).
BULK_STATUSES = frozenset({JobStatus.RETRYING, JobStatus.FAILED})
BULK_SHARDS = 8
CLEANUP_READ_PAGE = 100  # BatchGetItem's limit: one page of ByCreated entries, one batch read


def shard_of(job_id: str, shards: int) -> int:
    return zlib.crc32(job_id.encode()) % shards


class DynamoJobStore:
    def __init__(
        self,
        client: DynamoDBClient,
        jobs_table: str,
        idempotency_table: str,
        retention_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock  # epoch seconds: what "past its expiresAt" is measured against
        self.client = client
        self.table = jobs_table
        self.idempotency_table = idempotency_table
        self.retention = timedelta(seconds=retention_seconds)

    # -- single jobs -----------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        item = self.client.get_item(TableName=self.table, Key={"jobId": {"S": job_id}}, ConsistentRead=True)
        return _to_job(item["Item"]) if "Item" in item and not self._expired(item["Item"]) else None

    def put(self, job: Job, expected_version: int | None) -> None:
        try:
            self.client.put_item(
                TableName=self.table, Item=self._to_item(job), **_version_check(expected_version)
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(job.job_id) from None
            raise

    def put_with_idempotency_key(
        self, job: Job, key_id: str, expires_at: datetime, fingerprint: str | None = None
    ) -> None:
        now = int(job.created_at.timestamp())
        key_item: dict[str, AttributeValueTypeDef] = {
            "id": {"S": key_id},
            "jobId": {"S": job.job_id},
            "expiration": {"N": str(int(expires_at.timestamp()))},
        }
        if fingerprint:
            key_item["fingerprint"] = {"S": fingerprint}
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.idempotency_table,
                            "Item": key_item,
                            "ConditionExpression": "attribute_not_exists(id) OR expiration < :now",
                            "ExpressionAttributeValues": {":now": {"N": str(now)}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._to_item(job),
                            "ConditionExpression": "attribute_not_exists(jobId)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConflictError(job.job_id) from None
            raise

    def idempotency_entry(self, key_id: str, now: datetime) -> IdempotencyEntry | None:
        item = self.client.get_item(
            TableName=self.idempotency_table, Key={"id": {"S": key_id}}, ConsistentRead=True
        ).get("Item")
        if item is None or int(item["expiration"]["N"]) < now.timestamp() or "jobId" not in item:
            return None
        fingerprint = item["fingerprint"]["S"] if "fingerprint" in item else None
        return IdempotencyEntry(item["jobId"]["S"], fingerprint)

    # -- steps a job recorded once (ctx.once), beside the idempotency keys ------------------
    def get_step(self, key: str) -> str | None:
        item = self.client.get_item(
            TableName=self.idempotency_table, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return item["value"]["S"] if item and "value" in item else None

    def put_step(self, key: str, value: str, lifetime: timedelta) -> bool:
        expires = int((datetime.now(UTC) + lifetime).timestamp())
        try:
            self.client.put_item(
                TableName=self.idempotency_table,
                Item={"id": {"S": key}, "value": {"S": value}, "expiration": {"N": str(expires)}},
                ConditionExpression="attribute_not_exists(id)",
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def delete_finished(self, job_id: str, finished_before: datetime) -> bool:
        """Delete a job that finished before the cutoff: its expiry is its last change plus
        the retention (_to_item), so the condition needs no read and no index entry."""
        limit = int((finished_before + self.retention).timestamp())
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"jobId": {"S": job_id}},
                ConditionExpression="expiresAt <= :limit",
                ExpressionAttributeValues={":limit": {"N": str(limit)}},
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    def ping(self) -> None:
        self.client.get_item(TableName=self.table, Key={"jobId": {"S": "__health__"}})

    # -- indexes ---------------------------------------------------------------------------
    def sweep(self, kind: Sweep, until: datetime) -> Iterator[str]:
        if kind == Sweep.FINISHED:
            yield from self._finished_before(until)
            return
        for shard in range(SWEEP_SHARDS):
            for entry in self._query_all(
                IndexName="Sweep",
                KeyConditionExpression="sweepShard = :shard AND sweepAt <= :until",
                ExpressionAttributeValues={
                    ":shard": {"S": f"{kind}#{shard}"},
                    ":until": {"N": _epoch(until)},
                },
            ):
                yield entry["jobId"]["S"]

    def _finished_before(self, cutoff: datetime) -> Iterator[str]:
        """Jobs that finished before the cutoff, oldest first per shard: a job finished then was
        created before it, so ByCreated's entries older than the cutoff hold them all. TTL has
        deleted most (for nothing); what is left is read a page at a time. A job still running
        that old is read on every cleanup: such jobs are few (delays and retries end in days)."""
        before = cutoff.astimezone(UTC).isoformat()
        for shard in range(LIST_SHARDS):
            entries = self._query_all(
                IndexName="ByCreated",
                KeyConditionExpression="allShard = :p AND createdKey < :before",
                ExpressionAttributeValues={":p": {"S": f"all#{shard}"}, ":before": {"S": before}},
                ScanIndexForward=True,
            )
            for ids in _chunks((e["jobId"]["S"] for e in entries), CLEANUP_READ_PAGE):
                jobs = self._batch_get(ids, include_expired=True)
                for job_id in ids:
                    job = jobs.get(job_id)
                    if job is not None and job.is_terminal and job.updated_at <= cutoff:
                        yield job_id

    def list_jobs(self, query: ListQuery) -> ListPage:
        if query.order_id is not None:
            partitions = [("ByOrder", "orderId", query.order_id)]
        elif query.user_id is not None:
            partitions = [("ByUser", "userShard", f"{query.user_id}#{n}") for n in range(LIST_SHARDS)]
        else:
            partitions = [("ByCreated", "allShard", f"all#{n}") for n in range(LIST_SHARDS)]
        entries: list[tuple[str, str]] = []
        more = False
        for index, attribute, value in partitions:
            condition = "#p = :p" + (" AND createdKey < :before" if query.before_key else "")
            values: dict[str, AttributeValueTypeDef] = {":p": {"S": value}}
            if query.before_key:
                values[":before"] = {"S": query.before_key}
            page = self.client.query(
                TableName=self.table,
                IndexName=index,
                KeyConditionExpression=condition,
                ExpressionAttributeNames={"#p": attribute},
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                Limit=query.limit,
            )
            entries += [(e["createdKey"]["S"], e["jobId"]["S"]) for e in page["Items"]]
            more = more or "LastEvaluatedKey" in page
        entries.sort(reverse=True)
        more = more or len(entries) > query.limit
        entries = entries[: query.limit]
        jobs = self._batch_get([job_id for _, job_id in entries])
        ordered = [jobs[job_id] for _, job_id in entries if job_id in jobs]
        return ListPage(ordered, entries[-1][0] if more and entries else None)

    # -- bulk operations' index (ByStatus: sparse, sharded, owner then creation order) -----------
    def actionable_page(
        self,
        status: JobStatus,
        shard: int,
        query: BulkFilter,
        start_key: dict[str, Any] | None,
        limit: int,
    ) -> IndexPage:
        """One page of a shard's jobs in `status` (an owner's key range, or all of it), the
        type and creation filters applied to the projected attributes."""
        from tarefa.bulk import IndexPage, Listed

        if status not in BULK_STATUSES:
            return self._pending_page(status, shard, query, start_key, limit)
        extra: dict[str, Any] = {"ExclusiveStartKey": start_key} if start_key else {}
        page = self.client.query(
            TableName=self.table,
            IndexName="ByStatus",
            Limit=limit,
            **_bulk_condition(status, shard, query),
            **extra,
        )
        entries = [
            Listed(job_id=i["jobId"]["S"], version=int(i["version"]["N"]))
            for i in page["Items"]
            if _bulk_matches(i, query)
        ]
        return IndexPage(entries, page.get("LastEvaluatedKey"))

    def count_actionable(self, status: JobStatus, shard: int, query: BulkFilter) -> int:
        if status not in BULK_STATUSES:
            counted, start = 0, None
            while True:
                page = self._pending_page(status, shard, query, start, CLEANUP_READ_PAGE)
                counted += len(page.entries)
                if not page.next_key:
                    return counted
                start = page.next_key
        return sum(
            1
            for item in self._query_all(IndexName="ByStatus", **_bulk_condition(status, shard, query))
            if _bulk_matches(item, query)
        )

    def _pending_page(
        self,
        status: JobStatus,
        shard: int,
        query: BulkFilter,
        start_key: dict[str, Any] | None,
        limit: int,
    ) -> IndexPage:
        """A page of jobs in a status ByStatus does not hold (PENDING): the owner's ByUser
        entries (everyone's ByCreated for an admin) in the creation range, their statuses read.
        The listing indexes have LIST_SHARDS shards: the bulk shards above them are empty."""
        from tarefa.bulk import IndexPage, Listed

        if shard >= LIST_SHARDS:
            return IndexPage([], None)
        # a key condition's value may not be empty: "0" sorts before every ISO timestamp
        after = query.created_after.astimezone(UTC).isoformat() if query.created_after else "0"
        before = query.created_before.astimezone(UTC).isoformat() if query.created_before else "~"
        index, attribute, partition = (
            ("ByUser", "userShard", f"{query.owner}#{shard}")
            if query.owner is not None
            else ("ByCreated", "allShard", f"all#{shard}")
        )
        extra: dict[str, Any] = {"ExclusiveStartKey": start_key} if start_key else {}
        page = self.client.query(
            TableName=self.table,
            IndexName=index,
            KeyConditionExpression="#p = :p AND createdKey BETWEEN :lo AND :hi",
            ExpressionAttributeNames={"#p": attribute},
            ExpressionAttributeValues={":p": {"S": partition}, ":lo": {"S": after}, ":hi": {"S": before}},
            Limit=limit,
            **extra,
        )
        ids = [e["jobId"]["S"] for e in page["Items"]]
        jobs = self._batch_get(ids)
        entries = [
            Listed(job_id=job.job_id, version=job.version)
            for job in (jobs.get(i) for i in ids)
            if job is not None
            and job.status == status
            and (query.type is None or job.type == query.type)
            and (query.created_after is None or job.created_at >= query.created_after)
            and (query.created_before is None or job.created_at < query.created_before)
        ]
        return IndexPage(entries, page.get("LastEvaluatedKey"))

    def _batch_get(self, job_ids: list[str], include_expired: bool = False) -> dict[str, Job]:
        found: dict[str, Job] = {}
        keys: list[dict[str, AttributeValueTypeDef]] = [{"jobId": {"S": j}} for j in job_ids]
        while keys:
            response = self.client.batch_get_item(RequestItems={self.table: {"Keys": keys[:100]}})
            for item in response["Responses"].get(self.table, []):
                if self._expired(item) and not include_expired:
                    continue
                job = _to_job(item)
                found[job.job_id] = job
            unprocessed = response.get("UnprocessedKeys") or {}
            retry = unprocessed[self.table]["Keys"] if self.table in unprocessed else []
            keys = keys[100:] + list(retry)
        return found

    def _query_all(self, **kwargs: Any) -> Iterable[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(TableName=self.table, **kwargs):
            yield from page["Items"]

    def _expired(self, item: dict[str, Any]) -> bool:
        """Past its retention: TTL deletes it lazily (up to 48 h late on AWS), reads never show it."""
        return "expiresAt" in item and int(item["expiresAt"]["N"]) <= self.clock()

    # -- mapping ---------------------------------------------------------------------------
    def _to_item(self, job: Job) -> dict[str, AttributeValueTypeDef]:
        data = job.model_dump(mode="json", by_alias=True)
        item: dict[str, AttributeValueTypeDef] = {}
        for name, value in data.items():
            if name in JSON_FIELDS:
                if value is not None:
                    item[name] = {"S": json.dumps(value, separators=(",", ":"))}
            elif isinstance(value, bool):
                item[name] = {"BOOL": value}
            elif isinstance(value, int):
                item[name] = {"N": str(value)}
            elif isinstance(value, str):
                item[name] = {"S": value}
        item["createdKey"] = {"S": job.listing_key}
        item["allShard"] = {"S": f"all#{shard_of(job.job_id, LIST_SHARDS)}"}
        if job.user_id:
            item["userShard"] = {"S": f"{job.user_id}#{shard_of(job.job_id, LIST_SHARDS)}"}
        sweep = _sweep_of(job)
        if sweep is not None:
            kind, at = sweep
            item["sweepShard"] = {"S": f"{kind}#{shard_of(job.job_id, SWEEP_SHARDS)}"}
            item["sweepAt"] = {"N": _epoch(at)}
        if job.status in BULK_STATUSES:
            item["bulkShard"] = {"S": f"{job.status}#{shard_of(job.job_id, BULK_SHARDS)}"}
            item["bulkKey"] = {"S": f"{job.user_id or '-'}#{job.listing_key}"}
        if job.status in TERMINAL:
            item["expiresAt"] = {"N": str(int((job.updated_at + self.retention).timestamp()))}
        return item


def _bulk_condition(status: JobStatus, shard: int, query: BulkFilter) -> dict[str, Any]:
    values: dict[str, AttributeValueTypeDef] = {":p": {"S": f"{status}#{shard}"}}
    condition = "bulkShard = :p"
    if query.owner is not None:
        after = query.created_after.astimezone(UTC).isoformat() if query.created_after else ""
        before = query.created_before.astimezone(UTC).isoformat() if query.created_before else "~"
        condition += " AND bulkKey BETWEEN :lo AND :hi"
        values[":lo"] = {"S": f"{query.owner}#{after}"}
        values[":hi"] = {"S": f"{query.owner}#{before}"}
    return {"KeyConditionExpression": condition, "ExpressionAttributeValues": values}


def _bulk_matches(item: dict[str, Any], query: BulkFilter) -> bool:
    """The filters the key cannot express, on the projected type and createdAt."""
    if query.type is not None and item.get("type", {}).get("S") != query.type:
        return False
    if query.created_after is None and query.created_before is None:
        return True
    created = datetime.fromisoformat(item["createdAt"]["S"])
    return (query.created_after is None or created >= query.created_after) and (
        query.created_before is None or created < query.created_before
    )


def _sweep_of(job: Job) -> tuple[Sweep, datetime] | None:
    """The Sweep entry a job needs: none once it finished (TTL and ByCreated serve cleanup)."""
    if job.held and job.run_at is not None:
        return Sweep.DELAYED, job.run_at
    if job.status == JobStatus.PROCESSING and job.processing_started_at is not None:
        return Sweep.PROCESSING, job.processing_started_at
    return None


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def stream_change(record: dict[str, Any]) -> tuple[Job | None, Job | None]:
    """The job before and after one write, from a record of the jobs table's stream
    (NEW_AND_OLD_IMAGES). Payloads and results are left out: the figures never need them."""
    images = record.get("dynamodb", {})
    old, new = images.get("OldImage"), images.get("NewImage")
    return (_to_job(old, payloads=False) if old else None, _to_job(new, payloads=False) if new else None)


def stream_batch_token(records: list[dict[str, Any]]) -> str:
    """Names a batch by its stream and sequence numbers, so a retried batch has the same name."""
    first, last = records[0], records[-1]
    name = "|".join(
        (
            str(first.get("eventSourceARN", "")),
            str(first["dynamodb"]["SequenceNumber"]),
            str(last["dynamodb"]["SequenceNumber"]),
        )
    )
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _to_job(item: dict[str, Any], payloads: bool = True) -> Job:
    data: dict[str, Any] = {}
    for name, value in item.items():
        if name in INDEX_ATTRIBUTES:
            continue
        if name in JSON_FIELDS:
            if payloads:
                data[name] = json.loads(value["S"])
        elif "S" in value:
            data[name] = value["S"]
        elif "N" in value:
            data[name] = int(value["N"])
        elif "BOOL" in value:
            data[name] = value["BOOL"]
    return Job.model_validate(data)


def _version_check(expected_version: int | None) -> dict[str, Any]:
    if expected_version is None:
        return {"ConditionExpression": "attribute_not_exists(jobId)"}
    return {
        "ConditionExpression": "version = :version",
        "ExpressionAttributeValues": {":version": {"N": str(expected_version)}},
    }


def _epoch(moment: datetime) -> str:
    return f"{moment.timestamp():.3f}"
