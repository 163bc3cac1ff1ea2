"""Enqueue, read, list, cancel and retry jobs on behalf of an authenticated caller."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field, ValidationError

from tarefa.backoff import scaled
from tarefa.cache import Cache, Lookup
from tarefa.errors import (
    ConflictError,
    EncryptionUnavailableError,
    IdempotencyKeyReusedError,
    InvalidTransitionError,
    JobNotFoundError,
    MalformedRequestError,
    PayloadTooLargeError,
    QueueUnavailableError,
    ValidationFailedError,
)
from tarefa.flow import FlowControl
from tarefa.job import CANCELLABLE, CamelModel, Job, JobStatus, Priority, utcnow
from tarefa.jobtypes import JobType, JobTypeRegistry
from tarefa.ports import JobQueue, JobStore, ListQuery
from tarefa.queue import SQS_MAX_DELAY_SECONDS, SQS_MAX_MESSAGE_BYTES, QueueMessage
from tarefa.sensitive import (
    NO_SCRUB,
    REDACTED,
    SealingUnavailableError,
    SensitiveFields,
    input_secrets,
    redact,
    withholding,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

logger = Logger(child=True)
metrics = Metrics()
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

IDEMPOTENCY_WINDOW = timedelta(hours=24)
RECORD_WRITE_PAUSES = (0.05, 0.2, 0.8)  # a new job's write is retried this often in the request
SYSTEM_USER = "tarefa:system"  # owner of jobs that jobs without a user enqueue
# Statuses no transition leaves (FAILED can be retried or cancelled): safe to serve from a cache
# without invalidation, so a client never reads a stale status.
IMMUTABLE = frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED})
JOB_CACHE_SCHEMA = 2  # bump when Job changes shape: old entries then read as misses (2: progress)
MAX_BATCH = 100  # jobs per POST /jobs/batch
BATCH_THREADS = 8  # a batch's concurrent reads and writes


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
    # One of the caller's webhook subscription URLs: the job's ending is posted there.
    callback_url: str | None = Field(None, min_length=1, max_length=2048)


class BatchEnqueueRequest(CamelModel):
    """POST /jobs/batch. Each job is what POST /jobs takes, validated on its own, so a bad one
    is that item's error and never the request's."""

    jobs: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        # Any JSON per item: one that is not a valid EnqueueRequest is answered as that item's
        # error inside the 202, never as the request's 4xx (the fuzz test holds the spec to it).
        json_schema_extra={
            "items": {
                "description": "a job as POST /jobs takes it (EnqueueRequest); an item that is not "
                "one gets {index, error} with the error POST /jobs would answer"
            }
        },
    )


class CancelRequest(CamelModel):
    reason: str | None = Field(None, max_length=1000)


class ListRequest(CamelModel):
    """A query string: every value arrives as a string, so `limit` parses from one (lax); an
    empty filter (`?orderId=`) is refused rather than sent to the index as an empty key."""

    status: JobStatus | None = None
    type: str | None = Field(None, min_length=1, max_length=128)
    order_id: str | None = Field(None, min_length=1, max_length=128)
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, min_length=1, max_length=2048)


class JobList(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(serialization_alias="nextCursor")


@dataclass(frozen=True)
class Enqueued:
    job: Job
    created: bool  # False: an earlier request with the same idempotency key made it


@dataclass(frozen=True)
class _Prepared:
    """One enqueue's decisions before any read or write (JobService._prepare)."""

    caller: Caller
    job_type: JobType
    payload: BaseModel
    job: Job
    delay: int  # seconds, scaled by the delay speed-up
    now: datetime
    key_id: str | None
    fingerprint: str | None


def field_errors(
    exc: ValidationError, prefix: str = "", withhold: Callable[[str], str] = NO_SCRUB
) -> list[dict[str, Any]]:
    """Pydantic errors as [{field, message}] with dotted camelCase paths; `withhold` replaces a
    message that quotes a sensitive value (tarefa.sensitive.withholding)."""
    return [
        {"field": ".".join(str(p) for p in (prefix, *e["loc"]) if p != ""), "message": withhold(e["msg"])}
        for e in exc.errors(include_input=False, include_context=False)
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
        delay_speedup: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        sensitive: SensitiveFields | None = None,
        callback_allowed: Callable[[str, str], bool] | None = None,
        on_end: Callable[[Job], object] | None = None,
        flow: FlowControl | None = None,
    ) -> None:
        self.flow = flow
        self.sensitive = sensitive
        # (user id, url) -> whether url is one of the user's active webhook subscriptions; and
        # what posts a job's callback once it ended (tarefa.webhooks, wired in tarefa.wiring).
        self.callback_allowed = callback_allowed
        self.on_end = on_end
        self.store = store
        self.sleep = sleep
        self.queue = queue
        self.registry = registry
        self.now = now
        self.cache = cache
        self.retention = retention  # finished jobs are deleted this long after their last change
        self.delay_speedup = delay_speedup

    # -- enqueue ---------------------------------------------------------------------------
    def enqueue(self, caller: Caller, request: EnqueueRequest) -> Enqueued:
        return self._enqueue_prepared(self._prepare(caller, request))

    def _prepare(self, caller: Caller, request: EnqueueRequest) -> _Prepared:
        """Everything an enqueue decides before it reads or writes anything: the type, the
        validated payload, the callback's check, the new job, its delay and idempotency key."""
        job_type = self.registry.get(request.type)
        try:
            payload = job_type.payload_model.model_validate(request.payload)
        except ValidationError as exc:
            # Pydantic's messages may quote the input: none may quote a sensitive value.
            withhold = withholding(input_secrets(job_type, request.payload))
            raise ValidationFailedError(
                f"Payload does not match job type {request.type}", field_errors(exc, "payload", withhold)
            ) from None
        if request.callback_url is not None and not (
            self.callback_allowed is not None and self.callback_allowed(caller.user_id, request.callback_url)
        ):
            raise ValidationFailedError(
                "callbackUrl is not one of your webhook subscriptions",
                [
                    {
                        "field": "callbackUrl",
                        "message": "must be the URL of one of your active webhook subscriptions (POST /webhooks)",
                    }
                ],
            )
        now = self.now()
        delay = scaled(request.delay_seconds, self.delay_speedup)
        run_at = now + timedelta(seconds=delay) if delay else None
        job = Job(
            job_id=str(uuid.uuid4()),
            type=job_type.name,  # an alias is stored under the canonical name
            priority=request.priority or job_type.policy.priority,
            payload=payload.model_dump(mode="json", by_alias=True),
            max_attempts=request.max_attempts or job_type.policy.max_attempts,
            retry_delay_seconds=request.retry_delay_seconds,
            user_id=caller.user_id,
            order_id=request.order_id,
            created_at=now,
            updated_at=now,
            run_at=run_at,
            held=delay > SQS_MAX_DELAY_SECONDS,
            callback_url=request.callback_url,
        )
        key_id = _key_id(caller, request.idempotency_key) if request.idempotency_key else None
        fingerprint = _fingerprint(request, job_type) if key_id else None
        return _Prepared(caller, job_type, payload, job, delay, now, key_id, fingerprint)

    def _enqueue_prepared(self, prepared: _Prepared) -> Enqueued:
        caller, job_type, payload = prepared.caller, prepared.job_type, prepared.payload
        job, delay, now = prepared.job, prepared.delay, prepared.now
        key_id, fingerprint = prepared.key_id, prepared.fingerprint
        if key_id is not None:
            existing = self._existing(key_id, now, fingerprint)
            if existing is not None:
                return Enqueued(existing, created=False)
        lock: str | None = None
        if job_type.policy.unique_key is not None and self.flow is not None:
            key = _policy_key(job_type.policy.unique_key, payload, "unique_key")
            lock, active = self.flow.claim_unique(
                job_type.name, caller.user_id, key, job.job_id, self.store.get, self.sleep
            )
            if active is not None:  # the owner's job with this key is still active: it is the answer
                return Enqueued(active, created=False)
        if job_type.policy.debounce is not None and self.flow is not None:
            job, delay = self._debounce(caller, job_type, payload, job, delay)
        try:
            if job_type.sensitive_fields:  # sealed before anything is stored or sent
                job = self._sealed(job_type, job)
            key_expires = now + IDEMPOTENCY_WINDOW if key_id else None
            if not job.held:
                unsent = self._send_new(job, delay, key_id, key_expires, fingerprint)
                if unsent is not None:
                    return self._not_sent(job, key_id, unsent)
            enqueued = self._record_new(job, key_id, key_expires, now, fingerprint)
            if lock is not None and self.flow is not None and enqueued.job.job_id != job.job_id:
                self.flow.release_unique(lock, job.job_id)  # another request's job won the key
        except Exception:
            if lock is not None and self.flow is not None:  # nothing (or a FAILED job) holds it
                self.flow.release_unique(lock, job.job_id)
            raise
        if enqueued.created:
            metrics.add_metric("JobsEnqueued", MetricUnit.Count, 1)
            logger.debug("job enqueued", extra={"job_id": job.job_id, "job_type": job.type})
        return enqueued

    # -- batch enqueue ---------------------------------------------------------------------
    def enqueue_many(self, caller: Caller, requests: Sequence[EnqueueRequest]) -> list[Enqueued | Exception]:
        """POST /jobs/batch: each request enqueued as `enqueue` would, on its own: per request,
        in order, what `enqueue` returns or the error it raises (one bad request never sinks
        the others).

        Plain jobs share SendMessageBatch calls (per priority, 10 a call) and are recorded
        after their messages went out, each with the single path's conditional write (its
        key's transaction when it has one), a few at a time. A job with a flow-control policy,
        held (a delay past SQS's), with sensitive fields, or whose idempotency key an earlier
        request of the batch also names, takes the single path, after the others."""
        results: list[Enqueued | Exception | None] = [None] * len(requests)
        prepared: dict[int, _Prepared] = {}
        for i, request in enumerate(requests):
            try:
                prepared[i] = self._prepare(caller, request)
            except Exception as exc:
                results[i] = exc
        batched: list[int] = []
        single: list[int] = []
        later: list[int] = []  # a key already named: after its first, which decides
        keys: set[str] = set()
        for i, item in prepared.items():
            if item.key_id is not None and item.key_id in keys:
                later.append(i)
            elif self._single_only(item):
                single.append(i)
            else:
                batched.append(i)
            if item.key_id is not None:
                keys.add(item.key_id)
        with _Pool(len(batched)) as pool:
            for i, outcome in zip(
                batched, pool.each(self._batched, [prepared[i] for i in batched]), strict=True
            ):
                results[i] = outcome
            fresh = [i for i in batched if results[i] is None]
            created = self._send_and_record(pool, [prepared[i] for i in fresh], fresh, results)
        for i in (*single, *later):
            try:
                results[i] = self._enqueue_prepared(prepared[i])
            except Exception as exc:
                results[i] = exc
        if created:
            metrics.add_metric("JobsEnqueued", MetricUnit.Count, created)
        return [r if r is not None else RuntimeError("not enqueued") for r in results]

    def _single_only(self, item: _Prepared) -> bool:
        """What the batched path does not do: flow control, holding, sealing."""
        policy = item.job_type.policy
        flow = self.flow is not None and (policy.unique_key is not None or policy.debounce is not None)
        return flow or item.job.held or bool(item.job_type.sensitive_fields)

    def _batched(self, item: _Prepared) -> Enqueued | Exception | None:
        """A batched job's key, read first: the job it names (None: the key is free, or none)."""
        if item.key_id is None:
            return None
        existing = self._existing(item.key_id, item.now, item.fingerprint)
        return Enqueued(existing, created=False) if existing is not None else None

    def _send_and_record(
        self,
        pool: _Pool,
        items: list[_Prepared],
        indexes: list[int],
        results: list[Enqueued | Exception | None],
    ) -> int:
        """The single path's order for many jobs: every message out first (SendMessageBatch per
        priority), then each sent job's conditional write; a job whose send failed answers what
        `enqueue` answers then (`_not_sent`). Returns how many jobs it created."""
        outgoing: dict[Priority, list[tuple[int, _Prepared, datetime | None, str]]] = {}
        for i, item in zip(indexes, items, strict=True):
            expires = item.now + IDEMPOTENCY_WINDOW if item.key_id else None
            try:
                body = _new_job_message(item.job, item.key_id, expires, item.fingerprint)
            except Exception as exc:
                results[i] = exc
                continue
            outgoing.setdefault(item.job.priority, []).append((i, item, expires, body))
        groups = list(outgoing.items())
        sends = pool.each(
            lambda group: self.queue.send_batch(
                group[0], [(body, min(item.delay, SQS_MAX_DELAY_SECONDS)) for _, item, _, body in group[1]]
            ),
            groups,
        )
        sent: list[tuple[int, _Prepared, datetime | None]] = []
        unsent: list[tuple[int, _Prepared, Exception]] = []
        for (_, group), answer in zip(groups, sends, strict=True):
            answers = answer if isinstance(answer, list) else [answer] * len(group)
            for (i, item, expires, _), one in zip(group, answers, strict=True):
                if isinstance(one, Exception):
                    logger.warning("could not queue a new job", extra={"error": type(one).__name__})
                    unsent.append((i, item, one))
                else:
                    sent.append((i, item, expires))
        for (i, _, _), outcome in zip(
            unsent, pool.each(lambda u: self._not_sent(u[1].job, u[1].key_id, u[2]), unsent), strict=True
        ):
            results[i] = outcome
        for (i, _, _), outcome in zip(
            sent,
            pool.each(
                lambda s: self._record_new(s[1].job, s[1].key_id, s[2], s[1].now, s[1].fingerprint), sent
            ),
            strict=True,
        ):
            results[i] = outcome
        return sum(1 for i, _, _ in sent if isinstance(r := results[i], Enqueued) and r.created)

    def _debounce(
        self, caller: Caller, job_type: JobType, payload: BaseModel, job: Job, delay: int
    ) -> tuple[Job, int]:
        """Make the job its debounce key's latest; it is due when the key has been quiet for
        the period, or at the burst's max wait (tarefa.flow)."""
        assert self.flow is not None and job_type.policy.debounce is not None
        key_of = job_type.policy.debounce_key
        key = _policy_key(key_of, payload, "debounce_key") if key_of else "all"
        record = self.flow.debounce_key(job_type.name, caller.user_id, key)
        max_wait = job_type.debounce_max_wait or job_type.policy.debounce
        wait = self.flow.debounce_enqueue(record, job, job_type.policy.debounce, max_wait)
        delay = max(delay, scaled(wait, self.delay_speedup))
        if not delay:
            return job, 0
        run_at = job.created_at + timedelta(seconds=delay)
        return job.model_copy(update={"run_at": run_at, "held": delay > SQS_MAX_DELAY_SECONDS}), delay

    def _sealed(self, job_type: JobType, job: Job) -> Job:
        if self.sensitive is None:
            raise EncryptionUnavailableError(
                f"Job type {job_type.name} has sensitive fields and no key seals them here; nothing was enqueued"
            )
        try:
            payload, sealed = self.sensitive.seal(job_type, job.job_id, job.payload)
        except SealingUnavailableError as exc:
            logger.warning("could not seal sensitive fields", extra={"error": str(exc)})
            raise EncryptionUnavailableError(
                "The job's sensitive fields could not be encrypted (KMS unavailable); nothing was "
                "enqueued, retry the request"
            ) from None
        return job.model_copy(update={"payload": payload, "sealed": sealed})

    def _existing(self, key_id: str, now: datetime, fingerprint: str | None) -> Job | None:
        """The job the key names, or None; IdempotencyKeyReusedError when it was made by a
        request with another body (as payment APIs answer)."""
        entry = self.store.idempotency_entry(key_id, now)
        if entry is None:
            return None
        if entry.fingerprint and fingerprint and entry.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError(entry.job_id)
        return self.store.get(entry.job_id)

    def _send_new(
        self, job: Job, delay: int, key_id: str | None, key_expires: datetime | None, fingerprint: str | None
    ) -> Exception | None:
        """Queue a new job before it is recorded, with all the record needs: if the record's
        write fails, the worker that takes the message records it. Returns the error when the
        send failed (a timeout may still have sent it)."""
        body = _new_job_message(job, key_id, key_expires, fingerprint)
        try:
            self.queue.send(job.priority, body, min(delay, SQS_MAX_DELAY_SECONDS))
        except Exception as exc:
            logger.warning("could not queue a new job", extra={"error": type(exc).__name__})
            return exc
        return None

    def _not_sent(self, job: Job, key_id: str | None, error: Exception) -> Enqueued:
        """SQS refused the new job's message, or its answer was lost (then it may be queued).
        The 503 names the job id either way. Without a key the job is recorded FAILED
        (ENQUEUE_FAILED, retryable), so a message that did get through finds it finished and
        is dropped; if the worker recorded it first, it got through: the answer is a 202. With
        a key nothing is written: a retry with the same key makes it once (the key decides, and
        a message that got through is recorded under it, or dropped when the retry won)."""
        details = {"jobId": job.job_id}
        how = "retry it with POST /jobs/{jobId}/retry"
        if job.sealed is not None:  # the FAILED record drops them: a retry could not run it
            how = "enqueue it again (its sensitive fields are not kept)"
        if key_id is not None:
            raise QueueUnavailableError(
                f"The queue is unavailable; retry with the same idempotency key (job {job.job_id} "
                "exists only if its message got through)",
                details,
            ) from error
        failed = job.transition(
            JobStatus.FAILED,
            self.now(),
            error=f"Could not queue the job; {how}",
            error_details={"code": "ENQUEUE_FAILED", "exception": type(error).__name__},
        )
        try:
            self.store.put(failed, expected_version=None)
        except ConflictError:
            current = self.store.get(job.job_id)
            if current is not None:
                return Enqueued(current, created=True)  # the worker took it: it was queued
        except Exception:
            logger.warning("could not record the unqueued job", extra={"job_id": job.job_id})
            raise QueueUnavailableError(
                f"The queue is unavailable; job {job.job_id} may still have been queued: look it up "
                "before you send it again, or send it with an Idempotency-Key",
                details,
            ) from error
        raise QueueUnavailableError(
            f"The queue is unavailable: job {job.job_id} is FAILED (ENQUEUE_FAILED); {how}",
            details,
        ) from error

    def _record_new(
        self,
        job: Job,
        key_id: str | None,
        key_expires: datetime | None,
        now: datetime,
        fingerprint: str | None,
    ) -> Enqueued:
        """Write the new job (under its idempotency key, if any), retried within the request.
        A lost race is settled by reading: the answer of a write that went through was lost,
        a worker recorded the job first, or a concurrent request with the key won."""
        for pause in (*RECORD_WRITE_PAUSES, None):
            try:
                if key_id is not None and key_expires is not None:
                    self.store.put_with_idempotency_key(job, key_id, key_expires, fingerprint)
                else:
                    self.store.put(job, expected_version=None)
                return Enqueued(job, created=True)
            except ConflictError:
                try:
                    current = self.store.get(job.job_id)
                    if current is not None:
                        return Enqueued(current, created=True)
                    existing = self._existing(key_id, now, fingerprint) if key_id is not None else None
                    if existing is not None:  # our message is an orphan the worker will drop
                        return Enqueued(existing, created=False)
                except IdempotencyKeyReusedError:
                    raise  # a concurrent request with another body won the key
                except Exception:
                    logger.debug("could not read back a lost race", exc_info=True)
            except Exception:
                logger.debug("could not record a new job", exc_info=True)
            if pause is None:
                break
            self.sleep(pause)
        if job.held:  # no message was sent: nothing exists
            raise QueueUnavailableError("Could not record the job; nothing was created, retry the request")
        logger.warning("new job queued but not recorded; the worker records it", extra={"job_id": job.job_id})
        return Enqueued(job, created=True)

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
            encode=lambda job: (
                job.model_dump(mode="json", by_alias=True, exclude={"sealed"}) if job else None
            ),
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
            if job.status == JobStatus.CANCELLED:  # a cancel whose callback may not have gone out
                self.ended(job)
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
        self.ended(cancelled)
        return cancelled

    def ended(self, job: Job) -> None:
        """A job reached an ending: post its callback (keyed, so a repeat makes none)."""
        if job.callback_url and self.on_end is not None:
            self.on_end(job)

    def retry(self, caller: Caller, job_id: str) -> Job:
        job = self.get(caller, job_id)
        if job.status != JobStatus.FAILED:
            raise InvalidTransitionError(job.job_id, job.status, JobStatus.PENDING)
        if job.type not in self.registry:
            raise InvalidTransitionError(
                job.job_id,
                job.status,
                JobStatus.PENDING,
                f"Job {job.job_id} has type {job.type!r}, which this deployment does not run; its "
                "message is in the dead-letter queue: redrive or purge it there",
            )
        job_type = self.registry.get(job.type)
        if job.sealed is None and any(
            isinstance(job.payload, dict) and job.payload.get(k) == REDACTED for k in job_type.sensitive_keys
        ):
            raise InvalidTransitionError(
                job.job_id,
                job.status,
                JobStatus.PENDING,
                f"Job {job.job_id} cannot run again: its sensitive fields were dropped when it "
                "failed; enqueue a new job",
            )
        # The message goes first and carries a new wake: a worker that takes it before the save
        # lands waits for it instead of dropping it (Worker._decide), and if SQS refuses, the
        # job stays FAILED, untouched.
        pending = job.restarted(self.now()).model_copy(update={"wake": job.wake + 1})
        try:
            self.queue.send(pending.priority, QueueMessage.for_job(pending), 0)
        except Exception as exc:
            raise QueueUnavailableError(
                f"The queue is unavailable; job {job.job_id} stays FAILED, retry later"
            ) from exc
        self._save(job, pending)
        return pending

    def run_now(self, job_id: str) -> bool:
        """Wake a job that waits for its next attempt (RETRYING, or PENDING with a delay), e.g.
        when a webhook confirms what a poll waits for. False when it is not waiting.

        The new message goes out before the job records the wake: if the write fails, the job
        has two messages (harmless: one claims it), never none."""
        for _ in range(3):
            job = self.store.get(job_id)
            if job is None or job.status not in (JobStatus.RETRYING, JobStatus.PENDING):
                return False
            due = job.next_retry_at if job.status == JobStatus.RETRYING else job.run_at
            now = self.now()
            if due is None or due <= now:
                return False  # already due: its message is on its way
            woken = job.model_copy(
                update={
                    "next_retry_at": now if job.status == JobStatus.RETRYING else None,
                    "run_at": None,
                    "held": False,
                    "wake": job.wake + 1,
                    "updated_at": now,
                    "version": job.version + 1,
                }
            )
            self.queue.send(woken.priority, QueueMessage.for_job(woken), 0)
            try:
                self.store.put(woken, expected_version=job.version)
                return True
            except ConflictError:
                continue
        return False

    def enqueue_for(
        self,
        job_type: str,
        payload: Any,
        *,
        idempotency_key: str,
        user_id: str | None,
        priority: str | None,
        delay_seconds: int,
        max_attempts: int | None,
        order_id: str | None,
        callback_url: str | None = None,
    ) -> str:
        """A job enqueued by another job (ctx.enqueue) for the same user; idempotent by key."""
        request = EnqueueRequest.model_validate(
            {
                "type": job_type,
                "payload": payload,
                "priority": priority,
                "delaySeconds": delay_seconds,
                "maxAttempts": max_attempts,
                "orderId": order_id,
                "idempotencyKey": idempotency_key,
                "callbackUrl": callback_url,
            }
        )
        return self.enqueue(Caller(user_id or SYSTEM_USER), request).job.job_id

    def _save(self, old: Job, new: Job) -> None:
        try:
            self.store.put(new, expected_version=old.version)
        except ConflictError:
            current = self.store.get(old.job_id)
            raise InvalidTransitionError(
                old.job_id, current.status if current else "gone", new.status
            ) from None


class _Pool:
    """A few threads for a batch's reads and writes (DynamoDB bills per write, not per request:
    concurrent conditional PutItems cost what a BatchWriteItem would); inline for one item."""

    def __init__(self, items: int) -> None:
        self.threads = min(BATCH_THREADS, items)
        self.executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> _Pool:
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor  # only a batch pays for the import

            self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="tarefa-batch")
        return self

    def __exit__(self, *_: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def each(self, work: Callable[[Item], Outcome], items: Sequence[Item]) -> list[Outcome | Exception]:
        """`work` of every item, in order; an item's exception is its outcome."""

        def one(item: Item) -> Outcome | Exception:
            try:
                return work(item)
            except Exception as exc:
                return exc

        if self.executor is None or len(items) <= 1:
            return [one(item) for item in items]
        return list(self.executor.map(one, items))


def _new_job_message(
    job: Job, key_id: str | None, key_expires: datetime | None, fingerprint: str | None
) -> str:
    """The message of a new job (everything its record needs); PayloadTooLargeError past SQS's."""
    body = QueueMessage.for_new_job(job, key_id, key_expires, fingerprint)
    if len(body.encode()) > SQS_MAX_MESSAGE_BYTES:
        raise PayloadTooLargeError(
            f"The job's message would be {len(body.encode())} bytes; a queue message holds "
            f"{SQS_MAX_MESSAGE_BYTES} (make the payload smaller)"
        )
    return body


def _fingerprint(request: EnqueueRequest, job_type: JobType) -> str:
    """What makes two requests with one idempotency key the same request. Sensitive values are
    redacted first: the fingerprint is stored (the idempotency table, the job's message) and a
    hash of a password is a password to anyone with a dictionary. So a retry with the key is the
    same request whatever its sensitive values: it answers with the first job."""
    # Without a callback the body is what it was before callbacks existed: a key used just
    # before a deployment still names the same request just after it.
    unset = set() if request.callback_url else {"callback_url"}
    body = request.model_dump(mode="json", by_alias=True, exclude={"idempotency_key", *unset})
    if job_type.sensitive_fields:
        body["payload"] = redact(job_type, body.get("payload"))
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def _policy_key(key_of: Callable[[Any], str], payload: BaseModel, name: str) -> str:
    """A flow-control key of the validated payload; a payload the key cannot read is refused."""
    try:
        return str(key_of(payload))
    except Exception as exc:
        raise ValidationFailedError(
            f"The payload has no {name} value", [{"field": "payload", "message": type(exc).__name__}]
        ) from None


def _key_id(caller: Caller, key: str) -> str:
    return "enqueue#" + hashlib.sha256(f"{caller.user_id}\x00{key}".encode()).hexdigest()


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
