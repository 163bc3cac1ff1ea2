"""Runs one SQS message: claim the job, run its handler, record the outcome.

The rule that keeps jobs from being lost: a message is only let go (deleted) once the job record
says what happened to it — terminal, requeued, or held in DynamoDB for later. Everything else
leaves the message in the queue, visible again when the job should run.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ValidationError

from tarefa.backoff import MAX_DELAY_SECONDS, retry_delay, scaled
from tarefa.context import JobContext, JobServices
from tarefa.errors import (
    ConflictError,
    PermanentJobError,
    RetryableJobError,
    RetryLater,
    UnknownJobTypeError,
)
from tarefa.flow import FlowControl, SlotsFull
from tarefa.job import Job, JobStatus, utcnow
from tarefa.jobs import field_errors
from tarefa.jobtypes import JobType, JobTypeRegistry
from tarefa.ports import JobQueue, JobStore, QueueMessageRef
from tarefa.queue import SQS_MAX_DELAY_SECONDS, PoisonMessageError, QueueMessage, parse_message
from tarefa.ratelimit import RateLimiter
from tarefa.sensitive import (
    NO_SCRUB,
    SealingUnavailableError,
    SensitiveFields,
    SensitiveFieldsUnavailableError,
    input_secrets,
    redact,
    scrub_json,
    scrubber,
    scrubbing_logs,
    withholding,
)

logger = Logger(child=True)
metrics = Metrics()

EARLY_TOLERANCE = timedelta(seconds=1)  # clocks and SQS timers are not exact
RETRY_SAVE_GRACE = timedelta(seconds=60)  # how long a retry's message waits for its save
# A job item must stay under DynamoDB's 400 KB; past this the result is refused (RESULT_TOO_LARGE).
MAX_JOB_ITEM_BYTES = 380_000
# The outcome write is tried this many times, with these pauses, before the message is kept.
OUTCOME_WRITE_PAUSES = (0.1, 0.4, 1.2)
# A direct producer's sensitive values that could not be sealed (KMS down): the message returns.
SEAL_RETRY_SECONDS = 30
MAX_WAIT_SECONDS = 30 * 86_400  # the longest RetryLater: held in DynamoDB past SQS's 12 hours


@dataclass(frozen=True)
class Outcome:
    """None: the message is done with (delete it). N: keep it; SQS shows it again in N s."""

    visible_again_in: int | None = None


DONE = Outcome()


class Worker:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        registry: JobTypeRegistry,
        max_receive_count: int,
        lease_seconds: int,
        now: Callable[[], datetime] = utcnow,
        limiter: RateLimiter | None = None,
        services: JobServices | None = None,
        sleep: Callable[[float], None] = time.sleep,
        delay_speedup: float = 1.0,
        sensitive: SensitiveFields | None = None,
        on_end: Callable[[Job], object] | None = None,
        flow: FlowControl | None = None,
    ) -> None:
        # Posts the callback of a job that ended (tarefa.webhooks): called after every write that
        # ends a job and whenever a message finds its job ended, so a crash between the write and
        # the callback is made good by the message's redelivery (the callback is keyed: one).
        self.on_end = on_end
        self.flow = flow
        self.sensitive = sensitive or SensitiveFields(None)
        self.store = store
        self.queue = queue
        self.registry = registry
        self.max_receive_count = max_receive_count
        self.lease = timedelta(seconds=lease_seconds)
        self.now = now
        self.limiter = limiter
        self.services = services or JobServices(limiter=limiter)
        self.sleep = sleep
        self.delay_speedup = delay_speedup

    def process(self, body: str, ref: QueueMessageRef, remaining_seconds: float = float("inf")) -> Outcome:
        message: QueueMessage | None = None
        try:
            message = parse_message(body)
            job_type = self.registry.get(message.type)
        except (PoisonMessageError, UnknownJobTypeError) as exc:
            return self._dead_letter(body, ref, message, str(exc))
        job_id = message.job_id or ref.message_id
        logger.thread_safe_append_keys(job_id=job_id, job_type=message.type)
        try:
            return self._process(message, job_id, job_type, ref, remaining_seconds)
        finally:
            logger.thread_safe_remove_keys(["job_id", "job_type"])

    def _process(
        self, message: QueueMessage, job_id: str, job_type: JobType, ref: QueueMessageRef, remaining: float
    ) -> Outcome:
        if remaining < job_type.policy.timeout_seconds:
            logger.info("not enough time left in this invocation; message returns at once")
            return self._keep(ref, 0)
        for _ in range(3):  # a lost conditional write means someone moved first: look again
            job = self.store.get(job_id)
            slot: str | None = None
            try:
                if job is None:
                    pinned = message.model_copy(update={"job_id": job_id})  # keeps its id if resent
                    throttled = self._throttled(
                        job_type, message.payload, ref, None, pinned, job_id=job_id, sealed=message.sealed
                    )
                    if throttled is not None:
                        return throttled
                    taken = self._take_slot(job_type, job_id, message.payload, message.sealed)
                    if isinstance(taken, SlotsFull):
                        return self._over_concurrency(job_type, ref, None, pinned)
                    slot = taken
                    try:
                        claimed = self._first_sight(message, job_id, job_type, ref)
                    except SealingUnavailableError:
                        logger.warning("could not seal a direct producer's sensitive fields; message returns")
                        self._free_slot(slot, job_id)
                        return self._keep(ref, SEAL_RETRY_SECONDS)
                else:
                    decision = (
                        self._decide(job, ref, message)
                        or self._debounced(job_type, job, ref)
                        or self._throttled(
                            job_type, job.payload, ref, job, job_id=job.job_id, sealed=job.sealed
                        )
                    )
                    if decision is not None:
                        return decision
                    taken = self._take_slot(job_type, job.job_id, job.payload, job.sealed)
                    if isinstance(taken, SlotsFull):
                        return self._over_concurrency(job_type, ref, job)
                    slot = taken
                    claimed = self._claim(job)
            except Exception as exc:
                self._free_slot(slot, job_id)  # the claim did not happen: the slot goes back
                if isinstance(exc, ConflictError):
                    continue
                raise
            if claimed is None:
                self._free_slot(slot, job_id)
                return DONE
            # A worker killed while the job runs (a BaseException here) keeps its slot: the
            # slot's lease ends it. Any outcome, or an error of the engine, frees it.
            try:
                outcome = self._run(claimed, job_type, ref)
            except Exception:
                self._free_slot(slot, job_id)
                raise
            self._free_slot(slot, job_id)
            return outcome
        logger.warning("job kept changing under this worker; message returns later")
        return self._keep(ref, 5)

    # -- claiming --------------------------------------------------------------------------
    def _first_sight(
        self, message: QueueMessage, job_id: str, job_type: JobType, ref: QueueMessageRef
    ) -> Job | None:
        """A producer sent straight to SQS: record the job, already claimed by this worker."""
        now = self.now()
        job = _record_of(job_id, message, ref, now)
        job = job.model_copy(update={"max_attempts": message.max_attempts or job_type.policy.max_attempts})
        # A sealed message comes from the API (or a chained enqueue), which validated the payload
        # before sealing it; the run validates it again once opened.
        if message.sealed is None:
            try:
                validated = job_type.payload_model.model_validate(message.payload)
            except ValidationError as exc:
                withhold = withholding(input_secrets(job_type, message.payload))
                failed = job.model_copy(update={"payload": redact(job_type, message.payload)}).transition(
                    JobStatus.FAILED,
                    now,
                    error=f"Payload does not match job type {job.type}",
                    error_details={
                        "code": "INVALID_PAYLOAD",
                        "fields": field_errors(exc, "payload", withhold),
                    },
                )
                self.store.put(failed, expected_version=None)
                metrics.add_metric("JobsFailed", MetricUnit.Count, 1)
                logger.warning("external job rejected: invalid payload")
                self._ended(failed)
                return None
            if job_type.sensitive_fields:  # sent in the clear straight to SQS: sealed before it is stored
                canonical = validated.model_dump(mode="json", by_alias=True)
                payload, sealed = self.sensitive.seal(job_type, job_id, canonical)  # SealingUnavailableError
                job = job.model_copy(update={"payload": payload, "sealed": sealed})
        claimed = self._claimed(job, now)
        key_id, key_expires = message.idempotency_key_id, message.idempotency_expires_at
        if key_id is None or key_expires is None:
            self.store.put(claimed, expected_version=None)
        else:  # the API sent it and could not record it: record it under the same key
            try:
                self.store.put_with_idempotency_key(
                    claimed, key_id, key_expires, message.idempotency_fingerprint
                )
            except ConflictError:
                entry = self.store.idempotency_entry(key_id, now)
                if entry is not None and entry.job_id != job_id:
                    logger.info("the key names another job (a retried request won): message dropped")
                    return None
                raise
            metrics.add_metric("JobsRecoveredFromMessage", MetricUnit.Count, 1)
        if message.created_at is None:  # an external producer's job: counted here
            metrics.add_metric("JobsEnqueued", MetricUnit.Count, 1)
        return claimed

    def _decide(self, job: Job, ref: QueueMessageRef, message: QueueMessage) -> Outcome | None:
        """An outcome when this message must not run the job now; None when it may claim it."""
        now = self.now()
        if job.is_terminal:
            if message.wake > job.wake and now - job.updated_at < RETRY_SAVE_GRACE:
                return self._keep(ref, 2)  # a retry's message, ahead of the retry's own save
            logger.debug("job already %s; message dropped", job.status)
            self._ended(job)
            return DONE
        if message.wake < job.wake:
            logger.debug("message predates the job's wake-up; dropped")
            return DONE  # run_now sent the job's current message before it saved the wake
        if job.status == JobStatus.PROCESSING:
            assert job.processing_started_at is not None
            lease_ends = job.processing_started_at + self.lease
            if lease_ends > now:
                recorded = self._recorded_outcome(job)
                if recorded is not None:
                    return recorded
                if ref.receive_count >= self.max_receive_count:
                    return DONE  # duplicate of a running job; the stuck sweep covers a crash
                logger.info("job is running in another invocation; message waits for its lease")
                return self._keep(ref, _seconds(lease_ends - now) + 1)
        due = job.next_retry_at if job.status == JobStatus.RETRYING else job.run_at
        if due is not None and due > now + EARLY_TOLERANCE:
            return self._later(job, ref, _seconds(due - now))
        return None

    def _throttled(
        self,
        job_type: JobType,
        payload: Any,
        ref: QueueMessageRef,
        job: Job | None,
        message: QueueMessage | None = None,
        *,
        job_id: str = "",
        sealed: dict[str, Any] | None = None,
    ) -> Outcome | None:
        """An outcome that delays the job when its type's rate is used up; None to run it.
        The limiter fails open: an outage of its backend never holds jobs back. The key
        function gets the validated payload, sensitive fields opened (a cached data key)."""
        policy = job_type.policy
        if policy.rate is None or self.limiter is None:
            return None
        try:
            if policy.rate_key:
                opened, _ = self.sensitive.open(job_type, job_id, payload, sealed)
                key = policy.rate_key(job_type.payload_model.model_validate(opened))
            else:
                key = "all"
        except Exception:  # a payload the key function cannot read fails in the handler, visibly
            return None
        decision = self.limiter.hit(f"job:{job_type.name}", key, policy.rate)
        if decision.allowed:
            return None
        metrics.add_metric("JobsThrottled", MetricUnit.Count, 1)
        logger.debug("rate %s used up; job waits %d s", policy.rate, decision.retry_after)
        if job is not None:
            return self._later(job, ref, decision.retry_after)
        if ref.receive_count < self.max_receive_count:
            return self._keep(ref, min(decision.retry_after, MAX_DELAY_SECONDS))
        assert message is not None  # a fresh message, so the redrive never dead-letters it
        body = message.model_dump_json(by_alias=True, exclude_none=True)
        self.queue.send(ref.priority, body, min(decision.retry_after, SQS_MAX_DELAY_SECONDS))
        return DONE

    # -- flow control (tarefa.flow) ---------------------------------------------------------
    def _flow_key(
        self, job_type: JobType, key_of: Callable[[Any], str], job_id: str, payload: Any, sealed: Any
    ) -> str | None:
        """A policy's key of the validated payload (sensitive fields opened); None when the
        payload cannot be read (the handler then fails on it, visibly)."""
        try:
            opened, _ = self.sensitive.open(job_type, job_id, payload, sealed)
            return str(key_of(job_type.payload_model.model_validate(opened)))
        except Exception:
            return None

    def _take_slot(self, job_type: JobType, job_id: str, payload: Any, sealed: Any) -> str | SlotsFull | None:
        """A concurrency slot for the job (None when its type has no limit), or FULL."""
        policy = job_type.policy
        if policy.concurrency is None or self.flow is None:
            return None
        key_of = policy.concurrency_key
        key = (self._flow_key(job_type, key_of, job_id, payload, sealed) if key_of else None) or "all"
        return self.flow.take_slot(job_type.name, key, policy.concurrency, job_id, policy.timeout_seconds)

    def _free_slot(self, slot: str | None, job_id: str) -> None:
        if slot is not None and self.flow is not None:
            self.flow.free_slot(slot, job_id)

    def _over_concurrency(
        self, job_type: JobType, ref: QueueMessageRef, job: Job | None, message: QueueMessage | None = None
    ) -> Outcome:
        """Every slot of the job's key is held: it waits, unclaimed (its attempts untouched), as
        a rate-limited job does, for a backoff that grows with its message's receives."""
        assert self.flow is not None
        wait = self.flow.slot_wait(ref.receive_count, job_type.policy.timeout_seconds)
        logger.debug("concurrency limit reached; job waits %d s", wait)
        if job is not None:
            return self._later(job, ref, wait)
        if ref.receive_count < self.max_receive_count:
            return self._keep(ref, wait)
        assert message is not None  # a fresh message, so the redrive never dead-letters it
        self.queue.send(ref.priority, message.model_dump_json(by_alias=True, exclude_none=True), wait)
        return DONE

    def _debounced(self, job_type: JobType, job: Job, ref: QueueMessageRef) -> Outcome | None:
        """A debounced job whose turn came: None when it runs for its burst; DONE once it is
        CANCELLED (DEBOUNCED) for a later one. Only a job's first run is debounced: not its
        retries, nor a run after POST /jobs/{id}/retry (it ran before: last_attempt_at)."""
        policy = job_type.policy
        if policy.debounce is None or self.flow is None or job.status != JobStatus.PENDING:
            return None
        if job.last_attempt_at is not None:
            return None
        key_of = policy.debounce_key
        key = (
            self._flow_key(job_type, key_of, job.job_id, job.payload, job.sealed) if key_of else None
        ) or "all"
        record = self.flow.debounce_key(job_type.name, job.user_id or "", key)
        max_wait = job_type.debounce_max_wait or policy.debounce
        verdict = self.flow.debounce_turn(record, job, policy.debounce, max_wait, self.store.get)
        if verdict.run:
            return None
        if verdict.wait is not None:  # its burst is not decided yet: it learns by whom, later
            return self._later(job, ref, verdict.wait)
        cancelled = job.transition(
            JobStatus.CANCELLED,
            self.now(),
            error="Debounced: a later job with the same key ran instead",
            error_details={"code": "DEBOUNCED", "debouncedBy": verdict.debounced_by},
            next_retry_at=None,
            held=False,
        )
        self.store.put(cancelled, expected_version=job.version)  # ConflictError: look again
        metrics.add_metric("JobsDebounced", MetricUnit.Count, 1)
        return DONE

    def _claim(self, job: Job) -> Job | None:
        now = self.now()
        if job.status == JobStatus.PROCESSING:  # its worker died: that attempt is given back
            lost = job.lost_attempt(now, "Worker crashed or timed out", "WORKER_LOST", now)
            if lost.status == JobStatus.FAILED:
                self.store.put(lost, expected_version=job.version)
                metrics.add_metric("JobsFailed", MetricUnit.Count, 1)
                self._ended(lost)
                return None
            claimed = self._claimed(lost, now).model_copy(update={"version": job.version + 1})
        else:
            claimed = self._claimed(job, now)
        self._write_claim(claimed, job.version)
        return claimed

    def _write_claim(self, claimed: Job, expected_version: int) -> None:
        """A claim whose answer was lost may still have been written: look before giving up,
        so the job is not left PROCESSING under a lease nobody holds."""
        try:
            self.store.put(claimed, expected_version=expected_version)
        except ConflictError:
            raise
        except Exception:
            current = self.store.get(claimed.job_id)
            if (
                current is not None
                and current.version == claimed.version
                and current.status == claimed.status
            ):
                return
            raise

    @staticmethod
    def _claimed(job: Job, now: datetime) -> Job:
        metrics.add_metric("QueueWait", MetricUnit.Milliseconds, max(0.0, _ms(now - job.ready_since)))
        return job.transition(
            JobStatus.PROCESSING,
            now,
            attempts=job.attempts + 1,
            processing_started_at=now,
            last_attempt_at=now,
            next_retry_at=None,
            held=False,
        )

    # -- running ---------------------------------------------------------------------------
    def _run(self, claimed: Job, job_type: JobType, ref: QueueMessageRef) -> Outcome:
        current = [claimed]  # progress reports move the job's version on while it runs
        # Once the sensitive fields are open, their values are scrubbed out of what the run
        # leaves behind: progress, result, error, errorDetails and the logged traceback.
        secrets: list[str] = []
        scrub = [NO_SCRUB]

        def report_progress(percent: int, message: str | None) -> None:
            job = current[0]
            message = scrub[0](message) if message else message
            progress = {"percent": percent, "message": message, "updatedAt": self.now().isoformat()}
            moved = job.model_copy(update={"progress": progress, "version": job.version + 1})
            try:
                self.store.put(moved, expected_version=job.version)
                current[0] = moved
            except Exception:  # progress is advice: never fail the job over it
                logger.warning("could not record progress", exc_info=True)
                try:  # but its version must be known, or the outcome's write would lose
                    if self._landed(moved):
                        current[0] = moved
                except Exception:
                    logger.warning("could not read the job back after its progress", exc_info=True)

        ctx = JobContext(
            claimed.job_id,
            claimed.attempts,
            claimed.max_attempts,
            claimed.user_id,
            job_type=job_type.name,
            services=self.services,
            report_progress=report_progress,
        )
        started = time.perf_counter()
        try:
            # Just before the handler: SensitiveFieldsError (permanent) or
            # SensitiveFieldsUnavailableError (KMS down, retryable) when they cannot be opened.
            data, secrets = self.sensitive.open(job_type, claimed.job_id, claimed.payload, claimed.sealed)
            scrub[0] = scrubber(secrets)
            payload = job_type.payload_model.model_validate(data)
            del data
            with scrubbing_logs(scrub[0]):  # what the handler logs is scrubbed too
                returned = job_type.handler(payload, ctx)
            result = scrub_json(_jsonable(returned), scrub[0])
        except ValidationError as exc:
            return self._fail(
                current[0], "Payload does not match its job type", "INVALID_PAYLOAD", exc, secrets
            )
        except PermanentJobError as exc:
            return self._fail(current[0], str(exc) or type(exc).__name__, exc.code, exc, secrets)
        except RetryLater as exc:
            return self._wait(current[0], ref, exc, secrets)
        except RetryableJobError as exc:
            logger.info("attempt %d failed: %s", claimed.attempts, type(exc).__name__)
            return self._retry(current[0], job_type, ref, exc, secrets)
        except Exception as exc:  # a bug or an outage: worth another attempt, and a traceback
            if secrets:  # the traceback's messages may quote a sensitive value: logged scrubbed
                text = scrub[0]("".join(traceback.format_exception(exc)))
                logger.warning(
                    "attempt %d crashed: %s", claimed.attempts, type(exc).__name__, extra={"traceback": text}
                )
            else:
                logger.warning("attempt %d crashed: %s", claimed.attempts, type(exc).__name__, exc_info=True)
            return self._retry(current[0], job_type, ref, exc, secrets)
        finally:
            metrics.add_metric("JobDuration", MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
        job = current[0]
        now = self.now()
        done = job.transition(
            JobStatus.COMPLETED,
            now,
            result=result,
            error=None,
            error_details=None,
            processing_completed_at=now,
        )
        size = len(done.model_dump_json(by_alias=True).encode())
        if size > MAX_JOB_ITEM_BYTES:
            too_large = PermanentJobError(
                f"The result makes the job {size} bytes; a job holds at most {MAX_JOB_ITEM_BYTES}",
                code="RESULT_TOO_LARGE",
            )
            return self._fail(job, str(too_large), too_large.code, too_large)
        return self._record_outcome(job, done, ref)

    def _record_outcome(self, job: Job, done: Job, ref: QueueMessageRef) -> Outcome:
        """The handler succeeded: the COMPLETED write is retried within the invocation, and if
        it still fails the message stays, so a later delivery records it (never a re-run)."""
        for pause in (*OUTCOME_WRITE_PAUSES, None):
            try:
                self.store.put(done, expected_version=job.version)
            except ConflictError:
                if done.callback_url and self._landed(done):  # an earlier try's answer was lost
                    self._ended(done)
                    return DONE
                logger.warning("job changed while it ran; outcome %s discarded", done.status)
                return DONE
            except Exception:
                if pause is None:
                    break
                self.sleep(pause)
            else:
                metrics.add_metric("JobsCompleted", MetricUnit.Count, 1)
                logger.debug("job completed", extra={"attempt": job.attempts})
                self._ended(done)  # outside the write's try: its failure keeps the message
                return DONE
        logger.warning("could not record the outcome; it is kept for the next delivery", exc_info=True)
        steps = self.services.steps
        if steps is not None:
            steps.put_step(_outcome_key(job), done.model_dump_json(by_alias=True), OUTCOME_LIFETIME)
        return self._keep(ref, 1)

    def _recorded_outcome(self, job: Job) -> Outcome | None:
        """A delivery that finds the job still PROCESSING records an outcome that an earlier
        invocation of this attempt could not write, instead of waiting to run it again."""
        steps = self.services.steps
        if steps is None:
            return None
        recorded = steps.get_step(_outcome_key(job))
        if recorded is None:
            return None
        done = Job.model_validate_json(recorded)
        if done.version != job.version + 1:
            return None
        try:
            self.store.put(done, expected_version=job.version)
        except ConflictError:
            return DONE
        metrics.add_metric("JobsCompleted", MetricUnit.Count, 1)
        logger.info("recorded the outcome an earlier invocation could not write")
        self._ended(done)
        return DONE

    def _wait(self, job: Job, ref: QueueMessageRef, wait: RetryLater, secrets: Sequence[str] = ()) -> Outcome:
        """Not a failure: the job is not done yet and looks again later (a polling job)."""
        if job.attempts >= job.max_attempts:
            error = wait.reason or "still not done"
            exhausted = PermanentJobError(f"{error} after {job.attempts} attempts", code="ATTEMPTS_EXHAUSTED")
            return self._fail(job, str(exhausted), exhausted.code, exhausted, secrets)
        reason = scrubber(secrets)(wait.reason) if wait.reason else wait.reason
        now = self.now()
        # Past SQS's 12 hours the job is held in DynamoDB and promoted when due (_later): a
        # declined renewal looks again in days.
        delay = min(MAX_WAIT_SECONDS, scaled(wait.seconds, self.delay_speedup))
        waiting = job.transition(
            JobStatus.RETRYING,
            now,
            error=None,
            error_details={"code": "WAITING", "reason": reason} if reason else {"code": "WAITING"},
            next_retry_at=now + timedelta(seconds=delay),
        )
        if not self._save(job, waiting):
            return DONE
        metrics.add_metric("JobsWaiting", MetricUnit.Count, 1)
        logger.debug("job waits %d s", delay)
        return self._later(waiting, ref, delay)

    def _retry(
        self, job: Job, job_type: JobType, ref: QueueMessageRef, exc: Exception, secrets: Sequence[str] = ()
    ) -> Outcome:
        if job.attempts >= job.max_attempts:
            return self._fail(job, _describe(exc), "ATTEMPTS_EXHAUSTED", exc, secrets)
        now = self.now()
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:  # the provider said when (Retry-After)
            delay = min(MAX_DELAY_SECONDS, round(retry_after))
        else:
            delay = retry_delay(job.attempts, job.retry_delay_seconds, job_type.policy.backoff)
        delay = scaled(delay, self.delay_speedup)
        code = exc.code if isinstance(exc, SensitiveFieldsUnavailableError) else "RETRYABLE"
        retrying = job.transition(
            JobStatus.RETRYING,
            now,
            error=scrubber(secrets)(_describe(exc)),
            error_details={"code": code, "exception": type(exc).__name__, "attempt": job.attempts},
            next_retry_at=now + timedelta(seconds=delay),
        )
        if not self._save(job, retrying):
            return DONE
        metrics.add_metric("JobsRetried", MetricUnit.Count, 1)
        return self._later(retrying, ref, delay)

    def _fail(self, job: Job, error: str, code: str, exc: Exception, secrets: Sequence[str] = ()) -> Outcome:
        now = self.now()
        details: dict[str, Any] = {"code": code, "exception": type(exc).__name__, "attempt": job.attempts}
        if isinstance(exc, ValidationError):
            details["fields"] = field_errors(exc, "payload", withholding(secrets))
        failed = job.transition(
            JobStatus.FAILED,
            now,
            error=scrubber(secrets)(error),
            error_details=scrub_json(details, scrubber(secrets)),
            processing_completed_at=now,
        )
        saved = self._save(job, failed)
        metrics.add_metric("JobsFailed", MetricUnit.Count, 1)
        logger.info("job failed", extra={"attempt": job.attempts, "code": code})
        if saved:
            self._ended(failed)
        return DONE

    def _ended(self, job: Job) -> None:
        """The job ended: its callback, if it has one. A failure here raises, so the message
        stays and its next delivery (which finds the job ended) tries again."""
        if job.callback_url and self.on_end is not None:
            self.on_end(job)

    def _save(self, old: Job, new: Job) -> bool:
        """Record an attempt's end (RETRYING, FAILED), retried within the invocation like the
        COMPLETED write: a write that keeps failing leaves the job to a takeover, which costs
        it one of its deaths."""
        tried = False
        for pause in (*OUTCOME_WRITE_PAUSES, None):
            try:
                self.store.put(new, expected_version=old.version)
                return True
            except ConflictError:
                if tried and self._landed(new):
                    return True  # an earlier try went through; only its answer was lost
                # Only the stuck sweep moves a PROCESSING job, and only once its lease is long over.
                logger.warning("job changed while it ran; outcome %s discarded", new.status)
                return False
            except Exception:
                if pause is None:
                    raise
                tried = True
                self.sleep(pause)
        raise AssertionError("unreachable")

    def _landed(self, written: Job) -> bool:
        """Whether `written` is what the table holds (a write whose answer was lost)."""
        current = self.store.get(written.job_id)
        return current is not None and current.version == written.version and current.status == written.status

    # -- keeping, requeueing and dead-lettering messages ------------------------------------
    def _later(self, job: Job, ref: QueueMessageRef, delay: int) -> Outcome:
        """Bring the (saved) job back in `delay` s: by the message's visibility while SQS
        allows it, else by a fresh message, or a DynamoDB hold past 15 minutes."""
        if ref.receive_count < self.max_receive_count and delay <= MAX_DELAY_SECONDS:
            try:
                return self._keep(ref, delay)
            except Exception:  # e.g. past SQS's 12 hours since the first receive
                logger.warning("could not change visibility; requeueing instead", exc_info=True)
        if delay > SQS_MAX_DELAY_SECONDS:
            due = self.now() + timedelta(seconds=delay)
            held = job.model_copy(update={"held": True, "run_at": due, "version": job.version + 1})
            self.store.put(held, expected_version=job.version)
        else:
            self.queue.send(job.priority, QueueMessage.for_job(job), delay)
        return DONE

    def _keep(self, ref: QueueMessageRef, seconds: int) -> Outcome:
        self.queue.change_visibility(ref.priority, ref.receipt_handle, seconds)
        return Outcome(visible_again_in=seconds)

    def _dead_letter(
        self, body: str, ref: QueueMessageRef, message: QueueMessage | None, reason: str
    ) -> Outcome:
        """Poison: to the DLQ at once, and the job record (found or made) says so."""
        job_id = (message.job_id if message else None) or ref.message_id
        self.queue.send_to_dead_letter(ref.priority, body, reason, job_id)
        metrics.add_metric("JobsDeadLettered", MetricUnit.Count, 1)
        logger.warning("message dead-lettered: %s", reason, extra={"job_id": job_id})
        now = self.now()
        for _ in range(3):
            job = self.store.get(job_id)
            dead: Job | None = None
            try:
                if job is None:
                    dead = _record_of(job_id, message, ref, now).transition(
                        JobStatus.FAILED,
                        now,
                        error=reason,
                        error_details={"code": "POISON_MESSAGE"},
                        dead_lettered=True,
                    )
                    self.store.put(dead, expected_version=None)
                elif job.status not in (JobStatus.COMPLETED, JobStatus.CANCELLED):
                    update = {
                        "error": reason,
                        "error_details": {"code": "POISON_MESSAGE"},
                        "dead_lettered": True,
                    }
                    dead = (
                        job.model_copy(update={**update, "updated_at": now, "version": job.version + 1})
                        if job.status == JobStatus.FAILED
                        else job.transition(JobStatus.FAILED, now, **update)
                    )
                    self.store.put(dead, expected_version=job.version)
            except ConflictError:
                continue
            if dead is not None and dead.callback_url:
                try:  # the message is in the DLQ already: a raise would only send it twice
                    self._ended(dead)
                except Exception:
                    logger.warning("could not post a dead-lettered job's callback", exc_info=True)
            return DONE
        return DONE


def _record_of(job_id: str, message: QueueMessage | None, ref: QueueMessageRef, now: datetime) -> Job:
    """The job record for a message that arrived without one (external producer or poison)."""
    if message is None:
        return Job(job_id=job_id, type="unknown", priority=ref.priority, created_at=now, updated_at=now)
    return Job(
        job_id=job_id,
        type=message.type,
        priority=ref.priority,
        payload=message.payload,
        user_id=message.user_id,
        order_id=message.order_id,
        retry_delay_seconds=message.retry_delay_seconds,
        created_at=message.created_at or now,
        updated_at=now,
        run_at=message.run_at,
        sealed=message.sealed,
        callback_url=message.callback_url,
    )


OUTCOME_LIFETIME = timedelta(days=1)


def _outcome_key(job: Job) -> str:
    return f"outcome#{job.job_id}#{job.attempts}#{job.version}"


def _jsonable(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError):
        raise PermanentJobError(f"handler returned a {type(result).__name__}, which is not JSON") from None
    return result


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _seconds(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() + 0.999))


def _ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000
