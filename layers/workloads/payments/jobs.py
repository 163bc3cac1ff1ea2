"""The payments job types: seed 000's seven, its names accepted as aliases.

Each handler reads top to bottom: payload, policy, the service call. A declined card, an
expired PIX charge or a past-due subscription is a business outcome: the job ends COMPLETED
with it in its result; only failures of the system end a job FAILED.

This module loads on the API's cold start (to validate payloads): the gateway adapter and the
table's client load on first use, in the worker.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

from payments.models import (
    OPEN,
    CheckoutValidation,
    PaymentJob,
    PaymentStatus,
    RefundJob,
    RefundStatus,
    RenewalJob,
    SubscriptionStatus,
    WebhookJob,
    parse_reference,
)
from payments.service import (
    PIX_FIRST_POLL_SECONDS,
    PIX_LADDER,
    PIX_POLLS,
    RENEWAL_DECLINE_DAYS,
    PaymentService,
    gateway_key,
    outcome,
)
from tarefa import JobContext, JobPolicy, PermanentJobError, Priority, RetryableJobError, RetryLater, job_type

if TYPE_CHECKING:
    from payments.provider.port import PaymentGateway

SECRET_NAME = "payments/mercadopago"  # noqa: S105 - a name: {"accessToken", "webhookSecret", "baseUrl"?}
NOTIFICATION_URL_VARIABLE = "PAYMENTS_NOTIFICATION_URL"
TIMEOUT_VARIABLE = "PAYMENTS_GATEWAY_TIMEOUT_SECONDS"
# The gateway refused the card token itself: for the payer, a declined card.
TOKEN_REFUSED = frozenset({"CARD_TOKEN_INVALID"})
# The gateway refused a refund of this payment (its state, its age): the refund's outcome.
REFUND_REFUSED = frozenset({"GATEWAY_INVALID_STATE", "GATEWAY_REJECTED_REQUEST", "CARD_TOKEN_INVALID"})


@cache
def service() -> PaymentService:
    from payments.store import PaymentsStore

    return PaymentService(PaymentsStore())


def gateway(ctx: JobContext) -> PaymentGateway:
    """Mercado Pago's adapter with the stage's credentials, through the engine's safe client.
    The read timeout (PAYMENTS_GATEWAY_TIMEOUT_SECONDS, default 10) stays well under the job's."""
    from payments.provider.mercadopago import gateway_from_settings

    read = float(os.environ.get(TIMEOUT_VARIABLE) or 10)
    try:
        return gateway_from_settings(
            ctx.http, ctx.secret(SECRET_NAME, "json"), timeout=(min(3.0, read), read)
        )
    except ValueError as exc:  # the secret is there but not filled in: an operator's fix
        raise PermanentJobError(
            f"the payment gateway is not configured: {exc}", code="GATEWAY_NOT_CONFIGURED"
        ) from None


def notification_url() -> str | None:
    return os.environ.get(NOTIFICATION_URL_VARIABLE) or None


def _charge(payload: PaymentJob, ctx: JobContext) -> dict[str, Any]:
    payments = service()
    try:
        payment = payments.charge(
            payload.payment_id, payload.generation, gateway(ctx), ctx.job_id, notification_url()
        )
    except PermanentJobError as exc:
        if exc.code in TOKEN_REFUSED:
            payment = payments.mark(
                payload.payment_id, payload.generation, PaymentStatus.REJECTED, "invalid_card_token"
            )
            return outcome(payment).as_result()
        payments.mark(payload.payment_id, payload.generation, PaymentStatus.FAILED, exc.code.lower())
        raise
    except RetryableJobError:
        if ctx.is_last_attempt:
            payments.mark(payload.payment_id, payload.generation, PaymentStatus.FAILED, "gateway_unavailable")
        raise
    if payment.status in OPEN and payment.gateway_id and payment.generation == payload.generation:
        # A PIX charge waiting for its payer, or a card in review: look until it settles.
        verification = ctx.enqueue(
            "payments.verify",
            payload,
            step=f"verify-{payload.generation}",
            delay_seconds=PIX_FIRST_POLL_SECONDS,
        )
        payment = payments.set_verification(payload.payment_id, verification)
    return outcome(payment).as_result()


@job_type(
    "payments.process",
    policy=JobPolicy(priority=Priority.HIGH, max_attempts=3, backoff=(60, 120), timeout_seconds=60),
    aliases=["PAYMENT_PROCESS"],
)
def process(payload: PaymentJob, ctx: JobContext) -> dict[str, Any]:
    """Charge the card, or create the PIX charge, and record the outcome on the payment."""
    return _charge(payload, ctx)


@job_type(
    "payments.retry",
    policy=JobPolicy(priority=Priority.HIGH, max_attempts=3, backoff=(60, 120), timeout_seconds=60),
    aliases=["PAYMENT_RETRY"],
)
def retry(payload: PaymentJob, ctx: JobContext) -> dict[str, Any]:
    """The user's new attempt at a rejected or failed payment: a new charge (a new generation)."""
    return _charge(payload, ctx)


@job_type(
    "payments.checkout_validation",
    policy=JobPolicy(priority=Priority.HIGH, max_attempts=3, backoff=(5, 15), timeout_seconds=30),
    aliases=["CHECKOUT_VALIDATION"],
)
def checkout_validation(payload: CheckoutValidation, ctx: JobContext) -> dict[str, Any]:
    """Ask the gateway about a card token before anything is charged."""
    try:
        check = gateway(ctx).check_card(payload.card_token)
    except PermanentJobError as exc:
        if exc.code not in ("GATEWAY_NOT_FOUND", *TOKEN_REFUSED):
            raise
        return {"valid": False, "reason": "not_found"}
    return {
        "valid": check.valid,
        "reason": check.reason,
        "lastFour": check.last_four,
        "expiration": check.expiration,
    }


@job_type(
    "payments.refund",
    policy=JobPolicy(priority=Priority.HIGH, max_attempts=3, backoff=(60, 120), timeout_seconds=60),
    aliases=["PAYMENT_REFUND"],
)
def refund(payload: RefundJob, ctx: JobContext) -> dict[str, Any]:
    """Give back a refund's amount (reserved on the payment when it was asked for)."""
    payments = service()
    payment, asked = payments.refund_amount(payload.payment_id, payload.refund_id)
    if asked.status == RefundStatus.PENDING:
        assert payment.gateway_id is not None  # only an approved payment takes refunds
        key = gateway_key("refund", payment.payment_id, asked.refund_id)
        try:
            done = gateway(ctx).refund(payment.gateway_id, asked.amount_cents, key)
        except PermanentJobError as exc:
            if exc.code not in REFUND_REFUSED:
                raise
            payment = payments.settle_refund(
                payment.payment_id, asked.refund_id, RefundStatus.FAILED, None, exc.code
            )
        except RetryableJobError:
            if ctx.is_last_attempt:
                payments.settle_refund(
                    payment.payment_id, asked.refund_id, RefundStatus.FAILED, None, "GATEWAY_UNAVAILABLE"
                )
            raise
        else:
            payment = payments.settle_refund(
                payment.payment_id, asked.refund_id, RefundStatus.REFUNDED, done.gateway_id
            )
    settled = next(r for r in payment.refunds if r.refund_id == payload.refund_id)
    return {
        **outcome(payment).as_result(),
        "refund": settled.model_dump(mode="json", by_alias=True),
        "refundedCents": payment.refunded_cents,
    }


@job_type(
    "payments.webhook",
    policy=JobPolicy(priority=Priority.MEDIUM, max_attempts=5, backoff=(10, 30, 90, 270), timeout_seconds=30),
    aliases=["WEBHOOK_PROCESS"],
)
def webhook(payload: WebhookJob, ctx: JobContext) -> dict[str, Any]:
    """Apply a gateway notification: its body is never trusted, the payment is read again from
    the gateway and applied only if it moves ours forward; a verification waiting on it wakes."""
    gw = gateway(ctx)
    try:
        report = gw.get_payment(payload.gateway_payment_id, purpose="webhook")
    except PermanentJobError as exc:
        if exc.code != "GATEWAY_NOT_FOUND":
            raise
        return {"applied": False, "reason": "the gateway does not know this payment"}
    reference = parse_reference(report.external_reference)
    payments = service()
    before = payments.store.get_payment(reference[0]) if reference else None
    if before is None:
        return {"applied": False, "reason": "not a payment of this system"}
    after = payments.record(before.payment_id, report)
    if after.status not in OPEN and after.verification_job_id:
        ctx.wake(after.verification_job_id)
    return {**outcome(after).as_result(), "applied": after.version != before.version}


@job_type(
    "payments.verify",
    policy=JobPolicy(
        priority=Priority.MEDIUM, max_attempts=PIX_POLLS, backoff=PIX_LADDER, timeout_seconds=60
    ),
    aliases=["PIX_VERIFICATION"],
)
def verify(payload: PaymentJob, ctx: JobContext) -> dict[str, Any]:
    """Poll a PIX charge (or a card in review) until it settles; unpaid after the last poll,
    it is cancelled at the gateway and the payment EXPIRED."""
    payments = service()
    payment = payments.payment(payload.payment_id)
    if payment.generation != payload.generation or payment.status not in OPEN or payment.gateway_id is None:
        return {**outcome(payment).as_result(), "polled": False}
    gw = gateway(ctx)
    payment = payments.record(payment.payment_id, gw.get_payment(payment.gateway_id, purpose="poll"))
    if payment.status not in OPEN:
        return {**outcome(payment).as_result(), "polled": True, "polls": ctx.attempt}
    if not ctx.is_last_attempt:
        raise RetryLater(PIX_LADDER[min(ctx.attempt, len(PIX_LADDER)) - 1], "not paid yet")
    assert payment.gateway_id is not None
    try:
        report = gw.cancel(payment.gateway_id, gateway_key("cancel", payment.payment_id, payment.generation))
    except PermanentJobError as exc:  # paid (or cancelled) just now: the gateway's word wins
        if exc.code != "GATEWAY_INVALID_STATE":
            raise
        report = gw.get_payment(payment.gateway_id, purpose="read")
    if report.status == "cancelled":
        payment = payments.expire(payment.payment_id, payment.generation)
    payment = payments.record(payment.payment_id, report)
    return {**outcome(payment).as_result(), "polled": True, "polls": ctx.attempt}


@job_type(
    "payments.subscription_renewal",
    policy=JobPolicy(priority=Priority.MEDIUM, max_attempts=5, timeout_seconds=60),
    aliases=["SUBSCRIPTION_RENEWAL"],
)
def subscription_renewal(payload: RenewalJob, ctx: JobContext) -> dict[str, Any]:
    """Charge a subscription's next period. A decline tries again in 1, 2, 3 and 5 days; the
    fifth makes the subscription PAST_DUE. System failures retry with the usual backoff."""
    payments = service()
    subscription = payments.claim_renewal(payload.subscription_id, payload.period, ctx.job_id)
    if subscription is None:  # renewed, cancelled, past due, or another job renews this period
        current = payments.subscription(payload.subscription_id)
        return {
            "outcome": "NOTHING_TO_DO",
            "subscriptionStatus": str(current.status),
            "period": payload.period,
        }
    decline = subscription.declines
    payment = payments.renewal_payment(subscription, payload.period, decline)
    try:
        payment = payments.charge(payment.payment_id, 0, gateway(ctx), ctx.job_id, notification_url())
    except PermanentJobError as exc:
        if exc.code not in TOKEN_REFUSED:
            raise
        payment = payments.mark(payment.payment_id, 0, PaymentStatus.REJECTED, "invalid_card_token")
    result = {
        "subscriptionId": subscription.subscription_id,
        "period": payload.period,
        "paymentId": payment.payment_id,
    }
    if payment.status == PaymentStatus.APPROVED:
        renewed = payments.renewed(subscription.subscription_id, payload.period, payment.payment_id)
        return {**result, "outcome": "RENEWED", "paidUntil": renewed.paid_until.isoformat()}
    if payment.status in OPEN:
        raise RetryLater(300, "the charge is in review")
    after = payments.declined(subscription.subscription_id, payload.period, decline, last=ctx.is_last_attempt)
    if after.status == SubscriptionStatus.PAST_DUE:
        return {**result, "outcome": "PAST_DUE", "declines": after.declines}
    days = RENEWAL_DECLINE_DAYS[min(after.declines, len(RENEWAL_DECLINE_DAYS)) - 1]
    raise RetryLater(days * 86_400, f"card declined ({after.declines} of 5); next try in {days} days")
