"""The job record and its state machine.

Every change of status goes through `Job.transition`, which refuses moves the lifecycle does
not allow; storage then writes the result conditionally on the version it read, so two workers
can never both win the same move.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tarefa.errors import InvalidTransitionError


class JobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RETRYING = "RETRYING"


class Priority(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


# A worker that dies (crash, timeout, lost invocation) does not use up one of the job's attempts:
# Tarefa cannot tell a death before the handler from one inside it, so deaths have a budget of
# their own, and a job whose workers keep dying fails with WORKER_CRASHED.
MAX_CRASHES = 3

TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
CANCELLABLE = frozenset({JobStatus.PENDING, JobStatus.RETRYING, JobStatus.FAILED})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RETRYING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # PROCESSING -> PROCESSING is a takeover of a lease whose worker is gone.
    JobStatus.PROCESSING: frozenset(
        {JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.RETRYING, JobStatus.FAILED}
    ),
    JobStatus.FAILED: frozenset({JobStatus.PENDING, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Job(CamelModel):
    """One unit of work and everything a client may want to know about it."""

    job_id: str
    type: str
    status: JobStatus = JobStatus.PENDING
    priority: Priority = Priority.MEDIUM
    payload: Any = None
    result: Any = None
    error: str | None = None
    error_details: dict[str, Any] | None = None
    attempts: int = 0
    max_attempts: int = 3
    retry_delay_seconds: int | None = None
    next_retry_at: datetime | None = None
    last_attempt_at: datetime | None = None
    user_id: str | None = None
    order_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    processing_started_at: datetime | None = None
    processing_completed_at: datetime | None = None
    dead_lettered: bool = False
    # How far the running job says it is: {percent, message, updatedAt} (ctx.progress).
    progress: dict[str, Any] | None = None
    # One of the owner's webhook subscription URLs: job.completed/failed/cancelled is posted
    # there, signed with its secret, when the job ends (tarefa.webhooks).
    callback_url: str | None = None
    # Internal: not part of the public job document.
    run_at: datetime | None = None
    held: bool = False
    version: int = 0
    crashes: int = 0  # attempts whose worker died; they do not count as attempts
    # Bumped when the job is woken early (JobService.run_now): messages from before are stale.
    wake: int = 0
    # The sensitive payload fields, encrypted (tarefa.sensitive); `payload` holds "[redacted]"
    # in their place. Kept while the job may still run, dropped by the write that ends it.
    sealed: dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def ready_since(self) -> datetime:
        """When the job last became runnable: its queue wait starts here."""
        return self.next_retry_at or self.run_at or self.created_at

    @property
    def listing_key(self) -> str:
        """Sort key of the newest-first listings: creation time, then id to break ties."""
        return f"{self.created_at.isoformat()}#{self.job_id}"

    def transition(self, status: JobStatus, now: datetime, **changes: Any) -> Job:
        """A copy in `status` with `changes` applied, or InvalidTransitionError."""
        if status not in ALLOWED[self.status]:
            raise InvalidTransitionError(self.job_id, self.status, status)
        if status in TERMINAL:  # a finished job never runs again: its sealed fields go
            changes["sealed"] = None
        return self.model_copy(
            update={**changes, "status": status, "updated_at": now, "version": self.version + 1}
        )

    def lost_attempt(self, now: datetime, error: str, code: str, retry_at: datetime) -> Job:
        """PROCESSING whose worker is gone -> RETRYING at `retry_at` with the attempt given
        back, or FAILED (WORKER_CRASHED) once the workers died MAX_CRASHES times."""
        crashes = self.crashes + 1
        details = {"code": code, "attempt": self.attempts, "crashes": crashes}
        if crashes >= MAX_CRASHES:
            return self.transition(
                JobStatus.FAILED,
                now,
                error=f"{error}: the worker died {crashes} times",
                error_details={**details, "code": "WORKER_CRASHED"},
                crashes=crashes,
                processing_completed_at=now,
            )
        return self.transition(
            JobStatus.RETRYING,
            now,
            error=error,
            error_details=details,
            attempts=max(0, self.attempts - 1),
            crashes=crashes,
            next_retry_at=retry_at,
        )

    def restarted(self, now: datetime) -> Job:
        """FAILED -> PENDING with a clean slate: attempts, result, errors and timings reset."""
        return self.transition(
            JobStatus.PENDING,
            now,
            attempts=0,
            crashes=0,
            result=None,
            error=None,
            error_details=None,
            next_retry_at=None,
            processing_started_at=None,
            processing_completed_at=None,
            dead_lettered=False,
            progress=None,
            run_at=None,
            held=False,
        )

    def public(self) -> dict[str, Any]:
        """The job document the API returns (camelCase, ISO-8601 UTC timestamps)."""
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude={"run_at", "held", "version", "retry_delay_seconds", "wake", "crashes", "sealed"},
        )
