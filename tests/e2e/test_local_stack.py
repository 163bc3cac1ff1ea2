"""End to end: `tarefa local` driven over HTTP and boto3 only, as a new user would."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tarefa.local.process import free_port

from .conftest import BIN, RunningStack, start_stack


def test_enqueued_job_is_polled_to_completed(stack: RunningStack) -> None:
    alice = stack.token("alice")
    status, job = stack.request("POST", "/jobs", {"type": "system.echo", "payload": {"hello": "e2e"}}, alice)
    assert status == 202
    seen = stack.wait_for_status(job["jobId"], alice, "COMPLETED")
    assert seen[-1] == "COMPLETED"
    _, done = stack.request("GET", f"/jobs/{job['jobId']}", token=alice)
    assert done["result"] == {"hello": "e2e"}
    stack.wait_for_line(f"{job['jobId']} system.echo COMPLETED")


def test_retries_are_visible_as_retrying_then_completed(stack: RunningStack) -> None:
    alice = stack.token("alice")
    body = {"type": "system.fail", "payload": {"failTimes": 1}, "retryDelaySeconds": 2}
    status, job = stack.request("POST", "/jobs", body, alice)
    assert status == 202
    seen = stack.wait_for_status(job["jobId"], alice, "COMPLETED")
    assert "RETRYING" in seen
    _, done = stack.request("GET", f"/jobs/{job['jobId']}", token=alice)
    assert done["attempts"] == 2


def test_poison_message_goes_to_the_dlq(stack: RunningStack) -> None:
    sqs = stack.sqs()
    queues = stack.state["queues"]
    sent = sqs.send_message(QueueUrl=queues["HighQueue"], MessageBody="this is not json")
    deadline = time.monotonic() + 30
    bodies: list[str] = []
    while time.monotonic() < deadline and "this is not json" not in bodies:
        messages = sqs.receive_message(QueueUrl=queues["HighDeadLetterQueue"], WaitTimeSeconds=1).get(
            "Messages", []
        )
        bodies += [m["Body"] for m in messages]
    assert "this is not json" in bodies
    admin = stack.token("ops", "--admin")
    # the worker parks the message first, then records its job: wait for the record
    status, record = stack.request("GET", f"/jobs/{sent['MessageId']}", token=admin)
    while status == 404 and time.monotonic() < deadline + 10:
        time.sleep(0.1)
        status, record = stack.request("GET", f"/jobs/{sent['MessageId']}", token=admin)
    assert status == 200
    assert record["status"] == "FAILED" and record["deadLettered"] is True


def test_job_sent_straight_to_sqs_is_tracked(stack: RunningStack) -> None:
    sqs = stack.sqs()
    body = {"type": "system.echo", "payload": {"via": "sqs"}, "jobId": "e2e-external-1", "userId": "carol"}
    sqs.send_message(QueueUrl=stack.state["queues"]["LowQueue"], MessageBody=json.dumps(body))
    carol = stack.token("carol")
    stack.wait_for_status("e2e-external-1", carol, "COMPLETED")
    assert stack.request("GET", "/jobs/e2e-external-1", token=stack.token("dave"))[0] == 404


def test_a_schedule_fires(stack: RunningStack) -> None:
    # --schedule-speedup 60 makes the per-minute promotion run every second
    line = stack.wait_for_line("CRON Promote", timeout=20)
    assert '{"promoted": ' in line


def test_cancel_over_http(stack: RunningStack) -> None:
    alice = stack.token("alice")
    _, job = stack.request(
        "POST", "/jobs", {"type": "system.echo", "payload": 1, "delaySeconds": 3600}, alice
    )
    status, cancelled = stack.request(
        "POST", f"/jobs/{job['jobId']}/cancel", {"reason": "no longer needed"}, alice
    )
    assert status == 200 and cancelled["status"] == "CANCELLED"
    assert stack.request("POST", f"/jobs/{job['jobId']}/cancel", {}, alice)[0] == 409


def test_health_is_open_and_everything_else_needs_a_valid_token(stack: RunningStack) -> None:
    assert stack.request("GET", "/health")[0] == 200
    assert stack.request("GET", "/jobs")[0] == 401
    expired = stack.token("alice", "--ttl", "1")
    expiry = jwt.decode(expired, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expiry - time.time()) + 0.05)  # just past the token's own expiry
    assert stack.request("GET", "/jobs", token=expired)[0] == 401
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(stack.token("alice"), options={"verify_signature": False})
    forged = jwt.encode(claims, stranger, algorithm="RS256")
    assert stack.request("GET", "/jobs", token=forged)[0] == 401
    assert stack.request("GET", "/jobs", token="not-a-jwt")[0] == 401
    assert stack.request("GET", "/jobs", token=stack.token("alice"))[0] == 200


def test_port_in_use_is_a_clear_one_line_error(stack: RunningStack, tmp_path: Path) -> None:
    taken = stack.api_url.rsplit(":", 1)[1]
    result = subprocess.run(
        [
            str(BIN / "tarefa"),
            "--state-dir",
            str(tmp_path),
            "local",
            "--api-port",
            taken,
            "--aws-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"port {taken}" in result.stderr and "--api-port" in result.stderr


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    running = start_stack(tmp_path)
    assert running.stop() == 0
    running.wait_for_line("Stopped.")


def test_ctrl_c_while_starting_still_stops_cleanly(tmp_path: Path) -> None:
    """Given a stack still starting, when Ctrl-C arrives, then it finishes starting and stops
    cleanly instead of dying of KeyboardInterrupt half-way."""
    process = subprocess.Popen(
        [
            str(BIN / "tarefa"),
            "--state-dir",
            str(tmp_path),
            "local",
            "--api-port",
            str(free_port()),
            "--aws-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # printed once Ctrl-C is handled, before anything starts
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    assert first.startswith("Starting the local stack"), first + rest
    assert process.returncode == 0, first + rest
    assert "Ready in" in rest and rest.rstrip().endswith("Stopped.")
