"""Scheduled sweeps: clean up finished jobs, recover stuck ones, promote delayed ones.

Each reads a sparse, sharded index (never a table scan) and changes jobs with the same
conditional writes as the worker, so a sweep racing a worker can only lose, never double-run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field

from tarefa.cache import Cache
from tarefa.errors import ConflictError
from tarefa.job import Job, JobStatus, utcnow
from tarefa.ports import JobQueue, JobStore, Sweep
from tarefa.queue import SQS_MAX_DELAY_SECONDS, QueueMessage

logger = Logger(child=True)
metrics = Metrics()

RECOVERY_RETRY_SECONDS = 60  # seed 000: a stuck job is retried a minute later


class CleanupRequest(BaseModel):
    # Strict: JSON true/false, "5" and 5.0 are not ages. 0 means every finished job.
    older_than_seconds: int | None = Field(
        None, alias="olderThanSeconds", ge=0, le=10 * 365 * 86_400, strict=True
    )


class RecoverRequest(BaseModel):
    # 0 (or anything below the worker timeout) means as soon as the worker timeout allows.
    stuck_after_seconds: int | None = Field(None, alias="stuckAfterSeconds", ge=0, le=7 * 86_400, strict=True)


class Maintenance:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        retention_seconds: int,
        stuck_after_seconds: int,
        lease_seconds: int,
        now: Callable[[], datetime] = utcnow,
        cache: Cache | None = None,
        on_end: Callable[[Job], object] | None = None,
    ) -> None:
        self.on_end = on_end  # a job's callback when recovery gives up on it (tarefa.webhooks)
        self.store = store
        self.queue = queue
        self.cache = cache
        self.retention_seconds = retention_seconds
        self.stuck_after_seconds = stuck_after_seconds
        self.lease_seconds = lease_seconds
        self.now = now

    def cleanup(self, older_than_seconds: int | None = None) -> int:
        """Delete COMPLETED, CANCELLED and FAILED jobs that finished before the cutoff.

        The job cache never holds a job past its retention (JobService), so only a cleanup
        with a shorter cutoff than the retention has cache entries to drop."""
        age = self.retention_seconds if older_than_seconds is None else older_than_seconds
        cutoff = self.now() - timedelta(seconds=age)
        gone = [
            job_id
            for job_id in self.store.sweep(Sweep.FINISHED, cutoff)
            if self.store.delete_finished(job_id, cutoff)
        ]
        if self.cache is not None and gone and older_than_seconds is not None:
            self.cache.delete("job", *gone)
        deleted = len(gone)
        metrics.add_metric("JobsCleanedUp", MetricUnit.Count, deleted)
        logger.info("cleanup finished", extra={"deleted": deleted, "cutoff": cutoff.isoformat()})
        return deleted

    def recover(self, stuck_after_seconds: int | None = None) -> int:
        """PROCESSING for too long -> RETRYING in a minute, requeued ("Job stuck").

        The threshold never goes below the worker's timeout: a lease that old belongs to an
        invocation Lambda has already stopped, so no job ever runs twice at once. A shorter
        `stuck_after_seconds`, 0 included, means the worker's timeout.
        """
        asked = self.stuck_after_seconds if stuck_after_seconds is None else stuck_after_seconds
        threshold = max(asked, self.lease_seconds)
        cutoff = self.now() - timedelta(seconds=threshold)
        recovered = sum(
            1 for job_id in self.store.sweep(Sweep.PROCESSING, cutoff) if self._recover(job_id, cutoff)
        )
        metrics.add_metric("JobsRecovered", MetricUnit.Count, recovered)
        logger.info("recovery finished", extra={"recovered": recovered, "threshold_seconds": threshold})
        return recovered

    def _recover(self, job_id: str, cutoff: datetime) -> bool:
        job = self.store.get(job_id)
        if (
            job is None
            or job.status != JobStatus.PROCESSING
            or job.processing_started_at is None
            or job.processing_started_at > cutoff
        ):
            return False
        now = self.now()
        # A worker that died does not use up an attempt (Job.lost_attempt): the stuck job runs
        # again in a minute, unless its workers keep dying (WORKER_CRASHED).
        retry_at = now + timedelta(seconds=RECOVERY_RETRY_SECONDS)
        changed = job.lost_attempt(now, "Job stuck", "STUCK", retry_at)
        # Send first, as _promote does: a RETRYING job whose send failed would have no message
        # and no sweep looks at RETRYING jobs, while a message for a job the write below did not
        # change is dropped by the worker (claims are conditional).
        if changed.status == JobStatus.RETRYING:
            self.queue.send(changed.priority, QueueMessage.for_job(changed), RECOVERY_RETRY_SECONDS)
        try:
            self.store.put(changed, expected_version=job.version)
        except ConflictError:
            return False  # the worker finished after all
        logger.warning("stuck job recovered", extra={"job_id": job_id, "status": changed.status})
        if changed.status == JobStatus.FAILED and changed.callback_url and self.on_end is not None:
            try:  # the job's message, if it comes back, finds it FAILED and tries again
                self.on_end(changed)
            except Exception:
                logger.warning(
                    "could not post a given-up job's callback", extra={"job_id": job_id}, exc_info=True
                )
        return True

    def promote(self) -> int:
        """Queue the held jobs that fall due within SQS's 15-minute delay window."""
        now = self.now()
        promoted = 0
        for job_id in self.store.sweep(Sweep.DELAYED, now + timedelta(seconds=SQS_MAX_DELAY_SECONDS)):
            job = self.store.get(job_id)
            if job is None or not job.held or job.run_at is None:
                continue
            if self._promote(job, now):
                promoted += 1
        if promoted:
            metrics.add_metric("JobsPromoted", MetricUnit.Count, promoted)
            logger.info("delayed jobs promoted", extra={"promoted": promoted})
        return promoted

    def _promote(self, job: Job, now: datetime) -> bool:
        assert job.run_at is not None
        delay = max(0, min(SQS_MAX_DELAY_SECONDS, int((job.run_at - now).total_seconds())))
        # Send first: if the write below loses, a duplicate message is harmless (claims are
        # conditional), while a write without a send would strand the job.
        self.queue.send(job.priority, QueueMessage.for_job(job), delay)
        try:
            self.store.put(job.model_copy(update={"held": False, "version": job.version + 1}), job.version)
        except ConflictError:
            return False
        return True
