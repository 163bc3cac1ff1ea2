"""In-memory stand-ins for the ports, for unit tests with no network."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from tarefa.errors import ConflictError
from tarefa.job import Job, JobStatus, Priority, utcnow
from tarefa.ports import ListPage, ListQuery, Sweep


class MemoryStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.keys: dict[str, tuple[str, datetime]] = {}
        self.writes = 0

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def put(self, job: Job, expected_version: int | None) -> None:
        current = self.jobs.get(job.job_id)
        if (expected_version is None and current is not None) or (
            expected_version is not None and (current is None or current.version != expected_version)
        ):
            raise ConflictError(job.job_id)
        self.writes += 1
        self.jobs[job.job_id] = job

    def put_with_idempotency_key(self, job: Job, key_id: str, expires_at: datetime) -> None:
        if key_id in self.keys and self.keys[key_id][1] > job.created_at:
            raise ConflictError(key_id)
        self.put(job, None)
        self.keys[key_id] = (job.job_id, expires_at)

    def job_id_for_idempotency_key(self, key_id: str, now: datetime) -> str | None:
        found = self.keys.get(key_id)
        return found[0] if found and found[1] > now else None

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


class MemoryQueue:
    def __init__(self, fail_sends: bool = False) -> None:
        self.sent: list[tuple[Priority, str, int]] = []
        self.visibility: list[tuple[str, int]] = []
        self.dead: list[tuple[Priority, str, str]] = []
        self.fail_sends = fail_sends

    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str:
        if self.fail_sends:
            raise RuntimeError("SQS is down")
        self.sent.append((priority, body, delay_seconds))
        return f"m-{len(self.sent)}"

    def change_visibility(self, priority: Priority, receipt_handle: str, seconds: int) -> None:
        self.visibility.append((receipt_handle, seconds))

    def send_to_dead_letter(self, priority: Priority, body: str, reason: str) -> None:
        self.dead.append((priority, body, reason))

    def priority_of_queue(self, queue_arn: str) -> Priority:
        return Priority.MEDIUM

    def ping(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
