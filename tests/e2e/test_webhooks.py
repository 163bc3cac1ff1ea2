"""Job callbacks on `tarefa local`, as a user meets them: subscribe a receiver on loopback (the
stack's HttpAllow lets its outbound client reach it, as it does its sandboxes), enqueue a
system.echo with that URL as its callbackUrl, and receive `job.completed`, signed per Standard
Webhooks, checked with the reference library."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from .conftest import Received, RunningStack, receiver, start_stack


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(
        Path(tmp_path_factory.mktemp("webhooks")),
        "--delay-speedup",
        "60",
        "--parameter-overrides",
        "HttpAllow=127.0.0.1",
    )
    yield running
    running.stop()


@pytest.fixture
def inbox() -> Iterator[tuple[str, Received]]:
    with receiver("/tarefa-events") as found:
        yield found


def test_a_job_with_a_callback_url_posts_a_signed_job_completed(
    hooked: RunningStack, inbox: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = inbox
    token = hooked.token("ana")
    status, subscription = hooked.request(
        "POST", "/webhooks", {"url": url, "events": ["job.completed"]}, token
    )
    assert status == 201, subscription
    secret = subscription["secret"]
    assert secret.startswith("whsec_") and subscription["id"].startswith("wh_")

    status, job = hooked.request(
        "POST", "/jobs", {"type": "system.echo", "payload": {"order": 42}, "callbackUrl": url}, token
    )
    assert status == 202, job
    hooked.wait_for_status(job["jobId"], token, "COMPLETED")
    hooked.wait_until(lambda: len(received) >= 1, "a callback arrived", timeout=30)

    headers, body = received[0]
    event = Webhook(secret).verify(body, headers)  # raises unless the signature is the secret's
    assert event["type"] == "job.completed" and headers["x-tarefa-event"] == "job.completed"
    assert event["data"]["jobId"] == job["jobId"] and event["data"]["result"] == {"order": 42}
    assert event["data"]["status"] == "COMPLETED"
    status, log = hooked.request("GET", f"/webhooks/{subscription['id']}/deliveries", token=token)
    assert status == 200
    assert [(d["event"], d["status"], d["responseCode"]) for d in log["items"]] == [
        ("job.completed", "DELIVERED", 204)
    ]
    assert log["items"][0]["id"] == headers["webhook-id"]

    # another user can neither see the subscription nor use its URL as a callback
    other = hooked.token("bea")
    assert hooked.request("GET", f"/webhooks/{subscription['id']}", token=other)[0] == 404
    status, refused = hooked.request("POST", "/jobs", {"type": "system.echo", "callbackUrl": url}, other)
    assert status == 422 and refused["error"]["details"][0]["field"] == "callbackUrl"
    assert len(received) == 1 and json.loads(body)["data"]["userId"] == "ana"
