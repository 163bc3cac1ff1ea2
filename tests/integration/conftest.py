from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tarefa import wiring
from tarefa.job import utcnow
from tarefa.local.app import BATCHING_WINDOW_VARIABLE, LocalApp

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


@pytest.fixture(scope="package", autouse=True)
def _quick_local_apps() -> Iterator[None]:
    """Every LocalApp built here hands a partial batch over at once instead of waiting out the
    template's batching window in real time (the tests drain queues, they don't sleep). And it
    starts in a third of the time: template.yaml is parsed once (each gets a deep copy of that
    parse; re-read if the file changes), and the boto3 sessions a LocalApp opens share one
    botocore loader, so the service models are read once per process instead of per session."""
    import botocore.loaders
    import botocore.session

    from tarefa.local import provision, template

    parsed: dict[Path, tuple[int, dict[str, Any]]] = {}

    def load_template(path: Path = template.TEMPLATE) -> dict[str, Any]:
        version = path.stat().st_mtime_ns
        if path not in parsed or parsed[path][0] != version:
            parsed[path] = (version, template.load_template(path))
        return copy.deepcopy(parsed[path][1])

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BATCHING_WINDOW_VARIABLE, "0")
        patch.setattr(provision, "load_template", load_template)
        patch.setattr(botocore.session, "create_loader", functools.cache(botocore.loaders.create_loader))
        yield


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
