"""What the core needs from storage and queues; adapters implement these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from tarefa.job import Job, Priority


class Sweep(StrEnum):
    """The sparse index the maintenance sweeps read instead of scanning the table."""

    PROCESSING = "PROCESSING"  # ordered by processingStartedAt
    FINISHED = "FINISHED"  # terminal jobs, ordered by when they finished
    DELAYED = "DELAYED"  # held in DynamoDB until due, ordered by runAt


@dataclass(frozen=True)
class ListQuery:
    user_id: str | None  # None: every user's jobs (admins)
    limit: int
    before_key: str | None  # cursor: only jobs whose listing key sorts before this
    order_id: str | None = None


@dataclass(frozen=True)
class ListPage:
    jobs: list[Job]
    last_key: str | None  # listing key of the last job read, when more may follow


class JobStore(Protocol):
    def get(self, job_id: str) -> Job | None: ...

    def put(self, job: Job, expected_version: int | None) -> None:
        """Write `job`; None means it must not exist yet. ConflictError when the check fails."""

    def put_with_idempotency_key(self, job: Job, key_id: str, expires_at: datetime) -> None:
        """Create `job` and claim `key_id` for it atomically; ConflictError if either is taken."""

    def job_id_for_idempotency_key(self, key_id: str, now: datetime) -> str | None: ...

    def delete_finished(self, job_id: str, finished_before: datetime) -> bool:
        """Delete a job that is still terminal and finished before the cutoff."""

    def sweep(self, kind: Sweep, until: datetime) -> Iterable[str]:
        """Job ids in `kind` whose sweep time is at or before `until`, oldest first per shard."""

    def list_jobs(self, query: ListQuery) -> ListPage: ...

    def ping(self) -> None: ...


class JobQueue(Protocol):
    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str:
        """Send a message; returns its message id."""

    def change_visibility(self, priority: Priority, receipt_handle: str, seconds: int) -> None: ...

    def send_to_dead_letter(self, priority: Priority, body: str, reason: str) -> None: ...

    def priority_of_queue(self, queue_arn: str) -> Priority:
        """Which priority a queue (by ARN, as an SQS event names it) serves."""

    def ping(self) -> None: ...


@dataclass(frozen=True)
class QueueMessageRef:
    """Where a received message came from, to defer or dead-letter it."""

    priority: Priority
    receipt_handle: str
    message_id: str
    receive_count: int
