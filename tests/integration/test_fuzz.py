"""The short form of `make fuzz`: schemathesis generates requests from the app's own
/openapi.json (valid and invalid ones, a few per operation) and every answer is checked: no 5xx,
a documented status, a body that validates against the documented schema, invalid input refused.

The engine is bench/fuzz.py; it runs in process on moto, deterministically here (derandomized).
Every finding fails its operation's test; the findings the first runs made (the gateway's own
401 body, UNKNOWN_JOB_TYPE's details, undocumented 400 and 413) each have a direct test below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest

from bench.fuzz import Report, run
from tarefa.local.app import LocalApp
from tarefa.openapi import document

from .conftest import ALICE, enqueue

EXAMPLES = 10  # per operation and generation mode: ~300 requests, ~10 s
OPERATIONS = [f"{m.upper()} {path}" for path, methods in document("/")["paths"].items() for m in methods]


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    """One fuzzing run for the module. It sets the functions' environment itself, so it puts
    os.environ back as it was (the per-test fixture that does so runs after a module fixture)."""
    saved = dict(os.environ)
    try:
        found, _ = run(EXAMPLES, derandomize=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield found


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_answer_is_documented(report: Report, operation: str) -> None:
    assert report.by_operation[operation] > 0, f"{operation} was never called"
    unexpected = list(report.of(operation))
    assert not unexpected, "\n".join(str(f) for f in Report(findings=unexpected).distinct())


def test_the_run_is_a_few_hundred_requests_with_no_server_error(report: Report) -> None:
    assert 200 <= report.requests <= 1500, report.requests  # ~20 per operation, workloads' included
    assert report.count("5xx") == 0, [str(f) for f in report.findings if f.kind == "5xx"]
    assert report.statuses[200] + report.statuses[202] > 0 and report.statuses[422] > 0


# -- known findings, each shown directly ---------------------------------------------------------
def _validates(spec: dict[str, Any], path: str, method: str, status: int, body: Any) -> list[str]:
    """Errors of `body` against the response schema the document gives for `status`."""
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} documents no {status}: {sorted(responses)}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": spec["components"]})
    return [e.message for e in validator.iter_errors(body)]


def test_a_request_without_a_token_gets_the_documented_401_body(app: LocalApp) -> None:
    spec = app.api("GET", "/openapi.json", claims=ALICE).body
    answer = app.api("GET", "/jobs")
    assert answer.status == 401
    assert _validates(spec, "/jobs", "get", 401, answer.body) == []


def test_an_unknown_job_type_gets_the_documented_400_body(app: LocalApp) -> None:
    spec = app.api("GET", "/openapi.json", claims=ALICE).body
    answer = app.api("POST", "/jobs", {"type": "no.such.type"}, ALICE)
    assert answer.status == 400
    assert _validates(spec, "/jobs", "post", 400, answer.body) == []


def test_a_malformed_cancel_body_gets_a_documented_status(app: LocalApp) -> None:
    spec = app.api("GET", "/openapi.json", claims=ALICE).body
    job = enqueue(app, {"type": "system.echo", "delaySeconds": 60})
    answer = app.api("POST", f"/jobs/{job['jobId']}/cancel", b"\xff", ALICE)
    assert answer.status == 400
    assert _validates(spec, "/jobs/{jobId}/cancel", "post", 400, answer.body) == []


def test_every_route_with_a_body_documents_400_and_413(app: LocalApp) -> None:
    spec = app.api("GET", "/openapi.json", claims=ALICE).body
    missing = [
        f"{method.upper()} {path}: {status}"
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        if "requestBody" in operation
        for status in ("400", "413")
        if status not in operation["responses"]
    ]
    assert missing == []
