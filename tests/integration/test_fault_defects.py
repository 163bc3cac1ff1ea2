"""Regression tests through the API: on-demand maintenance with zero ages and strict numbers."""

from __future__ import annotations

from typing import Any

import pytest

from tarefa.local.app import LocalApp

from .conftest import ADMIN, Clock, enqueue, job_of
from .test_maintenance import _claim_and_die


def test_cleanup_older_than_zero_deletes_every_finished_job(app: LocalApp, clock: Clock) -> None:
    # Given a job that finished a second ago and one still waiting
    done = enqueue(app, {"type": "system.echo", "payload": 1})
    app.drain()
    pending = enqueue(app, {"type": "system.echo", "payload": 2, "delaySeconds": 3600})
    clock.advance(1)
    # When an admin asks for a cleanup of everything finished, whatever its age
    assert app.api("POST", "/maintenance/cleanup", {"olderThanSeconds": 0}, ADMIN).body == {"deleted": 1}
    # Then the finished job is gone (not kept for the 7-day retention) and the other stays
    assert app.api("GET", f"/jobs/{done['jobId']}", claims=ADMIN).status == 404
    assert job_of(app, pending["jobId"])["status"] == "PENDING"


def test_recover_after_zero_seconds_means_once_the_worker_timeout_has_passed(
    app: LocalApp, clock: Clock
) -> None:
    # Given a job whose worker claimed it and died
    job = enqueue(app, {"type": "system.echo", "payload": 1})
    _claim_and_die(app, job["jobId"])
    # When an admin asks for 0 s while the worker (120 s timeout) may still be running, nothing moves
    clock.advance(30)
    assert app.api("POST", "/maintenance/recover", {"stuckAfterSeconds": 0}, ADMIN).body == {"recovered": 0}
    assert job_of(app, job["jobId"])["status"] == "PROCESSING"
    # And once the worker timeout has passed (still short of the 300 s default), 0 recovers it
    clock.advance(100)
    assert app.api("POST", "/maintenance/recover", {"stuckAfterSeconds": 0}, ADMIN).body == {"recovered": 1}
    assert job_of(app, job["jobId"])["status"] == "RETRYING"


@pytest.mark.parametrize("value", [False, True, "5", 5.0, 5.5, None])
@pytest.mark.parametrize(
    ("path", "name"),
    [("/maintenance/cleanup", "olderThanSeconds"), ("/maintenance/recover", "stuckAfterSeconds")],
)
def test_maintenance_ages_must_be_json_integers(app: LocalApp, path: str, name: str, value: Any) -> None:
    result = app.api("POST", path, {name: value}, ADMIN)
    if value is None:  # null is "not given": the configured default
        assert result.status == 200, result.body
    else:
        assert result.status == 422, result.body
