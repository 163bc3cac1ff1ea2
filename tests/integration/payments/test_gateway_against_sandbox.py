"""The real Mercado Pago adapter against the sandbox, over real HTTP through OutboundHttp.

What the unit tests check with a stub, checked here end to end: the sandbox judges the adapter's
requests (bearer token, idempotency keys, exact decimal amounts, the poll header) as Mercado Pago
would, and the adapter reads the sandbox's answers and faults into the port's terms.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from payments.provider.mercadopago import GatewayPermanentError, GatewayRetryableError, MercadoPagoGateway
from payments.provider.port import CardCharge, GatewayPayment, GatewayStatus, PixCharge
from payments.provider.sandbox import MercadoPagoSandbox

from tarefa import RetryableJobError
from tarefa.outbound import OutboundHttp

TOKEN = "TEST-adapter-access-token"
SECRET = "adapter-webhook-secret"
HANG_SECONDS = 1.0  # the sandbox's TIMEOUT card answers this late...
READ_TIMEOUT = 0.3  # ...well past this adapter's read timeout
CONTINGENCY_SECONDS = 0.2


@pytest.fixture
def sandbox() -> Iterator[MercadoPagoSandbox]:
    box = MercadoPagoSandbox(
        access_token=TOKEN,
        webhook_secret=SECRET,
        hang_seconds=HANG_SECONDS,
        contingency_seconds=CONTINGENCY_SECONDS,
    )
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def make_gateway(sandbox: MercadoPagoSandbox) -> Callable[..., MercadoPagoGateway]:
    def make(
        timeout: float | tuple[float, float] = (2.0, 5.0),
        token: str = TOKEN,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> MercadoPagoGateway:
        http = OutboundHttp(allow=["127.0.0.1"])
        return MercadoPagoGateway(http, token, sandbox.base_url, timeout, clock=clock)

    return make


@pytest.fixture
def gateway(make_gateway: Callable[..., MercadoPagoGateway]) -> MercadoPagoGateway:
    return make_gateway()


def reference() -> str:
    return f"pay_{uuid.uuid4().hex[:12]}/0"


def card(token: str = "APRO", amount_cents: int = 1234, ref: str | None = None) -> CardCharge:
    return CardCharge(
        amount_cents=amount_cents,
        card_token=token,
        payer_email="maria@example.com",
        description="Plano mensal",
        external_reference=ref or reference(),
    )


def pix(email: str = "maria@example.com", amount_cents: int = 1010, ref: str | None = None) -> PixCharge:
    return PixCharge(
        amount_cents=amount_cents,
        payer_email=email,
        description="Pedido",
        external_reference=ref or reference(),
        expires_in_seconds=1800,
    )


def cents_at(sandbox: MercadoPagoSandbox, ref: str) -> list[int]:
    """The amounts the sandbox holds for `ref`, in cents (read back exactly from its JSON)."""
    return [int(Decimal(str(p["transaction_amount"])) * 100) for p in sandbox.payments_for(ref)]


# -- cards --------------------------------------------------------------------------------------


def test_an_approved_card(gateway: MercadoPagoGateway, sandbox: MercadoPagoSandbox) -> None:
    charge = card("APRO", 1234)
    payment = gateway.charge_card(charge, "charge-1")
    assert (payment.status, payment.status_detail) == (GatewayStatus.APPROVED, "accredited")
    assert (payment.method, payment.amount_cents, payment.currency) == ("card", 1234, "BRL")
    assert payment.external_reference == charge.external_reference
    assert cents_at(sandbox, charge.external_reference) == [1234]
    assert gateway.get_payment(payment.gateway_id) == payment


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("OTHE", "cc_rejected_other_reason"),
        ("FUND", "cc_rejected_insufficient_amount"),
        ("SECU", "cc_rejected_bad_filled_security_code"),
        ("EXPI", "cc_rejected_bad_filled_date"),
        ("FORM", "cc_rejected_bad_filled_other"),
        ("CALL", "cc_rejected_call_for_authorize"),
    ],
)
def test_a_declined_card_is_a_rejected_payment(gateway: MercadoPagoGateway, token: str, detail: str) -> None:
    payment = gateway.charge_card(card(token), f"charge-{token}")
    assert (payment.status, payment.status_detail) == (GatewayStatus.REJECTED, detail)


def test_a_contingency_card_settles_later(gateway: MercadoPagoGateway) -> None:
    payment = gateway.charge_card(card("CONT"), "charge-cont")
    assert (payment.status, payment.status_detail) == (GatewayStatus.IN_PROCESS, "pending_contingency")
    deadline = time.monotonic() + 5
    while (seen := gateway.get_payment(payment.gateway_id)).status is GatewayStatus.IN_PROCESS:
        assert time.monotonic() < deadline, "the CONT payment never settled"
        time.sleep(0.05)
    assert seen.status is GatewayStatus.APPROVED


def test_an_unknown_card_token_is_permanent(gateway: MercadoPagoGateway) -> None:
    with pytest.raises(GatewayPermanentError) as caught:
        gateway.charge_card(card("NOPE"), "charge-nope")
    assert caught.value.code == "CARD_TOKEN_INVALID"
    assert caught.value.causes == ("2006",)


def test_amounts_arrive_exact(gateway: MercadoPagoGateway, sandbox: MercadoPagoSandbox) -> None:
    for cents in (1, 10, 1001, 123456789):
        charge = card("APRO", cents)
        assert gateway.charge_card(charge, f"charge-{cents}").amount_cents == cents
        assert cents_at(sandbox, charge.external_reference) == [cents]


# -- the sandbox's faults -----------------------------------------------------------------------


def test_a_timeout_retried_with_the_same_key_charges_once(
    make_gateway: Callable[..., MercadoPagoGateway], sandbox: MercadoPagoSandbox
) -> None:
    gateway = make_gateway(timeout=(2.0, READ_TIMEOUT))
    charge = card("TIMEOUT")
    started = time.monotonic()
    with pytest.raises(RetryableJobError):
        gateway.charge_card(charge, "charge-timeout")
    assert time.monotonic() - started < HANG_SECONDS  # the adapter gave up; it did not wait
    payment = gateway.charge_card(charge, "charge-timeout")  # the job's retry: same step, same key
    assert payment.status is GatewayStatus.APPROVED
    assert len(sandbox.payments_for(charge.external_reference)) == 1


def test_rate_limit_is_retryable_after_its_retry_after(
    gateway: MercadoPagoGateway, sandbox: MercadoPagoSandbox
) -> None:
    charge = card("RATE_LIMIT")
    with pytest.raises(GatewayRetryableError) as caught:
        gateway.charge_card(charge, "charge-rl")
    assert (caught.value.code, caught.value.status, caught.value.retry_after) == (
        "GATEWAY_RATE_LIMITED",
        429,
        1.0,
    )
    assert sandbox.payments_for(charge.external_reference) == []
    assert gateway.charge_card(charge, "charge-rl").status is GatewayStatus.APPROVED
    assert len(sandbox.payments_for(charge.external_reference)) == 1


def test_server_errors_are_retryable(gateway: MercadoPagoGateway, sandbox: MercadoPagoSandbox) -> None:
    charge = card("ERROR")
    for _ in range(2):
        with pytest.raises(GatewayRetryableError) as caught:
            gateway.charge_card(charge, "charge-error")
        assert (caught.value.code, caught.value.status) == ("GATEWAY_UNAVAILABLE", 500)
    assert gateway.charge_card(charge, "charge-error").status is GatewayStatus.APPROVED
    assert len(sandbox.payments_for(charge.external_reference)) == 1


# -- PIX ----------------------------------------------------------------------------------------


def test_a_pix_charge_is_pending_with_its_code(
    gateway: MercadoPagoGateway, sandbox: MercadoPagoSandbox
) -> None:
    charge = pix(amount_cents=1010)
    before = datetime.now(UTC)
    payment = gateway.create_pix(charge, "pix-1")
    assert (payment.status, payment.status_detail) == (GatewayStatus.PENDING, "pending_waiting_transfer")
    assert (payment.method, payment.amount_cents) == ("pix", 1010)
    assert payment.pix is not None
    assert payment.pix.qr_code.startswith("000201")
    assert payment.pix.qr_code_base64 and payment.pix.ticket_url
    assert payment.pix.expires_at is not None
    expires = datetime.fromisoformat(payment.pix.expires_at)
    assert timedelta(seconds=1790) < expires - before < timedelta(seconds=1810)
    assert cents_at(sandbox, charge.external_reference) == [1010]


def test_a_pix_paid_after_n_polls_counts_only_polls(
    gateway: MercadoPagoGateway, sandbox: MercadoPagoSandbox
) -> None:
    payment = gateway.create_pix(pix("paid-after-3@example.com"), "pix-polls")
    gid = payment.gateway_id
    assert gateway.get_payment(gid).status is GatewayStatus.PENDING
    assert gateway.get_payment(gid, "webhook").status is GatewayStatus.PENDING
    assert sandbox.polls(gid) == 0
    seen: list[GatewayPayment] = [gateway.get_payment(gid, "poll") for _ in range(3)]
    assert [p.status for p in seen] == [GatewayStatus.PENDING, GatewayStatus.PENDING, GatewayStatus.APPROVED]
    assert sandbox.polls(gid) == 3


def test_a_pending_pix_is_cancelled_once(gateway: MercadoPagoGateway) -> None:
    payment = gateway.create_pix(pix("never@example.com"), "pix-cancel")
    cancelled = gateway.cancel(payment.gateway_id, "cancel-1")
    assert (cancelled.status, cancelled.status_detail) == (GatewayStatus.CANCELLED, "by_collector")
    with pytest.raises(GatewayPermanentError) as caught:
        gateway.cancel(payment.gateway_id, "cancel-2")
    assert caught.value.code == "GATEWAY_INVALID_STATE"


def test_a_pix_retry_with_a_later_expiry_finds_the_first_charge(
    make_gateway: Callable[..., MercadoPagoGateway], sandbox: MercadoPagoSandbox
) -> None:
    """The retry's date_of_expiration differs, so the sandbox answers 409 for the reused key; the
    adapter finds the charge by its external reference instead of retrying into a 409 forever."""
    start = datetime.now(UTC)
    charge = pix()
    first = make_gateway(clock=lambda: start).create_pix(charge, "pix-retry")
    again = make_gateway(clock=lambda: start + timedelta(seconds=7)).create_pix(charge, "pix-retry")
    assert again.gateway_id == first.gateway_id
    assert len(sandbox.payments_for(charge.external_reference)) == 1


# -- refunds ------------------------------------------------------------------------------------


def test_partial_then_full_refund(gateway: MercadoPagoGateway) -> None:
    payment = gateway.charge_card(card("APRO", 1000), "charge-refund")
    partial = gateway.refund(payment.gateway_id, 250, "refund-1")
    assert (partial.amount_cents, partial.status) == (250, "approved")
    assert gateway.refund(payment.gateway_id, 250, "refund-1") == partial  # a retry: the same refund
    seen = gateway.get_payment(payment.gateway_id)
    assert (seen.status, seen.status_detail, seen.refunded_cents) == (
        GatewayStatus.APPROVED,
        "partially_refunded",
        250,
    )
    rest = gateway.refund(payment.gateway_id, None, "refund-2")
    assert rest.amount_cents == 750
    seen = gateway.get_payment(payment.gateway_id)
    assert (seen.status, seen.status_detail, seen.refunded_cents) == (
        GatewayStatus.REFUNDED,
        "refunded",
        1000,
    )
    assert [r.amount_cents for r in seen.refunds] == [250, 750]
    with pytest.raises(GatewayPermanentError) as caught:
        gateway.refund(payment.gateway_id, None, "refund-3")
    assert caught.value.code == "GATEWAY_INVALID_STATE"


def test_refunding_more_than_is_left_is_refused(gateway: MercadoPagoGateway) -> None:
    payment = gateway.charge_card(card("APRO", 500), "charge-over")
    with pytest.raises(GatewayPermanentError) as caught:
        gateway.refund(payment.gateway_id, 501, "refund-over")
    assert caught.value.code == "GATEWAY_INVALID_STATE"


# -- card tokens, auth, unknown payments --------------------------------------------------------


def test_check_card(gateway: MercadoPagoGateway) -> None:
    good = gateway.check_card("APRO")
    assert good.valid and good.last_four and good.expiration.startswith("11/")
    expired = gateway.check_card("EXPI")
    assert (expired.valid, expired.reason) == (False, "card_expired")
    unknown = gateway.check_card("NOPE")
    assert (unknown.valid, unknown.reason) == (False, "not_found")


def test_a_wrong_access_token_is_an_auth_error(make_gateway: Callable[..., MercadoPagoGateway]) -> None:
    with pytest.raises(GatewayPermanentError) as caught:
        make_gateway(token="TEST-wrong").charge_card(card(), "charge-auth")
    assert (caught.value.code, caught.value.status) == ("GATEWAY_AUTH", 401)


def test_an_unknown_payment_is_not_found(gateway: MercadoPagoGateway) -> None:
    with pytest.raises(GatewayPermanentError) as caught:
        gateway.get_payment("999")
    assert caught.value.code == "GATEWAY_NOT_FOUND"
