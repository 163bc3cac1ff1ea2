"""Job counts by status and the 1/5/60-minute figures of GET /queues.

Nothing on a job's path writes them. The jobs table's change stream carries every write, from
the API, the workers, the sweeps and producers that send straight to SQS alike; a consumer folds
each batch of changes into a `Tally` and adds it with one idempotent request: counts by priority
and status, and one bucket per minute with completions, failures, processing and queue-wait sums
and a processing-time histogram. At 1,000 jobs/s that is a few writes a second, none of them on a
job's key.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tarefa.job import CamelModel, Job, JobStatus, Priority

if TYPE_CHECKING:
    from tarefa.ports import StatsStore

WINDOW_MINUTES = (1, 5, 60)
MINUTE = timedelta(minutes=1)
# Processing-time histogram: bucket 0 holds runs under 1 ms, bucket i >= 1 holds
# [GROWTH**(i-1), GROWTH**i) ms. Each bucket is 25% wider than the one before, so a p95 read
# from it is within about 12% of the exact one; 61 buckets reach 15 minutes.
GROWTH = 1.25

Change = tuple[Job | None, Job | None]  # the job before and after one write (None: absent)


@dataclass
class MinuteFigures:
    """What happened in one minute on one queue."""

    completed: float = 0
    failed: float = 0
    retried: float = 0
    runs: float = 0  # attempts that ended (completed, failed or retried)
    processing_ms: float = 0  # summed over those runs
    claims: float = 0  # attempts that started
    wait_ms: float = 0  # summed over those claims: from ready to claimed
    histogram: dict[int, float] = field(default_factory=dict)  # processing-time bucket -> runs

    def add_run(self, ms: float) -> None:
        self.runs += 1
        self.processing_ms += ms
        self.histogram[bucket_of(ms)] = self.histogram.get(bucket_of(ms), 0) + 1

    def merge(self, other: MinuteFigures, weight: float = 1.0) -> None:
        for name in SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name) * weight)
        for bucket, runs in other.histogram.items():
            self.histogram[bucket] = self.histogram.get(bucket, 0) + runs * weight


SUMS = (
    "completed",
    "failed",
    "retried",
    "runs",
    "processing_ms",
    "claims",
    "wait_ms",
)  # besides the histogram


def bucket_of(ms: float) -> int:
    return 0 if ms < 1 else int(math.log(ms) / math.log(GROWTH)) + 1


def percentile(histogram: Mapping[int, float], fraction: float) -> float | None:
    """The `fraction` quantile, interpolated inside the bucket where it falls."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    target, seen = total * fraction, 0.0
    for bucket in sorted(histogram):
        runs = histogram[bucket]
        if runs <= 0:
            continue
        if seen + runs >= target:
            low = 0.0 if bucket == 0 else GROWTH ** (bucket - 1)
            high = 1.0 if bucket == 0 else GROWTH**bucket
            return low + (high - low) * (target - seen) / runs
        seen += runs
    return GROWTH ** max(histogram)


def _ms(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds() * 1000)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass
class Tally:
    """The sum of a batch of changes: count deltas and per-minute figures."""

    counts: dict[tuple[Priority, JobStatus], int] = field(default_factory=lambda: defaultdict(int))
    minutes: dict[tuple[datetime, Priority], MinuteFigures] = field(
        default_factory=lambda: defaultdict(MinuteFigures)
    )

    def add(self, before: Job | None, after: Job | None) -> None:
        known = after or before
        if known is None:
            return
        priority = known.priority
        old = before.status if before else None
        new = after.status if after else None
        if old != new:
            if old is not None:
                self.counts[(priority, old)] -= 1
            if new is not None:
                self.counts[(priority, new)] += 1
        if after is None:
            return
        minute = (minute_of(after.updated_at), priority)
        if new == JobStatus.PROCESSING and old != JobStatus.PROCESSING and after.processing_started_at:
            figures = self.minutes[minute]
            figures.claims += 1
            figures.wait_ms += _ms(after.processing_started_at - (before or after).ready_since)
        ended = new in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.RETRYING)
        if old == JobStatus.PROCESSING and ended and after.processing_started_at:
            ms = _ms((after.processing_completed_at or after.updated_at) - after.processing_started_at)
            self.minutes[minute].add_run(ms)
        if new != old and ended:
            figures = self.minutes[minute]
            if new == JobStatus.COMPLETED:
                figures.completed += 1
            elif new == JobStatus.FAILED:
                figures.failed += 1
            else:
                figures.retried += 1

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Tally:
        tally = cls()
        for before, after in changes:
            tally.add(before, after)
        return tally

    def __bool__(self) -> bool:
        return any(self.counts.values()) or bool(self.minutes)


@dataclass
class StatsSnapshot:
    """What the store holds: counts, and the minute buckets asked for."""

    counts: dict[tuple[Priority, JobStatus], int]
    minutes: dict[tuple[datetime, Priority], MinuteFigures]


class WindowFigures(CamelModel):
    """One window: the last N minutes. Minute buckets inside it count whole; the oldest, which
    the window's start cuts, counts pro rata to the part inside, so the figures slide smoothly
    instead of jumping at each minute (exact when that minute's work was spread evenly)."""

    minutes: int
    completed: int
    failed: int
    retried: int
    processing_rate_per_minute: float  # jobs that finished (completed or failed) per minute
    avg_processing_ms: float | None
    p95_processing_ms: float | None
    avg_queue_wait_ms: float | None
    error_rate: float | None  # failed / (completed + failed), of the rounded counts; None if both 0


class QueueFigures(CamelModel):
    jobs: dict[JobStatus, int]
    windows: dict[str, WindowFigures]  # "1m", "5m", "60m"


def window(minutes: Mapping[datetime, MinuteFigures], now: datetime, length: int) -> WindowFigures:
    start = now - length * MINUTE
    total = MinuteFigures()
    for begins, figures in minutes.items():
        elapsed = min(begins + MINUTE, now) - begins  # the current minute has not ended yet
        overlap = min(begins + MINUTE, now) - max(begins, start)
        if overlap > timedelta(0):
            total.merge(figures, min(1.0, overlap / elapsed))
    finished = total.completed + total.failed
    # The error rate is that of the counts shown: 0 failed of 0 is no rate, never 100%.
    completed, failed = round(total.completed), round(total.failed)
    p95 = percentile(total.histogram, 0.95)
    return WindowFigures(
        minutes=length,
        completed=completed,
        failed=failed,
        retried=round(total.retried),
        processing_rate_per_minute=round(finished / length, 2),
        avg_processing_ms=round(total.processing_ms / total.runs, 1) if total.runs else None,
        p95_processing_ms=round(p95, 1) if p95 is not None else None,
        avg_queue_wait_ms=round(total.wait_ms / total.claims, 1) if total.claims else None,
        error_rate=round(failed / (completed + failed), 4) if completed + failed else None,
    )


def figures(snapshot: StatsSnapshot, now: datetime, priority: Priority | None) -> QueueFigures:
    """One queue's figures, or every queue's together (`priority=None`)."""
    jobs = {status: 0 for status in JobStatus}
    for (p, status), count in snapshot.counts.items():
        if priority in (None, p):
            jobs[status] += count
    minutes: dict[datetime, MinuteFigures] = defaultdict(MinuteFigures)
    for (begins, p), bucket in snapshot.minutes.items():
        if priority in (None, p):
            minutes[begins].merge(bucket)
    return QueueFigures(
        # A count below zero means the stream began after some jobs already existed.
        jobs={status: max(0, count) for status, count in jobs.items()},
        windows={f"{n}m": window(minutes, now, n) for n in WINDOW_MINUTES},
    )


class JobStats:
    """Records batches of changes and reads the figures back."""

    def __init__(self, store: StatsStore, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now

    def record(self, changes: Iterable[Change], token: str) -> Tally:
        """Add a batch; the same `token` again (a retried batch) adds nothing twice."""
        tally = Tally.of(changes)
        if tally:
            self.store.add(tally, token)
        return tally

    def snapshot(self) -> tuple[StatsSnapshot, datetime]:
        now = self.now()
        return self.store.read(minute_of(now) - max(WINDOW_MINUTES) * MINUTE), now
