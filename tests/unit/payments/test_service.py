"""The payments rules (payments.service) against the in-memory store and gateway: the state
machine, order idempotency, refunds, retries, the no-double-charge keys, and renewals."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from payments.models import (
    RANK,
    Interval,
    Payer,
    Payment,
    PaymentRequest,
    PaymentStatus,
    RefundStatus,
    SubscriptionRequest,
    SubscriptionStatus,
    status_from_gateway,
)
from payments.provider.port import GatewayPayment, GatewayStatus, PixCode
from payments.service import (
    InvalidStateError,
    OrderReusedError,
    PaymentService,
    RefundTooLargeError,
    apply_report,
)
from payments.store import BadCursorError, PaymentsStore, StaleRecordError

from tarefa import PermanentJobError, RetryableJobError

from ..fakes import Clock
from .fakes import START, FakeGateway, FakePaymentsStore, fake_service

OWNER = "user-1"
PAYER = Payer(email="maria@example.com")
AMOUNT = 10_000


def card_request(order: str = "order-1", amount: int = AMOUNT, **fields: Any) -> PaymentRequest:
    body: dict[str, Any] = {
        "order_id": order,
        "amount_cents": amount,
        "method": "card",
        "card_token": "tok-1",
        "payer": PAYER,
        **fields,
    }
    return PaymentRequest.model_validate(body)


def pix_request(order: str = "order-pix", amount: int = AMOUNT) -> PaymentRequest:
    return PaymentRequest(order_id=order, amount_cents=amount, method="pix", payer=PAYER)


def payment(**fields: Any) -> Payment:
    """A payment record for the pure state-machine tests (no store)."""
    body: dict[str, Any] = {
        "payment_id": "pay-1",
        "owner": OWNER,
        "order_id": "order-1",
        "amount_cents": AMOUNT,
        "method": "card",
        "payer": PAYER,
        "card_token": "tok-1",
        "created_at": START,
        "updated_at": START,
        **fields,
    }
    return Payment.model_validate(body)


def report(status: GatewayStatus, **fields: Any) -> GatewayPayment:
    body: dict[str, Any] = {
        "gateway_id": "gw-1",
        "status": status,
        "status_detail": f"detail-{status}",
        "method": "card",
        "amount_cents": AMOUNT,
        "external_reference": "pay-1/0",
        **fields,
    }
    return GatewayPayment.model_validate(body)


def force(store: FakePaymentsStore, payment_id: str, **changes: Any) -> Payment:
    """Put a stored payment in a state directly (as earlier jobs would have)."""
    current = store.get_payment(payment_id)
    assert current is not None
    return store.put_payment(current.model_copy(update=changes), current.version)


def approved(service: PaymentService, gateway: FakeGateway, order: str = "order-1") -> Payment:
    created, _ = service.create(OWNER, card_request(order))
    charged = service.charge(created.payment_id, 0, gateway, "job-1", None)
    assert charged.status == PaymentStatus.APPROVED
    return charged


# -- the state machine (apply_report) -------------------------------------------------------------


def test_a_report_moves_an_open_payment_forward() -> None:
    before = payment(status=PaymentStatus.PROCESSING, gateway_id="gw-1")
    after = apply_report(before, report(GatewayStatus.APPROVED), START + timedelta(seconds=5))
    assert after is not None
    assert (after.status, after.status_detail, after.updated_at) == (
        PaymentStatus.APPROVED,
        "detail-approved",
        START + timedelta(seconds=5),
    )


@pytest.mark.parametrize(
    ("current", "late"),
    [
        (PaymentStatus.APPROVED, GatewayStatus.PENDING),
        (PaymentStatus.APPROVED, GatewayStatus.IN_PROCESS),
        (PaymentStatus.APPROVED, GatewayStatus.REJECTED),  # same rank: the first outcome stays
        (PaymentStatus.REJECTED, GatewayStatus.CANCELLED),
        (PaymentStatus.REFUNDED, GatewayStatus.APPROVED),
        (PaymentStatus.PROCESSING, GatewayStatus.PENDING),
    ],
)
def test_a_report_never_moves_a_payment_backwards(current: PaymentStatus, late: GatewayStatus) -> None:
    assert apply_report(payment(status=current, gateway_id="gw-1"), report(late), START) is None


def test_a_report_about_another_generation_changes_nothing() -> None:
    current = payment(status=PaymentStatus.PROCESSING, generation=1)  # not at the gateway yet
    assert apply_report(current, report(GatewayStatus.APPROVED, external_reference="pay-1/0"), START) is None
    assert apply_report(current, report(GatewayStatus.APPROVED, external_reference="pay-2/1"), START) is None
    mine = apply_report(current, report(GatewayStatus.APPROVED, external_reference="pay-1/1"), START)
    assert mine is not None and mine.status == PaymentStatus.APPROVED


def test_a_report_about_another_gateway_payment_changes_nothing() -> None:
    current = payment(status=PaymentStatus.PROCESSING, gateway_id="gw-2")
    assert apply_report(current, report(GatewayStatus.APPROVED, gateway_id="gw-1"), START) is None


def test_first_sight_of_an_open_payment_takes_the_gateways_state_even_below_processing() -> None:
    """PROCESSING only meant "asked the gateway": a PIX charge's first answer (pending, with
    its code) is where the payment is, though PENDING ranks below PROCESSING."""
    pix = PixCode(qr_code="000201abc", expires_at="2026-03-01T12:30:00+00:00")
    current = payment(status=PaymentStatus.PROCESSING, method="pix", card_token=None)
    after = apply_report(current, report(GatewayStatus.PENDING, method="pix", pix=pix), START)
    assert after is not None
    assert (after.status, after.gateway_id) == (PaymentStatus.PENDING, "gw-1")
    assert after.pix is not None and after.pix.qr_code == "000201abc"
    # the same report once the gateway id is known is not forward: nothing changes
    assert (
        apply_report(
            after.model_copy(update={"status": PaymentStatus.PROCESSING}),
            report(GatewayStatus.PENDING),
            START,
        )
        is None
    )


def test_first_sight_of_a_payment_we_closed_notes_the_gateway_id_and_keeps_our_state() -> None:
    gave_up = payment(status=PaymentStatus.FAILED, status_detail="gateway_unavailable")
    noted = apply_report(gave_up, report(GatewayStatus.PENDING), START)
    assert noted is not None
    assert (noted.status, noted.status_detail, noted.gateway_id) == (
        PaymentStatus.FAILED,
        "gateway_unavailable",
        "gw-1",
    )
    # and the gateway's word wins over FAILED once it is an outcome
    after = apply_report(noted, report(GatewayStatus.APPROVED), START)
    assert after is not None and after.status == PaymentStatus.APPROVED


def test_refunded_cents_move_a_refunded_payment_forward_and_never_back() -> None:
    current = payment(status=PaymentStatus.APPROVED, gateway_id="gw-1")
    partial = apply_report(current, report(GatewayStatus.APPROVED, refunded_cents=3_000), START)
    assert partial is not None
    assert (partial.status, partial.refunded_cents) == (PaymentStatus.PARTIALLY_REFUNDED, 3_000)
    more = apply_report(partial, report(GatewayStatus.APPROVED, refunded_cents=5_000), START)
    assert more is not None
    assert (more.status, more.refunded_cents) == (PaymentStatus.PARTIALLY_REFUNDED, 5_000)
    assert apply_report(more, report(GatewayStatus.APPROVED, refunded_cents=4_000), START) is None
    full = apply_report(more, report(GatewayStatus.APPROVED, refunded_cents=AMOUNT), START)
    assert full is not None
    assert (full.status, full.refunded_cents) == (PaymentStatus.REFUNDED, AMOUNT)


def test_a_report_moving_forward_never_lowers_the_refunded_cents_we_know() -> None:
    """A chargeback reported without refunded cents keeps what our refunds gave back."""
    current = payment(status=PaymentStatus.PARTIALLY_REFUNDED, gateway_id="gw-1", refunded_cents=3_000)
    after = apply_report(current, report(GatewayStatus.CHARGED_BACK, refunded_cents=0), START)
    assert after is not None
    assert (after.status, after.refunded_cents) == (PaymentStatus.REFUNDED, 3_000)


REPORTS = st.lists(
    st.tuples(st.sampled_from(list(GatewayStatus)), st.integers(min_value=0, max_value=AMOUNT)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(reports=REPORTS, data=st.data())
def test_property_the_final_rank_is_the_highest_reported_whatever_the_order(
    reports: list[tuple[GatewayStatus, int]], data: st.DataObject
) -> None:
    """Never backwards: whatever order the gateway's reports about one payment arrive in,
    the payment ends at the highest-ranked status among them, and after the first report its
    rank never drops."""
    arrival = data.draw(st.permutations(reports))
    current = payment(status=PaymentStatus.PROCESSING)
    ranks = []
    for status, refunded in arrival:
        changed = apply_report(current, report(status, refunded_cents=refunded), START)
        current = changed or current
        ranks.append(RANK[current.status])
    expected = max(RANK[status_from_gateway(s, AMOUNT, r)] for s, r in reports)
    assert RANK[current.status] == expected
    assert ranks == sorted(ranks)
    assert current.gateway_id == "gw-1"


# -- creating a payment: the orderId is the idempotency key ------------------------------------------


def test_create_makes_a_pending_payment_keeping_the_card_token(
    service: PaymentService, store: FakePaymentsStore
) -> None:
    created, new = service.create(OWNER, card_request())
    assert new is True
    assert (created.status, created.generation, created.owner) == (PaymentStatus.PENDING, 0, OWNER)
    kept = store.get_payment(created.payment_id)
    assert kept is not None and kept.card_token == "tok-1"
    assert "cardToken" not in created.public()


def test_the_same_order_again_returns_the_payment_it_made(
    service: PaymentService, store: FakePaymentsStore
) -> None:
    first, _ = service.create(OWNER, card_request(description="first"))
    again, new = service.create(OWNER, card_request(description="a retried request"))
    assert new is False
    assert again.payment_id == first.payment_id
    assert again.description == "first"
    assert list(store.payments) == [first.payment_id]


@pytest.mark.parametrize(
    "other",
    [
        card_request(amount=AMOUNT + 1),
        card_request(currency="USD"),
        PaymentRequest(order_id="order-1", amount_cents=AMOUNT, method="pix", payer=PAYER),
    ],
    ids=["amount", "currency", "method"],
)
def test_the_same_order_with_another_amount_or_method_is_refused(
    service: PaymentService, store: FakePaymentsStore, other: PaymentRequest
) -> None:
    first, _ = service.create(OWNER, card_request())
    with pytest.raises(OrderReusedError) as refused:
        service.create(OWNER, other)
    assert refused.value.details == {"paymentId": first.payment_id}
    assert list(store.payments) == [first.payment_id]


def test_the_same_order_id_of_another_owner_is_another_payment(service: PaymentService) -> None:
    mine, _ = service.create(OWNER, card_request())
    theirs, new = service.create("user-2", card_request())
    assert new is True
    assert theirs.payment_id != mine.payment_id


# -- refunds ----------------------------------------------------------------------------------------


def test_a_refund_reserves_its_amount(service: PaymentService, gateway: FakeGateway) -> None:
    paid = approved(service, gateway)
    after, refund = service.request_refund(paid, 3_000)
    assert (refund.status, refund.amount_cents, refund.full) == (RefundStatus.PENDING, 3_000, False)
    assert (after.status, after.refunded_cents, after.refundable_cents) == (PaymentStatus.APPROVED, 0, 7_000)
    _, rest = service.request_refund(after, None)
    assert (rest.amount_cents, rest.full) == (7_000, True)
    assert service.payment(paid.payment_id).refundable_cents == 0


def test_a_refund_larger_than_what_is_left_is_refused(service: PaymentService, gateway: FakeGateway) -> None:
    paid = approved(service, gateway)
    with pytest.raises(RefundTooLargeError) as too_large:
        service.request_refund(paid, AMOUNT + 1)
    assert too_large.value.details == {"refundableCents": AMOUNT}
    service.request_refund(paid, 3_000)
    with pytest.raises(RefundTooLargeError):  # what is reserved is not left
        service.request_refund(paid, 7_001)
    service.request_refund(paid, None)
    with pytest.raises(RefundTooLargeError):  # nothing left: "all that is left" is nothing
        service.request_refund(paid, None)
    assert [r.amount_cents for r in service.payment(paid.payment_id).refunds] == [3_000, 7_000]


@pytest.mark.parametrize(
    "status",
    [
        PaymentStatus.PENDING,
        PaymentStatus.PROCESSING,
        PaymentStatus.REJECTED,
        PaymentStatus.FAILED,
        PaymentStatus.REFUNDED,
        PaymentStatus.CANCELLED,
        PaymentStatus.EXPIRED,
    ],
)
def test_only_an_approved_or_partly_refunded_payment_takes_refunds(
    service: PaymentService, store: FakePaymentsStore, status: PaymentStatus
) -> None:
    created, _ = service.create(OWNER, card_request())
    current = force(store, created.payment_id, status=status)
    with pytest.raises(InvalidStateError):
        service.request_refund(current, 100)
    assert service.payment(created.payment_id).refunds == []


def test_a_settled_partial_refund_partly_refunds_the_payment(
    service: PaymentService, gateway: FakeGateway
) -> None:
    paid = approved(service, gateway)
    _, refund = service.request_refund(paid, 3_000)
    after = service.settle_refund(paid.payment_id, refund.refund_id, RefundStatus.REFUNDED, "rf-1")
    assert (after.status, after.refunded_cents, after.refundable_cents) == (
        PaymentStatus.PARTIALLY_REFUNDED,
        3_000,
        7_000,
    )
    assert (after.refunds[0].status, after.refunds[0].gateway_refund_id) == (RefundStatus.REFUNDED, "rf-1")
    # settling it again (a repeated job) changes nothing
    again = service.settle_refund(paid.payment_id, refund.refund_id, RefundStatus.REFUNDED, "rf-1")
    assert again.version == after.version


def test_refunds_adding_up_to_the_amount_refund_the_payment(
    service: PaymentService, gateway: FakeGateway
) -> None:
    paid = approved(service, gateway)
    _, first = service.request_refund(paid, 4_000)
    _, rest = service.request_refund(paid, None)
    service.settle_refund(paid.payment_id, first.refund_id, RefundStatus.REFUNDED, "rf-1")
    after = service.settle_refund(paid.payment_id, rest.refund_id, RefundStatus.REFUNDED, "rf-2")
    assert (after.status, after.refunded_cents, after.refundable_cents) == (PaymentStatus.REFUNDED, AMOUNT, 0)


def test_a_failed_refund_releases_its_reservation(service: PaymentService, gateway: FakeGateway) -> None:
    paid = approved(service, gateway)
    _, refund = service.request_refund(paid, 3_000)
    after = service.settle_refund(
        paid.payment_id, refund.refund_id, RefundStatus.FAILED, None, "GATEWAY_INVALID_STATE"
    )
    assert (after.status, after.refunded_cents, after.refundable_cents) == (PaymentStatus.APPROVED, 0, AMOUNT)
    assert (after.refunds[0].status, after.refunds[0].error) == (RefundStatus.FAILED, "GATEWAY_INVALID_STATE")
    _, whole = service.request_refund(after, None)
    assert whole.amount_cents == AMOUNT


def test_a_concurrent_reservation_is_decided_again_on_the_fresh_record(
    service: PaymentService, store: FakePaymentsStore, gateway: FakeGateway
) -> None:
    """Two refunds of 6000 of a 10000 payment read at once: the one that writes second is
    decided again on what the first wrote, and refused."""
    paid = approved(service, gateway)
    store.before_write.append(lambda: service.request_refund(paid, 6_000))
    with pytest.raises(RefundTooLargeError):
        service.request_refund(paid, 6_000)
    assert store.stale == 1
    assert [r.amount_cents for r in service.payment(paid.payment_id).refunds] == [6_000]


def test_a_write_that_keeps_losing_gives_up(service: PaymentService, store: FakePaymentsStore) -> None:
    created, _ = service.create(OWNER, card_request())
    store.before_write.extend([lambda: force(store, created.payment_id)] * 5)  # each try
    with pytest.raises(StaleRecordError):
        service.note_job(created.payment_id, "job-x")
    assert store.stale == 5
    assert "job-x" not in service.payment(created.payment_id).jobs


# -- retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [PaymentStatus.REJECTED, PaymentStatus.FAILED])
def test_a_retry_is_a_new_generation_with_nothing_of_the_old_charge(
    service: PaymentService, store: FakePaymentsStore, status: PaymentStatus
) -> None:
    created, _ = service.create(OWNER, card_request())
    old = force(store, created.payment_id, status=status, status_detail="cc_rejected", gateway_id="gw-1")
    again = service.request_retry(old, "tok-2")
    assert (again.status, again.status_detail, again.generation, again.gateway_id) == (
        PaymentStatus.PENDING,
        "",
        1,
        None,
    )
    kept = store.get_payment(created.payment_id)
    assert kept is not None and kept.card_token == "tok-2"
    assert again.reference() == f"{created.payment_id}/1"


def test_a_retry_without_a_token_keeps_the_last_one(
    service: PaymentService, store: FakePaymentsStore
) -> None:
    created, _ = service.create(OWNER, card_request())
    again = service.request_retry(force(store, created.payment_id, status=PaymentStatus.REJECTED), None)
    assert again.card_token == "tok-1"


@pytest.mark.parametrize(
    "status",
    [s for s in PaymentStatus if s not in (PaymentStatus.REJECTED, PaymentStatus.FAILED)],
)
def test_only_a_rejected_or_failed_payment_is_retried(
    service: PaymentService, store: FakePaymentsStore, status: PaymentStatus
) -> None:
    created, _ = service.create(OWNER, card_request())
    current = force(store, created.payment_id, status=status)
    with pytest.raises(InvalidStateError):
        service.request_retry(current, None)
    assert service.payment(created.payment_id).generation == 0


def test_a_card_token_is_refused_for_a_pix_retry(service: PaymentService, store: FakePaymentsStore) -> None:
    created, _ = service.create(OWNER, pix_request())
    with pytest.raises(InvalidStateError):
        service.request_retry(force(store, created.payment_id, status=PaymentStatus.FAILED), "tok-2")


# -- charging: no double charge ---------------------------------------------------------------------


def test_a_repeated_charge_uses_the_same_key_and_charges_once(
    service: PaymentService, gateway: FakeGateway, clock: Clock
) -> None:
    created, _ = service.create(OWNER, card_request())
    gateway.fail_next("charge_card", RetryableJobError("read timeout"))
    with pytest.raises(RetryableJobError):
        service.charge(created.payment_id, 0, gateway, "job-1", None)
    stuck = service.payment(created.payment_id)
    assert (stuck.status, stuck.gateway_id, stuck.jobs) == (PaymentStatus.PROCESSING, None, ["job-1"])
    clock.advance(minutes=1)
    paid = service.charge(created.payment_id, 0, gateway, "job-1", None)
    assert paid.status == PaymentStatus.APPROVED
    service.charge(created.payment_id, 0, gateway, "job-1", None)  # at the gateway already: no call
    keys = [c.key for c in gateway.calls_to("charge_card")]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert len(gateway.payments) == 1


def test_each_generation_is_charged_with_a_key_of_its_own(
    service: PaymentService, gateway: FakeGateway
) -> None:
    created, _ = service.create(OWNER, card_request())
    gateway.card_status = GatewayStatus.REJECTED
    rejected = service.charge(created.payment_id, 0, gateway, "job-1", None)
    assert rejected.status == PaymentStatus.REJECTED
    service.request_retry(rejected, "tok-2")
    gateway.card_status = GatewayStatus.APPROVED
    service.charge(created.payment_id, 0, gateway, "job-1", None)  # the old generation's job: nothing
    paid = service.charge(created.payment_id, 1, gateway, "job-2", None)
    assert paid.status == PaymentStatus.APPROVED
    charges = gateway.calls_to("charge_card")
    assert len(charges) == 2
    assert charges[0].key != charges[1].key
    assert [c.request.external_reference for c in charges] == [
        f"{created.payment_id}/0",
        f"{created.payment_id}/1",
    ]
    assert [c.request.card_token for c in charges] == ["tok-1", "tok-2"]
    # the same generation's key is the same in another service (nothing random in it)
    other = fake_service(FakePaymentsStore(), Clock(START), lambda: created.payment_id)
    other.create(OWNER, card_request())
    again = FakeGateway()
    other.charge(created.payment_id, 0, again, "job-9", None)
    assert again.calls_to("charge_card")[0].key == charges[0].key


def test_a_pix_charge_expires_at_the_same_moment_on_every_attempt(
    service: PaymentService, gateway: FakeGateway, clock: Clock
) -> None:
    created, _ = service.create(OWNER, pix_request())
    gateway.fail_next("create_pix", RetryableJobError("read timeout"))
    with pytest.raises(RetryableJobError):
        service.charge(created.payment_id, 0, gateway, "job-1", None)
    clock.advance(minutes=2)
    pending = service.charge(created.payment_id, 0, gateway, "job-1", None)
    calls = gateway.calls_to("create_pix")
    assert [c.request.expires_at for c in calls] == [START + timedelta(minutes=30)] * 2
    assert calls[0].key == calls[1].key
    assert pending.status == PaymentStatus.PENDING
    assert pending.pix is not None and pending.pix.expires_at == (START + timedelta(minutes=30)).isoformat()


def test_a_new_generation_of_a_pix_charge_expires_later(
    service: PaymentService, store: FakePaymentsStore, gateway: FakeGateway, clock: Clock
) -> None:
    created, _ = service.create(OWNER, pix_request())
    first = service.charge(created.payment_id, 0, gateway, "job-1", None)
    failed = force(store, first.payment_id, status=PaymentStatus.FAILED)
    clock.advance(hours=1)
    service.request_retry(failed, None)
    service.charge(created.payment_id, 1, gateway, "job-2", None)
    expiries = [c.request.expires_at for c in gateway.calls_to("create_pix")]
    assert expiries == [START + timedelta(minutes=30), START + timedelta(hours=1, minutes=30)]


def test_a_payment_we_rejected_is_not_charged_again_by_a_repeated_job(
    service: PaymentService, gateway: FakeGateway
) -> None:
    """What payments.process does when the gateway refuses the token: charge raises, the
    payment is marked REJECTED. A repeated delivery of that attempt must not charge it again
    (it did, until charge() also stopped at a payment no longer open)."""
    created, _ = service.create(OWNER, card_request())
    gateway.fail_next("charge_card", PermanentJobError("token refused", code="CARD_TOKEN_INVALID"))
    with pytest.raises(PermanentJobError):
        service.charge(created.payment_id, 0, gateway, "job-1", None)
    rejected = service.mark(created.payment_id, 0, PaymentStatus.REJECTED, "invalid_card_token")
    assert (rejected.status, rejected.gateway_id) == (PaymentStatus.REJECTED, None)
    gateway.calls.clear()
    after = service.charge(created.payment_id, 0, gateway, "job-1", None)  # the repeated attempt
    assert gateway.calls_to("charge_card") == []
    assert after.status == PaymentStatus.REJECTED


def test_mark_applies_only_to_an_open_payment_of_its_generation(
    service: PaymentService, store: FakePaymentsStore, gateway: FakeGateway
) -> None:
    paid = approved(service, gateway)
    assert service.mark(paid.payment_id, 0, PaymentStatus.FAILED, "late").status == PaymentStatus.APPROVED
    created, _ = service.create(OWNER, card_request("order-2"))
    force(store, created.payment_id, generation=1)
    assert service.mark(created.payment_id, 0, PaymentStatus.FAILED, "old").status == PaymentStatus.PENDING
    assert service.mark(created.payment_id, 1, PaymentStatus.FAILED, "now").status == PaymentStatus.FAILED


# -- subscriptions ----------------------------------------------------------------------------------


def subscribe(service: PaymentService, interval: Interval = Interval.MONTH) -> str:
    request = SubscriptionRequest(
        plan_id="plan-pro", amount_cents=2_990, interval=interval, card_token="tok-s"
    )
    return service.subscribe(OWNER, request, "maria@example.com").subscription_id


def test_a_new_subscription_is_active_and_due_at_once(
    service: PaymentService, store: FakePaymentsStore
) -> None:
    sid = subscribe(service)
    subscription = service.subscription(sid)
    assert (subscription.status, subscription.next_period, subscription.paid_until) == (
        SubscriptionStatus.ACTIVE,
        1,
        START,
    )
    assert list(store.due_subscriptions(START)) == [(sid, 1)]


def test_a_renewal_claim_holds_off_a_second_job_until_it_lapses(
    service: PaymentService, store: FakePaymentsStore, clock: Clock
) -> None:
    sid = subscribe(service)
    claimed = service.claim_renewal(sid, 1, "job-a")
    assert claimed is not None
    assert (claimed.renewal_job_id, claimed.renewal_claimed_until) == ("job-a", START + timedelta(days=1))
    assert service.claim_renewal(sid, 1, "job-b") is None
    writes = store.writes
    again = service.claim_renewal(sid, 1, "job-a")  # a repeated attempt: still ours, no write
    assert again is not None and again.renewal_job_id == "job-a"
    assert store.writes == writes
    clock.advance(days=1, seconds=1)  # job-a died; its claim lapsed
    taken = service.claim_renewal(sid, 1, "job-b")
    assert taken is not None
    assert (taken.renewal_job_id, taken.renewal_claimed_until) == ("job-b", clock() + timedelta(days=1))
    assert service.claim_renewal(sid, 1, "job-a") is None


def test_nothing_to_claim_for_another_period_or_an_inactive_subscription(service: PaymentService) -> None:
    sid = subscribe(service)
    assert service.claim_renewal(sid, 2, "job-a") is None
    service.cancel_subscription(service.subscription(sid))
    assert service.claim_renewal(sid, 1, "job-a") is None


def test_renewed_advances_the_period_and_what_is_paid(service: PaymentService, clock: Clock) -> None:
    sid = subscribe(service)
    service.claim_renewal(sid, 1, "job-a")
    service.declined(sid, 1, 0, last=False)
    clock.advance(days=1)  # the first period paid a day late: paid from now
    first = service.renewed(sid, 1, "pay-r1")
    assert (first.next_period, first.paid_until, first.declines, first.payments) == (
        2,
        START + timedelta(days=31),
        0,
        ["pay-r1"],
    )
    assert (first.renewal_job_id, first.renewal_claimed_until) == (None, None)
    clock.advance(days=40)  # a later period paid late still starts where the last one ended
    second = service.renewed(sid, 2, "pay-r2")
    assert second.paid_until == START + timedelta(days=61)
    assert service.renewed(sid, 2, "pay-r2").version == second.version  # a repeat changes nothing


def test_a_yearly_subscription_renews_for_a_year(service: PaymentService) -> None:
    sid = subscribe(service, Interval.YEAR)
    assert service.renewed(sid, 1, "pay-r1").paid_until == START + timedelta(days=365)


def test_declines_count_up_to_past_due_at_the_fifth(
    service: PaymentService, store: FakePaymentsStore, clock: Clock
) -> None:
    sid = subscribe(service)
    service.claim_renewal(sid, 1, "job-a")
    for decline, days in enumerate((1, 2, 3, 5)):
        after = service.declined(sid, 1, decline, last=False)
        assert (after.status, after.declines) == (SubscriptionStatus.ACTIVE, decline + 1)
        assert after.renewal_claimed_until == clock() + timedelta(days=days + 1)  # its wait, and a day
        assert service.declined(sid, 1, decline, last=False).version == after.version  # a repeat
        clock.advance(days=days)
    fifth = service.declined(sid, 1, 4, last=False)
    assert (fifth.status, fifth.declines, fifth.renewal_claimed_until) == (
        SubscriptionStatus.PAST_DUE,
        5,
        None,
    )
    assert list(store.due_subscriptions(clock() + timedelta(days=400))) == []


def test_a_decline_on_the_last_attempt_is_past_due(service: PaymentService) -> None:
    sid = subscribe(service)
    after = service.declined(sid, 1, 0, last=True)
    assert (after.status, after.declines) == (SubscriptionStatus.PAST_DUE, 1)


def test_a_renewal_payment_is_the_same_for_the_same_period_and_decline(
    service: PaymentService, store: FakePaymentsStore, clock: Clock
) -> None:
    sid = subscribe(service)
    subscription = service.subscription(sid)
    first = service.renewal_payment(subscription, 1, 0)
    clock.advance(hours=3)
    again = service.renewal_payment(subscription, 1, 0)
    assert again.payment_id == first.payment_id
    assert again.created_at == first.created_at
    assert (first.subscription_id, first.amount_cents, first.method, first.owner) == (
        sid,
        2_990,
        "card",
        OWNER,
    )
    kept = store.get_payment(first.payment_id)
    assert kept is not None and kept.card_token == "tok-s"
    others = {
        service.renewal_payment(subscription, 1, 1).payment_id,
        service.renewal_payment(subscription, 2, 0).payment_id,
    }
    assert first.payment_id not in others and len(others) == 2
    assert len(store.payments) == 3
    # nothing random in it: another service finds the same id for the same period and decline
    other = fake_service(FakePaymentsStore(), Clock(START + timedelta(days=3)))
    assert other.renewal_payment(subscription, 1, 0).payment_id == first.payment_id


# -- the fake store keeps the real one's rules (the tests above rely on them) ------------------------


def test_the_fake_store_has_the_real_stores_public_methods() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")
        }

    assert public(FakePaymentsStore) == public(PaymentsStore)


def test_the_fake_store_refuses_a_stale_version(store: FakePaymentsStore, service: PaymentService) -> None:
    created, _ = service.create(OWNER, card_request())
    store.put_payment(created, 0)
    with pytest.raises(StaleRecordError):
        store.put_payment(created, 0)
    with pytest.raises(StaleRecordError):
        store.put_payment(created.model_copy(update={"payment_id": "nobody"}), 0)


def test_due_subscriptions_are_the_active_ones_paid_until_then(
    service: PaymentService, store: FakePaymentsStore, clock: Clock
) -> None:
    early = subscribe(service)
    clock.advance(days=2)
    late = subscribe(service)
    cancelled = subscribe(service)
    service.cancel_subscription(service.subscription(cancelled))
    assert sorted(store.due_subscriptions(START)) == [(early, 1)]
    assert sorted(store.due_subscriptions(clock())) == sorted([(early, 1), (late, 1)])
    service.renewed(early, 1, "pay-r1")
    assert sorted(store.due_subscriptions(clock())) == [(late, 1)]


def test_payments_are_listed_newest_first_in_pages(
    service: PaymentService, store: FakePaymentsStore, clock: Clock
) -> None:
    made = []
    for n in range(5):
        made.append(service.create(OWNER, card_request(f"order-{n}"))[0].payment_id)
        clock.advance(seconds=1)
    service.create("user-2", card_request("order-x"))
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        page, cursor = store.list_payments(OWNER, None, cursor, 2)
        seen += [p.payment_id for p in page]
        if cursor is None:
            break
    assert seen == made[::-1]
    assert cursor is None
    _, cursor = store.list_payments(OWNER, None, None, 2)
    with pytest.raises(BadCursorError):
        store.list_payments("user-2", None, cursor, 2)  # another owner's cursor
    force(store, made[0], status=PaymentStatus.APPROVED)
    assert [p.payment_id for p in store.list_payments(OWNER, "APPROVED", None, 10)[0]] == [made[0]]
