"""What the core needs from storage and queues; adapters implement these."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from tarefa.job import Job, Priority

if TYPE_CHECKING:
    from tarefa.stats import StatsSnapshot, Tally


class Sweep(StrEnum):
    """The sparse index the maintenance sweeps read instead of scanning the table."""

    PROCESSING = "PROCESSING"  # ordered by processingStartedAt
    FINISHED = "FINISHED"  # terminal jobs, ordered by when they finished
    DELAYED = "DELAYED"  # held in DynamoDB until due, ordered by runAt


@dataclass(frozen=True)
class IdempotencyEntry:
    """What an idempotency key names: its job, and a fingerprint of the request that made it."""

    job_id: str
    fingerprint: str | None


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

    def put_with_idempotency_key(
        self, job: Job, key_id: str, expires_at: datetime, fingerprint: str | None = None
    ) -> None:
        """Create `job` and claim `key_id` for it atomically; ConflictError if either is taken.
        `fingerprint` names the request that made it (a reuse with another body is refused)."""

    def idempotency_entry(self, key_id: str, now: datetime) -> IdempotencyEntry | None: ...

    def delete_finished(self, job_id: str, finished_before: datetime) -> bool:
        """Delete a job that is still terminal and finished before the cutoff."""

    def sweep(self, kind: Sweep, until: datetime) -> Iterable[str]:
        """Job ids in `kind` whose sweep time is at or before `until`, oldest first per shard."""

    def list_jobs(self, query: ListQuery) -> ListPage: ...

    def ping(self) -> None: ...


class JobQueue(Protocol):
    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str:
        """Send a message; returns its message id."""

    def send_batch(self, priority: Priority, messages: Sequence[tuple[str, int]]) -> list[str | Exception]:
        """Send (body, delay seconds) messages in as few calls as the queue allows, each as `send`
        would (its group, its delay); per message, in order: its id, or the error that kept it
        from being sent (a lost answer: it may have been sent)."""

    def change_visibility(self, priority: Priority, receipt_handle: str, seconds: int) -> None: ...

    def send_to_dead_letter(self, priority: Priority, body: str, reason: str, job_id: str) -> None:
        """Park a message no worker can process, with why and whose job it was."""

    def priority_of_queue(self, queue_arn: str) -> Priority:
        """Which priority a queue (by ARN, as an SQS event names it) serves."""

    def depth(self, priority: Priority) -> QueueDepth: ...

    def name(self, priority: Priority) -> str: ...

    def ping(self) -> None: ...


@dataclass(frozen=True)
class QueueMessageRef:
    """Where a received message came from, to defer or dead-letter it."""

    priority: Priority
    receipt_handle: str
    message_id: str
    receive_count: int


@dataclass(frozen=True)
class QueueDepth:
    """SQS's approximate counts for one priority queue and its DLQ."""

    waiting: int
    in_flight: int
    delayed: int
    dead_letter: int


class Consumption(Protocol):
    """Whether the workers take messages from a priority queue (on AWS: its event source
    mapping is enabled). Pausing never stops producers: SQS keeps what they send."""

    def pause(self, priority: Priority) -> None: ...

    def resume(self, priority: Priority) -> None: ...

    def state(self, priority: Priority) -> str:
        """running, paused, pausing or resuming (or another transitional state, lower-case)."""


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue, as received (and hidden) for inspection."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: datetime
    job_id: str | None  # set by the worker when it dead-letters a message itself
    error: str | None


class DeadLetterQueue(Protocol):
    """Browse, move and delete what is in the dead-letter queues, one message at a time."""

    def receive_dead_letters(
        self, priority: Priority, max_messages: int, hide_seconds: int
    ) -> list[DeadLetter]:
        """Up to `max_messages` (at most 10), hidden from other readers for `hide_seconds`."""

    def release_dead_letters(self, priority: Priority, receipt_handles: list[str]) -> None:
        """Make received messages visible again at once."""

    def delete_dead_letter(self, priority: Priority, receipt_handle: str) -> None: ...

    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str: ...


@dataclass(frozen=True)
class WindowCount:
    """One sliding-window hit: whether it was counted, and the window as it stands after it."""

    allowed: bool
    count: int  # hits in the window, this one included when allowed
    oldest_at: float | None  # epoch seconds of the oldest hit still in the window


class CacheBackend(Protocol):
    """Where cache entries, locks, rate-limit windows and sessions live: Redis or DynamoDB.

    Keys arrive fully qualified; values are opaque strings; `ttl_seconds` is physical expiry.
    Any failure raises; the core's breaker turns outages into fallbacks.
    """

    name: str

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl_seconds: float) -> None: ...

    def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        """Set only if absent (or expired); True when this call set it."""

    def release(self, key: str, value: str) -> None:
        """Delete `key` only while it still holds `value` (a lock released by its owner)."""

    def delete(self, keys: Iterable[str]) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that starts with `prefix`; how many went."""

    def hit_window(
        self, key: str, limit: int, window_seconds: float, now: float, cost: int = 1
    ) -> WindowCount:
        """Count `cost` hits in the sliding window ending at `now` unless that would take it
        past `limit` (then none is counted)."""

    def ping(self) -> None: ...


class StatsStore(Protocol):
    def add(self, tally: Tally, token: str) -> None:
        """Add a batch's counts and minute figures at once; a second call with the same token
        (a retried batch) must not count them again."""

    def read(self, since: datetime) -> StatsSnapshot:
        """The counts, and the minute buckets that begin at or after `since`."""
