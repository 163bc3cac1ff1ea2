"""The sample events in events/ (for `sam local invoke`) are ones the handlers accept."""

from __future__ import annotations

import json

from tarefa.local.app import LocalApp
from tarefa.local.runtime import invoke
from tarefa.local.template import ROOT

EVENTS = ROOT / "events"


def test_sample_api_event_enqueues_a_job(app: LocalApp) -> None:
    response = invoke(
        app.api_function, app.handlers["ApiFunction"], json.loads((EVENTS / "enqueue.json").read_text())
    )
    assert response["statusCode"] == 202


def test_sample_sqs_event_runs_an_external_job(app: LocalApp) -> None:
    event = json.loads((EVENTS / "sqs-external-job.json").read_text())
    response = invoke(app.stack.functions["WorkerFunction"], app.handlers["WorkerFunction"], event)
    assert response == {"batchItemFailures": []}
    job = app.api("GET", "/jobs/from-sqs-1", claims={"sub": "alice"})
    assert job.body["status"] == "COMPLETED"


def test_sample_schedule_event_runs_recovery(app: LocalApp) -> None:
    event = json.loads((EVENTS / "schedule-recover.json").read_text())
    assert invoke(app.stack.functions["MaintenanceFunction"], app.handlers["MaintenanceFunction"], event) == {
        "recovered": 0
    }


def test_sample_stream_event_counts_a_completed_job(app: LocalApp) -> None:
    event = json.loads((EVENTS / "stream-job-completed.json").read_text())
    assert invoke(app.stack.functions["StatsFunction"], app.handlers["StatsFunction"], event) == {
        "records": 1
    }
    overview = app.api("GET", "/queues", claims={"sub": "root", "cognito:groups": ["admin"]}).body
    high = next(q for q in overview["queues"] if q["priority"] == "HIGH")
    assert (high["jobs"]["COMPLETED"], high["jobs"]["PROCESSING"]) == (1, 0)
