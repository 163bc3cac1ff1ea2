"""End to end: `tarefa local --api-concurrency N` serves N requests of a function at once, each
in an execution environment of its own, and queues the rest; `--api-concurrency 1` serves them
one at a time. Concurrency is shown with `e2e.rendezvous` (tests/e2e/rendezvous_jobs.py), whose
enqueue waits in the API until its parties are all inside: nothing here times anything."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunningStack, start_stack

HERE = Path(__file__).resolve().parent
ENVIRONMENTS = 4


def _stack_with_rendezvous(tmp: Path, *extra: str) -> RunningStack:
    """A stack that loads e2e.rendezvous: this folder on its PYTHONPATH, the module in JobModules."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
        return start_stack(tmp, "--parameter-overrides", "JobModules=demo,rendezvous_jobs", *extra)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = _stack_with_rendezvous(
        tmp_path_factory.mktemp("crowded"), "--api-concurrency", str(ENVIRONMENTS)
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = _stack_with_rendezvous(tmp_path_factory.mktemp("single"), "--api-concurrency", "1")
    yield running
    running.stop()


def _all_at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def _rendezvous(stack: RunningStack, meeting: Path, parties: int, guests: int, timeout: float) -> list[Any]:
    """`guests` users enqueue a rendezvous of `parties` at the same moment; their answers."""
    meeting.mkdir()
    calls = []
    for i in range(guests):
        payload = {"dir": str(meeting), "parties": parties, "timeoutSeconds": timeout, "marker": f"m{i}"}
        body = {"type": "e2e.rendezvous", "payload": payload}
        calls.append(partial(stack.request, "POST", "/jobs", body, stack.token(f"guest-{i}")))
    return _all_at_once(calls)


def test_n_environments_serve_n_requests_at_once(crowded: RunningStack, tmp_path: Path) -> None:
    # Given four environments, when four guests enqueue a four-party rendezvous together
    answers = _rendezvous(crowded, tmp_path / "four", ENVIRONMENTS, ENVIRONMENTS, timeout=20)
    # Then all four were inside the API at once: each met the others, and each got its own job
    assert [status for status, _ in answers] == [202] * ENVIRONMENTS, answers
    assert [job["payload"]["marker"] for _, job in answers] == [f"m{i}" for i in range(ENVIRONMENTS)], answers
    assert [job["userId"] for _, job in answers] == [f"guest-{i}" for i in range(ENVIRONMENTS)]


def test_a_request_beyond_n_waits_for_an_environment_and_is_served(
    crowded: RunningStack, tmp_path: Path
) -> None:
    # Given four environments, when five guests enqueue a four-party rendezvous together
    answers = _rendezvous(crowded, tmp_path / "five", ENVIRONMENTS, ENVIRONMENTS + 1, timeout=20)
    # Then four meet while the fifth waits for one of their environments, and it is served next
    assert [status for status, _ in answers] == [202] * (ENVIRONMENTS + 1), answers
    crowded.wait_for_line("for an environment)")  # its log line says how long it waited


def test_concurrent_users_each_see_only_their_own_jobs(crowded: RunningStack) -> None:
    # Given two users with jobs of their own
    users = {name: crowded.token(name) for name in ("ines", "joao")}
    mine: dict[str, list[str]] = {}
    for name, token in users.items():
        enqueue = partial(crowded.request, "POST", "/jobs", {"type": "system.echo"}, token)
        mine[name] = [job["jobId"] for status, job in _all_at_once([enqueue] * 3) if status == 202]
        assert len(set(mine[name])) == 3

    # When both list and read their jobs many times at once, interleaved across the environments
    def ask(name: str, path: str) -> tuple[str, str, tuple[int, Any]]:
        return name, path, crowded.request("GET", path, token=users[name])

    calls = [
        partial(ask, name, path)
        for round_ in range(12)
        for name in users
        for path in ("/jobs?limit=100", f"/jobs/{mine[name][round_ % 3]}")
    ]
    # Then every answer is the caller's own: no request ever ran with another's event
    for name, path, (status, answer) in _all_at_once(calls):
        assert status == 200, (name, path, answer)
        jobs = answer["items"] if path.startswith("/jobs?") else [answer]
        assert {job["userId"] for job in jobs} == {name}, (name, path, answer)
        if path.startswith("/jobs?"):
            assert set(mine[name]) <= {job["jobId"] for job in jobs}


def test_with_one_environment_requests_take_turns(single: RunningStack, tmp_path: Path) -> None:
    # Given one environment, when two guests enqueue a two-party rendezvous together
    answers = _rendezvous(single, tmp_path / "two", parties=2, guests=2, timeout=1.5)
    # Then they never met: the second ran only after the first had given up
    assert [status for status, _ in answers] == [422, 422], answers
    assert all("parties met" in str(answer) for _, answer in answers)


def test_one_environment_still_serves_the_api(single: RunningStack) -> None:
    token = single.token("kiko")
    status, job = single.request("POST", "/jobs", {"type": "system.echo", "payload": {"n": 1}}, token)
    assert status == 202
    single.wait_for_status(job["jobId"], token, "COMPLETED")
    status, listing = single.request("GET", "/jobs", token=token)
    assert status == 200 and [j["jobId"] for j in listing["items"]] == [job["jobId"]]
    assert single.request("GET", "/health")[0] == 200
    assert single.request("GET", "/demo/hello/Kiko")[1] == {"greeting": "Hello, Kiko!"}  # another function
