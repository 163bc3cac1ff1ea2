"""The README's messaging tour on `tarefa local`, over HTTP as a user would, against the
WhatsApp sandbox the stack starts (Cloud API by default): a session, three messages seen SENT
then DELIVERED then READ, a number not on WhatsApp ending FAILED, and an inbound message injected
at the sandbox landing on the session and delivered, signed, to the user's subscriber, and a
subscriber that fails twice (500, 500) getting it on the delivery's third attempt."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from .conftest import Received, RunningStack, receiver, start_stack

PHONE_NUMBER_ID = "106540352242922"
ANA = "+5511987654321"
CLIENTE = "+5521998765432"


@pytest.fixture(scope="module")
def stack_with_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(Path(tmp_path_factory.mktemp("messaging")), "--delay-speedup", "30")
    yield running
    running.stop()


@pytest.fixture
def subscriber() -> Iterator[tuple[str, Received]]:
    with receiver("/hooks") as found:
        yield found


def session_of(stack: RunningStack, token: str, session_id: str) -> dict[str, Any]:
    status, body = stack.request("GET", f"/sessions/{session_id}", token=token)
    assert status == 200, body
    found: dict[str, Any] = body["session"]
    return found


def message_of(stack: RunningStack, token: str, message_id: str) -> dict[str, Any]:
    status, body = stack.request("GET", f"/messages/{message_id}", token=token)
    assert status == 200, body
    found: dict[str, Any] = body["message"]
    return found


def open_session(stack: RunningStack, token: str, number_id: str, **fields: Any) -> dict[str, Any]:
    status, created = stack.request(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": number_id, **fields}, token=token
    )
    assert status == 202, created
    sid = created["session"]["sessionId"]
    stack.wait_until(lambda: session_of(stack, token, sid)["status"] == "CONNECTED", "connected", 30)
    return session_of(stack, token, sid)


def test_the_sandbox_is_started_and_the_job_types_are_there(stack_with_sandbox: RunningStack) -> None:
    assert stack_with_sandbox.state["sandboxes"]["messaging"].startswith("http://127.0.0.1:")
    status, types = stack_with_sandbox.request("GET", "/job-types", token=stack_with_sandbox.token("ana"))
    assert status == 200
    names = {t["name"]: t["aliases"] for t in types["items"]}
    assert names["messaging.message.send"] == ["message:send"]
    assert names["messaging.session.init"] == ["session:init"]


def test_three_messages_go_sent_delivered_read_and_not_on_whatsapp_fails(
    stack_with_sandbox: RunningStack,
) -> None:
    stack = stack_with_sandbox
    token = stack.token("ana")
    session = open_session(stack, token, PHONE_NUMBER_ID)
    ids = []
    for n in range(3):
        status, sent = stack.request(
            "POST",
            f"/sessions/{session['sessionId']}/messages",
            {"to": ANA, "text": f"pedido {n}"},
            token=token,
        )
        assert status == 202 and sent["message"]["status"] == "QUEUED", sent
        ids.append(sent["message"]["messageId"])
    seen: dict[str, list[str]] = {m: [] for m in ids}

    def all_read() -> bool:
        for message_id in ids:
            status = message_of(stack, token, message_id)["status"]
            if not seen[message_id] or seen[message_id][-1] != status:
                seen[message_id].append(status)
        return all(s[-1] == "READ" for s in seen.values())

    stack.wait_until(all_read, "all three READ", 30)
    for statuses in seen.values():  # in order, whatever was too quick to be seen
        order = ["QUEUED", "SENT", "DELIVERED", "READ"]
        assert statuses == sorted(statuses, key=order.index), statuses
    assert any("DELIVERED" in s or "SENT" in s for s in seen.values())
    status, failed = stack.request(
        "POST",
        f"/sessions/{session['sessionId']}/messages",
        {"to": "+5511987650000", "text": "oi"},
        token=token,
    )
    assert status == 202
    stack.wait_until(
        lambda: message_of(stack, token, failed["message"]["messageId"])["status"] == "FAILED", "FAILED", 30
    )
    message = message_of(stack, token, failed["message"]["messageId"])
    assert message["error"] == {"code": "WHATSAPP_131026", "reason": "not_on_whatsapp"}
    _, job = stack.request("GET", f"/jobs/{failed['jobId']}", token=token)
    assert (job["status"], job["attempts"]) == ("COMPLETED", 1)
    assert stack.request("GET", f"/messages/{ids[0]}", token=stack.token("bob"))[0] == 404


def test_an_injected_inbound_message_lands_and_is_delivered_signed(
    stack_with_sandbox: RunningStack, subscriber: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    stack = stack_with_sandbox
    token = stack.token("bia")
    url, received = subscriber
    status, subscription = stack.request(
        "POST", "/webhooks", {"url": url, "events": ["message.received"]}, token=token
    )
    assert status in (200, 201), subscription
    session = open_session(stack, token, "106540352242999", webhookUrl=url)
    request = urllib.request.Request(
        f"{stack.state['sandboxes']['messaging']}/sandbox/inbound",
        data=json.dumps({"to": "106540352242999", "from": CLIENTE, "text": "Oi, tem entrega hoje?"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        provider_id = json.loads(answer.read())["providerMessageId"]

    def inbound() -> list[dict[str, Any]]:
        _, page = stack.request(
            "GET", f"/sessions/{session['sessionId']}/messages?direction=inbound", token=token
        )
        items: list[dict[str, Any]] = page["items"]
        return items

    stack.wait_until(lambda: len(inbound()) == 1, "the inbound message stored", 30)
    (message,) = inbound()
    assert message["from"] == CLIENTE and message["text"] == "Oi, tem entrega hoje?"
    assert message["providerMessageId"] == provider_id
    stack.wait_until(lambda: len(received) >= 1, "the signed delivery", 30)
    headers, body = received[0]
    assert headers["x-tarefa-session"] == session["sessionId"]
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-id"]
    assert json.loads(body)["data"]["message"]["messageId"] == message["messageId"]


def inject_inbound(stack: RunningStack, number_id: str, text: str) -> str:
    request = urllib.request.Request(
        f"{stack.state['sandboxes']['messaging']}/sandbox/inbound",
        data=json.dumps({"to": number_id, "from": CLIENTE, "text": text}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        provider_id: str = json.loads(answer.read())["providerMessageId"]
    return provider_id


def test_a_subscriber_that_fails_twice_then_succeeds_gets_it_on_the_third_attempt(
    stack_with_sandbox: RunningStack,
) -> None:
    """The tour's flaky subscriber: 500 twice, then 204. The webhook.delivery job retries (its
    10 s and 30 s, divided by the stack's --delay-speedup) and the third attempt delivers; the
    delivery log shows each attempt's answer; every attempt is the same delivery (webhook-id),
    signed; the job's payload never shows the message in clear."""
    stack = stack_with_sandbox
    token = stack.token("caio")
    with receiver("/flaky", answers=(500, 500)) as (url, received):
        status, subscription = stack.request(
            "POST", "/webhooks", {"url": url, "events": ["message.received"]}, token=token
        )
        assert status == 201, subscription
        open_session(stack, token, "106540352242933")
        inject_inbound(stack, "106540352242933", "Vocês abrem amanhã?")
        stack.wait_until(lambda: len(received) >= 3, "three attempts", 60)

        def logged() -> dict[str, Any]:
            status, page = stack.request("GET", f"/webhooks/{subscription['id']}/deliveries", token=token)
            assert status == 200, page
            (entry,) = page["items"]
            found: dict[str, Any] = entry
            return found

        stack.wait_until(lambda: logged()["status"] == "DELIVERED", "the delivery recorded DELIVERED", 30)
        entry = logged()
        assert (entry["event"], entry["attempts"], entry["responseCode"]) == ("message.received", 3, 204)
        assert [(a["attempt"], a["responseCode"]) for a in entry["history"]] == [(1, 500), (2, 500), (3, 204)]
        assert len(received) == 3 and {h["webhook-id"] for h, _ in received} == {entry["id"]}
        stamps = [int(h["webhook-timestamp"]) for h, _ in received]  # each attempt's own
        assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 1  # the retries waited
        for headers, body in received:
            event = Webhook(subscription["secret"]).verify(body, headers)
            assert event["data"]["message"]["text"] == "Vocês abrem amanhã?"
        status, job = stack.request("GET", f"/jobs/{entry['jobId']}", token=token)
        assert status == 200 and (job["status"], job["attempts"]) == ("COMPLETED", 3)
        assert job["payload"]["data"] == "[redacted]" and "abrem" not in json.dumps(job)
