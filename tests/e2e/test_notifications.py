"""The README's e-mail tour on `tarefa local`, over HTTP as a user would: an e-mail through the
emulator's SES (the default; what it sent counted by SES's own GetSendQuota), and one
through the Resend sandbox with `--parameter-overrides EmailProvider=resend`, faults included."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from .conftest import RunningStack, start_stack


@pytest.fixture(scope="module")
def ses_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(Path(tmp_path_factory.mktemp("notifications-ses")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def resend_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(
        Path(tmp_path_factory.mktemp("notifications-resend")),
        "--delay-speedup",
        "60",
        "--parameter-overrides",
        "EmailProvider=resend",
    )
    yield running
    running.stop()


def send(stack: RunningStack, token: str, expected: int = 202, **fields: Any) -> dict[str, Any]:
    body = {"to": "ana@example.com", "subject": "Seu pedido chegou", "text": "Olá Ana, chegou."}
    body.update(fields)
    status, answer = stack.request("POST", "/notifications/email", body, token=token)
    assert status == expected, answer
    return dict(answer)


def settled(stack: RunningStack, token: str, notification_id: str, timeout: float = 30) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        status, answer = stack.request("GET", f"/notifications/{notification_id}", token=token)
        assert status == 200, answer
        found.update(answer["notification"])
        return bool(found["status"] != "QUEUED")

    stack.wait_until(done, f"{notification_id} settled", timeout)
    return found


def ses_sent_count(stack: RunningStack) -> int:
    """How many recipients the emulator's SES has sent to, through SES's own API (GetSendQuota's
    SentLast24Hours). moto's /moto-api/data.json cannot list the messages here: it reads every
    model of the emulator, and its Lambda functions' ask for Docker (500). The integration
    tests read the messages themselves from moto in process."""
    ses = boto3.client("ses", endpoint_url=stack.state["awsEndpointUrl"], region_name="us-east-1")
    return int(ses.get_send_quota()["SentLast24Hours"])


def test_the_job_type_and_the_sandbox_are_there(ses_stack: RunningStack) -> None:
    assert ses_stack.state["sandboxes"]["notifications"].startswith("http://127.0.0.1:")
    status, types = ses_stack.request("GET", "/job-types", token=ses_stack.token("ana"))
    assert status == 200
    names = {t["name"]: t for t in types["items"]}
    assert names["notifications.email.send"]["aliases"] == ["send-email"]
    assert (
        names["notifications.email.send"]["priority"],
        names["notifications.email.send"]["maxAttempts"],
    ) == (
        "MEDIUM",
        5,
    )


def test_an_email_through_ses(ses_stack: RunningStack) -> None:
    token = ses_stack.token("ana")
    before = ses_sent_count(ses_stack)
    answer = send(ses_stack, token, html="<p>Olá Ana</p>", idempotencyKey="pedido-42")
    notification = answer["notification"]
    assert notification["status"] == "QUEUED" and answer["jobId"]
    done = settled(ses_stack, token, notification["notificationId"])
    assert (done["status"], done["provider"]) == ("SENT", "ses")
    assert ses_sent_count(ses_stack) == before + 1
    assert done["providerMessageId"] and done["providerMessageId"] != notification["notificationId"]
    again = send(ses_stack, token, 202, html="<p>Olá Ana</p>", idempotencyKey="pedido-42")
    assert again["notification"]["notificationId"] == notification["notificationId"]
    assert again["notification"]["status"] == "SENT"
    conflict = send(ses_stack, token, 409, idempotencyKey="pedido-42")
    assert conflict["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert ses_sent_count(ses_stack) == before + 1  # the same request again sent nothing more
    other = ses_stack.request(
        "GET", f"/notifications/{notification['notificationId']}", token=ses_stack.token("bia")
    )
    assert other[0] == 404
    bad = send(ses_stack, token, 422, to="ana@")
    assert bad["error"]["details"][0]["field"] == "to.0"


def test_emails_through_the_resend_sandbox(resend_stack: RunningStack) -> None:
    token = resend_stack.token("ana")
    sent = send(resend_stack, token)["notification"]["notificationId"]
    bounce = send(resend_stack, token, to="bounce@example.com")["notification"]["notificationId"]
    flaky = send(resend_stack, token, to="fail@example.com")
    done = settled(resend_stack, token, sent)
    assert (done["status"], done["provider"]) == ("SENT", "resend")
    refused = settled(resend_stack, token, bounce)
    assert (refused["status"], refused["reason"]) == ("FAILED", "REJECTED: validation_error")
    seen = resend_stack.wait_for_status(flaky["jobId"], token, "COMPLETED", timeout=60)
    assert "RETRYING" in seen
    recovered = settled(resend_stack, token, flaky["notification"]["notificationId"])
    assert recovered["status"] == "SENT"
    # The sandbox answers Resend's GET /emails/{id}: the message it accepted, once
    sandbox = resend_stack.state["sandboxes"]["notifications"]
    request = urllib.request.Request(
        f"{sandbox}/emails/{recovered['providerMessageId']}",
        headers={"Authorization": "Bearer re_sandbox_key"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        email = json.loads(response.read())
    assert (email["to"], email["subject"]) == (["fail@example.com"], "Seu pedido chegou")
