"""The Mercado Pago sandbox over real HTTP on loopback: every behaviour its contract promises.

The adapter and the workload's tests rely on these behaviours like Stripe's test cards, so each
is pinned here: the test cards, the faults per idempotency key, PIX paid by the customer or after
N polls, contingency, refunds, cancels, auth, and signed webhooks with retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import select
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from payments.provider.sandbox import MercadoPagoSandbox

TOKEN = "TEST-sandbox-access-token"
SECRET = "sandbox-webhook-secret"
HANG = 1.0
CONTINGENCY = 0.3
REJECTIONS = {
    "OTHE": "cc_rejected_other_reason",
    "FUND": "cc_rejected_insufficient_amount",
    "SECU": "cc_rejected_bad_filled_security_code",
    "EXPI": "cc_rejected_bad_filled_date",
    "FORM": "cc_rejected_bad_filled_other",
    "CALL": "cc_rejected_call_for_authorize",
}
ALL_NAMES = ["APRO", "CONT", *REJECTIONS, "TIMEOUT", "RATE_LIMIT", "ERROR"]


# -- helpers ------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for a condition with a bounded deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    def cause_codes(self) -> list[int]:
        return [cause["code"] for cause in self.body["cause"]]


class Api:
    """A bare HTTP client (urllib3, no retries) speaking to the sandbox as the adapter would."""

    def __init__(self, base_url: str, token: str | None = TOKEN) -> None:
        self.base_url = base_url
        self.token = token
        self.http = urllib3.PoolManager(retries=False)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Answer:
        sent = {"Accept": "application/json", **(headers or {})}
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        if key is not None:
            sent["X-Idempotency-Key"] = key
        payload: bytes | None = None
        if isinstance(body, bytes):
            payload = body
        elif body is not None:
            payload = json.dumps(body).encode()
        if payload is not None:
            sent["Content-Type"] = "application/json"
        response = self.http.request(
            method, self.base_url + path, body=payload, headers=sent, timeout=timeout, redirect=False
        )
        content_type = response.headers.get("Content-Type", "")
        data = (
            json.loads(response.data, parse_float=Decimal)
            if response.data and "json" in content_type
            else response.data
        )
        return Answer(response.status, data, {k.lower(): v for k, v in response.headers.items()})

    def create(self, body: dict[str, Any] | bytes, key: str | None = None, **kw: Any) -> Answer:
        return self.call("POST", "/v1/payments", body, key=key or str(uuid.uuid4()), **kw)

    def get(self, payment_id: int, **kw: Any) -> Answer:
        return self.call("GET", f"/v1/payments/{payment_id}", **kw)

    def poll(self, payment_id: int) -> Answer:
        return self.get(payment_id, headers={"X-Tarefa-Read": "poll"})

    def refund(self, payment_id: int, body: Any = None, key: str | None = None) -> Answer:
        return self.call("POST", f"/v1/payments/{payment_id}/refunds", body, key=key or str(uuid.uuid4()))

    def cancel(self, payment_id: int, body: Any = None) -> Answer:
        return self.call("PUT", f"/v1/payments/{payment_id}", body or {"status": "cancelled"})


def card(token: str = "APRO", amount: float | int = 12.5, **extra: Any) -> dict[str, Any]:
    return {
        "transaction_amount": amount,
        "token": token,
        "description": "Plano mensal",
        "installments": 1,
        "payment_method_id": "visa",
        "payer": {"email": "maria@example.com", "identification": {"type": "CPF", "number": "12345678909"}},
        "external_reference": f"order-{uuid.uuid4()}",
        **extra,
    }


def pix(email: str = "maria@example.com", amount: float | int = 10.1, **extra: Any) -> dict[str, Any]:
    return {
        "transaction_amount": amount,
        "payment_method_id": "pix",
        "description": "Pedido",
        "payer": {"email": email},
        "external_reference": f"order-{uuid.uuid4()}",
        **extra,
    }


def crc16(text: str) -> str:
    crc = 0xFFFF
    for byte in text.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return f"{crc:04X}"


def signature_ok(headers: dict[str, str], data_id: str, secret: str = SECRET) -> bool:
    """Recompute x-signature from Mercado Pago's manifest rule."""
    fields = dict(part.split("=", 1) for part in headers["x-signature"].split(","))
    manifest = f"id:{data_id.lower()};request-id:{headers['x-request-id']};ts:{fields['ts']};"
    expected = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["ts"])) < 60
    return fresh and hmac.compare_digest(expected, fields["v1"])


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Inbox:
    """A tiny webhook receiver: records each POST, answers the next queued status (else 200)."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def bodies(self) -> list[Any]:
        with self.lock:
            return [item.body for item in self.received]

    def actions_for(self, payment_id: int) -> list[str]:
        return [b["action"] for b in self.bodies() if b["data"]["id"] == str(payment_id)]


def start_inbox() -> Inbox:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            parts = urlsplit(self.path)
            with box.lock:
                box.received.append(
                    Received(
                        parts.path,
                        parse_qs(parts.query),
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw),
                    )
                )
                status = box.statuses.popleft() if box.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box = Inbox(server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return box


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = start_inbox()
    yield box
    box.server.shutdown()
    box.server.server_close()


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., MercadoPagoSandbox]]:
    started: list[MercadoPagoSandbox] = []

    def make(**options: Any) -> MercadoPagoSandbox:
        delays = options.pop("retry_delays", None)
        options.setdefault("hang_seconds", HANG)
        options.setdefault("contingency_seconds", CONTINGENCY)
        sandbox = MercadoPagoSandbox(**options)
        if delays is not None:
            sandbox.webhook_retry_delays = delays
        sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., MercadoPagoSandbox], inbox: Inbox) -> MercadoPagoSandbox:
    return make_sandbox(webhook_url=inbox.url + "/webhooks/payments")


@pytest.fixture
def api(sandbox: MercadoPagoSandbox) -> Api:
    return Api(sandbox.base_url)


# -- cards --------------------------------------------------------------------------------------


def test_an_approved_card_payment_has_mercado_pagos_shape(api: Api, sandbox: MercadoPagoSandbox) -> None:
    body = card("APRO", 12.5)
    answer = api.create(body)

    assert answer.status == 201
    payment = answer.body
    assert isinstance(payment["id"], int)
    assert payment["id"] > 0
    assert (payment["status"], payment["status_detail"]) == ("approved", "accredited")
    assert payment["transaction_amount"] == Decimal("12.5")
    assert payment["transaction_amount_refunded"] == 0
    assert payment["currency_id"] == "BRL"
    assert (payment["payment_method_id"], payment["payment_type_id"]) == ("visa", "credit_card")
    assert payment["external_reference"] == body["external_reference"]
    assert payment["description"] == "Plano mensal"
    assert payment["payer"]["email"] == "maria@example.com"
    assert payment["live_mode"] is False
    assert payment["refunds"] == []
    assert payment["notification_url"] is None
    assert payment["card"]["last_four_digits"] == "5682"
    assert payment["card"]["cardholder"]["name"] == "APRO"
    assert "point_of_interaction" not in payment
    created = datetime.fromisoformat(payment["date_created"])
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=30)
    assert payment["date_approved"] is not None
    assert payment["date_last_updated"] is not None
    assert payment["date_of_expiration"] is None
    assert answer.headers["content-type"].startswith("application/json")
    # introspection and GET agree with what the create answered
    assert sandbox.payment(payment["id"])["id"] == payment["id"]
    assert api.get(payment["id"]).body == payment
    assert [p["id"] for p in sandbox.payments_for(body["external_reference"])] == [payment["id"]]


@pytest.mark.parametrize(("token", "detail"), sorted(REJECTIONS.items()))
def test_each_declining_test_card_is_a_rejected_payment(api: Api, token: str, detail: str) -> None:
    answer = api.create(card(token))

    assert answer.status == 201  # a declined card is a payment, not an error
    assert (answer.body["status"], answer.body["status_detail"]) == ("rejected", detail)
    assert answer.body["date_approved"] is None


def test_the_payment_method_sets_the_card_type_and_digits(api: Api) -> None:
    master = api.create(card(payment_method_id="master")).body
    debit = api.create(card(payment_method_id="debvisa")).body

    assert (master["payment_type_id"], master["card"]["last_four_digits"]) == ("credit_card", "6351")
    assert debit["payment_type_id"] == "debit_card"


def test_amounts_are_exact_decimals(api: Api, sandbox: MercadoPagoSandbox) -> None:
    raw = b'{"transaction_amount": 0.30, "token": "APRO", "payment_method_id": "visa", "payer": {"email": "a@b.co"}}'
    payment = api.create(raw).body
    assert payment["transaction_amount"] == Decimal("0.3")

    api.refund(payment["id"], b'{"amount": 0.10}')
    after = api.refund(payment["id"], b'{"amount": 0.20}')

    assert after.status == 201
    final = api.get(payment["id"]).body
    assert (final["status"], final["transaction_amount_refunded"]) == ("refunded", Decimal("0.3"))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"transaction_amount": 0}, 4040),
        ({"transaction_amount": -5}, 4040),
        ({"transaction_amount": "12.50"}, 2072),
        ({"transaction_amount": 12.345}, 2072),
        ({"transaction_amount": None}, 2072),
        ({"token": "NOT-A-TEST-NAME"}, 2006),
        ({"token": None}, 2006),
        ({"payment_method_id": "mastercard"}, 3011),
        ({"payment_method_id": None}, 2131),
        ({"payer": {"email": "not-an-email"}}, 4050),
        ({"notification_url": "not a url"}, 4020),
        ({"installments": 0}, 1),
    ],
)
def test_invalid_bodies_are_400_with_a_cause_code(api: Api, change: dict[str, Any], code: int) -> None:
    answer = api.create(card(**change))

    assert answer.status == 400
    assert answer.body["error"] == "bad_request"
    assert answer.body["status"] == 400
    assert answer.cause_codes() == [code]
    assert answer.body["message"]


def test_a_body_that_is_not_json_is_400_params_error(api: Api) -> None:
    answer = api.create(b"{not json")

    assert (answer.status, answer.cause_codes()) == (400, [1])


def test_a_pix_expiry_in_a_bad_format_is_cause_23(api: Api) -> None:
    answer = api.create(pix(date_of_expiration="tomorrow"))

    assert (answer.status, answer.cause_codes()) == (400, [23])


# -- idempotency --------------------------------------------------------------------------------


def test_create_requires_an_idempotency_key(api: Api, sandbox: MercadoPagoSandbox) -> None:
    body = card()
    answer = api.call("POST", "/v1/payments", body)

    assert answer.status == 400
    assert answer.body["cause"] == [{"code": 4292, "description": "X-Idempotency-Key can't be null"}]
    assert sandbox.payments_for(body["external_reference"]) == []


def test_the_same_key_and_body_return_the_same_payment(api: Api, sandbox: MercadoPagoSandbox) -> None:
    body = card(amount=12.5)
    first = api.create(body, key="key-1")
    # the same JSON value spelled differently (key order, 12.50) is the same body
    respelled = json.dumps(dict(reversed(list(body.items())))).replace("12.5", "12.50").encode()
    again = api.create(respelled, key="key-1")

    assert (first.status, again.status) == (201, 201)
    assert again.body["id"] == first.body["id"]
    assert len(sandbox.payments_for(body["external_reference"])) == 1


def test_a_replay_answers_the_payments_current_state(api: Api) -> None:
    body = pix()
    created = api.create(body, key="pix-key").body
    api.cancel(created["id"])

    again = api.create(body, key="pix-key")

    assert (again.status, again.body["id"], again.body["status"]) == (201, created["id"], "cancelled")


def test_the_same_key_with_another_body_is_409(api: Api, sandbox: MercadoPagoSandbox) -> None:
    body = card()
    api.create(body, key="key-2")
    conflict = api.create({**body, "transaction_amount": 99}, key="key-2")

    assert conflict.status == 409
    assert conflict.body["error"] == "idempotency conflict"
    assert conflict.body["status"] == 409
    assert len(sandbox.payments_for(body["external_reference"])) == 1


def test_concurrent_retries_with_one_key_create_one_payment(api: Api, sandbox: MercadoPagoSandbox) -> None:
    body = card()
    ids: list[int] = []

    def create() -> None:
        ids.append(Api(sandbox.base_url).create(body, key="racing-key").body["id"])

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert len(sandbox.payments_for(body["external_reference"])) == 1


# -- the sandbox's faults -----------------------------------------------------------------------


def test_timeout_creates_the_payment_then_hangs_and_the_retry_recovers_it(
    api: Api, sandbox: MercadoPagoSandbox
) -> None:
    body = card("TIMEOUT")
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        api.create(body, key="slow-key", timeout=0.3)
    assert time.monotonic() - started < HANG

    [stored] = sandbox.payments_for(body["external_reference"])  # created before the hang
    assert stored["status"] == "approved"
    started = time.monotonic()
    retry = api.create(body, key="slow-key")

    assert time.monotonic() - started < HANG / 2  # the retry answers at once
    assert (retry.status, retry.body["id"], retry.body["status"]) == (201, stored["id"], "approved")
    assert len(sandbox.payments_for(body["external_reference"])) == 1
    # a new key sees the fault afresh
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        api.create(card("TIMEOUT"), key="another-slow-key", timeout=0.2)


def test_stop_cuts_a_hanging_answer_short(make_sandbox: Callable[..., MercadoPagoSandbox]) -> None:
    sandbox = make_sandbox(hang_seconds=30)
    body = card("TIMEOUT")
    hanging = threading.Thread(target=lambda: Api(sandbox.base_url).create(body, timeout=10), daemon=True)
    hanging.start()
    wait_until(lambda: bool(sandbox.payments_for(body["external_reference"])), what="the hanging request")

    started = time.monotonic()
    sandbox.stop()
    hanging.join(timeout=5)

    assert time.monotonic() - started < 3
    assert not hanging.is_alive()


def test_rate_limit_answers_429_once_per_key_then_approves(api: Api, sandbox: MercadoPagoSandbox) -> None:
    body = card("RATE_LIMIT")
    limited = api.create(body, key="busy-key")

    assert limited.status == 429
    assert limited.headers["retry-after"] == "1"
    assert (limited.body["error"], limited.body["status"]) == ("too_many_requests", 429)
    assert set(limited.body) == {"message", "error", "status", "cause"}
    assert sandbox.payments_for(body["external_reference"]) == []  # it created nothing

    retried = api.create(body, key="busy-key")
    assert (retried.status, retried.body["status"]) == (201, "approved")
    assert api.create(body, key="busy-key").body["id"] == retried.body["id"]
    assert api.create(card("RATE_LIMIT"), key="fresh-key").status == 429


def test_error_answers_500_twice_per_key_then_approves(api: Api, sandbox: MercadoPagoSandbox) -> None:
    body = card("ERROR")
    answers = [api.create(body, key="flaky-key") for _ in range(3)]

    assert [a.status for a in answers] == [500, 500, 201]
    assert answers[0].body["error"] == "internal_server_error"
    assert answers[2].body["status"] == "approved"
    assert len(sandbox.payments_for(body["external_reference"])) == 1
    assert api.create(card("ERROR"), key="another-flaky-key").status == 500


# -- contingency --------------------------------------------------------------------------------


def test_cont_is_in_process_then_approved_with_a_webhook(
    api: Api, sandbox: MercadoPagoSandbox, inbox: Inbox
) -> None:
    created = api.create(card("CONT")).body

    assert (created["status"], created["status_detail"]) == ("in_process", "pending_contingency")
    wait_until(lambda: api.get(created["id"]).body["status"] == "approved", what="CONT to settle")
    settled = api.get(created["id"]).body
    assert settled["status_detail"] == "accredited"
    assert settled["date_approved"] is not None
    wait_until(lambda: inbox.actions_for(created["id"]) == ["payment.created", "payment.updated"])


# -- PIX ----------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    """Check a PNG chunk by chunk (CRCs, image data length); its width and height."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, content = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + content) == crc
        chunks[kind] = content
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (width + 1)
    assert b"IEND" in chunks
    return width, height


def test_a_pix_charge_is_pending_with_its_code(api: Api) -> None:
    answer = api.create(pix(amount=10.1))

    assert answer.status == 201
    payment = answer.body
    assert (payment["status"], payment["status_detail"]) == ("pending", "pending_waiting_transfer")
    assert (payment["payment_method_id"], payment["payment_type_id"]) == ("pix", "bank_transfer")
    poi = payment["point_of_interaction"]
    assert poi["type"] == "PIX"
    code = poi["transaction_data"]["qr_code"]
    assert code.startswith("000201")
    assert "540510.10" in code  # field 54: the amount
    assert f"MP{payment['id']}" in code  # field 62/05: the payment id
    assert code[-8:-4] == "6304"
    assert code[-4:] == crc16(code[:-4])
    width, height = png_size(base64.b64decode(poi["transaction_data"]["qr_code_base64"]))
    assert width == height
    assert width > 20
    assert poi["transaction_data"]["ticket_url"].startswith("http")
    lifetime = datetime.fromisoformat(payment["date_of_expiration"]) - datetime.fromisoformat(
        payment["date_created"]
    )
    assert abs(lifetime - timedelta(minutes=30)) < timedelta(seconds=2)


def test_a_pix_charge_keeps_the_expiry_it_was_given(api: Api) -> None:
    expiry = "2030-01-02T03:04:05.000-03:00"
    payment = api.create(pix(date_of_expiration=expiry)).body

    assert datetime.fromisoformat(payment["date_of_expiration"]) == datetime.fromisoformat(expiry)


def test_the_ticket_page_shows_the_code_to_whoever_has_the_link(api: Api) -> None:
    payment = api.create(pix()).body
    ticket = payment["point_of_interaction"]["transaction_data"]["ticket_url"]
    anonymous = urllib3.PoolManager(retries=False)

    page = anonymous.request("GET", ticket)
    forged = anonymous.request("GET", ticket.split("?")[0] + "?hash=0000")

    assert page.status == 200
    assert payment["point_of_interaction"]["transaction_data"]["qr_code"] in page.data.decode()
    assert forged.status == 404


def test_paid_after_n_counts_only_polls(api: Api, sandbox: MercadoPagoSandbox, inbox: Inbox) -> None:
    payment = api.create(pix("paid-after-3@example.com")).body
    pid = payment["id"]

    for _ in range(3):  # plain reads (a webhook's re-read, an API read) are not polls
        assert api.get(pid).body["status"] == "pending"
    assert api.get(pid, headers={"X-Tarefa-Read": "read"}).body["status"] == "pending"
    assert sandbox.polls(pid) == 0

    assert api.poll(pid).body["status"] == "pending"
    assert api.poll(pid).body["status"] == "pending"
    third = api.poll(pid).body  # the N-th poll's own answer says approved

    assert (third["status"], third["status_detail"]) == ("approved", "accredited")
    assert sandbox.polls(pid) == 3
    assert api.poll(pid).body["status"] == "approved"
    wait_until(lambda: inbox.actions_for(pid) == ["payment.created", "payment.updated"])


def test_a_never_payer_stays_pending(api: Api, sandbox: MercadoPagoSandbox) -> None:
    payment = api.create(pix("never@example.com")).body

    for _ in range(5):
        assert api.poll(payment["id"]).body["status"] == "pending"
    refused = api.call("POST", f"/sandbox/pix/{payment['id']}/pay")

    assert (refused.status, refused.cause_codes()) == (400, [2018])
    with pytest.raises(ValueError, match="never"):
        sandbox.pay_pix(payment["id"])
    assert sandbox.payment(payment["id"])["status"] == "pending"


def test_the_customer_pays_through_the_pay_route(api: Api, sandbox: MercadoPagoSandbox, inbox: Inbox) -> None:
    payment = api.create(pix()).body
    path = f"/sandbox/pix/{payment['id']}/pay"

    assert Api(sandbox.base_url, token=None).call("POST", path).status == 401
    paid = api.call("POST", path)

    assert paid.status == 200
    assert (paid.body["status"], paid.body["status_detail"]) == ("approved", "accredited")
    assert paid.body["date_approved"] is not None
    assert api.get(payment["id"]).body["status"] == "approved"
    assert api.call("POST", path).cause_codes() == [2018]  # paid already
    assert api.call("POST", "/sandbox/pix/999/pay").cause_codes() == [2000]
    card_payment = api.create(card()).body
    assert api.call("POST", f"/sandbox/pix/{card_payment['id']}/pay").status == 400
    wait_until(lambda: inbox.actions_for(payment["id"]) == ["payment.created", "payment.updated"])


def test_pay_pix_is_the_same_from_python(api: Api, sandbox: MercadoPagoSandbox) -> None:
    payment = api.create(pix()).body

    paid = sandbox.pay_pix(payment["id"])

    assert paid["status"] == "approved"
    assert api.get(payment["id"]).body["status"] == "approved"
    with pytest.raises(ValueError):
        sandbox.pay_pix(payment["id"])
    with pytest.raises(KeyError):
        sandbox.pay_pix(12345)


# -- reads --------------------------------------------------------------------------------------


def test_an_unknown_payment_is_404_cause_2000(api: Api) -> None:
    for path in ("/v1/payments/12345", "/v1/payments/not-a-number"):
        answer = api.call("GET", path)
        assert answer.status == 404
        assert answer.body == {
            "message": "Payment not found",
            "error": "not_found",
            "status": 404,
            "cause": [{"code": 2000, "description": "Payment not found"}],
        }


def test_search_by_external_reference(api: Api) -> None:
    first = api.create(card(external_reference="order-A")).body
    second = api.create(card("OTHE", external_reference="order-A")).body
    api.create(card(external_reference="order-B"))

    found = api.call("GET", "/v1/payments/search?external_reference=order-A")
    approved = api.call("GET", "/v1/payments/search?external_reference=order-A&status=approved")
    paged = api.call("GET", "/v1/payments/search?external_reference=order-A&limit=1&offset=1")

    assert found.status == 200
    assert [p["id"] for p in found.body["results"]] == [first["id"], second["id"]]
    assert found.body["paging"] == {"total": 2, "limit": 30, "offset": 0}
    assert [p["id"] for p in approved.body["results"]] == [first["id"]]
    assert [p["id"] for p in paged.body["results"]] == [second["id"]]
    assert api.call("GET", "/v1/payments/search?external_reference=none").body["results"] == []


@pytest.mark.parametrize("name", ALL_NAMES)
def test_card_tokens_of_the_test_names(api: Api, name: str) -> None:
    answer = api.call("GET", f"/v1/card_tokens/{name}")

    assert answer.status == 200
    token = answer.body
    assert (token["id"], token["status"]) == (name, "active")
    assert (len(token["first_six_digits"]), len(token["last_four_digits"])) == (6, 4)
    assert token["cardholder"]["name"] == name
    assert datetime.fromisoformat(token["date_due"]) > datetime.now(UTC)
    expiry = (token["expiration_year"], token["expiration_month"])
    today = datetime.now(UTC)
    if name == "EXPI":
        assert expiry < (today.year, today.month)
    else:
        assert expiry > (today.year, today.month)


def test_an_unknown_card_token_is_404(api: Api) -> None:
    answer = api.call("GET", "/v1/card_tokens/ff8080814c11e237014c1ff593b57b4d")

    assert (answer.status, answer.body["error"]) == (404, "not_found")


def test_every_route_needs_the_bearer_token(api: Api, sandbox: MercadoPagoSandbox) -> None:
    payment = api.create(card()).body
    calls = [
        ("POST", "/v1/payments", card()),
        ("GET", f"/v1/payments/{payment['id']}", None),
        ("GET", "/v1/payments/search?external_reference=x", None),
        ("PUT", f"/v1/payments/{payment['id']}", {"status": "cancelled"}),
        ("POST", f"/v1/payments/{payment['id']}/refunds", {}),
        ("GET", f"/v1/payments/{payment['id']}/refunds", None),
        ("GET", "/v1/card_tokens/APRO", None),
    ]
    for token, extra in ((None, {}), ("wrong-token", {}), (None, {"Authorization": f"Basic {TOKEN}"})):
        client = Api(sandbox.base_url, token=token)
        for method, path, body in calls:
            answer = client.call(method, path, body, key="k", headers=extra)
            assert answer.status == 401, (method, path)
            assert answer.body["error"] == "unauthorized"
            assert answer.body["status"] == 401
            assert answer.cause_codes() == [5]
    assert api.get(payment["id"]).body["status"] == "approved"  # nothing was changed


def test_unknown_routes_answer_in_mercado_pagos_error_shape(api: Api) -> None:
    assert api.call("GET", "/v1/nothing").body["error"] == "not_found"
    assert api.call("DELETE", "/v1/payments").status == 405


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_a_pending_pix(api: Api, inbox: Inbox) -> None:
    payment = api.create(pix()).body

    cancelled = api.cancel(payment["id"])

    assert cancelled.status == 200
    assert (cancelled.body["status"], cancelled.body["status_detail"]) == ("cancelled", "by_collector")
    assert api.cancel(payment["id"]).cause_codes() == [2018]  # only from pending/in_process/authorized
    assert api.call("POST", f"/sandbox/pix/{payment['id']}/pay").status == 400
    wait_until(lambda: inbox.actions_for(payment["id"]) == ["payment.created", "payment.updated"])


def test_cancel_an_in_process_payment_stops_it_settling(api: Api, sandbox: MercadoPagoSandbox) -> None:
    payment = api.create(card("CONT")).body

    assert api.cancel(payment["id"]).body["status"] == "cancelled"
    deadline = time.monotonic() + CONTINGENCY * 2
    while time.monotonic() < deadline:
        assert api.get(payment["id"]).body["status"] == "cancelled"
        time.sleep(0.05)


def test_cancel_rules(api: Api) -> None:
    approved = api.create(card()).body["id"]
    rejected = api.create(card("FUND")).body["id"]
    pending = api.create(pix()).body["id"]

    assert api.cancel(approved).cause_codes() == [2018]
    assert api.cancel(rejected).cause_codes() == [2018]
    assert api.cancel(pending, {"description": "x"}).cause_codes() == [4017]
    assert api.cancel(pending, {"status": "approved"}).cause_codes() == [2016]
    assert api.cancel(12345).cause_codes() == [2000]
    assert api.get(pending).body["status"] == "pending"


# -- refunds ------------------------------------------------------------------------------------


def test_partial_then_full_refund(api: Api, sandbox: MercadoPagoSandbox, inbox: Inbox) -> None:
    payment = api.create(card(amount=100)).body
    pid = payment["id"]

    partial = api.refund(pid, b'{"amount": 30.10}')

    assert partial.status == 201
    refund = partial.body
    assert isinstance(refund["id"], int)
    assert (refund["payment_id"], refund["amount"], refund["status"]) == (pid, Decimal("30.1"), "approved")
    assert {"id", "name", "type"} <= set(refund["source"])
    assert refund["date_created"]
    after = api.get(pid).body
    assert (after["status"], after["status_detail"]) == ("approved", "partially_refunded")
    assert after["transaction_amount_refunded"] == Decimal("30.1")
    assert [r["id"] for r in after["refunds"]] == [refund["id"]]

    rest = api.refund(pid, {})  # {} = all that is left

    assert (rest.status, rest.body["amount"]) == (201, Decimal("69.9"))
    final = api.get(pid).body
    assert (final["status"], final["status_detail"]) == ("refunded", "refunded")
    assert final["transaction_amount_refunded"] == 100
    listed = api.call("GET", f"/v1/payments/{pid}/refunds")
    assert [r["id"] for r in listed.body] == [refund["id"], rest.body["id"]]
    one = api.call("GET", f"/v1/payments/{pid}/refunds/{refund['id']}")
    assert one.body == refund
    assert api.call("GET", f"/v1/payments/{pid}/refunds/1").status == 404
    assert api.refund(pid).cause_codes() == [2063]  # nothing is left
    wait_until(lambda: inbox.actions_for(pid) == ["payment.created", "payment.updated", "payment.updated"])


def test_an_empty_body_refunds_everything(api: Api) -> None:
    payment = api.create(card(amount=12.5)).body

    refund = api.refund(payment["id"])

    assert (refund.status, refund.body["amount"]) == (201, Decimal("12.5"))
    assert api.get(payment["id"]).body["status"] == "refunded"


def test_refund_errors(api: Api) -> None:
    approved = api.create(card(amount=10)).body["id"]
    rejected = api.create(card("OTHE")).body["id"]
    pending = api.create(pix()).body["id"]

    assert api.refund(approved, {"amount": 10.01}).cause_codes() == [2063]  # more than is left
    assert api.refund(approved, {"amount": 0}).cause_codes() == [4040]
    assert api.refund(approved, {"amount": -1}).cause_codes() == [4040]
    assert api.refund(approved, {"amount": "one"}).cause_codes() == [4041]
    assert api.refund(rejected).cause_codes() == [2063]
    assert api.refund(pending).cause_codes() == [2063]
    assert api.refund(12345).cause_codes() == [2000]
    missing_key = api.call("POST", f"/v1/payments/{approved}/refunds", {"amount": 1})
    assert (missing_key.status, missing_key.cause_codes()) == (400, [4292])
    assert api.get(approved).body["transaction_amount_refunded"] == 0


def test_refund_idempotency(api: Api) -> None:
    pid = api.create(card(amount=50)).body["id"]

    first = api.refund(pid, {"amount": 5}, key="refund-key")
    again = api.refund(pid, {"amount": 5.0}, key="refund-key")
    conflict = api.refund(pid, {"amount": 6}, key="refund-key")

    assert (first.status, again.status) == (201, 201)
    assert again.body["id"] == first.body["id"]
    assert conflict.status == 409
    assert conflict.body["error"] == "idempotency conflict"
    assert api.get(pid).body["transaction_amount_refunded"] == 5


# -- webhooks -----------------------------------------------------------------------------------


def test_webhooks_are_signed_like_mercado_pagos(api: Api, sandbox: MercadoPagoSandbox, inbox: Inbox) -> None:
    payment = api.create(card()).body
    wait_until(lambda: len(inbox.bodies()) == 1, what="the webhook")

    [note] = inbox.received
    assert note.path == "/webhooks/payments"
    assert note.query == {"data.id": [str(payment["id"])], "type": ["payment"]}
    assert note.headers["content-type"] == "application/json"
    assert str(uuid.UUID(note.headers["x-request-id"])) == note.headers["x-request-id"]
    assert signature_ok(note.headers, str(payment["id"]))
    assert not signature_ok(note.headers, str(payment["id"]), secret="another-secret")
    body = note.body
    assert set(body) == {
        "id",
        "live_mode",
        "type",
        "date_created",
        "user_id",
        "api_version",
        "action",
        "data",
    }
    assert isinstance(body["id"], int)
    assert isinstance(body["user_id"], int)
    assert (body["type"], body["api_version"], body["live_mode"]) == ("payment", "v1", False)
    assert (body["action"], body["data"]) == ("payment.created", {"id": str(payment["id"])})
    datetime.fromisoformat(body["date_created"])
    # The sandbox records the delivery once the receiver's answer is back, a moment after the
    # receiver has it: on a loaded machine that moment is visible.
    wait_until(lambda: len(sandbox.notifications) == 1, what="the delivery's record")
    [sent] = sandbox.notifications
    assert sent["url"] == f"{inbox.url}/webhooks/payments?data.id={payment['id']}&type=payment"
    assert (sent["status"], sent["attempt"], sent["body"]) == (200, 1, body)
    assert sent["headers"]["x-signature"] == note.headers["x-signature"]


def test_a_payments_notification_url_wins_over_the_default(
    api: Api, sandbox: MercadoPagoSandbox, inbox: Inbox
) -> None:
    own = start_inbox()
    try:
        payment = api.create(card(notification_url=f"{own.url}/hooks?source=mp")).body
        assert payment["notification_url"] == f"{own.url}/hooks?source=mp"
        api.refund(payment["id"])
        wait_until(lambda: len(own.bodies()) == 2, what="both webhooks")

        assert [b["action"] for b in own.bodies()] == ["payment.created", "payment.updated"]
        assert own.received[0].query == {
            "source": ["mp"],
            "data.id": [str(payment["id"])],
            "type": ["payment"],
        }
        assert inbox.bodies() == []
    finally:
        own.server.shutdown()
        own.server.server_close()


def test_no_url_means_no_webhook(make_sandbox: Callable[..., MercadoPagoSandbox], inbox: Inbox) -> None:
    sandbox = make_sandbox()
    api = Api(sandbox.base_url)
    silent = api.create(card()).body
    heard = api.create(card(notification_url=inbox.url)).body
    # the sandbox records an attempt once its answer is back, just after the inbox has it
    wait_until(lambda: len(inbox.bodies()) == 1 and len(sandbox.notifications) >= 1)

    assert inbox.actions_for(heard["id"]) == ["payment.created"]
    assert [n["body"]["data"]["id"] for n in sandbox.notifications] == [str(heard["id"])]
    assert inbox.actions_for(silent["id"]) == []


def test_notify_on_create_false_sends_only_updates(
    make_sandbox: Callable[..., MercadoPagoSandbox], inbox: Inbox
) -> None:
    sandbox = make_sandbox(webhook_url=inbox.url, notify_on_create=False)
    api = Api(sandbox.base_url)
    payment = api.create(pix()).body
    sandbox.pay_pix(payment["id"])
    wait_until(lambda: len(inbox.bodies()) == 1)

    assert inbox.actions_for(payment["id"]) == ["payment.updated"]


def test_a_failing_receiver_is_retried_and_order_is_kept(
    api: Api, sandbox: MercadoPagoSandbox, inbox: Inbox
) -> None:
    inbox.statuses.extend([500, 503])
    payment = api.create(pix()).body
    sandbox.pay_pix(payment["id"])  # its payment.updated waits for payment.created to get through

    wait_until(lambda: len(inbox.bodies()) == 4, timeout=6, what="the retries")
    assert inbox.actions_for(payment["id"]) == [
        "payment.created",
        "payment.created",
        "payment.created",
        "payment.updated",
    ]
    attempts = [(n["body"]["action"], n["attempt"], n["status"]) for n in sandbox.notifications]
    assert attempts == [
        ("payment.created", 1, 500),
        ("payment.created", 2, 503),
        ("payment.created", 3, 200),
        ("payment.updated", 1, 200),
    ]
    # each attempt is a fresh request, signed afresh
    assert len({r.headers["x-request-id"] for r in inbox.received}) == 4
    assert all(signature_ok(r.headers, str(payment["id"])) for r in inbox.received)


def test_a_receiver_that_never_answers_2xx_is_given_up_on(
    make_sandbox: Callable[..., MercadoPagoSandbox], inbox: Inbox
) -> None:
    sandbox = make_sandbox(webhook_url=inbox.url, retry_delays=(0.02, 0.02, 0.02))
    inbox.statuses.extend([410] * 4)
    api = Api(sandbox.base_url)
    payment = api.create(pix()).body
    sandbox.pay_pix(payment["id"])

    wait_until(lambda: len(sandbox.notifications) == 5, what="four attempts and the next notification")
    attempts = [(n["body"]["action"], n["attempt"], n["status"]) for n in sandbox.notifications]
    assert attempts == [("payment.created", i, 410) for i in (1, 2, 3, 4)] + [("payment.updated", 1, 200)]


def test_an_unreachable_receiver_is_recorded(make_sandbox: Callable[..., MercadoPagoSandbox]) -> None:
    closed = start_inbox()
    url = closed.url
    closed.server.shutdown()
    closed.server.server_close()
    sandbox = make_sandbox(webhook_url=url, retry_delays=(0.01,))
    Api(sandbox.base_url).create(card())

    wait_until(lambda: len(sandbox.notifications) == 2, what="two attempts")
    assert [(n["status"], n["error"]) for n in sandbox.notifications] == [
        (None, "ConnectionRefusedError")
    ] * 2


# -- hygiene ------------------------------------------------------------------------------------


def test_logs_carry_no_card_token_nor_e_mail(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="payments.provider.sandbox")
    email = "secret.person@example.com"
    payment = api.create(card("FUND", payer={"email": email})).body
    api.call("GET", "/v1/card_tokens/FUND")
    api.create(pix(email))
    api.get(payment["id"])
    api.call("GET", f"/v1/payments/search?external_reference=x&payer.email={email}")

    wait_until(lambda: "GET /v1/payments/search -> 200" in caplog.text)
    assert "POST /v1/payments -> 201" in caplog.text
    assert "GET /v1/card_tokens/{token} -> 200" in caplog.text
    assert "FUND" not in caplog.text
    assert "secret.person" not in caplog.text
    assert TOKEN not in caplog.text


def test_importing_the_module_starts_nothing() -> None:
    code = (
        "import threading, payments.provider.sandbox as s; "
        "assert threading.active_count() == 1, threading.enumerate(); "
        "assert 'boto3' not in __import__('sys').modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_it_runs_alone_and_prints_its_url() -> None:
    root = Path(__file__).resolve().parents[3]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "payments.provider.sandbox",
            "--port",
            "0",
            "--webhook-url",
            "http://127.0.0.1:9/x",
        ],
        stdout=subprocess.PIPE,
        cwd=root,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the sandbox printed no URL"
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        answer = Api(url).call("GET", "/v1/card_tokens/APRO")
        assert answer.status == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
