"""`make fuzz`: schemathesis against the API's own OpenAPI document, in process.

Every operation the document describes gets generated requests, valid (positive) and invalid
(negative), sent through the local stack's API layer (`LocalApp.api`, the real handler) with a
caller drawn from a user, another user and an admin. Each answer is checked with schemathesis's
checks: no 5xx, a documented status, a documented content type, a body that validates against
the documented schema, and invalid input refused.

Writes the key "fuzz" of bench/results.json (other keys are kept) and prints the findings.
The integration tests run the same engine with a few examples per operation
(tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemathesis import APIOperation, Case
    from schemathesis.core.transport import Response

    Operation = APIOperation[Any, Any, Any, Any]

    from tarefa.local.app import LocalApp
    from tarefa.local.auth import LocalAuthority

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
EXAMPLES_PER_OPERATION = 60  # per generation mode

ALICE: dict[str, Any] = {"sub": "alice"}
BOB: dict[str, Any] = {"sub": "bob"}
PRIORITIES = ("HIGH", "MEDIUM", "LOW")

# What each finding is, from the schemathesis check that raised it.
KIND_OF_CHECK = {
    "not_a_server_error": "5xx",
    "status_code_conformance": "undocumented",
}


@dataclass(frozen=True)
class Finding:
    operation: str
    kind: str  # "5xx", "undocumented" (status not in the document) or "violation" (any other check)
    check: str
    status: int
    request: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.operation}: {self.status} for {self.request}\n    {self.detail}"


@dataclass
class Report:
    requests: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    def of(self, operation: str) -> list[Finding]:
        return [f for f in self.findings if f.operation == operation]

    def count(self, kind: str) -> int:
        return sum(1 for f in self.findings if f.kind == kind)

    def distinct(self) -> list[Finding]:
        """One finding per operation, check and status: what a reader needs to act on."""
        seen: dict[tuple[str, str, int], Finding] = {}
        for finding in self.findings:
            seen.setdefault((finding.operation, finding.check, finding.status), finding)
        return list(seen.values())


class ServerErrors(logging.Handler):
    """Keeps the last frame of each exception the API handler logs (`unhandled error`)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            self.lines.append(
                f"{type(exc).__name__}: {exc} at {Path(frame.filename).name}:{frame.lineno} ({frame.line})"
            )


class Fuzzer:
    """Generates cases from the app's /openapi.json and checks what the app answers."""

    def __init__(self, app: LocalApp, authority: LocalAuthority) -> None:
        import schemathesis
        from schemathesis.core.result import Ok

        self.app = app
        self.authority = authority
        answer = app.api("GET", "/openapi.json", claims=ALICE)
        assert answer.status == 200, answer.text
        self.document: dict[str, Any] = answer.body
        self.schema = schemathesis.openapi.from_dict(self.document)
        self.operations: dict[str, Operation] = {}
        for result in self.schema.get_all_operations():
            if not isinstance(result, Ok):
                raise result.err()  # the app's own document does not load: nothing to fuzz
            self.operations[result.ok().label] = result.ok()
        self.job_ids = self._seed_jobs()
        self.tokens = {
            "alice": authority.mint("alice"),
            "bob": authority.mint("bob"),
            "root": authority.mint("root", admin=True),
        }
        self.server_errors = ServerErrors()

    def _seed_jobs(self) -> list[str]:
        """Jobs the path parameters can name: Alice's in every state, and one of Bob's."""

        def enqueue(body: dict[str, Any], claims: dict[str, Any]) -> str:
            answer = self.app.api("POST", "/jobs", body, claims)
            assert answer.status == 202, answer.text
            return str(answer.body["jobId"])

        done = enqueue({"type": "system.echo", "payload": {"n": 1}}, ALICE)
        failed = enqueue({"type": "system.fail", "payload": {"failTimes": 1, "permanent": True}}, ALICE)
        self.app.drain()
        pending = enqueue({"type": "system.echo", "delaySeconds": 3600}, ALICE)
        cancelled = enqueue({"type": "system.echo", "delaySeconds": 3600}, ALICE)
        assert self.app.api("POST", f"/jobs/{cancelled}/cancel", {}, ALICE).status == 200
        bobs = enqueue({"type": "system.echo", "orderId": "order-1"}, BOB)
        return [done, failed, pending, cancelled, bobs]

    # -- one request -----------------------------------------------------------------------
    def send(self, case: Case[Any], caller: str) -> Response:
        """The case as a client would put it on the wire, through the API layer in process.

        The generator fills the Authorization header with a random bearer string: in a
        positive case it becomes the caller's token, in a negative one (a broken or missing
        header) it is sent as generated. The header then goes through the local stack's
        authorizer, as `tarefa local` does, and what it lets in reaches the handler as claims."""
        import requests
        from schemathesis.core.parameters import ParameterLocation
        from schemathesis.core.transport import Response

        from tarefa.local.auth import TokenError

        kwargs = case.as_transport_kwargs(base_url="http://tarefa.local")
        headers = dict(kwargs.get("headers") or {})
        if case.meta is None or not case.meta.is_negative_at(ParameterLocation.HEADER):
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {self.tokens[caller]}"
        prepared = requests.Request(
            method=kwargs["method"],
            url=kwargs["url"],
            headers=headers,
            params=kwargs.get("params"),
            json=kwargs.get("json"),
            data=kwargs.get("data"),
        ).prepare()
        sent = {k: v if isinstance(v, str) else v.decode("latin-1") for k, v in prepared.headers.items()}
        try:
            claims: dict[str, Any] | None = self.authority.verify(sent.get("Authorization"))
        except TokenError:
            claims = None
        body = prepared.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes)
        started = time.perf_counter()
        result = self.app.api(case.method, prepared.path_url, raw, claims, sent)
        return Response(
            status_code=result.status,
            headers={k: [v] for k, v in result.headers.items()},
            content=result.text.encode(),
            request=prepared,
            elapsed=time.perf_counter() - started,
            verify=True,
        )

    def check(self, case: Case[Any], response: Response) -> list[Finding]:
        from schemathesis.checks import not_a_server_error
        from schemathesis.core.failures import Failure, FailureGroup
        from schemathesis.specs.openapi.checks import (
            content_type_conformance,
            negative_data_rejection,
            response_schema_conformance,
            status_code_conformance,
        )

        checks = [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ]
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            failures: list[Failure] = list(group.exceptions)
        except Failure as single:
            failures = [single]
        else:
            return []
        findings = []
        for failure in failures:
            check = failure.checks[0] if failure.checks else type(failure).__name__
            if check == "status_code_conformance" and response.status_code >= 500:
                continue  # counted once, as a 5xx
            detail = failure.title + ": " + " ".join(failure.message.split())[:300]
            if response.status_code >= 500 and self.server_errors.lines:
                detail += " | " + self.server_errors.lines[-1]
            findings.append(
                Finding(
                    case.operation.label,
                    KIND_OF_CHECK.get(check, "violation"),
                    check,
                    response.status_code,
                    _describe(response),
                    detail,
                )
            )
        return findings

    # -- one operation ---------------------------------------------------------------------
    def strategies(self, operation: Operation, mode: Any) -> list[Any]:
        """Everything generated; then path parameters that name something real (a job in each
        state, a queue), with the Authorization header left alone so that negative cases
        break the query or the body instead."""
        found = [operation.as_strategy(mode)]
        names = {p.name for p in operation.path_parameters}
        real: list[dict[str, str]] = [{}]
        if "jobId" in names:
            real = [{"jobId": j} for j in self.job_ids]
        if "priority" in names:
            real = [{"priority": p} for p in PRIORITIES]
        authorized = bool(operation.definition.raw.get("security"))
        headers = {"Authorization": "Bearer placeholder"} if authorized else None
        for path_parameters in real:
            if path_parameters or headers:
                found.append(operation.as_strategy(mode, path_parameters=path_parameters, headers=headers))
        return found

    def fuzz(self, label: str, examples: int, report: Report, derandomize: bool = False) -> None:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import strategies as st
        from schemathesis import GenerationMode

        operation = self.operations[label]
        # Admin routes mostly as an admin (a user's 403 is shallow); job routes as either user.
        admin = "admin" in operation.definition.raw.get("tags", [])
        callers = ["root", "root", "alice"] if admin else ["alice", "bob", "root"]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases = st.one_of(self.strategies(operation, mode))

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=derandomize,
                phases=[Phase.generate],  # nothing raises: every finding is kept, none shrunk
                suppress_health_check=list(HealthCheck),
            )
            @given(case=cases, caller=st.sampled_from(callers))
            def run(case: Case[Any], caller: str) -> None:
                self.server_errors.lines.clear()
                response = self.send(case, caller)
                report.requests += 1
                report.by_operation[label] += 1
                report.statuses[response.status_code] += 1
                report.findings.extend(self.check(case, response))

            try:
                run()
            except Exception as exc:  # e.g. nothing negative to generate for an operation
                if type(exc).__name__ not in ("Unsatisfiable", "InvalidArgument", "SkipTest"):
                    raise

    def fuzz_all(self, examples: int, derandomize: bool = False) -> Report:
        report = Report()
        logger = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "tarefa"))
        logger.addHandler(self.server_errors)
        try:
            for label in self.operations:
                self.fuzz(label, examples, report, derandomize)
        finally:
            logger.removeHandler(self.server_errors)
        return report


def _describe(response: Response) -> str:
    request = response.request
    body = request.body or b""
    shown = body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else str(body)
    return f"{request.method} {request.path_url} body={shown[:160]!r}"


# ---------------------------------------------------------------------------------------- main
def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def merge_results(fuzz: dict[str, Any], path: Path = RESULTS) -> None:
    """Put `fuzz` under its key, keeping everything else the file holds."""
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["fuzz"] = fuzz
    path.write_text(json.dumps(results, indent=2) + "\n")


def run(examples: int, derandomize: bool = False) -> tuple[Report, float]:
    """A fresh local app on moto, fuzzed with `examples` per operation and mode."""
    import tempfile

    import boto3
    from moto import mock_aws

    from tarefa import wiring
    from tarefa.local.app import LocalApp
    from tarefa.local.auth import LocalAuthority
    from tarefa.local.sandboxes import job_modules, start_sandboxes

    started = time.perf_counter()
    # No enqueue limit: a 429 would stop the fuzzer short of the handler; errors only in the logs.
    parameters = {"EnqueueRateLimit": "off", "LogLevel": "ERROR"}
    # Configured as the local stack is: the workloads' sandboxes and their credentials (a
    # webhook route without its secret can only answer 503).
    sandboxes = start_sandboxes(job_modules(parameters), "http://127.0.0.1:9")
    try:
        with tempfile.TemporaryDirectory() as state, mock_aws():
            app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), sandboxes.parameters(parameters))
            sandboxes.create_secrets(
                boto3.client("secretsmanager"), os.environ.get("TAREFA_SECRETS_PREFIX", "")
            )
            report = Fuzzer(app, LocalAuthority(Path(state))).fuzz_all(examples, derandomize)
    finally:
        sandboxes.stop()
    wiring.reset()
    return report, time.perf_counter() - started


def main(argv: list[str]) -> int:
    """Reports, like `make bench`; the gate is the short form in the test suite."""
    import contextlib
    import io

    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "fuzz",
            "AWS_SECRET_ACCESS_KEY": "fuzz",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "tarefa",
            "POWERTOOLS_METRICS_NAMESPACE": "Tarefa",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    examples = int(argv[0]) if argv else EXAMPLES_PER_OPERATION
    _silence_metrics_warnings()
    print(f"Fuzzing every operation of /openapi.json with {examples} examples per generation mode...")
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metrics and error logs
        report, seconds = run(examples)
    findings = report.distinct()
    merge_results(
        {
            "requests": report.requests,
            "5xx": report.count("5xx"),
            "violations": report.count("violation"),
            "undocumented": report.count("undocumented"),
            "examples_per_operation_and_mode": examples,
            "operations": len(report.by_operation),
            "statuses": {str(k): v for k, v in sorted(report.statuses.items())},
            "distinct_findings": [f"[{f.kind}] {f.operation}: {f.status} {f.detail[:160]}" for f in findings],
            "duration_seconds": round(seconds, 1),
            "date": datetime.now(UTC).date().isoformat(),
            "machine": machine(),
        }
    )
    print(f"{report.requests} requests to {len(report.by_operation)} operations in {seconds:.1f} s")
    print(f"statuses: {dict(sorted(report.statuses.items()))}")
    print(
        f"5xx: {report.count('5xx')}, undocumented: {report.count('undocumented')}, "
        f"violations: {report.count('violation')} ({len(findings)} distinct)"
    )
    for finding in findings:
        print(finding)
    print(f"Written to {RESULTS.relative_to(ROOT)} (key: fuzz)")
    return 0


def _silence_metrics_warnings() -> None:
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
