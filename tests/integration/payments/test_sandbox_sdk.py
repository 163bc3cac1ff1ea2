"""The sandbox driven by Mercado Pago's official Python SDK (3.6, a test-only dependency).

The SDK encodes what Mercado Pago's own engineers expect the API to send and answer (headers,
paths, bodies, the `{"status", "response"}` it hands back, the typed errors it builds from the
error body), so running its documented calls against the sandbox keeps the sandbox from drifting
away from the real API's shape. The SDK has no option for the host: it is pointed at the sandbox
with an `http_client` that rewrites the URL (and, once, with the name-mangled class attribute).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mercadopago  # type: ignore[import-untyped]
import pytest
from mercadopago.config import RequestOptions  # type: ignore[import-untyped]
from mercadopago.config.config import Config  # type: ignore[import-untyped]
from mercadopago.errors import (  # type: ignore[import-untyped]
    MPAuthenticationError,
    MPBadRequestError,
    MPIdempotencyError,
    MPNotFoundError,
    MPRateLimitError,
    MPServerError,
)
from mercadopago.http import HttpClient  # type: ignore[import-untyped]
from mercadopago.webhook.validator import (  # type: ignore[import-untyped]
    InvalidWebhookSignatureError,
    WebhookSignatureValidator,
)
from payments.provider.sandbox import MercadoPagoSandbox

TOKEN = "TEST-sandbox-access-token"
SECRET = "sandbox-webhook-secret"
MP_BASE = "https://api.mercadopago.com"


class SandboxHttpClient(HttpClient):  # type: ignore[misc]
    """The SDK's own HttpClient, sending to the sandbox instead of api.mercadopago.com.

    The SDK mounts its retry adapter on https:// only, so over the sandbox's http:// it does
    not retry: every answer reaches the test as the sandbox gave it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def request(
        self,
        method: str,
        url: str,
        maxretries: int | None = None,
        retry_on: list[int] | None = None,
        backoff_factor: float | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        assert url.startswith(MP_BASE), url
        target = self.base_url + url[len(MP_BASE) :]
        self.sent.append((method, target, dict(kwargs.get("headers") or {})))
        answer: dict[str, Any] = super().request(
            method, target, maxretries=maxretries, retry_on=retry_on, backoff_factor=backoff_factor, **kwargs
        )
        return answer


class Inbox:
    """Collects the sandbox's webhooks: (query, headers) of each."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, list[str]], dict[str, str]]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = parse_qs(urlsplit(self.path).query)
                inbox.received.append((query, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks/payments"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    yield box
    box.close()


@pytest.fixture
def sandbox(inbox: Inbox) -> Iterator[MercadoPagoSandbox]:
    box = MercadoPagoSandbox(webhook_url=inbox.url, hang_seconds=1.0, contingency_seconds=0.2)
    box.start()
    yield box
    box.stop()


@pytest.fixture
def client(sandbox: MercadoPagoSandbox) -> SandboxHttpClient:
    return SandboxHttpClient(sandbox.base_url)


@pytest.fixture
def sdk(client: SandboxHttpClient) -> Any:
    return mercadopago.SDK(TOKEN, http_client=client)


def card_payment(token: str = "APRO", amount: float = 100.0, reference: str | None = None) -> dict[str, Any]:
    """The body of the SDK's card example (a token from the card form)."""
    return {
        "transaction_amount": amount,
        "token": token,
        "description": "Title of what you are paying for",
        "installments": 1,
        "payment_method_id": "visa",
        "payer": {
            "email": "test_user_123@testuser.com",
            "identification": {"type": "CPF", "number": "12345678909"},
        },
        "external_reference": reference or f"order-{uuid.uuid4()}",
    }


def pix_payment(amount: float = 100.0) -> dict[str, Any]:
    """The body of the SDK's PIX example."""
    return {
        "transaction_amount": amount,
        "payment_method_id": "pix",
        "payer": {"email": "buyer@example.com"},
    }


def test_a_card_payment_is_created_and_read(sdk: Any, client: SandboxHttpClient) -> None:
    created = sdk.payment().create(card_payment("APRO", 100.0))

    assert created["status"] == 201
    assert created.is_success
    payment = created["response"]
    assert isinstance(payment["id"], int)
    assert (payment["status"], payment["status_detail"]) == ("approved", "accredited")
    assert payment["transaction_amount"] == 100
    assert payment["card"]["last_four_digits"]
    method, url, headers = client.sent[0]
    assert (method, url) == ("POST", f"{client.base_url}/v1/payments")
    assert headers["x-idempotency-key"]  # the SDK's own, one per call
    assert headers["Authorization"] == f"Bearer {TOKEN}"

    read = sdk.payment().get(payment["id"])

    assert read["status"] == 200
    assert read["response"]["id"] == payment["id"]
    assert read["response"]["status"] == "approved"


def test_a_declined_card_is_a_201_with_a_rejected_payment(sdk: Any) -> None:
    created = sdk.payment().create(card_payment("FUND"))

    assert created["status"] == 201
    assert created["response"]["status"] == "rejected"
    assert created["response"]["status_detail"] == "cc_rejected_insufficient_amount"


def test_a_pix_payment_is_created_paid_and_read(sdk: Any, sandbox: MercadoPagoSandbox) -> None:
    created = sdk.payment().create(pix_payment(100.0))

    assert created["status"] == 201
    payment = created["response"]
    assert (payment["status"], payment["status_detail"]) == ("pending", "pending_waiting_transfer")
    data = payment["point_of_interaction"]["transaction_data"]
    assert data["qr_code"]
    assert data["qr_code_base64"]
    assert data["ticket_url"]
    assert sdk.payment().get(payment["id"])["response"]["status"] == "pending"

    sandbox.pay_pix(payment["id"])

    read = sdk.payment().get(payment["id"])
    assert (read["status"], read["response"]["status"]) == (200, "approved")


def test_partial_and_full_refunds(sdk: Any) -> None:
    payment_id = sdk.payment().create(card_payment("APRO", 100.0))["response"]["id"]

    partial = sdk.refund().create(payment_id, {"amount": 10.5})

    assert partial["status"] == 201
    assert (partial["response"]["payment_id"], partial["response"]["amount"]) == (payment_id, 10.5)
    assert partial["response"]["status"] == "approved"
    after = sdk.payment().get(payment_id)["response"]
    assert (after["status"], after["status_detail"]) == ("approved", "partially_refunded")
    assert after["transaction_amount_refunded"] == 10.5

    full = sdk.refund().create(payment_id)  # no body: all that is left

    assert (full["status"], full["response"]["amount"]) == (201, 89.5)
    listed = sdk.refund().list_all(payment_id)
    assert listed["status"] == 200
    assert [r["id"] for r in listed["response"]] == [partial["response"]["id"], full["response"]["id"]]
    one = sdk.refund().get(payment_id, partial["response"]["id"])
    assert (one["status"], one["response"]["amount"]) == (200, 10.5)
    final = sdk.payment().get(payment_id)["response"]
    assert (final["status"], final["status_detail"], final["transaction_amount_refunded"]) == (
        "refunded",
        "refunded",
        100,
    )
    too_late = sdk.refund().create(payment_id)
    assert too_late["status"] == 400
    with pytest.raises(MPBadRequestError) as refused:
        too_late.raise_for_status()
    assert [c["code"] for c in refused.value.causes] == [2063]


def test_a_pending_pix_is_cancelled_with_update(sdk: Any) -> None:
    payment_id = sdk.payment().create(pix_payment())["response"]["id"]

    cancelled = sdk.payment().update(payment_id, {"status": "cancelled"})

    assert cancelled["status"] == 200
    assert (cancelled["response"]["status"], cancelled["response"]["status_detail"]) == (
        "cancelled",
        "by_collector",
    )


def test_search_and_its_auto_paging(sdk: Any) -> None:
    reference = f"order-{uuid.uuid4()}"
    ids = [sdk.payment().create(card_payment(reference=reference))["response"]["id"] for _ in range(3)]

    found = sdk.payment().search({"external_reference": reference})
    every = list(sdk.payment().search_auto_paging_iter({"external_reference": reference}, limit=2))

    assert found["status"] == 200
    assert [p["id"] for p in found["response"]["results"]] == ids
    assert found["response"]["paging"]["total"] == 3
    assert [p["id"] for p in every] == ids


def test_card_tokens(sdk: Any) -> None:
    token = sdk.card_token().get("APRO")

    assert token["status"] == 200
    assert (token["response"]["id"], token["response"]["status"]) == ("APRO", "active")
    assert token["response"]["cardholder"]["name"] == "APRO"
    unknown = sdk.card_token().get("ff8080814c11e237014c1ff593b57b4d")
    assert unknown["status"] == 404
    with pytest.raises(MPNotFoundError):
        unknown.raise_for_status()


def test_the_sdks_typed_errors_read_the_sandboxs_error_bodies(sdk: Any, client: SandboxHttpClient) -> None:
    with pytest.raises(MPAuthenticationError) as unauthorized:
        mercadopago.SDK("APP_USR-wrong", http_client=client).payment().get(1).raise_for_status()
    assert unauthorized.value.error == "unauthorized"
    assert [c["code"] for c in unauthorized.value.causes] == [5]

    with pytest.raises(MPBadRequestError) as bad_token:
        sdk.payment().create(card_payment("NOT-A-TEST-NAME")).raise_for_status()
    assert bad_token.value.message
    assert [c["code"] for c in bad_token.value.causes] == [2006]

    with pytest.raises(MPNotFoundError) as missing:
        sdk.payment().get(1).raise_for_status()
    assert [c["code"] for c in missing.value.causes] == [2000]

    with pytest.raises(MPServerError):
        sdk.payment().create(card_payment("ERROR")).raise_for_status()


def test_a_retry_with_the_callers_own_key_recovers_from_the_faults(
    sdk: Any, sandbox: MercadoPagoSandbox
) -> None:
    body = card_payment("RATE_LIMIT")
    options = RequestOptions(custom_headers={"x-idempotency-key": str(uuid.uuid4())})

    limited = sdk.payment().create(body, options)
    assert limited["status"] == 429
    with pytest.raises(MPRateLimitError) as rate:
        limited.raise_for_status()
    assert rate.value.error == "too_many_requests"

    retried = sdk.payment().create(body, options)
    assert (retried["status"], retried["response"]["status"]) == (201, "approved")
    assert len(sandbox.payments_for(body["external_reference"])) == 1

    conflict = sdk.payment().create({**body, "transaction_amount": 1.0}, options)
    assert conflict["status"] == 409
    with pytest.raises(MPIdempotencyError):
        conflict.raise_for_status()


def test_the_sdks_validator_accepts_the_sandboxs_webhook_signature(sdk: Any, inbox: Inbox) -> None:
    payment_id = sdk.payment().create(card_payment())["response"]["id"]
    deadline = time.monotonic() + 5
    while not inbox.received and time.monotonic() < deadline:
        time.sleep(0.01)

    query, headers = inbox.received[0]
    assert query["data.id"] == [str(payment_id)]
    WebhookSignatureValidator.validate(
        headers["x-signature"], headers["x-request-id"], query["data.id"][0], SECRET, tolerance_seconds=300
    )
    with pytest.raises(InvalidWebhookSignatureError):
        WebhookSignatureValidator.validate(
            headers["x-signature"], headers["x-request-id"], query["data.id"][0], "another secret"
        )


def test_the_name_mangled_base_url_points_the_default_client_at_the_sandbox(
    sandbox: MercadoPagoSandbox,
) -> None:
    original = Config._Config__api_base_url
    Config._Config__api_base_url = sandbox.base_url
    try:
        sdk = mercadopago.SDK(TOKEN)  # the SDK's default HttpClient
        created = sdk.payment().create(card_payment())
        read = sdk.payment().get(created["response"]["id"])
    finally:
        Config._Config__api_base_url = original

    assert created["status"] == 201
    assert (read["status"], read["response"]["status"]) == (200, "approved")
    assert Config().api_base_url == MP_BASE
