"""In-memory stand-ins for the ports, for unit tests with no network."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from tarefa.errors import ConflictError
from tarefa.job import Job, JobStatus, Priority, utcnow
from tarefa.ports import DeadLetter, IdempotencyEntry, ListPage, ListQuery, QueueDepth, Sweep, WindowCount


class MemoryStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.keys: dict[str, tuple[str, datetime]] = {}
        self.fingerprints: dict[str, str] = {}
        self.writes = 0
        self.lock = threading.RLock()  # a batch enqueue writes from a few threads

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def put(self, job: Job, expected_version: int | None) -> None:
        with self.lock:
            current = self.jobs.get(job.job_id)
            if (expected_version is None and current is not None) or (
                expected_version is not None and (current is None or current.version != expected_version)
            ):
                raise ConflictError(job.job_id)
            self.writes += 1
            self.jobs[job.job_id] = job

    def put_with_idempotency_key(
        self, job: Job, key_id: str, expires_at: datetime, fingerprint: str | None = None
    ) -> None:
        with self.lock:
            if key_id in self.keys and self.keys[key_id][1] > job.created_at:
                raise ConflictError(key_id)
            self.put(job, None)
            self.keys[key_id] = (job.job_id, expires_at)
            if fingerprint:
                self.fingerprints[key_id] = fingerprint

    def idempotency_entry(self, key_id: str, now: datetime) -> IdempotencyEntry | None:
        found = self.keys.get(key_id)
        return IdempotencyEntry(found[0], self.fingerprints.get(key_id)) if found and found[1] > now else None

    def delete_finished(self, job_id: str, finished_before: datetime) -> bool:
        job = self.jobs.get(job_id)
        if job and job.is_terminal and job.updated_at <= finished_before:
            del self.jobs[job_id]
            return True
        return False

    def sweep(self, kind: Sweep, until: datetime) -> Iterator[str]:
        for job in list(self.jobs.values()):
            if kind == Sweep.PROCESSING and job.status == JobStatus.PROCESSING:
                at = job.processing_started_at
            elif kind == Sweep.FINISHED and job.is_terminal:
                at = job.updated_at
            elif kind == Sweep.DELAYED and job.held:
                at = job.run_at
            else:
                continue
            if at is not None and at <= until:
                yield job.job_id

    def list_jobs(self, query: ListQuery) -> ListPage:
        jobs = sorted(
            (j for j in self.jobs.values() if query.user_id in (None, j.user_id)),
            key=lambda j: j.listing_key,
            reverse=True,
        )
        if query.before_key:
            jobs = [j for j in jobs if j.listing_key < query.before_key]
        page = jobs[: query.limit]
        return ListPage(page, page[-1].listing_key if len(jobs) > query.limit else None)

    def ping(self) -> None:
        return None

    # -- StepStore (ctx.once and kept outcomes) ------------------------------------------------
    steps: dict[str, str]

    def get_step(self, key: str) -> str | None:
        return getattr(self, "steps", {}).get(key)

    def put_step(self, key: str, value: str, lifetime: timedelta) -> bool:
        if not hasattr(self, "steps"):
            self.steps = {}
        if key in self.steps:
            return False
        self.steps[key] = value
        return True


class MemoryQueue:
    def __init__(self, fail_sends: bool = False, refuse: Callable[[str], bool] = lambda body: False) -> None:
        self.sent: list[tuple[Priority, str, int]] = []
        self.visibility: list[tuple[str, int]] = []
        self.dead: list[tuple[Priority, str, str]] = []
        self.fail_sends = fail_sends
        self.refuse = refuse  # a batch entry whose body this matches fails on its own
        self.batches: list[tuple[Priority, int]] = []  # send_batch calls: priority, messages
        self.lock = threading.Lock()

    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str:
        if self.fail_sends:
            raise RuntimeError("SQS is down")
        with self.lock:
            self.sent.append((priority, body, delay_seconds))
            return f"m-{len(self.sent)}"

    def send_batch(self, priority: Priority, messages: Sequence[tuple[str, int]]) -> list[str | Exception]:
        with self.lock:
            self.batches.append((priority, len(messages)))
        if self.fail_sends:
            raise RuntimeError("SQS is down")
        return [
            RuntimeError("SQS refused the entry") if self.refuse(body) else self.send(priority, body, delay)
            for body, delay in messages
        ]

    def change_visibility(self, priority: Priority, receipt_handle: str, seconds: int) -> None:
        self.visibility.append((receipt_handle, seconds))

    def send_to_dead_letter(self, priority: Priority, body: str, reason: str, job_id: str) -> None:
        self.dead.append((priority, body, reason))

    def priority_of_queue(self, queue_arn: str) -> Priority:
        return Priority.MEDIUM

    def depth(self, priority: Priority) -> QueueDepth:
        return QueueDepth(sum(1 for p, _, _ in self.sent if p == priority), 0, 0, len(self.dead))

    def name(self, priority: Priority) -> str:
        return f"tarefa-test-{priority.lower()}"

    def ping(self) -> None:
        return None


class Clock:
    """`now` for a service: stands still until the test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        self.now += timedelta(seconds=seconds, **delta)
        return self.now


class Ids:
    """`new_id` for a service: id-1, id-2, ..."""

    def __init__(self, prefix: str = "id") -> None:
        self.prefix = prefix
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count}"


class MemoryCacheBackend:
    """The CacheBackend port in a dict, with the semantics the contract suite pins down for
    Redis and DynamoDB (tests/integration/test_cache_contract.py runs it too)."""

    name = "memory"

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.items: dict[str, tuple[str, float]] = {}
        self.windows: dict[str, list[float]] = {}
        self.calls = 0
        self.down = False
        self._lock = threading.Lock()

    def _enter(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("cache is down")

    def get(self, key: str) -> str | None:
        self._enter()
        found = self.items.get(key)
        return found[0] if found and found[1] > self.clock() else None

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        self._enter()
        self.items[key] = (value, self.clock() + ttl_seconds)

    def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        self._enter()
        with self._lock:
            if self.get(key) is not None:
                return False
            self.items[key] = (value, self.clock() + ttl_seconds)
            return True

    def release(self, key: str, value: str) -> None:
        self._enter()
        with self._lock:
            if self.items.get(key, ("",))[0] == value:
                del self.items[key]

    def delete(self, keys: Iterable[str]) -> None:
        self._enter()
        for key in keys:
            self.items.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        self._enter()
        doomed = [k for k in self.items if k.startswith(prefix)]
        for key in doomed:
            del self.items[key]
        return len(doomed)

    def hit_window(
        self, key: str, limit: int, window_seconds: float, now: float, cost: int = 1
    ) -> WindowCount:
        self._enter()
        with self._lock:
            hits = [t for t in self.windows.get(key, []) if t > now - window_seconds]
            allowed = len(hits) + cost <= limit
            if allowed:
                hits.extend([now] * cost)
            self.windows[key] = hits
            return WindowCount(allowed, len(hits), min(hits) if hits else None)

    def ping(self) -> None:
        self._enter()


class EpochClock:
    """Epoch seconds that tests move forward instead of sleeping."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryDeadLetterQueue:
    """A DLQ with visibility: received messages stay hidden until released or deleted."""

    def __init__(self) -> None:
        self.messages: dict[str, str] = {}  # message id -> body
        self.hidden: set[str] = set()
        self.sent: list[tuple[Priority, str]] = []
        self.calls: list[str] = []

    def put(self, message_id: str, body: str) -> None:
        self.messages[message_id] = body

    def receive_dead_letters(
        self, priority: Priority, max_messages: int, hide_seconds: int
    ) -> list[DeadLetter]:
        self.calls.append("receive")
        batch = [m for m in self.messages if m not in self.hidden][:max_messages]
        self.hidden.update(batch)
        return [DeadLetter(m, m, self.messages[m], 1, utcnow(), None, None) for m in batch]

    def release_dead_letters(self, priority: Priority, receipt_handles: list[str]) -> None:
        self.calls.append("release")
        self.hidden.difference_update(receipt_handles)

    def delete_dead_letter(self, priority: Priority, receipt_handle: str) -> None:
        self.calls.append("delete")
        del self.messages[receipt_handle]
        self.hidden.discard(receipt_handle)

    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str:
        self.calls.append("send")
        self.sent.append((priority, body))
        return f"m-{len(self.sent)}"
