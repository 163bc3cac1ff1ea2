"""Browse, redrive and purge the dead-letter queues, job by job.

SQS's own redrive moves everything or nothing; this walks the queue with plain receive, send
and delete, so it works on any SQS (and the emulator) and can pick messages by job. Nothing is
ever lost: a message is hidden while it is looked at and made visible again unless it was
chosen, and a chosen one is sent back to its queue before it is deleted from the DLQ (a crash
in between leaves a duplicate, which the worker's conditional writes absorb).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field, model_validator

from tarefa.errors import ConflictError
from tarefa.job import CamelModel, Job, JobStatus, Priority, utcnow
from tarefa.ports import DeadLetter, DeadLetterQueue, JobStore
from tarefa.queue import PoisonMessageError, parse_message

logger = Logger(child=True)
metrics = Metrics()

HIDE_SECONDS = 60  # longer than any one walk: a message is seen once per walk
REFLECT_LIMIT = 100  # messages a dead-letter sweep looks at per queue (a DLQ alarms at 1)
REFLECT_HIDE_SECONDS = 10  # the sweep holds a message this long at most while it reads its job
WALKS_FOR_CHOSEN = 3
PURGED = "Purged from the dead-letter queue"


class DeadLetterEntry(CamelModel):
    job_id: str
    message_id: str
    type: str | None
    receive_count: int = Field(
        description="SQS's receive count: the deliveries before the message was dead-lettered, "
        "plus one for every browse and every dead-letter sweep since (looking is a receive)"
    )
    last_error: str | None
    failed_at: datetime
    job_status: JobStatus | None  # None: no job record (a message sent straight to SQS)


class RedriveRequest(CamelModel):
    job_ids: list[str] | None = Field(None, min_length=1, max_length=100)
    all: bool = False

    @model_validator(mode="after")
    def _one_selection(self) -> RedriveRequest:
        if bool(self.job_ids) == self.all:
            raise ValueError("give either jobIds or all: true")
        return self


class DeadLetterQuery(CamelModel):
    limit: int = Field(20, ge=1, le=100)


class PurgeRequest(CamelModel):
    job_ids: list[str] = Field(min_length=1, max_length=100)


class Skipped(CamelModel):
    job_id: str
    reason: str


class DeadLetterReport(CamelModel):
    """What a redrive or purge did; `complete` is false when it stopped for time and should be
    called again for the rest (the CLI does, with a progress bar)."""

    job_ids: list[str] = Field(default_factory=list)  # moved (or purged)
    not_found: list[str] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    complete: bool = True


class DeadLetters:
    def __init__(
        self,
        store: JobStore,
        queue: DeadLetterQueue,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        lease_seconds: int = 120,
        sleep: Callable[[float], None] = time.sleep,
        redact: Callable[[str, Any], Any] | None = None,
        on_end: Callable[[Job], object] | None = None,
    ) -> None:
        self.on_end = on_end  # the callback of a job the sweep fails (tarefa.webhooks)
        # (type, payload) -> the payload with the type's sensitive values redacted: a record
        # made here from a message a producer sent straight to SQS never holds them.
        self.redact = redact or (lambda job_type, payload: payload)
        self.sleep = sleep
        self.lease = timedelta(seconds=lease_seconds)
        self.store = store
        self.queue = queue
        self.now = now
        self.monotonic = monotonic

    def reflect(self, priority: Priority, limit: int = REFLECT_LIMIT) -> int:
        """The sweep for messages SQS's redrive moved here (a worker that kept crashing, a write
        that kept failing): their jobs say FAILED and deadLettered, with why, instead of staying
        PENDING or RETRYING forever. Looks at up to `limit` messages (one receive each, then
        released) and reads one job per message; returns how many jobs it changed."""
        changed = 0
        received: list[DeadLetter] = []
        try:
            for count, letter in enumerate(self._walk(priority, received, REFLECT_HIDE_SECONDS), start=1):
                if self._reflect(letter):
                    changed += 1
                if count >= limit:
                    break
        finally:
            self.queue.release_dead_letters(priority, [r.receipt_handle for r in received])
        if changed:
            metrics.add_metric("JobsDeadLettered", MetricUnit.Count, changed)
            logger.warning("dead-lettered jobs recorded", extra={"priority": priority, "jobs": changed})
        return changed

    def _reflect(self, letter: DeadLetter) -> bool:
        job_id = _job_id(letter)
        now = self.now()
        error = letter.error or f"Moved to the dead-letter queue after {letter.receive_count} receives"
        details = {"code": "DEAD_LETTERED", "receiveCount": letter.receive_count}
        for _ in range(3):
            job = self.store.get(job_id)
            if job is None:
                try:
                    message = parse_message(letter.body)
                except PoisonMessageError:
                    return False  # the worker records poison itself when it dead-letters it
                job = Job(
                    job_id=job_id, type=message.type, payload=self.redact(message.type, message.payload),
                    user_id=message.user_id, created_at=message.created_at or now, updated_at=now,
                )  # fmt: skip
                dead = job.transition(
                    JobStatus.FAILED, now, error=error, error_details=details, dead_lettered=True
                )
                expected: int | None = None
            elif job.dead_lettered or job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED):
                return False
            elif job.status == JobStatus.FAILED:
                dead = job.model_copy(
                    update={"dead_lettered": True, "updated_at": now, "version": job.version + 1}
                )
                expected = job.version
            elif job.status == JobStatus.PROCESSING and not self._lease_over(job, now):
                return False  # running right now on another message: its outcome decides
            else:
                dead = job.transition(
                    JobStatus.FAILED, now, error=error, error_details=details, dead_lettered=True,
                    processing_completed_at=now if job.status == JobStatus.PROCESSING else job.processing_completed_at,
                )  # fmt: skip
                expected = job.version
            try:
                self.store.put(dead, expected_version=expected)
            except ConflictError:
                continue
            self._ended(dead)
            return True
        return False

    def _ended(self, job: Job) -> None:
        if job.callback_url and self.on_end is not None:
            try:  # a sweep goes on: the job's callback is keyed, a later sight may send it
                self.on_end(job)
            except Exception:
                logger.warning(
                    "could not post a dead-lettered job's callback",
                    extra={"job_id": job.job_id},
                    exc_info=True,
                )

    def _lease_over(self, job: Job, now: datetime) -> bool:
        started = job.processing_started_at
        return started is None or started + self.lease < now

    def browse(self, priority: Priority, limit: int) -> list[DeadLetterEntry]:
        """Up to `limit` messages; all of them stay in the DLQ."""
        entries: list[DeadLetterEntry] = []
        received: list[DeadLetter] = []
        try:
            for letter in self._walk(priority, received):
                entries.append(self._entry(letter))
                if len(entries) >= limit:
                    break
        finally:
            self.queue.release_dead_letters(priority, [r.receipt_handle for r in received])
        return entries

    def redrive(
        self, priority: Priority, request: RedriveRequest, budget_seconds: float = 20
    ) -> DeadLetterReport:
        """Move the chosen messages back to their queue and their jobs back to PENDING."""

        def move(job_id: str, letter: DeadLetter) -> str | None:
            try:
                parse_message(letter.body)
            except PoisonMessageError as exc:
                return f"{exc}; purge it instead"
            self._restart(job_id)
            self.queue.send(priority, letter.body)
            self.queue.delete_dead_letter(priority, letter.receipt_handle)
            return None

        report = self._each(priority, None if request.all else request.job_ids, move, budget_seconds)
        metrics.add_metric("JobsRedriven", MetricUnit.Count, len(report.job_ids))
        logger.info("dead letters redriven", extra={"priority": priority, "moved": len(report.job_ids)})
        return report

    def purge(
        self, priority: Priority, request: PurgeRequest, budget_seconds: float = 20
    ) -> DeadLetterReport:
        """Delete the chosen messages; their jobs end FAILED, so nothing disappears unseen."""

        def delete(job_id: str, letter: DeadLetter) -> str | None:
            self._fail(job_id)
            self.queue.delete_dead_letter(priority, letter.receipt_handle)
            return None

        report = self._each(priority, request.job_ids, delete, budget_seconds)
        metrics.add_metric("JobsPurged", MetricUnit.Count, len(report.job_ids))
        logger.info("dead letters purged", extra={"priority": priority, "purged": len(report.job_ids)})
        return report

    # -- internals -------------------------------------------------------------------------
    def _each(
        self,
        priority: Priority,
        job_ids: list[str] | None,
        act: Callable[[str, DeadLetter], str | None],
        budget_seconds: float,
    ) -> DeadLetterReport:
        """Apply `act` to the messages of `job_ids` (every message when None); `act` returns
        None when it took the message out of the DLQ, else why it left it there."""
        wanted = None if job_ids is None else set(job_ids)
        deadline = self.monotonic() + budget_seconds
        report = DeadLetterReport(complete=False)
        received: list[DeadLetter] = []
        taken: set[str] = set()  # receipt handles of messages no longer in the DLQ
        try:
            # A message another reader (a browse, the dead-letter sweep) holds for the moment is
            # not returned: a chosen one not found is looked for again, briefly.
            for walk in range(WALKS_FOR_CHOSEN):
                for letter in self._walk(priority, received):
                    job_id = _job_id(letter)
                    if wanted is None or job_id in wanted:
                        reason = act(job_id, letter)
                        if reason is None:
                            report.job_ids.append(job_id)
                            taken.add(letter.receipt_handle)
                        else:
                            report.skipped.append(Skipped(job_id=job_id, reason=reason))
                        if wanted is not None:
                            wanted.discard(job_id)
                            if not wanted:
                                break
                    if self.monotonic() >= deadline:
                        return report  # not complete: call again for the rest
                if not wanted or walk == WALKS_FOR_CHOSEN - 1 or self.monotonic() + 1 >= deadline:
                    break
                self.sleep(1)
        finally:  # everything else goes back, including what was received but not looked at
            self.queue.release_dead_letters(
                priority, [r.receipt_handle for r in received if r.receipt_handle not in taken]
            )
        report.complete = True
        report.not_found = sorted(wanted or ())
        return report

    def _walk(
        self, priority: Priority, received: list[DeadLetter], hide_seconds: int = HIDE_SECONDS
    ) -> Iterator[DeadLetter]:
        """Every message once (each is hidden when received, and added to `received` for the
        caller to release), until the queue answers empty twice in a row."""
        empty = 0
        while empty < 2:
            batch = self.queue.receive_dead_letters(priority, 10, hide_seconds)
            empty = 0 if batch else empty + 1
            received.extend(batch)
            yield from batch

    def _entry(self, letter: DeadLetter) -> DeadLetterEntry:
        job_id = _job_id(letter)
        job = self.store.get(job_id)
        try:
            job_type: str | None = parse_message(letter.body).type
        except PoisonMessageError:
            job_type = job.type if job else None
        failed = job is not None and job.status == JobStatus.FAILED
        return DeadLetterEntry(
            job_id=job_id,
            message_id=letter.message_id,
            type=job_type,
            receive_count=letter.receive_count,
            last_error=letter.error or (job.error if job else None),
            failed_at=job.updated_at if failed and job else letter.sent_at,
            job_status=job.status if job else None,
        )

    def _restart(self, job_id: str) -> None:
        """A FAILED job goes back to PENDING with attempts reset; any other is left alone (the
        worker records a missing one on first sight and drops a finished one)."""
        for _ in range(3):
            job = self.store.get(job_id)
            if job is None or job.status != JobStatus.FAILED:
                return
            try:
                self.store.put(job.restarted(self.now()), expected_version=job.version)
                return
            except ConflictError:
                continue

    def _fail(self, job_id: str) -> None:
        for _ in range(3):
            job = self.store.get(job_id)
            if job is None or job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED):
                return
            failed: Job = (
                job.model_copy(update={"error": PURGED, "updated_at": self.now(), "version": job.version + 1})
                if job.status == JobStatus.FAILED
                else job.transition(JobStatus.FAILED, self.now(), error=PURGED)
            )
            try:
                self.store.put(failed, expected_version=job.version)
            except ConflictError:
                continue
            self._ended(failed)
            return


def _job_id(letter: DeadLetter) -> str:
    """The worker's rule: the id it recorded, else the body's jobId, else the message id."""
    if letter.job_id:
        return letter.job_id
    try:
        return parse_message(letter.body).job_id or letter.message_id
    except PoisonMessageError:
        return letter.message_id
