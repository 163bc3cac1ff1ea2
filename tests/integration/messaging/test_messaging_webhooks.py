"""The providers' webhooks through the real routes: the Cloud API's handshake and signature,
inbound messages stored once (a redelivery is the same job) and delivered, signed, to the
session's subscription; and the Evolution API flow: QR code, scan, send, statuses, inbound."""

from __future__ import annotations

import json
from typing import Any

import pytest
from messaging.local import SANDBOX_APP_SECRET, SANDBOX_VERIFY_TOKEN
from messaging.provider.signature import hub_signature

from ..conftest import ADMIN, ALICE
from .conftest import ANA, PHONE_NUMBER_ID, Messaging

CLIENTE = "+5521998765432"


def jobs_of(messaging: Messaging) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = messaging.app.api("GET", "/jobs?limit=100", claims=ADMIN).body["items"]
    return items


def test_the_handshake_echoes_the_challenge_only_for_our_verify_token(messaging: Messaging) -> None:
    ok = messaging.app.api(
        "GET",
        f"/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={SANDBOX_VERIFY_TOKEN}&hub.challenge=1158201444",
    )
    assert ok.status == 200 and ok.text == "1158201444"
    assert {k.lower(): v for k, v in ok.headers.items()}["content-type"].startswith("text/plain")
    wrong = messaging.app.api(
        "GET", "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"
    )
    assert wrong.status == 403
    mode = messaging.app.api(
        "GET",
        f"/webhooks/whatsapp?hub.mode=unsubscribe&hub.verify_token={SANDBOX_VERIFY_TOKEN}&hub.challenge=1",
    )
    assert mode.status == 403


def test_a_bad_signature_is_401_and_enqueues_nothing(messaging: Messaging) -> None:
    session = messaging.open_session()
    before = len(jobs_of(messaging))
    messaging.sandbox.inbound(PHONE_NUMBER_ID, CLIENTE, "Oi, quero comprar")
    import time

    deadline = time.monotonic() + 5
    while not messaging.receiver.received and time.monotonic() < deadline:
        time.sleep(0.02)
    (note,) = messaging.receiver.take()
    for headers in (
        {"x-hub-signature-256": hub_signature(note.body, "another-secret")},
        {"x-hub-signature-256": "sha256=00"},
        {"x-hub-signature-256": "md5=" + hub_signature(note.body, SANDBOX_APP_SECRET)[7:]},
        {},
    ):
        answer = messaging.app.api("POST", "/webhooks/whatsapp", note.body, headers=headers)
        assert answer.status == 401 and answer.body["error"]["code"] == "INVALID_SIGNATURE"
    tampered = note.body.replace(b"quero", b"QUERO")
    signed = {"x-hub-signature-256": note.headers["x-hub-signature-256"]}
    assert messaging.app.api("POST", "/webhooks/whatsapp", tampered, headers=signed).status == 401
    assert len(jobs_of(messaging)) == before
    page = messaging.app.api("GET", f"/sessions/{session['sessionId']}/messages", claims=ALICE).body
    assert page["items"] == []


def test_an_inbound_message_is_stored_once_and_delivered_signed_to_the_session_webhook(
    messaging: Messaging,
) -> None:
    hook_url = f"{messaging.receiver.url}/hooks/loja"
    subscribed = messaging.app.api(
        "POST", "/webhooks", {"url": hook_url, "events": ["message.received"]}, ALICE
    )
    assert subscribed.status in (200, 201), subscribed.body
    session = messaging.open_session(webhookUrl=hook_url)
    assert session["webhookUrl"] == hook_url
    provider_id = messaging.sandbox.inbound(PHONE_NUMBER_ID, CLIENTE, "Oi, quero comprar")
    (first,) = messaging.webhooks(wait_for=1)
    assert first.status == 200 and len(first.body["jobIds"]) == 1
    # Meta redelivers (no 200 seen in time): the same job, no second message.
    _url, raw, headers, _ = messaging.sandbox.deliveries[-1]
    again = messaging.app.api(
        "POST", "/webhooks/whatsapp", raw, headers={k.lower(): v for k, v in headers.items()}
    )
    assert again.status == 200 and again.body["jobIds"] == first.body["jobIds"]
    messaging.run()
    job = messaging.job(first.body["jobIds"][0])
    assert job["status"] == "COMPLETED" and job["type"] == "messaging.message.receive", job
    assert job["result"]["stored"] is True
    assert CLIENTE not in json.dumps(job["payload"]) and "quero" not in json.dumps(job["payload"])
    inbound = messaging.app.api(
        "GET", f"/sessions/{session['sessionId']}/messages?direction=inbound", claims=ALICE
    )
    (message,) = inbound.body["items"]
    assert (
        message["direction"] == "inbound"
        and message["from"] == CLIENTE
        and message["text"] == "Oi, quero comprar"
    )
    assert message["status"] == "RECEIVED" and message["providerMessageId"] == provider_id
    # delivered, signed (Standard Webhooks), to the session's subscription with its header
    deliveries = job["result"]["deliveries"]
    assert len(deliveries) == 1
    messaging.run()
    delivered = [n for n in messaging.receiver.take() if n.path == "/hooks/loja"]
    assert len(delivered) == 1, delivered
    note = delivered[0]
    assert note.headers["x-tarefa-session"] == session["sessionId"]
    assert note.headers["webhook-signature"].startswith("v1,") and note.headers["webhook-id"]
    body = json.loads(note.body)
    assert body["type"] == "message.received"
    assert body["data"]["message"]["messageId"] == message["messageId"]
    # a redelivered receive job (a second run) stores nothing new and publishes no second time
    messaging.sandbox.inbound(PHONE_NUMBER_ID, CLIENTE, "Segunda")
    messaging.settle(callbacks=1)
    assert (
        len(
            messaging.app.api("GET", f"/sessions/{session['sessionId']}/messages", claims=ALICE).body["items"]
        )
        == 2
    )


def test_a_status_meta_redelivers_makes_no_second_job(messaging: Messaging) -> None:
    session = messaging.open_session()
    accepted = messaging.send(session["sessionId"], ANA).body
    messaging.run()
    answers = messaging.webhooks(wait_for=3)
    job_ids = [j for a in answers for j in a.body["jobIds"]]
    assert len(job_ids) == 3
    for _url, raw, headers, _ in list(messaging.sandbox.deliveries):
        answer = messaging.app.api(
            "POST", "/webhooks/whatsapp", raw, headers={k.lower(): v for k, v in headers.items()}
        )
        assert set(answer.body["jobIds"]) <= set(job_ids)
    messaging.run()
    assert messaging.message(accepted["message"]["messageId"])["status"] == "READ"
    status_jobs = [j for j in jobs_of(messaging) if j["type"] == "messaging.message.status"]
    assert len(status_jobs) == 3 and {j["userId"] for j in status_jobs} == {"alice"}


def test_a_delivery_about_no_session_or_message_of_ours_is_acknowledged_and_ignored(
    messaging: Messaging,
) -> None:
    messaging.sandbox.inbound("999999", CLIENTE, "Oi")
    messaging.sandbox.cloud_event(PHONE_NUMBER_ID, {"statuses": [{"id": "wamid.unknown", "status": "read"}]})
    answers = messaging.webhooks(wait_for=2)
    assert [a.status for a in answers] == [200, 200]
    assert all(a.body["jobIds"] == [] for a in answers)


# -- Evolution API ---------------------------------------------------------------------------------


EVOLUTION = {"WhatsAppProvider": "evolution"}


@pytest.mark.parametrize("messaging", [EVOLUTION], indirect=True)
def test_evolution_shows_the_qr_code_until_it_is_scanned_then_sends_and_receives(
    messaging: Messaging,
) -> None:
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": "5511940000000"}, ALICE
    )
    assert created.status == 202
    sid = created.body["session"]["sessionId"]
    messaging.run()
    waiting = messaging.app.api("GET", f"/sessions/{sid}", claims=ALICE).body["session"]
    assert waiting["status"] == "QR_READY" and waiting["provider"] == "evolution"
    assert waiting["qr"].startswith("data:image/png;base64,") and waiting["pairingCode"]
    assert messaging.job(created.body["jobId"])["status"] == "RETRYING"  # looks again until scanned
    instance = messaging.sandbox.instances[sid]
    assert instance.webhook_url == f"{messaging.receiver.url}/webhooks/evolution/{sid}"
    assert messaging.sandbox.scan(sid)
    (answer,) = messaging.webhooks(wait_for=1)
    assert answer.status == 200
    messaging.run()
    connected = messaging.app.api("GET", f"/sessions/{sid}", claims=ALICE).body["session"]
    assert connected["status"] == "CONNECTED" and "qr" not in connected
    accepted = messaging.send(sid, ANA).body
    messaging.settle(callbacks=3)
    message = messaging.message(accepted["message"]["messageId"])
    assert message["status"] == "READ" and message["providerMessageId"].startswith("3EB0")
    messaging.sandbox.inbound(sid, CLIENTE, "Chegou?")
    messaging.settle(callbacks=1)
    inbound = messaging.app.api("GET", f"/sessions/{sid}/messages?direction=inbound", claims=ALICE).body[
        "items"
    ]
    assert [(m["from"], m["text"]) for m in inbound] == [(CLIENTE, "Chegou?")]
    # the instance's secret header is checked: another instance's, or none, is 401
    _url, raw, headers, _ = messaging.sandbox.deliveries[-1]
    forged = {k.lower(): v for k, v in headers.items()}
    forged["x-tarefa-instance-secret"] = "0" * 64
    assert messaging.app.api("POST", f"/webhooks/evolution/{sid}", raw, headers=forged).status == 401
    assert messaging.app.api("POST", f"/webhooks/evolution/{sid}", raw).status == 401
    closing = messaging.app.api("POST", f"/sessions/{sid}/close", claims=ALICE)
    assert closing.status == 202
    messaging.run()
    assert messaging.sandbox.instances[sid].state == "close"
    assert messaging.app.api("GET", f"/sessions/{sid}", claims=ALICE).body["session"]["status"] == "CLOSED"


@pytest.mark.parametrize("messaging", [EVOLUTION], indirect=True)
def test_evolution_an_unscanned_qr_code_fails_the_session_when_init_gives_up(messaging: Messaging) -> None:
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": "5511940000001"}, ALICE
    )
    for _ in range(4):
        messaging.run(seconds=61)
    session = messaging.app.api("GET", f"/sessions/{created.body['session']['sessionId']}", claims=ALICE).body
    assert session["session"]["status"] == "FAILED" and session["session"]["reason"] == "qr_not_scanned"
    assert "qr" not in session["session"]


@pytest.mark.parametrize("messaging", [EVOLUTION], indirect=True)
def test_evolution_a_close_the_provider_never_hears_still_closes_the_session(messaging: Messaging) -> None:
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": "5511940000002"}, ALICE
    )
    sid = created.body["session"]["sessionId"]
    messaging.run()
    messaging.sandbox.scan(sid)
    messaging.webhooks(wait_for=1)
    messaging.run()
    assert messaging.app.api("GET", f"/sessions/{sid}", claims=ALICE).body["session"]["status"] == "CONNECTED"
    messaging.sandbox.stop()
    closing = messaging.app.api("POST", f"/sessions/{sid}/close", claims=ALICE)
    messaging.run()
    assert messaging.job(closing.body["jobId"])["status"] == "RETRYING"
    assert messaging.app.api("GET", f"/sessions/{sid}", claims=ALICE).body["session"]["status"] == "CONNECTED"
    messaging.run(seconds=10)
    job = messaging.job(closing.body["jobId"])
    assert job["status"] == "FAILED" and job["attempts"] == 2
    session = messaging.app.api("GET", f"/sessions/{sid}", claims=ALICE).body["session"]
    assert session["status"] == "CLOSED" and session["reason"] == "provider_not_told"
