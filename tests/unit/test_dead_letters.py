"""The dead-letter walk's guarantees, with an in-memory DLQ: nothing lost, nothing twice."""

from __future__ import annotations

import json
from itertools import count

from tarefa.deadletters import DeadLetters, PurgeRequest, RedriveRequest
from tarefa.job import Priority

from .fakes import Clock, MemoryDeadLetterQueue, MemoryStore


def dlq_with(n: int) -> MemoryDeadLetterQueue:
    dlq = MemoryDeadLetterQueue()
    for i in range(n):
        dlq.put(f"m{i}", json.dumps({"jobId": f"j{i}", "type": "system.echo"}))
    return dlq


def test_a_redrive_sends_each_message_back_before_deleting_it() -> None:
    dlq = dlq_with(1)
    DeadLetters(MemoryStore(), dlq, Clock()).redrive(Priority.HIGH, RedriveRequest(all=True))
    assert dlq.calls.index("send") < dlq.calls.index("delete")
    assert dlq.sent == [(Priority.HIGH, json.dumps({"jobId": "j0", "type": "system.echo"}))]


def test_a_redrive_out_of_time_says_so_and_leaves_the_rest_visible() -> None:
    # Given 30 dead letters and a walk that may only take 5 ticks of its clock
    dlq = dlq_with(30)
    ticks = count()
    service = DeadLetters(MemoryStore(), dlq, Clock(), monotonic=lambda: float(next(ticks)))
    report = service.redrive(Priority.HIGH, RedriveRequest(all=True), budget_seconds=5)
    # Then it stops early, reports it is not complete, and hides nothing it did not move
    assert not report.complete and 0 < len(report.job_ids) < 30
    assert len(dlq.messages) == 30 - len(report.job_ids)
    assert dlq.hidden == set()
    # And a second call moves the rest
    again = DeadLetters(MemoryStore(), dlq, Clock()).redrive(Priority.HIGH, RedriveRequest(all=True))
    assert again.complete and len(report.job_ids) + len(again.job_ids) == 30


def test_browsing_and_a_purge_of_some_leave_every_other_message_visible() -> None:
    dlq = dlq_with(25)
    service = DeadLetters(MemoryStore(), dlq, Clock())
    assert len(service.browse(Priority.HIGH, 3)) == 3
    assert dlq.hidden == set()
    report = service.purge(Priority.HIGH, PurgeRequest(job_ids=["j3", "j17", "missing"]))
    assert report.job_ids == ["j3", "j17"] and report.not_found == ["missing"]
    assert len(dlq.messages) == 23 and dlq.hidden == set()
