"""Job types with flow-control policies. The handlers record what the tests check: how many jobs
of a key run at once (a handler may start another worker invocation while it runs, as a second
Lambda would: `Recorder.nested`), the payloads that ran, and a worker killed mid-run."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tarefa import JobContext, JobPolicy, PermanentJobError, job_type


class WorkerKilled(BaseException):
    """Not an Exception: nothing in the engine catches it, as nothing survives a killed process."""


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.ran: list[tuple[str, str, int]] = []  # (type, key, seq) of each handler call
        self.nested: Callable[[], None] | None = None  # another invocation, started mid-run
        self.depth = 0
        self.max_depth = 3
        self.killed: set[str] = set()  # jobs whose worker was killed once
        self.failed: set[str] = set()  # jobs that failed once

    def enter(self, key: str) -> None:
        with self.lock:
            self.running[key] += 1
            self.most[key] = max(self.most[key], self.running[key])

    def leave(self, key: str) -> None:
        with self.lock:
            self.running[key] -= 1

    def run(self, type_name: str, key: str, seq: int) -> None:
        self.enter(key)
        try:
            self.ran.append((type_name, key, seq))
            if self.nested is not None and self.depth < self.max_depth:
                self.depth += 1
                try:
                    self.nested()
                finally:
                    self.depth -= 1
        finally:
            self.leave(key)


RECORDER = Recorder()


class Work(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=100)
    seq: int = 0
    kill: bool = False
    fail: bool = False  # its first run fails for good (a retry by its owner then runs it)


def _key(payload: Work) -> str:
    return payload.key


def _run(name: str, payload: Work, ctx: JobContext) -> dict[str, Any]:
    if payload.kill and ctx.job_id not in RECORDER.killed:
        RECORDER.killed.add(ctx.job_id)
        RECORDER.enter(payload.key)  # it dies running: it never leaves
        raise WorkerKilled(f"{name}: the process is gone")
    if payload.fail and ctx.job_id not in RECORDER.failed:
        RECORDER.failed.add(ctx.job_id)
        raise PermanentJobError(f"{name}: refused", code="REFUSED")
    RECORDER.run(name, payload.key, payload.seq)
    return {"key": payload.key, "seq": payload.seq}


@job_type("flow.pair", policy=JobPolicy(concurrency=2, concurrency_key=_key, timeout_seconds=30))
def pair(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """At most two per key at once."""
    return _run("flow.pair", payload, ctx)


@job_type("flow.free", policy=JobPolicy(timeout_seconds=30))
def free(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """The control: no limit."""
    return _run("flow.free", payload, ctx)


@job_type("flow.session", policy=JobPolicy(concurrency=1, concurrency_key=_key, timeout_seconds=60))
def session(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """Seed 003's session:init: one at a time per session."""
    return _run("flow.session", payload, ctx)


@job_type("flow.start", policy=JobPolicy(unique_key=_key))
def start(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """Idempotent while pending: one active start per session and owner."""
    return _run("flow.start", payload, ctx)


@job_type("flow.sync", policy=JobPolicy(debounce=5, debounce_key=_key, debounce_max_wait=12))
def sync(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """Runs once per burst, with the last payload."""
    return _run("flow.sync", payload, ctx)


@job_type("flow.fair", policy=JobPolicy(fairness_key=_key))
def fair(payload: Work, ctx: JobContext) -> dict[str, Any]:
    """Its fair-queue tenant is the key, not the owner."""
    return _run("flow.fair", payload, ctx)
