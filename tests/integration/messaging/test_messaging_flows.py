"""Sessions and messages end to end in process: the real routes and handlers on moto, the real
Cloud API adapter against the sandbox over loopback HTTP, its status callbacks handed back to
the real webhook route. Every job type's failure modes, the per-session rate, the ordering of
statuses, the crash between a send and its record, and who sees what."""

from __future__ import annotations

from typing import Any

import pytest
from messaging import jobs as messaging_jobs

from tarefa import wiring

from ..conftest import ADMIN, ALICE, BOB
from .conftest import ANA, PHONE_NUMBER_ID, Messaging

NOT_ON_WHATSAPP = "+5511987650000"
RATE_LIMITED = "+5511987650429"
SERVER_ERROR = "+5511987650500"
TIMES_OUT = "+5511987650408"


def sent(messaging: Messaging, session_id: str, to: str = ANA, **fields: Any) -> dict[str, Any]:
    answer = messaging.send(session_id, to, **fields)
    assert answer.status == 202, answer.body
    body: dict[str, Any] = answer.body
    return body


def callback(message: dict[str, Any]) -> str:
    return f"tarefa:{message['messageId']}:{message['generation']}"


# -- sessions ----------------------------------------------------------------------------------


def test_a_session_connects_and_its_messages_go_sent_delivered_read(messaging: Messaging) -> None:
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": PHONE_NUMBER_ID}, ALICE
    )
    assert created.status == 202, created.body
    assert created.body["session"]["status"] == "PENDING" and created.body["jobId"]
    messaging.run()
    session = messaging.app.api(
        "GET", f"/sessions/{created.body['session']['sessionId']}", claims=ALICE
    ).body["session"]
    assert session["status"] == "CONNECTED" and session["provider"] == "cloudapi"
    assert "qr" not in session
    accepted = [sent(messaging, session["sessionId"], text=f"pedido {n}") for n in range(3)]
    assert all(a["message"]["status"] == "QUEUED" for a in accepted)
    messaging.run()
    first = messaging.message(accepted[0]["message"]["messageId"])
    assert first["status"] == "SENT" and first["providerMessageId"].startswith("wamid.")
    messaging.settle(callbacks=9)
    for answer in accepted:
        message = messaging.message(answer["message"]["messageId"])
        assert message["status"] == "READ", message
        assert message["sentAt"] and message["deliveredAt"] and message["readAt"]
        assert messaging.sandbox.sends_of(callback(message)) == 1
        job = messaging.job(answer["jobId"])
        assert job["status"] == "COMPLETED" and job["type"] == "messaging.message.send"
    page = messaging.app.api("GET", f"/sessions/{session['sessionId']}/messages", claims=ALICE).body
    assert [m["text"] for m in page["items"]] == ["pedido 2", "pedido 1", "pedido 0"]  # newest first
    read = messaging.app.api(
        "GET", f"/sessions/{session['sessionId']}/messages?status=READ&limit=2", claims=ALICE
    )
    assert len(read.body["items"]) == 2 and read.body["cursor"]
    rest = messaging.app.api(
        "GET",
        f"/sessions/{session['sessionId']}/messages?status=READ&cursor={read.body['cursor']}",
        claims=ALICE,
    )
    assert [m["text"] for m in rest.body["items"]] == ["pedido 0"]
    outbound = messaging.app.api(
        "GET", f"/sessions/{session['sessionId']}/messages?direction=inbound", claims=ALICE
    )
    assert outbound.body["items"] == []


def test_an_unknown_phone_number_id_fails_the_session_with_the_reason(messaging: Messaging) -> None:
    session = messaging.open_session(number_id="106540352242404")
    assert session["status"] == "FAILED" and session["reason"] == "invalid_parameter"
    answer = messaging.send(session["sessionId"])
    assert answer.status == 409 and answer.body["error"]["code"] == "SESSION_NOT_CONNECTED"
    # the number is free again: another session may hold it
    again = messaging.app.api(
        "POST", "/sessions", {"name": "De novo", "phoneNumberId": "106540352242404"}, ALICE
    )
    assert again.status == 202


def test_a_number_is_held_by_one_open_session_until_it_closes(messaging: Messaging) -> None:
    session = messaging.open_session()
    taken = messaging.app.api("POST", "/sessions", {"name": "Outra", "phoneNumberId": PHONE_NUMBER_ID}, BOB)
    assert taken.status == 409 and taken.body["error"]["code"] == "PHONE_NUMBER_IN_USE"
    closing = messaging.app.api("POST", f"/sessions/{session['sessionId']}/close", claims=ALICE)
    assert closing.status == 202 and closing.body["jobId"]
    messaging.run()
    closed = messaging.app.api("GET", f"/sessions/{session['sessionId']}", claims=ALICE).body["session"]
    assert closed["status"] == "CLOSED" and closed["closedAt"]
    assert messaging.app.api("POST", f"/sessions/{session['sessionId']}/close", claims=ALICE).status == 409
    assert messaging.send(session["sessionId"]).body["error"]["code"] == "SESSION_NOT_CONNECTED"
    assert (
        messaging.app.api(
            "POST", "/sessions", {"name": "Outra", "phoneNumberId": PHONE_NUMBER_ID}, BOB
        ).status
        == 202
    )


def test_the_provider_down_retries_the_init_then_fails_the_session(messaging: Messaging) -> None:
    messaging.sandbox.stop()
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": PHONE_NUMBER_ID}, ALICE
    )
    for _ in range(4):
        messaging.run(seconds=60)
    session = messaging.app.api(
        "GET", f"/sessions/{created.body['session']['sessionId']}", claims=ALICE
    ).body["session"]
    assert session["status"] == "FAILED" and session["reason"] == "provider_unavailable"
    job = messaging.job(created.body["jobId"])
    assert job["status"] == "FAILED" and job["attempts"] == 3


def test_requests_are_validated_and_numbers_normalised(messaging: Messaging) -> None:
    session = messaging.open_session()
    sid = session["sessionId"]
    bad = messaging.app.api("POST", f"/sessions/{sid}/messages", {"to": "12", "text": "oi"}, ALICE)
    assert bad.status == 422 and bad.body["error"]["details"][0]["field"] == "to"
    assert "12" not in bad.body["error"]["message"]
    empty = messaging.app.api("POST", f"/sessions/{sid}/messages", {"to": ANA}, ALICE)
    assert empty.status == 422
    local_number = sent(messaging, sid, to="(11) 98765-4321")  # the default region: BR
    assert local_number["message"]["to"] == ANA
    media = sent(messaging, sid, text=None, media={"url": "https://example.com/p.png", "caption": "nota"})
    messaging.run()
    assert messaging.message(media["message"]["messageId"])["status"] == "SENT"
    assert messaging.sandbox.sent[-1].kind == "image"
    no_name = messaging.app.api("POST", "/sessions", {"name": " ", "phoneNumberId": "1"}, ALICE)
    assert no_name.status == 422 and no_name.body["error"]["details"][0]["field"] == "name"
    hook = messaging.app.api(
        "POST",
        "/sessions",
        {"name": "x", "phoneNumberId": "2", "webhookUrl": "https://hooks.example.com/x"},
        ALICE,
    )
    assert hook.status == 422 and hook.body["error"]["details"][0]["field"] == "webhookUrl"


# -- message failure modes --------------------------------------------------------------------


def test_not_on_whatsapp_ends_failed_through_its_status_and_is_not_retried(messaging: Messaging) -> None:
    session = messaging.open_session()
    accepted = sent(messaging, session["sessionId"], NOT_ON_WHATSAPP)
    messaging.settle(callbacks=1)
    message = messaging.message(accepted["message"]["messageId"])
    assert message["status"] == "FAILED"
    assert message["error"] == {"code": "WHATSAPP_131026", "reason": "not_on_whatsapp"}
    job = messaging.job(accepted["jobId"])
    assert (
        job["status"] == "COMPLETED" and job["attempts"] == 1
    )  # the send went; the recipient is the failure
    messaging.run(seconds=600)
    assert messaging.sandbox.sends_of(callback(message)) == 1


@pytest.mark.parametrize("to", [RATE_LIMITED, SERVER_ERROR])
def test_rate_limits_and_server_errors_are_retried_until_sent(messaging: Messaging, to: str) -> None:
    session = messaging.open_session()
    accepted = sent(messaging, session["sessionId"], to)
    for _ in range(3):
        messaging.run(seconds=60)
    message = messaging.message(accepted["message"]["messageId"])
    assert message["status"] == "SENT", message
    job = messaging.job(accepted["jobId"])
    assert job["status"] == "COMPLETED" and job["attempts"] == 3
    assert messaging.sandbox.sends_of(callback(message)) == 1


def test_a_recipient_that_times_out_ends_failed_after_five_attempts(
    messaging: Messaging, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(messaging_jobs.GRACE_VARIABLE, "5")
    session = messaging.open_session()
    accepted = sent(messaging, session["sessionId"], TIMES_OUT)
    for _ in range(8):
        messaging.run(seconds=200)
    message = messaging.message(accepted["message"]["messageId"])
    assert message["status"] == "FAILED"
    assert message["error"] == {"code": "PROVIDER_UNREACHABLE", "reason": "provider_unavailable"}
    job = messaging.job(accepted["jobId"])
    assert job["status"] == "FAILED" and job["attempts"] == 5
    assert TIMES_OUT not in str(job) and TIMES_OUT.lstrip("+") not in str(job["error"])
    dead = messaging.app.api("GET", "/jobs?status=FAILED", claims=ALICE).body
    assert accepted["jobId"] in [j["jobId"] for j in dead["items"]]


def test_only_a_failed_message_is_retried_as_a_new_send(messaging: Messaging) -> None:
    session = messaging.open_session()
    good = sent(messaging, session["sessionId"])
    bad = sent(messaging, session["sessionId"], NOT_ON_WHATSAPP)
    messaging.settle(callbacks=4)
    refused = messaging.app.api("POST", f"/messages/{good['message']['messageId']}/retry", claims=ALICE)
    assert refused.status == 409 and refused.body["error"]["code"] == "INVALID_STATE"
    retried = messaging.app.api("POST", f"/messages/{bad['message']['messageId']}/retry", claims=ALICE)
    assert retried.status == 202, retried.body
    assert retried.body["message"]["status"] == "QUEUED" and retried.body["message"]["generation"] == 1
    assert retried.body["jobId"] != bad["jobId"] and retried.body["message"]["error"] is None
    messaging.settle(callbacks=1)
    again = messaging.message(bad["message"]["messageId"])
    assert again["status"] == "FAILED" and again["generation"] == 1
    assert messaging.sandbox.sends_of(callback(again)) == 1
    assert again["jobIds"] == [bad["jobId"], retried.body["jobId"]]


def test_an_idempotency_key_returns_the_same_message_and_refuses_another_body(messaging: Messaging) -> None:
    session = messaging.open_session()
    first = messaging.send(session["sessionId"], idempotencyKey="pedido-42")
    assert first.status == 202
    again = messaging.send(session["sessionId"], idempotencyKey="pedido-42")
    assert again.status == 200 and again.body["message"]["messageId"] == first.body["message"]["messageId"]
    assert "jobId" not in again.body
    other = messaging.send(session["sessionId"], idempotencyKey="pedido-42", text="outro texto")
    assert other.status == 409 and other.body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    messaging.run()
    assert len(messaging.sandbox.sent) == 1


def test_a_session_not_connected_refuses_messages(messaging: Messaging) -> None:
    messaging.sandbox.stop()
    created = messaging.app.api(
        "POST", "/sessions", {"name": "Loja", "phoneNumberId": PHONE_NUMBER_ID}, ALICE
    )
    answer = messaging.send(created.body["session"]["sessionId"])
    assert answer.status == 409 and answer.body["error"]["code"] == "SESSION_NOT_CONNECTED"


# -- statuses ------------------------------------------------------------------------------------


def test_a_read_before_its_delivered_keeps_read(messaging: Messaging) -> None:
    session = messaging.open_session()
    accepted = sent(messaging, session["sessionId"])
    messaging.run()
    import time

    deadline = time.monotonic() + 5
    while len(messaging.receiver.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    notes = messaging.receiver.take()
    assert len(notes) == 3
    order = {b"read": 0, b"delivered": 1, b"sent": 2}
    notes.sort(key=lambda n: next(v for k, v in order.items() if b'"status":"' + k + b'"' in n.body))
    applied = []
    for note in notes:  # read, then delivered, then sent
        headers = {k: v for k, v in note.headers.items() if k.startswith("x-") or k == "content-type"}
        answer = messaging.app.api("POST", note.path, note.body, headers=headers)
        assert answer.status == 200
        messaging.run()
        applied += [messaging.job(j)["result"]["applied"] for j in answer.body["jobIds"]]
        assert messaging.message(accepted["message"]["messageId"])["status"] == "READ"
    message = messaging.message(accepted["message"]["messageId"])
    assert message["readAt"] and "deliveredAt" not in message  # a delivered after read moved nothing
    assert applied == [True, False, False]


def test_a_failure_report_after_read_changes_nothing_and_failed_is_terminal(messaging: Messaging) -> None:
    session = messaging.open_session()
    accepted = sent(messaging, session["sessionId"])
    messaging.settle(callbacks=3)
    message = messaging.message(accepted["message"]["messageId"])
    assert message["status"] == "READ"
    provider_id = message["providerMessageId"]
    failed = {
        "id": provider_id,
        "status": "failed",
        "timestamp": "1",
        "errors": [{"code": 131026, "title": "x"}],
    }
    messaging.sandbox.cloud_event(PHONE_NUMBER_ID, {"statuses": [failed]})
    messaging.settle(callbacks=1)
    assert messaging.message(accepted["message"]["messageId"])["status"] == "READ"
    bad = sent(messaging, session["sessionId"], NOT_ON_WHATSAPP)
    messaging.settle(callbacks=1)
    failed_id = messaging.message(bad["message"]["messageId"])["providerMessageId"]
    for status in ("sent", "delivered", "read"):
        messaging.sandbox.cloud_event(PHONE_NUMBER_ID, {"statuses": [{"id": failed_id, "status": status}]})
    messaging.settle(callbacks=3)
    assert messaging.message(bad["message"]["messageId"])["status"] == "FAILED"


# -- exactly once --------------------------------------------------------------------------------


def crash_once_after_the_send(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first record_sent raises: the worker dies between the provider's answer and our record."""
    service = messaging_jobs.service()
    original = service.record_sent
    crashed: list[str] = []

    def record_sent(*args: Any, **kwargs: Any) -> Any:
        if not crashed:
            crashed.append(str(args[0]))
            raise RuntimeError("the worker died here")
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "record_sent", record_sent)
    return crashed


def test_a_crash_between_the_send_and_its_record_does_not_send_twice(
    messaging: Messaging, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = messaging.open_session()
    crashed = crash_once_after_the_send(monkeypatch)
    accepted = sent(messaging, session["sessionId"])
    messaging.run()
    assert crashed and messaging.job(accepted["jobId"])["status"] == "RETRYING"
    message = messaging.message(accepted["message"]["messageId"])
    assert message["status"] == "QUEUED" and "providerMessageId" not in message
    # The next attempt (2 s later) finds the send claimed, not recorded: it waits, sends nothing.
    messaging.run(seconds=3)
    assert messaging.sandbox.sends_of(callback(message)) == 1
    # Meta's callbacks carry biz_opaque_callback_data: they bring the provider's id home.
    messaging.settle(callbacks=3)
    message = messaging.message(accepted["message"]["messageId"])
    assert (
        message["status"] == "READ"
        and message["providerMessageId"] == messaging.sandbox.sent[0].provider_message_id
    )
    messaging.run(seconds=120)
    job = messaging.job(accepted["jobId"])
    assert job["status"] == "COMPLETED" and job["result"]["status"] == "READ"
    assert messaging.sandbox.sends_of(callback(message)) == 1


def test_without_any_callback_a_claimed_send_is_sent_again_only_after_the_grace(
    messaging: Messaging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window the README names: a send that reached Meta whose callbacks never come within
    the grace is sent a second time."""
    session = messaging.open_session()
    crash_once_after_the_send(monkeypatch)
    messaging.sandbox.callbacks = False
    accepted = sent(messaging, session["sessionId"])
    messaging.run()
    message = messaging.message(accepted["message"]["messageId"])
    messaging.run(seconds=3)
    messaging.run(seconds=30)
    assert messaging.sandbox.sends_of(callback(message)) == 1  # still within the 60 s grace
    messaging.run(seconds=40)
    assert messaging.sandbox.sends_of(callback(message)) == 2
    final = messaging.message(accepted["message"]["messageId"])
    assert (
        final["status"] == "SENT"
        and final["providerMessageId"] == messaging.sandbox.sent[1].provider_message_id
    )


def test_two_hundred_messages_to_one_session_go_out_at_most_80_a_minute(messaging: Messaging) -> None:
    limiter = wiring.container().limiter
    assert limiter is not None
    start = limiter.clock()
    offset = [0.0]
    limiter.clock = lambda: start + offset[0]
    messaging.sandbox.callbacks = False
    session = messaging.open_session()
    accepted = [sent(messaging, session["sessionId"], text=f"aviso {n}")["jobId"] for n in range(200)]
    per_minute = []
    for _ in range(5):
        before = len(messaging.sandbox.sent)
        for _ in range(3):  # what is due this minute, however often the queues are polled
            messaging.run()
        per_minute.append(len(messaging.sandbox.sent) - before)
        if len(messaging.sandbox.sent) == 200:
            break
        offset[0] += 61
        messaging.clock.advance(61)
    assert sum(per_minute) == 200, per_minute
    assert max(per_minute) <= 80 and per_minute[:2] == [80, 80], per_minute
    page = messaging.app.api(
        "GET", f"/sessions/{session['sessionId']}/messages?status=SENT&limit=100", claims=ALICE
    )
    assert len(page.body["items"]) == 100
    failed = messaging.app.api(
        "GET", f"/sessions/{session['sessionId']}/messages?status=FAILED", claims=ALICE
    )
    assert failed.body["items"] == []
    jobs = [messaging.job(job_id) for job_id in accepted[::20]]
    assert all(j["status"] == "COMPLETED" and j["attempts"] == 1 for j in jobs)  # delayed, never failed


# -- who sees what -------------------------------------------------------------------------------


def test_a_user_sees_only_their_own_sessions_and_messages(messaging: Messaging) -> None:
    session = messaging.open_session()
    sid = session["sessionId"]
    accepted = sent(messaging, sid, NOT_ON_WHATSAPP)
    messaging.settle(callbacks=1)
    mid = accepted["message"]["messageId"]
    for method, path, body in (
        ("GET", f"/sessions/{sid}", None),
        ("POST", f"/sessions/{sid}/close", None),
        ("POST", f"/sessions/{sid}/messages", {"to": ANA, "text": "oi"}),
        ("GET", f"/sessions/{sid}/messages", None),
        ("GET", f"/messages/{mid}", None),
        ("POST", f"/messages/{mid}/retry", None),
    ):
        answer = messaging.app.api(method, path, body or b"", BOB)
        assert answer.status == 404 and answer.body["error"]["code"] == "NOT_FOUND", (
            method,
            path,
            answer.body,
        )
    assert messaging.app.api("GET", "/sessions", claims=BOB).body["items"] == []
    assert [s["sessionId"] for s in messaging.app.api("GET", "/sessions", claims=ALICE).body["items"]] == [
        sid
    ]
    assert messaging.app.api("GET", "/sessions?userId=alice", claims=BOB).status == 403
    assert [
        s["sessionId"] for s in messaging.app.api("GET", "/sessions?userId=alice", claims=ADMIN).body["items"]
    ] == [sid]
    assert messaging.app.api("GET", f"/messages/{mid}", claims=ADMIN).status == 200
    assert messaging.app.api("GET", "/sessions").status == 401  # no token
    forged = messaging.app.api(
        "GET", f"/sessions/{sid}/messages?cursor=eyJzZXNzaW9uS2V5Ijp7IlMiOiJ4In19", claims=ALICE
    )
    assert forged.status == 422 and forged.body["error"]["details"][0]["field"] == "cursor"


def test_a_failed_enqueue_leaves_nothing_stuck(messaging: Messaging, monkeypatch: pytest.MonkeyPatch) -> None:
    from tarefa import api, errors

    session = messaging.open_session()
    real = api.enqueue

    def down(*args: Any, **kwargs: Any) -> Any:
        raise errors.QueueUnavailableError("SQS is down")

    monkeypatch.setattr(api, "enqueue", down)
    refused = messaging.app.api("POST", "/sessions", {"name": "Outra", "phoneNumberId": "200"}, ALICE)
    assert refused.status == 503
    plain = messaging.send(session["sessionId"])
    keyed = messaging.send(session["sessionId"], idempotencyKey="k-down")
    assert plain.status == 503 and keyed.status == 503
    monkeypatch.setattr(api, "enqueue", real)
    # the number is free again, the plain message is FAILED (retry sends it), the keyed one waits
    # for its request again
    assert (
        messaging.app.api("POST", "/sessions", {"name": "Outra", "phoneNumberId": "200"}, ALICE).status == 202
    )
    failed = messaging.app.api(
        "GET", f"/sessions/{session['sessionId']}/messages?status=FAILED", claims=ALICE
    )
    (stuck,) = failed.body["items"]
    assert stuck["error"] == {"code": "ENQUEUE_FAILED", "reason": "enqueue_failed"}
    assert messaging.app.api("POST", f"/messages/{stuck['messageId']}/retry", claims=ALICE).status == 202
    again = messaging.send(session["sessionId"], idempotencyKey="k-down")
    assert again.status == 200 and again.body["jobId"]
    messaging.run()
    queued = messaging.app.api("GET", f"/sessions/{session['sessionId']}/messages?status=SENT", claims=ALICE)
    assert len(queued.body["items"]) == 2
