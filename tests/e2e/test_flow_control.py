"""End to end: flow control seen from outside, over HTTP on `tarefa local` with a workload
module of its own (tests/e2e/e2e_flow_jobs.py). Jobs with concurrency=1 on one key never run at
once while the same jobs without the limit do; a unique key answers 200 with the active job to a
second enqueue, and lets a new one start once it has ended."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunningStack, start_stack

HERE = Path(__file__).resolve().parent
JOBS = 6


@pytest.fixture(scope="module")
def flow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack loading e2e_flow_jobs, every batch handed over as soon as it is received (no
    batching window), so jobs enqueued a moment apart reach separate worker invocations."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
        patch.setenv("TAREFA_LOCAL_BATCHING_WINDOW", "0")
        running = start_stack(
            tmp_path_factory.mktemp("flow"), "--parameter-overrides", "JobModules=demo,e2e_flow_jobs"
        )
    yield running
    running.stop()


def _enqueue(stack: RunningStack, token: str, type_name: str, **payload: Any) -> tuple[int, dict[str, Any]]:
    status, body = stack.request("POST", "/jobs", {"type": type_name, "payload": payload}, token)
    assert status in (200, 202), body
    return status, body


def _finished(
    stack: RunningStack, token: str, job_ids: list[str], timeout: float = 90
) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []

    def done() -> bool:
        jobs[:] = [stack.request("GET", f"/jobs/{j}", token=token)[1] for j in job_ids]
        return all(j["status"] == "COMPLETED" for j in jobs)

    stack.wait_until(done, f"all {len(job_ids)} completed", timeout=timeout)
    return jobs


def _overlaps(jobs: list[dict[str, Any]]) -> int:
    """How many jobs started before the one started before them had ended."""
    spans = sorted((j["result"]["startedAt"], j["result"]["endedAt"]) for j in jobs)
    return sum(1 for before, after in itertools.pairwise(spans) if after[0] < before[1])


def test_jobs_with_concurrency_one_on_a_key_never_run_at_once(flow_stack: RunningStack) -> None:
    token = flow_stack.token("flow-e2e")
    # Given the same six jobs on one key, without a limit and with concurrency=1, enqueued a
    # moment apart over HTTP (each reaches a worker invocation of its own)
    free, limited = [], []
    for n in range(JOBS):
        free.append(_enqueue(flow_stack, token, "e2e.flow.free", key="session-1", n=n)[1]["jobId"])
        limited.append(_enqueue(flow_stack, token, "e2e.flow.one", key="session-1", n=n)[1]["jobId"])
        time.sleep(0.1)
    # ... and one of another key, which the first key's queue does not hold up
    other = _enqueue(flow_stack, token, "e2e.flow.one", key="session-2", seconds=0)[1]["jobId"]
    # Then without a limit they overlap (the stack does run jobs at once)
    assert _overlaps(_finished(flow_stack, token, free)) > 0
    # And with concurrency=1 none ran while another of its key ran, all completed, each in one
    # attempt (waiting for the key's slot spends none)
    jobs = _finished(flow_stack, token, limited)
    assert _overlaps(jobs) == 0
    assert sorted(j["result"]["n"] for j in jobs) == list(range(JOBS))
    assert {j["attempts"] for j in jobs} == {1}
    assert _finished(flow_stack, token, [other])[0]["attempts"] == 1


def test_a_unique_key_returns_the_active_job_and_frees_when_it_ends(flow_stack: RunningStack) -> None:
    token, other_token = flow_stack.token("unique-e2e"), flow_stack.token("unique-e2e-other")
    # Given a job with a unique key, running for a while
    status, first = _enqueue(flow_stack, token, "e2e.flow.unique", key="start", seconds=2)
    assert status == 202
    # When the same user enqueues the same key while it is active (queued, then running)
    status, again = _enqueue(flow_stack, token, "e2e.flow.unique", key="start", seconds=0, n=1)
    assert (status, again["jobId"]) == (200, first["jobId"])
    flow_stack.wait_for_status(first["jobId"], token, "PROCESSING")
    status, running = _enqueue(flow_stack, token, "e2e.flow.unique", key="start", n=2)
    assert (status, running["jobId"], running["status"]) == (200, first["jobId"], "PROCESSING")
    # Then another user's same key is a job of its own
    status, theirs = _enqueue(flow_stack, other_token, "e2e.flow.unique", key="start", seconds=0)
    assert status == 202 and theirs["jobId"] != first["jobId"]
    # And once the first has ended, the key makes a new job, which runs with its own payload
    done = _finished(flow_stack, token, [first["jobId"]])[0]
    assert done["result"]["n"] == 0
    status, later = _enqueue(flow_stack, token, "e2e.flow.unique", key="start", seconds=0, n=3)
    assert status == 202 and later["jobId"] != first["jobId"]
    assert _finished(flow_stack, token, [later["jobId"]])[0]["result"]["n"] == 3
