from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tarefa import wiring
from tarefa.job import utcnow
from tarefa.local.app import LocalApp

ALICE: dict[str, Any] = {"sub": "alice"}
BOB: dict[str, Any] = {"sub": "bob"}
ADMIN: dict[str, Any] = {"sub": "root", "cognito:groups": ["admin"]}


class Clock:
    """Time the services see; tests move it forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def app() -> Iterator[LocalApp]:
    with mock_aws():
        yield LocalApp(boto3.client("sqs"), boto3.client("dynamodb"))
    wiring.reset()


@pytest.fixture
def clock(app: LocalApp) -> Clock:
    clock = Clock()
    wiring.container().clock = clock
    return clock


def enqueue(app: LocalApp, body: dict[str, Any], claims: dict[str, Any] = ALICE) -> dict[str, Any]:
    result = app.api("POST", "/jobs", body, claims)
    assert result.status == 202, result.body
    job: dict[str, Any] = result.body
    return job


def job_of(app: LocalApp, job_id: str, claims: dict[str, Any] = ALICE) -> dict[str, Any]:
    result = app.api("GET", f"/jobs/{job_id}", claims=claims)
    assert result.status == 200, result.body
    job: dict[str, Any] = result.body
    return job


def messages_in(app: LocalApp, logical_id: str) -> int:
    """Visible and in-flight messages of one of the template's queues."""
    attributes = app.sqs.get_queue_attributes(
        QueueUrl=app.stack.queue_urls[logical_id],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def let_sqs_timers_pass() -> None:
    """moto keeps real time for message delays and visibility: make them all pass now."""
    from moto.backends import get_backend

    backend = get_backend("sqs")["123456789012"]["us-east-1"]
    for queue in backend.queues.values():
        for message in queue._messages:
            message.delay(0)
            message.change_visibility(0)
