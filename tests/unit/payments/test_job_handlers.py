"""The payments job handlers (payments.jobs) with the in-memory store, gateway and context:
what each ends with, what it raises, and what it enqueues or wakes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from payments import jobs
from payments.models import (
    Interval,
    Payer,
    PaymentJob,
    PaymentRequest,
    PaymentStatus,
    RefundJob,
    RefundStatus,
    RenewalJob,
    SubscriptionRequest,
    SubscriptionStatus,
    WebhookJob,
)
from payments.provider.port import GatewayStatus
from payments.service import PaymentService

from tarefa import JobContext, PermanentJobError, RetryableJobError, RetryLater

from ..fakes import Clock
from .fakes import FakeGateway, FakeJobContext, FakePaymentsStore

OWNER = "user-1"
PAYER = Payer(email="maria@example.com")
VERIFY_LADDER = (60, 60, 120, 120, 180, 240, 300, 300, 300)  # PIX_VERIFICATION's seconds
VERIFY_POLLS = 10


@pytest.fixture(autouse=True)
def wired(
    monkeypatch: pytest.MonkeyPatch, service: PaymentService, gateway: FakeGateway
) -> Iterator[list[JobContext]]:
    """The handlers get the fakes; `wired` lists the contexts the gateway was asked for."""
    asked: list[JobContext] = []

    def gateway_for(ctx: JobContext) -> FakeGateway:
        asked.append(ctx)
        return gateway

    monkeypatch.setattr(jobs, "service", lambda: service)
    monkeypatch.setattr(jobs, "gateway", gateway_for)
    monkeypatch.delenv(jobs.NOTIFICATION_URL_VARIABLE, raising=False)
    yield asked


def card(service: PaymentService, order: str = "order-1") -> str:
    request = PaymentRequest(
        order_id=order, amount_cents=10_000, method="card", card_token="tok-1", payer=PAYER
    )
    return service.create(OWNER, request)[0].payment_id


def pix(service: PaymentService, order: str = "order-pix") -> str:
    request = PaymentRequest(order_id=order, amount_cents=10_000, method="pix", payer=PAYER)
    return service.create(OWNER, request)[0].payment_id


def pix_waiting(service: PaymentService) -> tuple[str, str, FakeJobContext]:
    """A PIX charge created at the gateway, its verification enqueued: (payment, gateway id, ctx)."""
    payment_id = pix(service)
    ctx = FakeJobContext("job-process")
    jobs.process(PaymentJob(payment_id=payment_id), ctx)
    waiting = service.payment(payment_id)
    assert waiting.status == PaymentStatus.PENDING and waiting.gateway_id is not None
    return payment_id, waiting.gateway_id, ctx


# -- payments.process / payments.retry ----------------------------------------------------------


def test_a_declined_card_completes_with_rejected(service: PaymentService, gateway: FakeGateway) -> None:
    payment_id = card(service)
    gateway.card_status = GatewayStatus.REJECTED
    ctx = FakeJobContext()
    result = jobs.process(PaymentJob(payment_id=payment_id), ctx)
    assert result["status"] == "REJECTED"
    assert result["statusDetail"] == "cc_rejected_other_reason"
    stored = service.payment(payment_id)
    assert (stored.status, stored.gateway_id) == (PaymentStatus.REJECTED, result["gatewayId"])
    assert ctx.enqueued == []


def test_an_approved_card_completes_with_approved(service: PaymentService, gateway: FakeGateway) -> None:
    payment_id = card(service)
    ctx = FakeJobContext()
    result = jobs.process(PaymentJob(payment_id=payment_id), ctx)
    assert result["status"] == "APPROVED"
    assert ctx.enqueued == []
    assert service.payment(payment_id).jobs == ["job-1"]


@pytest.mark.parametrize(("attempt", "ends"), [(3, PaymentStatus.FAILED), (2, PaymentStatus.PROCESSING)])
def test_a_retryable_gateway_error_fails_the_payment_only_on_the_last_attempt(
    service: PaymentService, gateway: FakeGateway, attempt: int, ends: PaymentStatus
) -> None:
    payment_id = card(service)
    gateway.fail_next("charge_card", RetryableJobError("503 from the gateway", retry_after=30))
    with pytest.raises(RetryableJobError) as raised:
        jobs.process(PaymentJob(payment_id=payment_id), FakeJobContext(attempt=attempt, max_attempts=3))
    assert raised.value.retry_after == 30
    stored = service.payment(payment_id)
    assert stored.status == ends
    if ends == PaymentStatus.FAILED:
        assert stored.status_detail == "gateway_unavailable"


def test_a_refused_card_token_ends_rejected_without_raising(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id = card(service)
    gateway.fail_next("charge_card", PermanentJobError("token not found", code="CARD_TOKEN_INVALID"))
    result = jobs.process(PaymentJob(payment_id=payment_id), FakeJobContext(attempt=1, max_attempts=3))
    assert (result["status"], result["statusDetail"]) == ("REJECTED", "invalid_card_token")
    assert service.payment(payment_id).status == PaymentStatus.REJECTED


def test_another_permanent_gateway_error_fails_the_payment_and_the_job(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id = card(service)
    gateway.fail_next("charge_card", PermanentJobError("bad request", code="GATEWAY_REJECTED_REQUEST"))
    with pytest.raises(PermanentJobError):
        jobs.process(PaymentJob(payment_id=payment_id), FakeJobContext(attempt=1, max_attempts=3))
    stored = service.payment(payment_id)
    assert (stored.status, stored.status_detail) == (PaymentStatus.FAILED, "gateway_rejected_request")


def test_a_pix_charge_enqueues_one_verification_of_its_generation(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id = pix(service)
    ctx = FakeJobContext("job-process")
    result = jobs.process(PaymentJob(payment_id=payment_id), ctx)
    assert result["status"] == "PENDING"
    [verification] = ctx.enqueued
    assert (verification.job_type, verification.step, verification.delay_seconds) == (
        "payments.verify",
        "verify-0",
        60,
    )
    assert PaymentJob.model_validate(verification.payload) == PaymentJob(payment_id=payment_id, generation=0)
    assert service.payment(payment_id).verification_job_id == verification.job_id
    # a repeated attempt asks for the same step: the same job, not a second one
    jobs.process(PaymentJob(payment_id=payment_id), ctx)
    assert {e.job_id for e in ctx.enqueued} == {verification.job_id}
    assert len(gateway.calls_to("create_pix")) == 1


def test_a_retried_pix_charge_is_verified_under_its_new_generation(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id = pix(service)
    gateway.fail_next("create_pix", RetryableJobError("down"))
    with pytest.raises(RetryableJobError):
        jobs.process(PaymentJob(payment_id=payment_id), FakeJobContext(attempt=3, max_attempts=3))
    service.request_retry(service.payment(payment_id), None)
    ctx = FakeJobContext("job-retry")
    jobs.retry(PaymentJob(payment_id=payment_id, generation=1), ctx)
    [verification] = ctx.enqueued
    assert verification.step == "verify-1"
    assert PaymentJob.model_validate(verification.payload).generation == 1


# -- payments.refund ----------------------------------------------------------------------------


def approved_with_refund(service: PaymentService, amount: int | None) -> tuple[str, str]:
    payment_id = card(service)
    jobs.process(PaymentJob(payment_id=payment_id), FakeJobContext())
    _, refund = service.request_refund(service.payment(payment_id), amount)
    return payment_id, refund.refund_id


def test_a_refund_job_gives_back_the_reserved_amount_once(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id, refund_id = approved_with_refund(service, 3_000)
    ctx = FakeJobContext("job-refund")
    result = jobs.refund(RefundJob(payment_id=payment_id, refund_id=refund_id), ctx)
    assert (result["status"], result["refundedCents"], result["refund"]["status"]) == (
        "PARTIALLY_REFUNDED",
        3_000,
        "REFUNDED",
    )
    [call] = gateway.calls_to("refund")
    assert call.request == (service.payment(payment_id).gateway_id, 3_000)
    jobs.refund(RefundJob(payment_id=payment_id, refund_id=refund_id), ctx)  # a repeated attempt
    assert len(gateway.calls_to("refund")) == 1


def test_a_refund_the_gateway_refuses_releases_its_reservation(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id, refund_id = approved_with_refund(service, None)
    gateway.fail_next("refund", PermanentJobError("too old", code="GATEWAY_INVALID_STATE"))
    result = jobs.refund(RefundJob(payment_id=payment_id, refund_id=refund_id), FakeJobContext())
    assert (result["refund"]["status"], result["refund"]["error"]) == ("FAILED", "GATEWAY_INVALID_STATE")
    after = service.payment(payment_id)
    assert (after.status, after.refundable_cents) == (PaymentStatus.APPROVED, 10_000)


@pytest.mark.parametrize(("attempt", "refund_status"), [(3, RefundStatus.FAILED), (2, RefundStatus.PENDING)])
def test_an_unreachable_gateway_fails_a_refund_only_on_the_last_attempt(
    service: PaymentService, gateway: FakeGateway, attempt: int, refund_status: RefundStatus
) -> None:
    payment_id, refund_id = approved_with_refund(service, 3_000)
    gateway.fail_next("refund", RetryableJobError("503"))
    with pytest.raises(RetryableJobError):
        jobs.refund(
            RefundJob(payment_id=payment_id, refund_id=refund_id),
            FakeJobContext(attempt=attempt, max_attempts=3),
        )
    [refund] = service.payment(payment_id).refunds
    assert refund.status == refund_status


# -- payments.verify ----------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(1, VERIFY_POLLS))
def test_an_unpaid_verification_looks_again_after_the_ladders_delay(
    service: PaymentService, gateway: FakeGateway, attempt: int
) -> None:
    payment_id, gateway_id, _ = pix_waiting(service)
    ctx = FakeJobContext("job-verify", attempt=attempt, max_attempts=VERIFY_POLLS)
    with pytest.raises(RetryLater) as later:
        jobs.verify(PaymentJob(payment_id=payment_id), ctx)
    assert later.value.seconds == VERIFY_LADDER[attempt - 1]
    poll = gateway.calls_to("get_payment")[-1]
    assert (poll.request, poll.purpose) == (gateway_id, "poll")
    assert gateway.calls_to("cancel") == []
    assert service.payment(payment_id).status == PaymentStatus.PENDING


def test_the_last_unpaid_verification_cancels_and_expires(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id, gateway_id, _ = pix_waiting(service)
    ctx = FakeJobContext("job-verify", attempt=VERIFY_POLLS, max_attempts=VERIFY_POLLS)
    result = jobs.verify(PaymentJob(payment_id=payment_id), ctx)
    assert (result["status"], result["polled"], result["polls"]) == ("EXPIRED", True, VERIFY_POLLS)
    [cancel] = gateway.calls_to("cancel")
    assert cancel.request == gateway_id and cancel.key
    assert gateway.payments[gateway_id].status == GatewayStatus.CANCELLED
    expired = service.payment(payment_id)
    assert (expired.status, expired.status_detail) == (PaymentStatus.EXPIRED, "expired_unpaid")
    assert "pix" not in expired.public()


def test_a_charge_paid_just_before_its_cancel_is_approved(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id, gateway_id, _ = pix_waiting(service)
    gateway.script_reads(gateway_id, GatewayStatus.PENDING, GatewayStatus.APPROVED)
    gateway.fail_next("cancel", PermanentJobError("already approved", code="GATEWAY_INVALID_STATE"))
    ctx = FakeJobContext("job-verify", attempt=VERIFY_POLLS, max_attempts=VERIFY_POLLS)
    result = jobs.verify(PaymentJob(payment_id=payment_id), ctx)
    assert result["status"] == "APPROVED"
    assert service.payment(payment_id).status == PaymentStatus.APPROVED


def test_a_paid_verification_completes(service: PaymentService, gateway: FakeGateway) -> None:
    payment_id, gateway_id, _ = pix_waiting(service)
    gateway.settle(gateway_id, GatewayStatus.APPROVED, status_detail="accredited")
    result = jobs.verify(
        PaymentJob(payment_id=payment_id), FakeJobContext("job-verify", attempt=2, max_attempts=10)
    )
    assert (result["status"], result["polls"]) == ("APPROVED", 2)


def test_a_verification_of_an_older_generation_does_not_poll(
    service: PaymentService, gateway: FakeGateway, store: FakePaymentsStore
) -> None:
    payment_id, _, _ = pix_waiting(service)
    current = service.payment(payment_id)
    store.put_payment(current.model_copy(update={"generation": 1}), current.version)
    gateway.calls.clear()
    result = jobs.verify(
        PaymentJob(payment_id=payment_id, generation=0), FakeJobContext(attempt=1, max_attempts=10)
    )
    assert result["polled"] is False
    assert gateway.calls == []


# -- payments.webhook ---------------------------------------------------------------------------


def test_a_webhook_about_another_generation_changes_nothing(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id = card(service)
    gateway.card_status = GatewayStatus.REJECTED
    jobs.process(PaymentJob(payment_id=payment_id), FakeJobContext("job-0"))
    old_gateway_id = service.payment(payment_id).gateway_id
    assert old_gateway_id is not None
    service.request_retry(service.payment(payment_id), "tok-2")
    gateway.card_status = GatewayStatus.IN_PROCESS  # the new charge is in review
    retry_ctx = FakeJobContext("job-1")
    jobs.retry(PaymentJob(payment_id=payment_id, generation=1), retry_ctx)
    before = service.payment(payment_id)
    assert (before.status, before.generation) == (PaymentStatus.PROCESSING, 1)
    assert before.gateway_id not in (None, old_gateway_id)
    assert before.verification_job_id is not None
    # the first generation's charge is approved after all (a late chargeback reversal, say)
    gateway.settle(old_gateway_id, GatewayStatus.APPROVED)
    ctx = FakeJobContext("job-webhook", max_attempts=5)
    result = jobs.webhook(WebhookJob(gateway_payment_id=old_gateway_id), ctx)
    assert result["applied"] is False
    after = service.payment(payment_id)
    assert after == before
    assert ctx.woken == []
    assert gateway.calls_to("get_payment")[-1].purpose == "webhook"


def test_a_webhook_that_settles_the_payment_wakes_its_verification(
    service: PaymentService, gateway: FakeGateway
) -> None:
    payment_id, gateway_id, _ = pix_waiting(service)
    verification = service.payment(payment_id).verification_job_id
    assert verification is not None
    ctx = FakeJobContext("job-webhook", max_attempts=5)
    waiting = jobs.webhook(WebhookJob(gateway_payment_id=gateway_id), ctx)  # nothing new yet
    assert (waiting["applied"], ctx.woken) == (False, [])
    gateway.settle(gateway_id, GatewayStatus.APPROVED, status_detail="accredited")
    result = jobs.webhook(WebhookJob(gateway_payment_id=gateway_id), ctx)
    assert (result["applied"], result["status"]) == (True, "APPROVED")
    assert ctx.woken == [verification]
    assert service.payment(payment_id).status == PaymentStatus.APPROVED


def test_a_webhook_about_a_payment_the_gateway_does_not_know_is_dropped(service: PaymentService) -> None:
    result = jobs.webhook(WebhookJob(gateway_payment_id="gw-404"), FakeJobContext(max_attempts=5))
    assert result["applied"] is False


# -- payments.subscription_renewal --------------------------------------------------------------


def subscribe(service: PaymentService) -> str:
    request = SubscriptionRequest(
        plan_id="plan-pro", amount_cents=2_990, interval=Interval.MONTH, card_token="tok-s"
    )
    return service.subscribe(OWNER, request, "maria@example.com").subscription_id


def test_a_renewal_charges_the_period_and_renews(
    service: PaymentService, gateway: FakeGateway, clock: Clock
) -> None:
    sid = subscribe(service)
    result = jobs.subscription_renewal(
        RenewalJob(subscription_id=sid, period=1), FakeJobContext("job-r", max_attempts=5)
    )
    assert result["outcome"] == "RENEWED"
    renewed = service.subscription(sid)
    assert (renewed.next_period, renewed.paid_until, renewed.payments) == (
        2,
        clock() + timedelta(days=30),
        [result["paymentId"]],
    )
    [charge] = gateway.calls_to("charge_card")
    assert (charge.request.card_token, charge.request.amount_cents) == ("tok-s", 2_990)


def test_a_second_renewal_job_stands_aside_while_the_first_holds_its_claim(
    service: PaymentService, gateway: FakeGateway
) -> None:
    sid = subscribe(service)
    gateway.card_status = GatewayStatus.REJECTED
    with pytest.raises(RetryLater):
        jobs.subscription_renewal(
            RenewalJob(subscription_id=sid, period=1), FakeJobContext("job-a", max_attempts=5)
        )
    result = jobs.subscription_renewal(
        RenewalJob(subscription_id=sid, period=1), FakeJobContext("job-b", max_attempts=5)
    )
    assert result["outcome"] == "NOTHING_TO_DO"
    assert len(gateway.calls_to("charge_card")) == 1


def test_renewal_declines_wait_one_two_three_five_days_then_past_due(
    service: PaymentService, gateway: FakeGateway, clock: Clock
) -> None:
    sid = subscribe(service)
    gateway.card_status = GatewayStatus.REJECTED
    payload = RenewalJob(subscription_id=sid, period=1)
    waits = []
    for attempt in range(1, 5):
        with pytest.raises(RetryLater) as later:
            jobs.subscription_renewal(payload, FakeJobContext("job-r", attempt=attempt, max_attempts=5))
        waits.append(later.value.seconds)
        clock.advance(seconds=later.value.seconds)
        assert service.subscription(sid).status == SubscriptionStatus.ACTIVE
    assert waits == [86_400, 2 * 86_400, 3 * 86_400, 5 * 86_400]
    result: dict[str, Any] = jobs.subscription_renewal(
        payload, FakeJobContext("job-r", attempt=5, max_attempts=5)
    )
    assert (result["outcome"], result["declines"]) == ("PAST_DUE", 5)
    after = service.subscription(sid)
    assert (after.status, after.declines, after.next_period) == (SubscriptionStatus.PAST_DUE, 5, 1)
    charges = gateway.calls_to("charge_card")
    assert len(charges) == 5
    assert len({c.key for c in charges}) == 5  # each try a payment (and a charge) of its own
    # past due: no more automatic charges
    again = jobs.subscription_renewal(payload, FakeJobContext("job-late", max_attempts=5))
    assert again["outcome"] == "NOTHING_TO_DO"
    assert len(gateway.calls_to("charge_card")) == 5


def test_a_renewal_declined_on_the_jobs_last_attempt_is_past_due(
    service: PaymentService, gateway: FakeGateway
) -> None:
    """Attempts spent on system failures leave fewer tries: a decline with none left is final."""
    sid = subscribe(service)
    gateway.card_status = GatewayStatus.REJECTED
    last = FakeJobContext("job-r", attempt=5, max_attempts=5)
    result = jobs.subscription_renewal(RenewalJob(subscription_id=sid, period=1), last)
    assert (result["outcome"], result["declines"]) == ("PAST_DUE", 1)
    assert service.subscription(sid).status == SubscriptionStatus.PAST_DUE
