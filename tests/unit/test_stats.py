"""Job counts and window figures from job changes: the arithmetic, without any store."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tarefa.job import Job, JobStatus, Priority
from tarefa.stats import MinuteFigures, StatsSnapshot, Tally, bucket_of, figures, percentile, window

T0 = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def enqueued(priority: Priority = Priority.HIGH) -> Job:
    return Job(job_id="j", type="t", priority=priority, created_at=at(0), updated_at=at(0))


def claimed(job: Job, when: float) -> Job:
    return job.transition(
        JobStatus.PROCESSING,
        at(when),
        attempts=job.attempts + 1,
        processing_started_at=at(when),
        next_retry_at=None,
    )


def test_a_job_that_completes_moves_through_the_counts_and_lands_in_its_minute() -> None:
    # Given a job enqueued at t0, claimed 3 s later and completed 0.5 s after that
    created = enqueued()
    running = claimed(created, 3)
    done = running.transition(JobStatus.COMPLETED, at(3.5), processing_completed_at=at(3.5))
    # When its three writes are tallied
    tally = Tally.of([(None, created), (created, running), (running, done)])
    # Then it counts once, as COMPLETED, with its wait and processing time
    assert {k: v for k, v in tally.counts.items() if v} == {(Priority.HIGH, JobStatus.COMPLETED): 1}
    minute = tally.minutes[(T0, Priority.HIGH)]
    assert (minute.completed, minute.failed, minute.claims, minute.runs) == (1, 0, 1, 1)
    assert (minute.wait_ms, minute.processing_ms) == (3000, 500)
    assert minute.histogram == {bucket_of(500): 1}


def test_a_retry_counts_a_run_and_waits_from_its_next_retry() -> None:
    created = enqueued()
    first = claimed(created, 1)
    retrying = first.transition(JobStatus.RETRYING, at(2), next_retry_at=at(12))
    second = claimed(retrying, 13)
    tally = Tally.of([(first, retrying), (retrying, second)])
    minute = tally.minutes[(T0, Priority.HIGH)]
    assert (minute.retried, minute.runs, minute.processing_ms) == (1, 1, 1000)
    assert (minute.claims, minute.wait_ms) == (1, 1000)  # ready at 12, claimed at 13


def test_a_deleted_job_leaves_the_counts_and_adds_no_figures() -> None:
    done = enqueued(Priority.LOW).model_copy(update={"status": JobStatus.COMPLETED})
    tally = Tally.of([(done, None)])
    assert tally.counts[(Priority.LOW, JobStatus.COMPLETED)] == -1
    assert not tally.minutes


def test_a_write_that_keeps_the_status_changes_nothing() -> None:
    created = enqueued()
    held = created.model_copy(update={"held": True, "version": 1})
    assert not Tally.of([(created, held)])


def test_the_window_counts_whole_minutes_and_the_oldest_pro_rata() -> None:
    # Given 60 completions in the minute 10:29 and 6 in the current minute 10:30
    minutes = {T0 - timedelta(minutes=1): MinuteFigures(completed=60), T0: MinuteFigures(completed=6)}
    # When the last minute is read at 10:30:20 (the window starts at 10:29:20)
    last = window(minutes, at(20), 1)
    # Then the current minute counts whole and 40 of 10:29's 60 seconds count
    assert last.completed == 6 + 40
    assert last.processing_rate_per_minute == 46.0
    # And five minutes take both whole
    assert window(minutes, at(20), 5).completed == 66


def test_rates_and_averages_of_a_window() -> None:
    minute = MinuteFigures(
        completed=9,
        failed=1,
        runs=10,
        processing_ms=1000,
        claims=10,
        wait_ms=50,
        histogram={bucket_of(100): 10},
    )
    figures_ = window({T0: minute}, at(30), 5)
    assert (figures_.error_rate, figures_.processing_rate_per_minute) == (0.1, 2.0)
    assert (figures_.avg_processing_ms, figures_.avg_queue_wait_ms) == (100.0, 5.0)
    empty = window({}, at(30), 1)
    assert (empty.error_rate, empty.avg_processing_ms, empty.p95_processing_ms) == (None, None, None)


def test_p95_from_the_histogram_is_within_a_bucket_of_the_exact_one() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(4, 1.2) for _ in range(5000)]
    histogram: dict[int, float] = {}
    for ms in samples:
        histogram[bucket_of(ms)] = histogram.get(bucket_of(ms), 0) + 1
    exact = sorted(samples)[int(0.95 * len(samples))]
    assert percentile(histogram, 0.95) == pytest.approx(exact, rel=0.125)
    assert percentile({}, 0.95) is None
    assert percentile({0: 4}, 0.5) == 0.5  # under 1 ms: interpolated inside [0, 1)


def test_figures_per_queue_and_in_total_never_show_negative_counts() -> None:
    snapshot = StatsSnapshot(
        counts={(Priority.HIGH, JobStatus.COMPLETED): 2, (Priority.LOW, JobStatus.COMPLETED): -1},
        minutes={
            (T0, Priority.HIGH): MinuteFigures(completed=2),
            (T0, Priority.LOW): MinuteFigures(failed=1),
        },
    )
    high = figures(snapshot, at(10), Priority.HIGH)
    low = figures(snapshot, at(10), Priority.LOW)
    every = figures(snapshot, at(10), None)
    assert (high.jobs[JobStatus.COMPLETED], low.jobs[JobStatus.COMPLETED]) == (2, 0)
    assert every.jobs[JobStatus.COMPLETED] == 1
    assert set(every.windows) == {"1m", "5m", "60m"}
    assert (every.windows["1m"].completed, every.windows["1m"].failed) == (2, 1)
