"""Seed 003's session:init under flow control, on the real handlers and the sandbox: one at a
time per session whoever enqueued it (a second one arriving while the first talks to the
provider waits for its slot), and idempotent while pending for its owner (200, the same job)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from messaging import jobs as messaging_jobs

from tarefa.local.runtime import deliver

from ..conftest import ADMIN, ALICE
from .conftest import PHONE_NUMBER_ID, Messaging


class Overlap:
    """How many session:init handlers talk to the provider at once, per session."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def around(self, session_id: str, call: Any, during: Any) -> Any:
        with self.lock:
            self.running[session_id] += 1
            self.calls[session_id] += 1
            self.most[session_id] = max(self.most[session_id], self.running[session_id])
        try:
            during()
            return call()
        finally:
            with self.lock:
                self.running[session_id] -= 1


class Recording:
    """The real provider adapter, its session calls wrapped by Overlap."""

    def __init__(self, adapter: Any, overlap: Overlap, during: Any) -> None:
        self.adapter = adapter
        self.overlap = overlap
        self.during = during

    def open_session(self, ref: Any) -> Any:
        return self.overlap.around(ref.session_id, lambda: self.adapter.open_session(ref), self.during)

    def session_state(self, ref: Any) -> Any:
        return self.overlap.around(ref.session_id, lambda: self.adapter.session_state(ref), self.during)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)


def _init(messaging: Messaging, session_id: str, claims: dict[str, Any]) -> Any:
    return messaging.app.api(
        "POST", "/jobs", {"type": "session:init", "payload": {"sessionId": session_id}}, claims
    )


def test_two_session_inits_for_one_session_never_run_at_once(
    messaging: Messaging, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a session whose init job (enqueued by POST /sessions) has not run yet
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": PHONE_NUMBER_ID}, ALICE
    )
    assert created.status == 202, created.body
    session_id, first = created.body["session"]["sessionId"], created.body["jobId"]
    worker = messaging.app.stack.functions["WorkerFunction"]
    source = next(s for s in worker.sqs if s.queue_logical_id == "HighQueue")
    other_environment = messaging.app.new_handler(worker)
    overlap = Overlap()
    second: list[str] = []

    def while_the_first_runs() -> None:
        """An admin enqueues another session:init for the session (not the owner: its unique
        key is the admin's), and another worker invocation polls the queue at once."""
        if second:
            return
        answer = _init(messaging, session_id, ADMIN)
        assert answer.status == 202, answer.body
        second.append(answer.body["jobId"])
        assert deliver(messaging.app.sqs, worker, other_environment, source) == 1

    real = messaging_jobs.provider
    monkeypatch.setattr(
        messaging_jobs,
        "provider",
        lambda ctx, name: Recording(real(ctx, name), overlap, while_the_first_runs),
    )
    # When the first runs, and the second is delivered to another invocation meanwhile
    messaging.run()
    for _ in range(10):
        if second and messaging.job(second[0], ADMIN)["status"] == "COMPLETED":
            break
        messaging.run(30)
    # Then they never ran at once: the second waited for the session's slot, spending no
    # attempt, and ran after the first had connected the session (so it did not open it again)
    assert overlap.most[session_id] == 1
    assert overlap.calls[session_id] == 1
    done = [messaging.job(first), messaging.job(second[0], ADMIN)]
    assert [(j["status"], j["attempts"]) for j in done] == [("COMPLETED", 1), ("COMPLETED", 1)]
    assert done[1]["result"] == {"sessionId": session_id, "status": "CONNECTED", "reason": None}
    session = messaging.app.api("GET", f"/sessions/{session_id}", claims=ALICE).body["session"]
    assert session["status"] == "CONNECTED"


def test_a_second_session_init_by_the_owner_while_one_is_pending_is_the_same_job(
    messaging: Messaging,
) -> None:
    # Given a session whose init job is still PENDING
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": PHONE_NUMBER_ID}, ALICE
    )
    assert created.status == 202, created.body
    session_id, first = created.body["session"]["sessionId"], created.body["jobId"]
    # When its owner enqueues session:init for it again (under either of its names)
    again = _init(messaging, session_id, ALICE)
    canonical = messaging.app.api(
        "POST", "/jobs", {"type": "messaging.session.init", "payload": {"sessionId": session_id}}, ALICE
    )
    # Then both answers are 200 with the pending job, and no second job exists
    assert (again.status, again.body["jobId"]) == (200, first)
    assert (canonical.status, canonical.body["jobId"]) == (200, first)
    messaging.run()
    assert messaging.job(first)["status"] == "COMPLETED"
    # And once it has ended, a new one may start (and finds the session connected)
    later = _init(messaging, session_id, ALICE)
    assert later.status == 202 and later.body["jobId"] != first
    messaging.run()
    assert messaging.job(later.body["jobId"])["result"]["status"] == "CONNECTED"
