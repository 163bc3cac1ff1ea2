"""Enqueue, read, list, cancel and retry jobs on behalf of an authenticated caller."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field, ValidationError

from tarefa.cache import Cache, Lookup
from tarefa.errors import (
    ConflictError,
    InvalidTransitionError,
    JobNotFoundError,
    MalformedRequestError,
    QueueUnavailableError,
    ValidationFailedError,
)
from tarefa.job import CANCELLABLE, CamelModel, Job, JobStatus, Priority, utcnow
from tarefa.jobtypes import JobTypeRegistry
from tarefa.ports import JobQueue, JobStore, ListQuery
from tarefa.queue import SQS_MAX_DELAY_SECONDS, QueueMessage

logger = Logger(child=True)
metrics = Metrics()

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Statuses no transition leaves (FAILED can be retried or cancelled): safe to serve from a cache
# without invalidation, so a client never reads a stale status.
IMMUTABLE = frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED})
JOB_CACHE_SCHEMA = 1  # bump when Job changes shape: old entries then read as misses


@dataclass(frozen=True)
class Caller:
    user_id: str
    is_admin: bool = False

    def may_see(self, job: Job) -> bool:
        return self.is_admin or job.user_id == self.user_id


class EnqueueRequest(CamelModel):
    type: str = Field(min_length=1, max_length=128)
    payload: Any = None
    priority: Priority | None = None
    max_attempts: int | None = Field(None, ge=1, le=25)
    retry_delay_seconds: int | None = Field(None, ge=0, le=43_200)
    delay_seconds: int = Field(0, ge=0, le=31_536_000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=256)
    order_id: str | None = Field(None, min_length=1, max_length=128)


class CancelRequest(CamelModel):
    reason: str | None = Field(None, max_length=1000)


class ListRequest(CamelModel):
    status: JobStatus | None = None
    type: str | None = Field(None, max_length=128)
    order_id: str | None = Field(None, max_length=128)
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=2048)


class JobList(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(serialization_alias="nextCursor")


@dataclass(frozen=True)
class Enqueued:
    job: Job
    created: bool  # False: an earlier request with the same idempotency key made it


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """Pydantic errors as [{field, message}] with dotted camelCase paths."""
    return [
        {"field": ".".join(str(p) for p in (prefix, *e["loc"]) if p != ""), "message": e["msg"]}
        for e in exc.errors()
    ]


# Listing reads index entries in pages; a filtered listing stops after this many so one
# request's cost stays bounded, and hands back a cursor to continue.
MAX_ENTRIES_READ_PER_LIST = 1000


class JobService:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        registry: JobTypeRegistry,
        now: Callable[[], datetime] = utcnow,
        cache: Cache | None = None,
        retention: timedelta | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.registry = registry
        self.now = now
        self.cache = cache
        self.retention = retention  # finished jobs are deleted this long after their last change

    # -- enqueue ---------------------------------------------------------------------------
    def enqueue(self, caller: Caller, request: EnqueueRequest) -> Enqueued:
        job_type = self.registry.get(request.type)
        try:
            payload = job_type.payload_model.model_validate(request.payload)
        except ValidationError as exc:
            raise ValidationFailedError(
                f"Payload does not match job type {request.type}", field_errors(exc, "payload")
            ) from None
        now = self.now()
        run_at = now + timedelta(seconds=request.delay_seconds) if request.delay_seconds else None
        job = Job(
            job_id=str(uuid.uuid4()),
            type=request.type,
            priority=request.priority or job_type.policy.priority,
            payload=payload.model_dump(mode="json", by_alias=True),
            max_attempts=request.max_attempts or job_type.policy.max_attempts,
            retry_delay_seconds=request.retry_delay_seconds,
            user_id=caller.user_id,
            order_id=request.order_id,
            created_at=now,
            updated_at=now,
            run_at=run_at,
            held=request.delay_seconds > SQS_MAX_DELAY_SECONDS,
        )
        if request.idempotency_key:
            existing = self._create_once(job, caller, request.idempotency_key, now)
            if existing is not None:
                return Enqueued(existing, created=False)
        else:
            self.store.put(job, expected_version=None)
        metrics.add_metric("JobsEnqueued", MetricUnit.Count, 1)
        logger.debug("job enqueued", extra={"job_id": job.job_id, "job_type": job.type})
        if not job.held:
            job = self._send(job, request.delay_seconds)
        return Enqueued(job, created=True)

    def _create_once(self, job: Job, caller: Caller, key: str, now: datetime) -> Job | None:
        """Create `job` under the idempotency key, or return the job the key already names."""
        key_id = "enqueue#" + hashlib.sha256(f"{caller.user_id}\x00{key}".encode()).hexdigest()
        for _ in range(3):
            existing_id = self.store.job_id_for_idempotency_key(key_id, now)
            if existing_id is not None:
                existing = self.store.get(existing_id)
                if existing is not None:
                    return existing
            try:
                self.store.put_with_idempotency_key(job, key_id, now + IDEMPOTENCY_WINDOW)
                return None
            except ConflictError:
                continue  # a concurrent request won the key; read what it made
        raise QueueUnavailableError("Could not settle the idempotency key; try again")

    def _send(self, job: Job, delay_seconds: int) -> Job:
        """Queue the job; if SQS refuses, fail it visibly so the caller can retry it."""
        try:
            self.queue.send(job.priority, QueueMessage.for_job(job), min(delay_seconds, 900))
            return job
        except Exception as exc:
            logger.exception("could not queue job", extra={"job_id": job.job_id})
            failed = job.transition(
                JobStatus.FAILED,
                self.now(),
                error="Could not queue the job; retry it with POST /jobs/{jobId}/retry",
                error_details={"code": "ENQUEUE_FAILED", "exception": type(exc).__name__},
            )
            self.store.put(failed, expected_version=job.version)
            raise QueueUnavailableError(
                f"Job {job.job_id} was recorded as FAILED because the queue is unavailable; retry it later"
            ) from exc

    # -- reads -----------------------------------------------------------------------------
    def get(self, caller: Caller, job_id: str) -> Job:
        """From the table: what actions read before a conditional write."""
        return _visible(caller, job_id, self.store.get(job_id))

    def read(self, caller: Caller, job_id: str) -> Lookup[Job]:
        """For clients polling a job: finished jobs (immutable) come from the cache."""
        if self.cache is None:
            return Lookup(self.get(caller, job_id), hit=False)
        found = self.cache.lookup(
            "job",
            job_id,
            lambda: self.store.get(job_id),
            schema=JOB_CACHE_SCHEMA,
            encode=lambda job: job.model_dump(mode="json", by_alias=True) if job else None,
            decode=Job.model_validate,
            cacheable=self._cacheable,
            protect=False,  # one GetItem is cheaper than a lock, and most reads are of live jobs
        )
        return Lookup(_visible(caller, job_id, found.value), found.hit)

    def _cacheable(self, job: Job | None) -> bool:
        """Finished for good, and not deleted by the cleanup before its cache entry expires."""
        if job is None or job.status not in IMMUTABLE or self.cache is None:
            return False
        if self.retention is None:
            return True
        lifetime = timedelta(seconds=self.cache.lifetime("job"))
        return job.updated_at + self.retention > self.now() + lifetime

    def list(self, caller: Caller, request: ListRequest) -> JobList:
        """Newest first; filters apply to what the index returns, so a page may come back short
        with a cursor when many entries did not match (the read per request is bounded)."""
        key = _decode_cursor(request.cursor) if request.cursor else None
        user_id = None if caller.is_admin else caller.user_id
        found: list[Job] = []
        read = 0
        while True:
            page = self.store.list_jobs(ListQuery(user_id, request.limit, key, request.order_id))
            read += len(page.jobs)
            for job in page.jobs:
                key = job.listing_key
                if _matches(job, request, user_id):
                    found.append(job)
                    if len(found) == request.limit:
                        return _page(found, key)
            if page.last_key is None:
                return _page(found, None)
            key = page.last_key
            if read >= MAX_ENTRIES_READ_PER_LIST:
                return _page(found, key)

    # -- actions ---------------------------------------------------------------------------
    def cancel(self, caller: Caller, job_id: str, request: CancelRequest) -> Job:
        job = self.get(caller, job_id)
        if job.status not in CANCELLABLE:
            raise InvalidTransitionError(job.job_id, job.status, JobStatus.CANCELLED)
        who = "an admin" if caller.is_admin and job.user_id != caller.user_id else "its owner"
        cancelled = job.transition(
            JobStatus.CANCELLED,
            self.now(),
            error=request.reason or f"Cancelled by {who}",
            next_retry_at=None,
            held=False,
        )
        self._save(job, cancelled)
        metrics.add_metric("JobsCancelled", MetricUnit.Count, 1)
        return cancelled

    def retry(self, caller: Caller, job_id: str) -> Job:
        job = self.get(caller, job_id)
        if job.status != JobStatus.FAILED:
            raise InvalidTransitionError(job.job_id, job.status, JobStatus.PENDING)
        pending = job.restarted(self.now())
        self._save(job, pending)
        return self._send(pending, 0)

    def _save(self, old: Job, new: Job) -> None:
        try:
            self.store.put(new, expected_version=old.version)
        except ConflictError:
            current = self.store.get(old.job_id)
            raise InvalidTransitionError(
                old.job_id, current.status if current else "gone", new.status
            ) from None


def _visible(caller: Caller, job_id: str, job: Job | None) -> Job:
    if job is None or not caller.may_see(job):
        raise JobNotFoundError(job_id)  # never reveal that someone else's job exists
    return job


def _page(jobs: list[Job], last_key: str | None) -> JobList:
    return JobList(
        items=[j.public() for j in jobs], next_cursor=_encode_cursor(last_key) if last_key else None
    )


def _matches(job: Job, request: ListRequest, user_id: str | None) -> bool:
    return (
        (user_id is None or job.user_id == user_id)
        and (request.status is None or job.status == request.status)
        and (request.type is None or job.type == request.type)
        and (request.order_id is None or job.order_id == request.order_id)
    )


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        key = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        created, _, job_id = key.partition("#")
        datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedRequestError("cursor is not one this API returned") from None
    if not job_id:
        raise MalformedRequestError("cursor is not one this API returned")
    return key
