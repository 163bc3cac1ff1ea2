"""Cancel or retry every job that matches a filter: POST /jobs/bulk/{cancel,retry}.

A dry run counts the matching jobs and changes nothing. Otherwise the API records an operation
(the schedules table, under the caller) and enqueues a job of the built-in type `system.bulk`
that works through the jobs table's sparse index `ByStatus` in pages, calling JobService.cancel or
JobService.retry for each job exactly as the one-job routes do.

The index holds only jobs that cancel or retry can act on (PENDING, RETRYING, FAILED), keyed
`bulkShard = <status>#<0..7>` (the shard from the job id, so 1,000 new jobs/s spread over eight
partitions) and sorted by `bulkKey = <owner>#<created>#<job id>`: a user's jobs are a key range
in each shard, an admin's "every owner" is each shard whole. The job's version is projected, so
an action is taken only on the job as it was listed.

Resumable: before a page is acted on, the operation records the page (job ids and versions) and
the cursor after it; the counts are recorded with the next page. A run that dies part-way (or
runs out of time: it stops itself before the worker's timeout and continues on its next attempt)
starts again from the record: each job of the recorded page whose version moved was already
acted on and is counted; the others are acted on now. So no job is cancelled or retried twice.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from tarefa.errors import (
    ConflictError,
    InvalidTransitionError,
    JobNotFoundError,
    PermanentJobError,
    QueueUnavailableError,
    Refusal,
    RetryLater,
    ValidationFailedError,
)
from tarefa.job import CANCELLABLE, CamelModel, JobStatus, Priority, utcnow
from tarefa.jobs import Caller, CancelRequest, EnqueueRequest, JobService
from tarefa.jobtypes import JobPolicy, JobType, JobTypeRegistry

if TYPE_CHECKING:
    from tarefa.context import JobContext

logger = Logger(child=True)

BULK_TYPE = "system.bulk"
BULK_SHARDS = 8
PAGE_SIZE = 100
TIME_BUDGET_SECONDS = 80  # of the type's 100 s: then the run stops and its next attempt goes on


class BulkAction(StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"


class OperationNotFoundError(Refusal):
    code = "OPERATION_NOT_FOUND"
    status = 404

    def __init__(self, operation_id: str) -> None:
        super().__init__(f"Bulk operation {operation_id} was not found")


class BulkRequest(CamelModel):
    status: JobStatus | None = None
    type: str | None = Field(None, min_length=1, max_length=128)
    created_after: datetime | None = None
    created_before: datetime | None = None
    dry_run: bool = False


class BulkFilter(CamelModel):
    action: BulkAction
    statuses: list[JobStatus]
    type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner: str | None  # whose jobs; None: every owner's (an admin's operation)


class Listed(CamelModel):
    job_id: str
    version: int


class BulkOperation(CamelModel):
    operation_id: str
    requester: str
    admin: bool = False
    filter: BulkFilter
    status: str = "RUNNING"  # RUNNING, COMPLETED
    counted: bool = False
    matched: int = 0
    processed: int = 0
    failed: int = 0
    position: int = 0  # index into the filter's (status, shard) partitions
    start_key: dict[str, Any] | None = None  # where the next page of that partition begins
    pending: list[Listed] = Field(default_factory=list)  # the page being acted on
    job_id: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "operationId": self.operation_id,
            "action": str(self.filter.action),
            "status": self.status,
            "matched": self.matched,
            "processed": self.processed,
            "failed": self.failed,
            "jobId": self.job_id,
            "filter": self.filter.model_dump(mode="json", by_alias=True, exclude={"action"}),
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class IndexPage:
    entries: list[Listed]
    next_key: dict[str, Any] | None


class BulkIndex(Protocol):
    """The jobs table's sparse index by status (tarefa.adapters.dynamodb)."""

    def actionable_page(
        self, status: JobStatus, shard: int, query: BulkFilter, start_key: dict[str, Any] | None, limit: int
    ) -> IndexPage: ...

    def count_actionable(self, status: JobStatus, shard: int, query: BulkFilter) -> int: ...


class OperationStore(Protocol):
    def get_operation(self, requester: str, operation_id: str) -> BulkOperation | None: ...

    def put_operation(self, operation: BulkOperation, expected_version: int | None) -> None:
        """ConflictError when the check fails (None: must not exist)."""


class BulkPayload(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    operation_id: str = Field(alias="operationId", min_length=1, max_length=64)


def statuses_for(action: BulkAction, status: JobStatus | None) -> list[JobStatus]:
    allowed = sorted(CANCELLABLE) if action == BulkAction.CANCEL else [JobStatus.FAILED]
    if status is None:
        return list(allowed)
    if status not in allowed:
        raise ValidationFailedError(
            f"{action} acts on {', '.join(allowed)} jobs, not {status}",
            [{"field": "status", "message": f"one of {', '.join(allowed)}"}],
        )
    return [status]


class BulkService:
    def __init__(
        self,
        index: BulkIndex,
        operations: OperationStore,
        jobs: JobService,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.operations = operations
        self.jobs = jobs
        self.now = now
        self.clock = clock

    # -- the API's side ----------------------------------------------------------------------
    def filter_for(self, caller: Caller, action: BulkAction, request: BulkRequest) -> BulkFilter:
        if request.type is not None and request.type in self.jobs.registry:
            request = request.model_copy(update={"type": self.jobs.registry.get(request.type).name})
        if (
            request.created_after
            and request.created_before
            and request.created_after >= request.created_before
        ):
            raise ValidationFailedError(
                "createdAfter must be before createdBefore",
                [{"field": "createdAfter", "message": "not before createdBefore"}],
            )
        for field, moment in (
            ("createdAfter", request.created_after),
            ("createdBefore", request.created_before),
        ):
            if moment is not None and moment.tzinfo is None:
                raise ValidationFailedError(
                    "Times need a zone", [{"field": field, "message": "give a UTC offset or Z"}]
                )
        return BulkFilter(
            action=action,
            statuses=statuses_for(action, request.status),
            type=request.type,
            created_after=request.created_after,
            created_before=request.created_before,
            owner=None if caller.is_admin else caller.user_id,
        )

    def count(self, query: BulkFilter) -> int:
        return sum(self.index.count_actionable(s, n, query) for s, n in _partitions(query))

    def start(self, caller: Caller, action: BulkAction, request: BulkRequest) -> dict[str, Any]:
        query = self.filter_for(caller, action, request)
        if request.dry_run:
            return {"matched": self.count(query), "dryRun": True}
        now = self.now()
        operation = BulkOperation(
            operation_id=str(uuid.uuid4()),
            requester=caller.user_id,
            admin=caller.is_admin,
            filter=query,
            created_at=now,
            updated_at=now,
        )
        self.operations.put_operation(operation, expected_version=None)
        enqueued = self.jobs.enqueue(
            caller,
            EnqueueRequest(
                type=BULK_TYPE,
                payload={"operationId": operation.operation_id},
                idempotency_key=f"bulk:{operation.operation_id}",
            ),
        )
        saved = operation.model_copy(update={"job_id": enqueued.job.job_id, "version": 1})
        with contextlib.suppress(ConflictError):  # the job started first: its record moved on
            self.operations.put_operation(saved, expected_version=0)
        return {"operationId": operation.operation_id, "jobId": enqueued.job.job_id, "status": "RUNNING"}

    def read(self, caller: Caller, operation_id: str, requester: str | None = None) -> dict[str, Any]:
        who = requester if (requester and caller.is_admin) else caller.user_id
        found = self.operations.get_operation(who, operation_id)
        if found is None:
            raise OperationNotFoundError(operation_id)
        return found.public()

    # -- the job's side ----------------------------------------------------------------------
    def run(
        self,
        requester: str,
        operation_id: str,
        progress: Callable[[float, str | None], None],
        job_id: str | None = None,
    ) -> dict[str, Any]:
        operation = self.operations.get_operation(requester, operation_id)
        if operation is None:
            raise PermanentJobError(f"no bulk operation {operation_id} for this user", code="NO_OPERATION")
        if job_id is not None and operation.job_id not in (None, job_id):
            raise PermanentJobError(f"bulk operation {operation_id} is another job's", code="NOT_ITS_JOB")
        started = self.clock()
        caller = Caller(operation.requester, is_admin=operation.admin)
        query = operation.filter
        if operation.filter.owner is not None and operation.filter.owner != requester:
            raise PermanentJobError("the operation names another user's jobs", code="NOT_YOURS")
        partitions = _partitions(query)
        resumed = bool(operation.pending)  # an earlier run recorded this page and stopped in it
        if not operation.counted:
            operation = self._save(operation, counted=True, matched=self.count(query))
        while operation.status == "RUNNING":
            if self.clock() - started > TIME_BUDGET_SECONDS:
                raise RetryLater(0, f"bulk {operation_id}: continues from its cursor")
            processed, failed = self._act(caller, query.action, operation.pending, resumed=resumed)
            resumed = False
            counts = {
                "processed": operation.processed + processed,
                "failed": operation.failed + failed,
                "pending": [],
            }
            if operation.position >= len(partitions):
                operation = self._save(operation, status="COMPLETED", **counts)
                break
            status, shard = partitions[operation.position]
            page = self.index.actionable_page(status, shard, query, operation.start_key, PAGE_SIZE)
            position, start_key = (
                (operation.position, page.next_key) if page.next_key else (operation.position + 1, None)
            )
            operation = self._save(
                operation, position=position, start_key=start_key, **{**counts, "pending": page.entries}
            )
            done = operation.processed + operation.failed
            progress(
                min(100.0, 100.0 * done / operation.matched) if operation.matched else 100.0,
                f"{done} of {operation.matched} jobs",
            )
        progress(100.0, f"{operation.processed} {query.action} done, {operation.failed} refused")
        return {"matched": operation.matched, "processed": operation.processed, "failed": operation.failed}

    def _act(self, caller: Caller, action: BulkAction, page: list[Listed], resumed: bool) -> tuple[int, int]:
        """Act on each listed job. On a page an earlier run recorded and stopped in, a job whose
        version moved since it was listed was acted on by that run (or changed on its own):
        counted, not touched. A fresh page needs no look: cancel and retry read the job."""
        processed = failed = 0
        for entry in page:
            if resumed:
                try:
                    job = self.jobs.get(caller, entry.job_id)
                except JobNotFoundError:
                    failed += 1
                    continue
                if job.version != entry.version:
                    processed += 1
                    continue
            try:
                if action == BulkAction.CANCEL:
                    self.jobs.cancel(
                        caller, entry.job_id, CancelRequest(reason="Cancelled by a bulk operation")
                    )
                else:
                    self.jobs.retry(caller, entry.job_id)
                processed += 1
            except (InvalidTransitionError, JobNotFoundError, QueueUnavailableError) as exc:
                logger.info("bulk action refused", extra={"job_id": entry.job_id, "code": exc.code})
                failed += 1
        return processed, failed

    def _save(self, operation: BulkOperation, **changes: Any) -> BulkOperation:
        updated = operation.model_copy(
            update={**changes, "updated_at": self.now(), "version": operation.version + 1}
        )
        updated = BulkOperation.model_validate(updated.model_dump())  # pending: dicts -> Listed
        self.operations.put_operation(updated, expected_version=operation.version)
        return updated


def _partitions(query: BulkFilter) -> list[tuple[JobStatus, int]]:
    return [(s, n) for s in query.statuses for n in range(BULK_SHARDS)]


def iter_partitions(query: BulkFilter) -> Iterator[tuple[JobStatus, int]]:
    yield from _partitions(query)


# -- the built-in job type ----------------------------------------------------------------------
def run_bulk(payload: BulkPayload, ctx: JobContext) -> dict[str, Any]:
    """system.bulk: works through its operation from where the operation's record says."""
    from tarefa.wiring import container

    if ctx.user_id is None:
        raise PermanentJobError("a bulk operation belongs to a user", code="NO_OPERATION")
    return container().bulk.run(ctx.user_id, payload.operation_id, ctx.progress, ctx.job_id)


BULK_JOB_TYPE = JobType(
    BULK_TYPE,
    BulkPayload,
    run_bulk,
    JobPolicy(priority=Priority.LOW, max_attempts=25, timeout_seconds=100, backoff=(1, 5, 30)),
)


def register_builtins(registry: JobTypeRegistry) -> None:
    """The engine's own types that live outside jobtypes.py (the container adds them)."""
    if BULK_TYPE not in registry:
        registry.register(BULK_JOB_TYPE)


# -- the documented shapes (tarefa.openapi) ---------------------------------------------------------
class BulkAnswer(CamelModel):
    """200 for a dry run ({matched, dryRun}); 202 otherwise ({operationId, jobId, status})."""

    matched: int | None = None
    dry_run: bool | None = None
    operation_id: str | None = None
    job_id: str | None = Field(None, description="the system.bulk job doing the work")
    status: str | None = None


class BulkOperationView(CamelModel):
    operation_id: str
    action: BulkAction
    status: str = Field(description="RUNNING or COMPLETED")
    matched: int
    processed: int = Field(description="jobs cancelled or retried")
    failed: int = Field(description="jobs that could not be (they changed meanwhile)")
    job_id: str | None
    filter: dict[str, Any]
    created_at: str
    updated_at: str
