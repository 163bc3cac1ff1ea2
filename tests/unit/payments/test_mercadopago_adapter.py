"""The Mercado Pago adapter against a stub transport: the exact requests, parsing, error mapping.

No network: `FakeHttp` has OutboundHttp's `request(...)` signature, records what it was asked and
answers with HttpResponses built here. One test at the end drives the real OutboundHttp against a
loopback server, to prove the stub's view of a request is what goes on the wire.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from payments.provider.mercadopago import (
    GatewayPermanentError,
    GatewayRetryableError,
    MercadoPagoGateway,
    gateway_from_settings,
    to_cents,
    to_decimal,
)
from payments.provider.port import CardCharge, GatewayStatus, PaymentGateway, PixCharge

from tarefa import PermanentJobError, RetryableJobError
from tarefa.outbound import HttpResponse, OutboundHttp, OutboundRetryableError, Timeout

ACCESS_TOKEN = "APP_USR-1234567890123456-010203-abcdefabcdefabcdefabcdefabcdef12-987654321"
CARD_TOKEN = "ff8080814c11e237014c1ff593b57b4d"
EMAIL = "maria.silva@example.com"
BASE = "https://api.mercadopago.com"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
NO_RESULTS: dict[str, Any] = {"paging": {"total": 0, "limit": 10, "offset": 0}, "results": []}


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    json: Any
    timeout: Timeout | None
    raise_for_status: bool

    @property
    def payload(self) -> Any:
        assert self.body is not None
        return json.loads(self.body, parse_float=Decimal)


class FakeHttp:
    """Answers each request with the next queued response (or raises the next queued error)."""

    def __init__(self, *answers: HttpResponse | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[Sent] = []

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        timeout: Timeout | None = None,
        raise_for_status: bool = True,
    ) -> HttpResponse:
        raw = body.encode() if isinstance(body, str) else body
        self.sent.append(Sent(method, url, dict(headers or {}), raw, json, timeout, raise_for_status))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> Sent:
        return self.sent[-1]


def reply(status: int, payload: Any = None, headers: Mapping[str, str] | None = None) -> HttpResponse:
    if isinstance(payload, bytes):
        body = payload
    elif isinstance(payload, str):
        body = payload.encode()
    else:
        body = json.dumps(payload).encode() if payload is not None else b""
    return HttpResponse(
        status,
        {"content-type": "application/json", **{k.lower(): v for k, v in (headers or {}).items()}},
        body,
        f"{BASE}/v1/payments",
    )


def payment_json(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": 17014025134,
        "status": "approved",
        "status_detail": "accredited",
        "payment_method_id": "visa",
        "payment_type_id": "credit_card",
        "currency_id": "BRL",
        "transaction_amount": 58.80,
        "transaction_amount_refunded": 0,
        "external_reference": "pay_01",
        "payer": {"email": EMAIL},
        "refunds": [],
    }
    data.update(overrides)
    return data


def pix_json(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        id=555,
        status="pending",
        status_detail="pending_waiting_transfer",
        payment_method_id="pix",
        payment_type_id="bank_transfer",
        transaction_amount=25,
        date_of_expiration="2026-12-01T12:30:00.000+00:00",
        point_of_interaction={
            "transaction_data": {
                "qr_code": "00020126580014br.gov.bcb.pix0136abc",
                "qr_code_base64": "iVBORw0KGgo=",
                "ticket_url": "https://www.mercadopago.com.br/payments/555/ticket",
            }
        },
    )
    fields.update(overrides)
    return payment_json(**fields)


def card(**overrides: Any) -> CardCharge:
    fields: dict[str, Any] = {
        "amount_cents": 1234,
        "card_token": CARD_TOKEN,
        "payer_email": EMAIL,
        "description": "Plano mensal",
        "external_reference": "pay_01",
        "notification_url": "https://hooks.example.com/mp?source_news=webhooks",
        "installments": 3,
        "payment_method_id": "master",
    }
    fields.update(overrides)
    return CardCharge(**fields)


def gateway(http: FakeHttp, **kwargs: Any) -> MercadoPagoGateway:
    return MercadoPagoGateway(http, ACCESS_TOKEN, clock=lambda: NOW, **kwargs)


def test_the_adapter_is_a_payment_gateway() -> None:
    port: PaymentGateway = gateway(FakeHttp())
    assert port is not None


# -- money --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (1, "0.01"),
        (10, "0.10"),
        (100, "1.00"),
        (1234, "12.34"),
        (123456789, "1234567.89"),
        (900719925474099312, "9007199254740993.12"),
    ],
)
def test_cents_become_exact_decimals(cents: int, text: str) -> None:
    assert format(to_decimal(cents), "f") == text
    assert to_cents(to_decimal(cents)) == cents


def test_amounts_read_back_exactly() -> None:
    assert to_cents(Decimal("58.80")) == 5880
    assert to_cents(Decimal("0.1")) == 10
    assert to_cents(25) == 2500
    assert to_cents("12.34") == 1234


# -- the requests -------------------------------------------------------------------------------


def test_charge_card_sends_mercado_pagos_create_payment() -> None:
    http = FakeHttp(reply(201, payment_json(transaction_amount=12.34)))
    payment = gateway(http).charge_card(card(), "charge-pay_01")
    sent = http.last
    assert (sent.method, sent.url) == ("POST", f"{BASE}/v1/payments")
    assert sent.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert sent.headers["X-Idempotency-Key"] == "charge-pay_01"
    assert sent.headers["Content-Type"] == "application/json"
    assert "X-Tarefa-Read" not in sent.headers
    assert sent.raise_for_status is False
    assert sent.timeout == (3.0, 10.0)
    assert sent.json is None  # the body is encoded by the adapter, Decimals exact
    assert b'"transaction_amount":12.34' in (sent.body or b"")
    assert sent.payload == {
        "transaction_amount": Decimal("12.34"),
        "token": CARD_TOKEN,
        "description": "Plano mensal",
        "installments": 3,
        "payment_method_id": "master",
        "payer": {"email": EMAIL},
        "external_reference": "pay_01",
        "notification_url": "https://hooks.example.com/mp?source_news=webhooks",
    }
    assert payment.gateway_id == "17014025134"
    assert payment.status is GatewayStatus.APPROVED
    assert payment.amount_cents == 1234
    assert payment.method == "card"


def test_optional_fields_are_left_out_when_empty() -> None:
    http = FakeHttp(reply(201, payment_json()))
    gateway(http).charge_card(card(description="", notification_url=None), "k")
    assert "description" not in http.last.payload
    assert "notification_url" not in http.last.payload


@pytest.mark.parametrize(("cents", "raw"), [(1, b"0.01"), (1000, b"10.00"), (99999, b"999.99")])
def test_amount_on_the_wire(cents: int, raw: bytes) -> None:
    http = FakeHttp(reply(201, payment_json()))
    gateway(http).charge_card(card(amount_cents=cents), "k")
    assert b'"transaction_amount":' + raw + b"," in (http.last.body or b"")


def test_declined_card_is_a_rejected_payment_not_an_error() -> None:
    http = FakeHttp(
        reply(201, payment_json(status="rejected", status_detail="cc_rejected_insufficient_amount"))
    )
    payment = gateway(http).charge_card(card(), "k")
    assert payment.status is GatewayStatus.REJECTED
    assert payment.status_detail == "cc_rejected_insufficient_amount"


def test_create_pix_sends_pix_with_an_expiry_and_reads_its_code() -> None:
    http = FakeHttp(reply(201, pix_json()))
    charge = PixCharge(
        amount_cents=2500,
        payer_email=EMAIL,
        description="Pedido 42",
        external_reference="pay_02",
        notification_url="https://hooks.example.com/mp",
        expires_in_seconds=1800,
    )
    payment = gateway(http).create_pix(charge, "pix-pay_02")
    sent = http.last
    assert (sent.method, sent.url) == ("POST", f"{BASE}/v1/payments")
    assert sent.headers["X-Idempotency-Key"] == "pix-pay_02"
    assert sent.payload == {
        "transaction_amount": Decimal("25.00"),
        "payment_method_id": "pix",
        "description": "Pedido 42",
        "payer": {"email": EMAIL},
        "external_reference": "pay_02",
        "notification_url": "https://hooks.example.com/mp",
        "date_of_expiration": "2026-12-01T12:30:00.000+00:00",
    }
    expiry = datetime.fromisoformat(sent.payload["date_of_expiration"])
    assert expiry - NOW == timedelta(seconds=1800) and expiry.utcoffset() is not None
    assert payment.method == "pix"
    assert payment.status is GatewayStatus.PENDING
    assert payment.status_detail == "pending_waiting_transfer"
    assert payment.pix is not None
    assert payment.pix.qr_code == "00020126580014br.gov.bcb.pix0136abc"
    assert payment.pix.qr_code_base64 == "iVBORw0KGgo="
    assert payment.pix.ticket_url.endswith("/ticket")
    assert payment.pix.expires_at == "2026-12-01T12:30:00.000+00:00"


@pytest.mark.parametrize(("purpose", "marked"), [("poll", True), ("webhook", False), ("read", False)])
def test_get_payment_marks_only_polls(purpose: Any, marked: bool) -> None:
    http = FakeHttp(reply(200, payment_json()))
    gateway(http).get_payment("17014025134", purpose)
    sent = http.last
    assert (sent.method, sent.url) == ("GET", f"{BASE}/v1/payments/17014025134")
    assert sent.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "X-Idempotency-Key" not in sent.headers
    assert sent.body is None
    assert ("X-Tarefa-Read" in sent.headers) is marked
    if marked:
        assert sent.headers["X-Tarefa-Read"] == "poll"


def test_get_payment_defaults_to_a_plain_read() -> None:
    http = FakeHttp(reply(200, payment_json()))
    gateway(http).get_payment("1")
    assert "X-Tarefa-Read" not in http.last.headers


def test_cancel_puts_cancelled_with_the_key() -> None:
    http = FakeHttp(reply(200, pix_json(status="cancelled", status_detail="by_collector")))
    payment = gateway(http).cancel("555", "cancel-pay_02")
    sent = http.last
    assert (sent.method, sent.url) == ("PUT", f"{BASE}/v1/payments/555")
    assert sent.headers["X-Idempotency-Key"] == "cancel-pay_02"
    assert sent.payload == {"status": "cancelled"}
    assert payment.status is GatewayStatus.CANCELLED


def test_full_refund_sends_no_body() -> None:
    http = FakeHttp(
        reply(201, {"id": 1091618291, "payment_id": 17014025134, "amount": 58.80, "status": "approved"})
    )
    refund = gateway(http).refund("17014025134", None, "refund-1")
    sent = http.last
    assert (sent.method, sent.url) == ("POST", f"{BASE}/v1/payments/17014025134/refunds")
    assert sent.headers["X-Idempotency-Key"] == "refund-1"
    assert sent.body is None
    assert (refund.gateway_id, refund.amount_cents, refund.status) == ("1091618291", 5880, "approved")


def test_partial_refund_sends_the_amount() -> None:
    http = FakeHttp(reply(201, {"id": 7, "amount": 5.5, "status": "approved"}))
    refund = gateway(http).refund("17014025134", 550, "refund-2")
    assert http.last.body == b'{"amount":5.50}'
    assert refund.amount_cents == 550


@pytest.mark.parametrize("amount", [0, -100])
def test_refund_amount_must_be_positive(amount: int) -> None:
    http = FakeHttp()
    with pytest.raises(ValueError):
        gateway(http).refund("1", amount, "k")
    assert http.sent == []


@pytest.mark.parametrize("key", ["", "a\r\nX-Evil: 1", "k" * 257])
def test_idempotency_key_is_required_and_sane(key: str) -> None:
    http = FakeHttp()
    with pytest.raises(ValueError):
        gateway(http).charge_card(card(), key)
    assert http.sent == []


def test_ids_are_one_percent_encoded_path_segment() -> None:
    http = FakeHttp(reply(200, payment_json()))
    gateway(http).get_payment("1/../../v1/x?y=1")
    assert http.last.url == f"{BASE}/v1/payments/1%2F..%2F..%2Fv1%2Fx%3Fy%3D1"
    with pytest.raises(ValueError):
        gateway(http).get_payment("")


def test_base_url_and_timeout_are_used() -> None:
    http = FakeHttp(reply(200, payment_json()))
    MercadoPagoGateway(http, ACCESS_TOKEN, "http://127.0.0.1:8080/", timeout=1.5).get_payment("9")
    assert http.last.url == "http://127.0.0.1:8080/v1/payments/9"
    assert http.last.timeout == 1.5


# -- parsing ------------------------------------------------------------------------------------


def test_payment_with_refunds_is_parsed() -> None:
    data = payment_json(
        status="approved",
        status_detail="partially_refunded",
        transaction_amount=1234567.89,
        transaction_amount_refunded=0.3,
        refunds=[
            {"id": 1, "amount": 0.1, "status": "approved"},
            {"id": "2", "amount": 0.2, "status": "approved"},
        ],
    )
    payment = gateway(FakeHttp(reply(200, data))).get_payment("17014025134")
    assert payment.amount_cents == 123456789
    assert payment.refunded_cents == 30
    assert [(r.gateway_id, r.amount_cents) for r in payment.refunds] == [("1", 10), ("2", 20)]
    assert payment.external_reference == "pay_01"
    assert payment.currency == "BRL"
    assert payment.pix is None


def test_missing_optional_fields_take_defaults() -> None:
    data = {"id": 9, "status": "in_process", "transaction_amount": 10, "payment_method_id": "visa"}
    payment = gateway(FakeHttp(reply(200, data))).get_payment("9")
    assert payment.status is GatewayStatus.IN_PROCESS
    assert (payment.status_detail, payment.refunded_cents, payment.refunds) == ("", 0, ())
    assert payment.external_reference is None


@pytest.mark.parametrize(
    "answer",
    [
        reply(200, "<html>maintenance</html>"),
        reply(200, b"\xff\xfe"),
        reply(200, [1, 2]),
        reply(200, {"id": 1}),
        reply(200, payment_json(status="teleported")),
        reply(200, payment_json(transaction_amount=12.345)),
        reply(200, payment_json(transaction_amount="lots")),
        reply(200, payment_json(transaction_amount=None)),
        reply(200, payment_json(refunds="none")),
        reply(200, payment_json(id=None)),
        reply(200, '{"id": 1, "status": "approved", "transaction_amount": NaN}'),
        reply(302, ""),
    ],
)
def test_an_unexpected_answer_is_retryable(answer: HttpResponse) -> None:
    with pytest.raises(GatewayRetryableError) as caught:
        gateway(FakeHttp(answer)).get_payment("1")
    assert caught.value.code == "GATEWAY_BAD_RESPONSE"
    assert isinstance(caught.value, RetryableJobError)
    assert "GET /v1/payments/{id}" in str(caught.value)


# -- the error table ----------------------------------------------------------------------------


def mp_error(status: int, *codes: int | str, error: str = "bad_request") -> dict[str, Any]:
    return {
        "message": "something went wrong",
        "error": error,
        "status": status,
        "cause": [{"code": code, "description": "details"} for code in codes],
    }


@pytest.mark.parametrize(
    ("status", "payload", "headers", "code", "retry_after"),
    [
        (429, mp_error(429, error="too_many_requests"), {"Retry-After": "7"}, "GATEWAY_RATE_LIMITED", 7.0),
        (429, None, {}, "GATEWAY_RATE_LIMITED", None),
        (500, mp_error(500, error="internal_error"), {}, "GATEWAY_UNAVAILABLE", None),
        (502, "<html>bad gateway</html>", {}, "GATEWAY_UNAVAILABLE", None),
        (503, None, {"Retry-After": "30"}, "GATEWAY_UNAVAILABLE", 30.0),
        (409, mp_error(409, error="conflict"), {}, "GATEWAY_BUSY", None),
        (423, mp_error(423, error="locked"), {"Retry-After": "2"}, "GATEWAY_BUSY", 2.0),
    ],
)
def test_retryable_statuses(
    status: int, payload: Any, headers: dict[str, str], code: str, retry_after: float | None
) -> None:
    http = FakeHttp(reply(status, payload, headers), reply(200, NO_RESULTS))  # 409: a search, empty
    with pytest.raises(GatewayRetryableError) as caught:
        gateway(http).charge_card(card(), "k")
    error = caught.value
    assert isinstance(error, RetryableJobError)
    assert (error.code, error.status, error.retry_after) == (code, status, retry_after)
    assert str(error).startswith(f"POST /v1/payments answered {status}")


@pytest.mark.parametrize(
    ("status", "payload", "code"),
    [
        (401, mp_error(401, 5, error="unauthorized"), "GATEWAY_AUTH"),
        (403, mp_error(403, error="forbidden"), "GATEWAY_AUTH"),
        (404, mp_error(404, 2000, error="not_found"), "GATEWAY_NOT_FOUND"),
        (400, mp_error(400, 2006), "CARD_TOKEN_INVALID"),
        (400, mp_error(400, 2062), "CARD_TOKEN_INVALID"),
        (400, mp_error(400, 3), "CARD_TOKEN_INVALID"),
        (400, mp_error(400, "2006"), "CARD_TOKEN_INVALID"),
        (400, mp_error(400, 4020, 2062), "CARD_TOKEN_INVALID"),
        (400, mp_error(400, 2063), "GATEWAY_INVALID_STATE"),
        (400, mp_error(400, 2018), "GATEWAY_INVALID_STATE"),
        (400, mp_error(400, 4040), "GATEWAY_REJECTED_REQUEST"),
        (400, mp_error(400, 2067), "GATEWAY_REJECTED_REQUEST"),
        (400, None, "GATEWAY_REJECTED_REQUEST"),
        (400, "not json", "GATEWAY_REJECTED_REQUEST"),
        (422, mp_error(422, 4292), "GATEWAY_REJECTED_REQUEST"),
        (402, mp_error(402), "GATEWAY_REJECTED_REQUEST"),
        (404, mp_error(404, 2006), "GATEWAY_NOT_FOUND"),  # the status decides before the cause
    ],
)
def test_permanent_statuses(status: int, payload: Any, code: str) -> None:
    http = FakeHttp(reply(status, payload))
    with pytest.raises(GatewayPermanentError) as caught:
        gateway(http).charge_card(card(), "k")
    error = caught.value
    assert isinstance(error, PermanentJobError)
    assert (error.code, error.status) == (code, status)
    assert str(error).startswith(f"POST /v1/payments answered {status}")


def test_the_message_names_mercado_pagos_codes() -> None:
    http = FakeHttp(reply(400, mp_error(400, 2063)))
    with pytest.raises(GatewayPermanentError) as caught:
        gateway(http).refund("17014025134", None, "k")
    assert str(caught.value) == "POST /v1/payments/{id}/refunds answered 400 (error bad_request, cause 2063)"
    assert caught.value.causes == ("2063",)


@pytest.mark.parametrize("call", ["get", "cancel", "refund"])
def test_every_call_maps_errors(call: str) -> None:
    http = FakeHttp(reply(404, mp_error(404, 2000)))
    gw = gateway(http)
    with pytest.raises(GatewayPermanentError) as caught:
        if call == "get":
            gw.get_payment("1")
        elif call == "cancel":
            gw.cancel("1", "k")
        else:
            gw.refund("1", 100, "k")
    assert caught.value.code == "GATEWAY_NOT_FOUND"


# -- a 409 on create: the key is bound to an earlier attempt --------------------------------------


def search_json(*payments: dict[str, Any]) -> dict[str, Any]:
    return {"paging": {"total": len(payments), "limit": 10, "offset": 0}, "results": list(payments)}


def pix_charge() -> PixCharge:
    return PixCharge(amount_cents=2500, payer_email=EMAIL, external_reference="pay_02/0")


def test_a_409_on_create_finds_the_charge_by_its_external_reference() -> None:
    http = FakeHttp(
        reply(409, mp_error(409, error="conflict")),
        reply(200, search_json(pix_json(external_reference="pay_02/0"))),
    )
    payment = gateway(http).create_pix(pix_charge(), "pix-pay_02-0")
    assert payment.gateway_id == "555" and payment.method == "pix"
    search = http.last
    assert search.method == "GET"
    assert search.url.startswith(f"{BASE}/v1/payments/search?")
    assert "external_reference=pay_02%2F0" in search.url
    assert "X-Idempotency-Key" not in search.headers
    assert "X-Tarefa-Read" not in search.headers


@pytest.mark.parametrize(
    "search",
    [
        reply(200, NO_RESULTS),
        reply(200, search_json(pix_json(external_reference="pay_99/0"))),  # not ours
        reply(200, search_json(payment_json(external_reference="pay_02/0"))),  # a card, not a PIX
        reply(200, {"results": "none"}),
        reply(500, mp_error(500)),
        reply(404, mp_error(404)),
    ],
)
def test_a_409_stands_when_the_search_finds_nothing(search: HttpResponse) -> None:
    http = FakeHttp(reply(409, mp_error(409, error="conflict")), search)
    with pytest.raises(GatewayRetryableError) as caught:
        gateway(http).create_pix(pix_charge(), "k")
    assert (caught.value.status, caught.value.code) == (409, "GATEWAY_BUSY")


def test_only_a_409_searches() -> None:
    http = FakeHttp(reply(423, mp_error(423)))
    with pytest.raises(GatewayRetryableError):
        gateway(http).create_pix(pix_charge(), "k")
    assert len(http.sent) == 1


def test_transport_failures_pass_through_as_retryable() -> None:
    timeout = OutboundRetryableError("POST api.mercadopago.com: timed out")
    http = FakeHttp(timeout)
    with pytest.raises(OutboundRetryableError) as caught:
        gateway(http).charge_card(card(), "k")
    assert caught.value is timeout


# -- no personal data, no secrets ---------------------------------------------------------------


def echoing_error(status: int) -> dict[str, Any]:
    """An error body that repeats everything we sent: none of it may reach a message or a log."""
    return {
        "message": f"invalid token {CARD_TOKEN} for {EMAIL} with {ACCESS_TOKEN}",
        "error": f"payer {EMAIL}",
        "status": status,
        "cause": [
            {"code": EMAIL, "description": f"token {CARD_TOKEN}"},
            {"code": f"{CARD_TOKEN} {ACCESS_TOKEN}", "description": ACCESS_TOKEN},
            {"code": 2006, "description": EMAIL},
        ],
    }


@pytest.mark.parametrize("status", [400, 401, 404, 422, 429, 500, 409])
def test_errors_never_carry_the_token_the_email_or_a_body(
    status: int, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    http = FakeHttp(reply(status, echoing_error(status)), reply(200, NO_RESULTS))
    with pytest.raises((GatewayPermanentError, GatewayRetryableError)) as caught:
        gateway(http).charge_card(card(), "k")
    texts = [str(caught.value), repr(caught.value), capsys.readouterr().out, caplog.text]
    for text in texts:
        for secret in (CARD_TOKEN, EMAIL, ACCESS_TOKEN, "maria", "invalid token", "details"):
            assert secret not in text
    assert "POST /v1/payments" in str(caught.value)


def test_a_bad_response_never_carries_the_body(capsys: pytest.CaptureFixture[str]) -> None:
    http = FakeHttp(reply(200, {"payer": {"email": EMAIL}, "token": CARD_TOKEN}))
    with pytest.raises(GatewayRetryableError) as caught:
        gateway(http).charge_card(card(), "k")
    for text in (str(caught.value), capsys.readouterr().out):
        assert EMAIL not in text and CARD_TOKEN not in text


def test_repr_hides_the_access_token() -> None:
    assert ACCESS_TOKEN not in repr(gateway(FakeHttp()))


# -- check_card ---------------------------------------------------------------------------------


def token_json(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": CARD_TOKEN,
        "first_six_digits": "503143",
        "last_four_digits": "6351",
        "expiration_month": 11,
        "expiration_year": 2030,
        "date_created": "2026-12-01T08:30:00.000-03:00",
        "date_due": "2026-12-08T08:30:00.000-03:00",
        "luhn_validation": True,
        "status": "active",
        "cardholder": {"name": "APRO"},
    }
    data.update(overrides)
    return data


def test_check_card_reads_the_token() -> None:
    http = FakeHttp(reply(200, token_json()))
    check = gateway(http).check_card(CARD_TOKEN)
    sent = http.last
    assert (sent.method, sent.url) == ("GET", f"{BASE}/v1/card_tokens/{CARD_TOKEN}")
    assert sent.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "X-Idempotency-Key" not in sent.headers
    assert check.valid and check.reason == ""
    assert (check.last_four, check.expiration) == ("6351", "11/2030")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (reply(404, mp_error(404, 2006, error="not_found")), "not_found"),
        (reply(400, mp_error(400, 2062)), "invalid"),
        (reply(200, token_json(status="used")), "used"),
        (reply(200, token_json(date_due="2026-12-01T08:59:59.000-03:00")), "expired"),
        (reply(200, token_json(expiration_month=11, expiration_year=2026)), "card_expired"),
    ],
)
def test_check_card_reports_an_unusable_token(answer: HttpResponse, reason: str) -> None:
    check = gateway(FakeHttp(answer)).check_card(CARD_TOKEN)
    assert not check.valid
    assert check.reason == reason


def test_check_card_still_raises_other_failures() -> None:
    with pytest.raises(GatewayPermanentError) as caught:
        gateway(FakeHttp(reply(401, mp_error(401)))).check_card(CARD_TOKEN)
    assert caught.value.code == "GATEWAY_AUTH"
    with pytest.raises(GatewayRetryableError):
        gateway(FakeHttp(reply(503))).check_card(CARD_TOKEN)


# -- settings -----------------------------------------------------------------------------------


def test_gateway_from_settings() -> None:
    http = FakeHttp(reply(200, payment_json()), reply(200, payment_json()))
    gateway_from_settings(http, {"accessToken": ACCESS_TOKEN}).get_payment("1")
    assert http.last.url == f"{BASE}/v1/payments/1"
    assert http.last.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    gateway_from_settings(http, {"accessToken": "TEST-x", "baseUrl": "http://10.0.0.5:9000"}).get_payment("2")
    assert http.last.url == "http://10.0.0.5:9000/v1/payments/2"
    assert http.last.headers["Authorization"] == "Bearer TEST-x"


@pytest.mark.parametrize(
    "secret", [{}, {"accessToken": ""}, {"accessToken": 5}, {"accessToken": "x", "baseUrl": 3}]
)
def test_gateway_from_settings_refuses_a_bad_secret(secret: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        gateway_from_settings(FakeHttp(), secret)
    assert ACCESS_TOKEN not in str(caught.value)


def test_an_empty_access_token_is_refused() -> None:
    with pytest.raises(ValueError):
        MercadoPagoGateway(FakeHttp(), " ")


# -- the real client, over loopback -------------------------------------------------------------


@dataclass
class Seen:
    method: str = ""
    path: str = ""
    headers: dict[str, str] | None = None
    body: bytes = b""


@pytest.fixture
def loopback() -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.method, seen.path = self.command, self.path
            seen.headers = {k.lower(): v for k, v in self.headers.items()}
            seen.body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            out = json.dumps(payment_json(transaction_amount=12.34)).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_real_outbound_client_sends_the_same_request(loopback: tuple[str, Seen]) -> None:
    base_url, seen = loopback
    gw = MercadoPagoGateway(OutboundHttp(allow=["127.0.0.1"]), ACCESS_TOKEN, base_url, timeout=(2.0, 5.0))
    payment = gw.charge_card(card(), "charge-pay_01")
    assert (seen.method, seen.path) == ("POST", "/v1/payments")
    assert seen.headers is not None
    assert seen.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert seen.headers["x-idempotency-key"] == "charge-pay_01"
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body, parse_float=Decimal)["transaction_amount"] == Decimal("12.34")
    assert payment.amount_cents == 1234
