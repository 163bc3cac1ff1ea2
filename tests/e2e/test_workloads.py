"""A workload's job types on `tarefa local`, as a new user meets them: listed, enqueued by an
alias, run with progress, and a broken module stopping the start with its name."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import jwt

from tarefa.local.process import free_port

from .conftest import BIN, RunningStack
from .test_cli_and_client import cli


def test_the_demo_workload_is_listed_and_runs(stack: RunningStack) -> None:
    token = stack.token("ana")
    status, types = stack.request("GET", "/job-types", token=token)
    assert status == 200
    greet = next(t for t in types["items"] if t["name"] == "demo.greet")
    assert greet["aliases"] == ["DEMO_GREET"] and greet["payloadSchema"]["required"] == ["name"]
    status, job = stack.request(
        "POST", "/jobs", {"type": "DEMO_GREET", "payload": {"name": "Ana", "language": "pt"}}, token=token
    )
    assert status == 202 and job["type"] == "demo.greet"
    stack.wait_for_status(job["jobId"], token, "COMPLETED")
    _, done = stack.request("GET", f"/jobs/{job['jobId']}", token=token)
    assert done["result"]["greeting"] == "Olá, Ana!"
    assert done["progress"]["percent"] == 100 and done["progress"]["message"] == "greeted"


def test_an_unknown_type_says_which_exist(stack: RunningStack) -> None:
    status, answer = stack.request("POST", "/jobs", {"type": "demo.nope"}, token=stack.token("ana"))
    assert status == 400 and answer["error"]["code"] == "UNKNOWN_JOB_TYPE"
    assert {"demo.greet", "system.echo"} <= set(answer["error"]["details"]["knownTypes"])


def test_tarefa_types_lists_them(stack: RunningStack) -> None:
    shown = cli(stack, "types")
    assert shown.returncode == 0, shown.stderr
    assert "demo.greet" in shown.stdout and "DEMO_GREET" in shown.stdout and "PAYLOAD FIELDS" in shown.stdout
    as_json = json.loads(cli(stack, "types", "--json").stdout)
    assert "system.echo" in {t["name"] for t in as_json}


def test_a_module_that_cannot_be_imported_stops_the_start_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "tarefa"),
            "--state-dir",
            str(tmp_path),
            "local",
            "--api-port",
            str(free_port()),
            "--aws-port",
            str(free_port()),
            "--parameter-overrides",
            "JobModules=demo,no_such_workload",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot import 'no_such_workload'" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_delay_speedup_divides_backoff_so_a_long_ladder_can_be_watched(tmp_path: Path) -> None:
    from .conftest import start_stack

    fast = start_stack(tmp_path, "--delay-speedup", "60")
    try:
        token = fast.token("ana")
        status, job = fast.request(
            "POST",
            "/jobs",
            {"type": "system.fail", "payload": {"failTimes": 1}, "retryDelaySeconds": 120},
            token=token,
        )
        assert status == 202
        # 120 s of backoff becomes 2 s: the retry lands well inside the wait
        seen = fast.wait_for_status(job["jobId"], token, "COMPLETED", timeout=30)
        assert "RETRYING" in seen
        _, done = fast.request("GET", f"/jobs/{job['jobId']}", token=token)
        assert done["attempts"] == 2
    finally:
        fast.stop()


def test_the_cli_shows_which_fields_are_invalid(stack: RunningStack) -> None:
    shown = cli(stack, "enqueue", "demo.greet", "--payload", '{"name": "", "steps": 99}')
    assert shown.returncode == 7, shown.stderr
    assert "422 VALIDATION_ERROR" in shown.stderr
    assert "  payload.name: String should have at least 1 character" in shown.stderr
    assert "  payload.steps: Input should be less than or equal to 10" in shown.stderr
    as_json = json.loads(cli(stack, "enqueue", "demo.greet", "--payload", '{"name": ""}', "--json").stdout)
    assert as_json["error"]["details"] == [
        {"field": "payload.name", "message": "String should have at least 1 character"}
    ]
    unknown = cli(stack, "enqueue", "demo.nope")
    assert "knownTypes: " in unknown.stderr and "demo.greet" in unknown.stderr


def test_the_log_line_of_a_refused_token_says_why(stack: RunningStack) -> None:
    expired = stack.token("ana", "--ttl", "1")
    # A token signed by another key, and one that expired
    forged = jwt.encode({"sub": "ana", "exp": 4102444800}, "not-the-local-key-" + "x" * 32, algorithm="HS256")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stack.request("GET", "/jobs", token=expired)[0] != 401:
        time.sleep(0.2)  # until the one-second token has expired
    assert stack.request("GET", "/job-types", token=forged)[0] == 401
    assert stack.request("GET", "/job-types")[0] == 401
    # the stack is shared: other tests' refusals are in its log too, so look for these lines
    for route, why in (
        ("GET /jobs 401", "Signature has expired"),
        ("GET /job-types 401", "The specified alg value is not allowed"),
        ("GET /job-types 401", "missing bearer token"),
    ):
        wanted = f"(token refused: {why})"
        deadline = time.monotonic() + 10
        while not any(route in line and wanted in line for line in list(stack.output)):
            assert time.monotonic() < deadline, f"no log line with {route} and {wanted}"
            time.sleep(0.1)
