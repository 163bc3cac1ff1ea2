from __future__ import annotations

import pytest

from tarefa.errors import InvalidTransitionError
from tarefa.job import ALLOWED, TERMINAL, Job, JobStatus, utcnow


def job(status: JobStatus) -> Job:
    return Job(job_id="j", type="t", status=status)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (JobStatus.PENDING, JobStatus.PROCESSING),
        (JobStatus.PROCESSING, JobStatus.COMPLETED),
        (JobStatus.PROCESSING, JobStatus.RETRYING),
        (JobStatus.RETRYING, JobStatus.PROCESSING),
        (JobStatus.PROCESSING, JobStatus.FAILED),
        (JobStatus.FAILED, JobStatus.PENDING),
        (JobStatus.PENDING, JobStatus.CANCELLED),
        (JobStatus.RETRYING, JobStatus.CANCELLED),
        (JobStatus.FAILED, JobStatus.CANCELLED),
    ],
)
def test_lifecycle_moves_are_allowed_and_bump_the_version(start: JobStatus, end: JobStatus) -> None:
    before = job(start)
    after = before.transition(end, utcnow())
    assert after.status == end
    assert after.version == before.version + 1
    assert before.status == start  # the original is untouched


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (JobStatus.COMPLETED, JobStatus.PROCESSING),
        (JobStatus.CANCELLED, JobStatus.PENDING),
        (JobStatus.COMPLETED, JobStatus.CANCELLED),
        (JobStatus.PROCESSING, JobStatus.CANCELLED),
        (JobStatus.PENDING, JobStatus.COMPLETED),
    ],
)
def test_forbidden_moves_raise(start: JobStatus, end: JobStatus) -> None:
    with pytest.raises(InvalidTransitionError):
        job(start).transition(end, utcnow())


def test_completed_and_cancelled_are_final() -> None:
    assert ALLOWED[JobStatus.COMPLETED] == frozenset()
    assert ALLOWED[JobStatus.CANCELLED] == frozenset()
    assert {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} == TERMINAL


def test_public_document_hides_internal_fields_and_uses_camel_case() -> None:
    document = job(JobStatus.PENDING).public()
    assert "version" not in document and "held" not in document and "runAt" not in document
    assert document["jobId"] == "j" and document["deadLettered"] is False
    assert document["createdAt"].endswith("Z")
