"""The payments rules: a payment's state machine, refunds, retries, renewals. No boto3 and no
HTTP here: the store and the gateway come in as ports, so the rules are tested with fakes.

Two rules carry the weight:
- **No double charge.** Every gateway call that creates or moves money carries a key derived
  from the payment (or subscription) and the step, the same on every attempt of that step, so
  a repeated attempt is the same charge at the gateway.
- **Never backwards.** The gateway's reports are applied only when they move a payment forward
  (models.RANK) and only to the generation they are about, so a late, repeated or reordered
  webhook cannot undo a newer state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from payments.models import (
    OPEN,
    RANK,
    REFUNDABLE,
    RETRYABLE,
    Interval,
    Payer,
    Payment,
    PaymentRequest,
    PaymentStatus,
    PixInstructions,
    Refund,
    RefundStatus,
    Subscription,
    SubscriptionRequest,
    SubscriptionStatus,
    parse_reference,
    status_from_gateway,
)
from payments.provider.port import (
    CardCharge,
    GatewayPayment,
    GatewayStatus,
    PaymentGateway,
    PixCharge,
)
from payments.store import OrderExistsError, PaymentsStore, Record, StaleRecordError
from tarefa import Refusal

KEY_NAMESPACE = uuid.UUID("6f1c3a52-9d0e-4b7a-a1f4-2c8e5d9b7a10")
# PIX_VERIFICATION's own ladder: ten polls over about 28 minutes (the seed: every 1-5 minutes,
# about 30 minutes), the first a minute after the charge is created.
PIX_LADDER = (60, 60, 120, 120, 180, 240, 300, 300, 300)
PIX_POLLS = len(PIX_LADDER) + 1
PIX_FIRST_POLL_SECONDS = 60
PIX_PAYABLE = timedelta(minutes=30)  # a PIX charge's life at the gateway (the verification's ~28 min)
# A declined renewal tries again after 1, 2, 3 and 5 days; the 5th decline makes it PAST_DUE.
RENEWAL_DECLINE_DAYS = (1, 2, 3, 5)
RENEWAL_DECLINES = len(RENEWAL_DECLINE_DAYS) + 1
RENEW_AHEAD = timedelta(days=1)  # the daily run charges what falls due within a day
RENEWAL_CLAIM = timedelta(days=1)  # a renewal job's hold on its period, past its next try
INTERVALS = {Interval.MONTH: timedelta(days=30), Interval.YEAR: timedelta(days=365)}
WRITE_TRIES = 5


def gateway_key(*parts: object) -> str:
    """An idempotency key for the gateway, from what the charge is (never from an attempt)."""
    return str(uuid.uuid5(KEY_NAMESPACE, "/".join(str(p) for p in parts)))


class PaymentError(Refusal):
    code = "PAYMENT_ERROR"
    status = 409


class NotFoundError(PaymentError):
    code = "NOT_FOUND"
    status = 404


class OrderReusedError(PaymentError):
    code = "IDEMPOTENCY_KEY_REUSED"


class InvalidStateError(PaymentError):
    code = "INVALID_STATE"


class RefundTooLargeError(PaymentError):
    code = "REFUND_EXCEEDS_BALANCE"


@dataclass(frozen=True)
class Outcome:
    """What a job reports: the payment's state after it (a business outcome, not a failure)."""

    payment_id: str
    status: str
    status_detail: str = ""
    gateway_id: str | None = None

    def as_result(self) -> dict[str, object]:
        return {
            "paymentId": self.payment_id,
            "status": self.status,
            "statusDetail": self.status_detail,
            "gatewayId": self.gateway_id,
        }


def outcome(payment: Payment) -> Outcome:
    return Outcome(payment.payment_id, str(payment.status), payment.status_detail, payment.gateway_id)


def apply_report(payment: Payment, report: GatewayPayment, now: datetime) -> Payment | None:
    """The payment after the gateway's report, or None when the report changes nothing (about
    another generation, or not forward of what we know)."""
    reference = parse_reference(report.external_reference)
    if reference is not None and reference != (payment.payment_id, payment.generation):
        return None
    if payment.gateway_id is not None and payment.gateway_id != report.gateway_id:
        return None
    status = status_from_gateway(report.status, payment.amount_cents, report.refunded_cents)
    forward = RANK[status] > RANK[payment.status] or (
        status == payment.status and report.refunded_cents > payment.refunded_cents
    )
    first_sight = payment.gateway_id is None
    if first_sight and payment.status in OPEN:
        forward = True  # PROCESSING only meant "asked the gateway": its first answer says where it is
    if not forward and not first_sight:
        return None
    if not forward:  # the charge exists at the gateway: note it, keep the state we decided
        status = payment.status
    changes: dict[str, object] = {
        "gateway_id": report.gateway_id,
        "updated_at": now,
        "refunded_cents": max(payment.refunded_cents, report.refunded_cents),
    }
    if forward:
        changes["status"] = status
        changes["status_detail"] = report.status_detail
    if report.pix is not None:
        changes["pix"] = PixInstructions.of(report.pix)
    return payment.model_copy(update=changes)


def changed(
    read: Callable[[], Record],
    decide: Callable[[Record], Record | None],
    write: Callable[[Record, int], Record],
    key: str,
) -> Record:
    """Read, decide, write if changed (conditional on the version read); decided again, on a
    fresh read, when a concurrent write came first."""
    for _ in range(WRITE_TRIES):
        current = read()
        decided = decide(current)
        if decided is None:
            return current
        try:
            return write(decided, current.version)
        except StaleRecordError:
            continue
    raise StaleRecordError(key)


class PaymentService:
    def __init__(
        self,
        store: PaymentsStore,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.store = store
        self.now = now
        self.new_id = new_id

    # -- reading and writing ---------------------------------------------------------------------
    def payment(self, payment_id: str) -> Payment:
        found = self.store.get_payment(payment_id)
        if found is None:
            raise NotFoundError(f"Payment {payment_id} not found")
        return found

    def change(self, payment_id: str, decide: Callable[[Payment], Payment | None]) -> Payment:
        return changed(lambda: self.payment(payment_id), decide, self.store.put_payment, payment_id)

    # -- HTTP actions --------------------------------------------------------------------------
    def create(
        self,
        owner: str,
        request: PaymentRequest,
        payment_id: str | None = None,
        subscription_id: str | None = None,
    ) -> tuple[Payment, bool]:
        """A new payment, or the one this order already made (False). The same orderId with
        another amount, currency or method is refused."""
        now = self.now()
        payment = Payment(
            payment_id=payment_id or self.new_id(),
            owner=owner,
            subscription_id=subscription_id,
            order_id=request.order_id,
            amount_cents=request.amount_cents,
            currency=request.currency,
            method=request.method,
            description=request.description,
            payer=request.payer,
            card_token=request.card_token,
            created_at=now,
            updated_at=now,
        )
        try:
            self.store.create_payment(payment, request.fingerprint())
        except OrderExistsError as exists:
            if exists.fingerprint != request.fingerprint():
                raise OrderReusedError(
                    f"orderId {request.order_id} already made a payment with another amount or method",
                    {"paymentId": exists.payment_id},
                ) from None
            return self.payment(exists.payment_id), False
        return payment, True

    def request_refund(self, payment: Payment, amount_cents: int | None) -> tuple[Payment, Refund]:
        refund = Refund(
            refund_id=self.new_id(),
            amount_cents=0,
            full=amount_cents is None,
            created_at=self.now(),
        )

        def reserve(current: Payment) -> Payment:
            if current.status not in REFUNDABLE:
                raise InvalidStateError(f"A {current.status} payment cannot be refunded")
            left = current.refundable_cents
            amount = left if amount_cents is None else amount_cents
            if amount <= 0 or amount > left:
                raise RefundTooLargeError(f"Only {left} cents are left to refund", {"refundableCents": left})
            reserved = refund.model_copy(update={"amount_cents": amount})
            return current.model_copy(
                update={"refunds": [*current.refunds, reserved], "updated_at": self.now()}
            )

        changed = self.change(payment.payment_id, reserve)
        return changed, next(r for r in changed.refunds if r.refund_id == refund.refund_id)

    def request_retry(self, payment: Payment, card_token: str | None) -> Payment:
        def restart(current: Payment) -> Payment:
            if current.status not in RETRYABLE:
                raise InvalidStateError(f"A {current.status} payment cannot be retried")
            if card_token is not None and current.method != "card":
                raise InvalidStateError("cardToken is only for card payments")
            return current.model_copy(
                update={
                    "status": PaymentStatus.PENDING,
                    "status_detail": "",
                    "generation": current.generation + 1,
                    "gateway_id": None,
                    "pix": None,
                    "pix_expires_at": None,
                    "verification_job_id": None,
                    "card_token": card_token or current.card_token,
                    "updated_at": self.now(),
                }
            )

        return self.change(payment.payment_id, restart)

    def note_job(self, payment_id: str, job_id: str) -> Payment:
        return self.change(
            payment_id,
            lambda p: None if job_id in p.jobs else p.model_copy(update={"jobs": [*p.jobs, job_id]}),
        )

    # -- jobs --------------------------------------------------------------------------------------
    def charge(
        self, payment_id: str, generation: int, gateway: PaymentGateway, job_id: str, notify_url: str | None
    ) -> Payment:
        """PAYMENT_PROCESS / PAYMENT_RETRY: charge the card or create the PIX charge, once."""

        def start(current: Payment) -> Payment | None:
            if current.generation != generation or current.status not in OPEN or current.gateway_id:
                return None
            jobs = current.jobs if job_id in current.jobs else [*current.jobs, job_id]
            expires = current.pix_expires_at
            if current.method == "pix" and expires is None:  # the same in every attempt's request
                expires = self.now() + PIX_PAYABLE
            if (
                current.status == PaymentStatus.PROCESSING
                and jobs == current.jobs
                and expires == current.pix_expires_at
            ):
                return None
            return current.model_copy(
                update={
                    "status": PaymentStatus.PROCESSING,
                    "jobs": jobs,
                    "pix_expires_at": expires,
                    "updated_at": self.now(),
                }
            )

        payment = self.change(payment_id, start)
        if payment.generation != generation or payment.gateway_id is not None or payment.status not in OPEN:
            return payment  # another generation, at the gateway already, or decided (a refused token)
        if payment.method == "card":
            assert payment.card_token is not None
            report = gateway.charge_card(
                CardCharge(
                    amount_cents=payment.amount_cents,
                    currency=payment.currency,
                    card_token=payment.card_token,
                    payer_email=payment.payer.email,
                    description=payment.description,
                    external_reference=payment.reference(),
                    notification_url=notify_url,
                ),
                gateway_key("charge", payment.payment_id, generation),
            )
        else:
            report = gateway.create_pix(
                PixCharge(
                    amount_cents=payment.amount_cents,
                    currency=payment.currency,
                    payer_email=payment.payer.email,
                    description=payment.description,
                    external_reference=payment.reference(),
                    notification_url=notify_url,
                    expires_at=payment.pix_expires_at,
                ),
                gateway_key("pix", payment.payment_id, generation),
            )
        return self.record(payment_id, report)

    def record(self, payment_id: str, report: GatewayPayment) -> Payment:
        now = self.now()
        return self.change(payment_id, lambda current: apply_report(current, report, now))

    def mark(self, payment_id: str, generation: int, status: PaymentStatus, detail: str) -> Payment:
        """A state this system decides (REJECTED for a token the gateway refused, FAILED when
        it gave up), applied only while the payment is still open in that generation."""

        def decide(current: Payment) -> Payment | None:
            if current.generation != generation or current.status not in OPEN:
                return None
            return current.model_copy(
                update={"status": status, "status_detail": detail, "updated_at": self.now()}
            )

        return self.change(payment_id, decide)

    def set_verification(self, payment_id: str, job_id: str) -> Payment:
        return self.change(
            payment_id,
            lambda p: (
                None
                if p.verification_job_id == job_id
                else p.model_copy(update={"verification_job_id": job_id})
            ),
        )

    def expire(self, payment_id: str, generation: int) -> Payment:
        def decide(current: Payment) -> Payment | None:
            if current.generation != generation or current.status not in OPEN:
                return None
            return current.model_copy(
                update={
                    "status": PaymentStatus.EXPIRED,
                    "status_detail": "expired_unpaid",
                    "updated_at": self.now(),
                }
            )

        return self.change(payment_id, decide)

    def refund_amount(self, payment_id: str, refund_id: str) -> tuple[Payment, Refund]:
        payment = self.payment(payment_id)
        for refund in payment.refunds:
            if refund.refund_id == refund_id:
                return payment, refund
        raise NotFoundError(f"Refund {refund_id} not found on payment {payment_id}")

    def settle_refund(
        self,
        payment_id: str,
        refund_id: str,
        status: RefundStatus,
        gateway_refund_id: str | None,
        error: str | None = None,
    ) -> Payment:
        def decide(current: Payment) -> Payment | None:
            refunds = []
            changed = False
            for refund in current.refunds:
                if refund.refund_id == refund_id and refund.status == RefundStatus.PENDING:
                    settled = refund.model_copy(
                        update={"status": status, "gateway_refund_id": gateway_refund_id, "error": error}
                    )
                    refunds.append(settled)
                    changed = True
                else:
                    refunds.append(refund)
            if not changed:
                return None
            refunded = sum(r.amount_cents for r in refunds if r.status == RefundStatus.REFUNDED)
            new_status = current.status
            if status == RefundStatus.REFUNDED:
                new_status = (
                    PaymentStatus.REFUNDED
                    if refunded >= current.amount_cents
                    else PaymentStatus.PARTIALLY_REFUNDED
                )
                if RANK[new_status] < RANK[current.status]:
                    new_status = current.status
            return current.model_copy(
                update={
                    "refunds": refunds,
                    "refunded_cents": max(refunded, current.refunded_cents),
                    "status": new_status,
                    "updated_at": self.now(),
                }
            )

        return self.change(payment_id, decide)

    # -- subscriptions ---------------------------------------------------------------------------
    def subscribe(self, owner: str, request: SubscriptionRequest, email: str) -> Subscription:
        now = self.now()
        subscription = Subscription(
            subscription_id=self.new_id(),
            owner=owner,
            plan_id=request.plan_id,
            amount_cents=request.amount_cents,
            currency=request.currency,
            interval=request.interval,
            card_token=request.card_token,
            payer=request.payer or Payer(email=email),
            paid_until=now,  # the first period is charged at once
            created_at=now,
            updated_at=now,
        )
        self.store.create_subscription(subscription)
        return subscription

    def subscription(self, subscription_id: str) -> Subscription:
        found = self.store.get_subscription(subscription_id)
        if found is None:
            raise NotFoundError(f"Subscription {subscription_id} not found")
        return found

    def change_subscription(
        self, subscription_id: str, decide: Callable[[Subscription], Subscription | None]
    ) -> Subscription:
        return changed(
            lambda: self.subscription(subscription_id), decide, self.store.put_subscription, subscription_id
        )

    def cancel_subscription(self, subscription: Subscription) -> Subscription:
        def decide(current: Subscription) -> Subscription | None:
            if current.status == SubscriptionStatus.CANCELLED:
                return None
            now = self.now()
            return current.model_copy(
                update={"status": SubscriptionStatus.CANCELLED, "cancelled_at": now, "updated_at": now}
            )

        return self.change_subscription(subscription.subscription_id, decide)

    def renewal_payment(self, subscription: Subscription, period: int, decline: int) -> Payment:
        """The payment of one try at one period: its id and order come from what it is, so a
        repeated or duplicated renewal job finds the same payment instead of making another."""
        order = f"subscription.{subscription.subscription_id}.{period}.{decline}"
        request = PaymentRequest(
            order_id=order,
            amount_cents=subscription.amount_cents,
            currency=subscription.currency,
            method="card",
            card_token=subscription.card_token,
            description=f"{subscription.plan_id} period {period}",
            payer=subscription.payer,
        )
        payment_id = gateway_key("renewal-payment", subscription.subscription_id, period, decline)
        return self.create(subscription.owner, request, payment_id, subscription.subscription_id)[0]

    def claim_renewal(self, subscription_id: str, period: int, job_id: str) -> Subscription | None:
        """The subscription, claimed for `job_id`'s renewal of `period`; None when there is
        nothing to renew or another job's claim holds."""
        claimed: list[Subscription] = []

        def decide(current: Subscription) -> Subscription | None:
            claimed.clear()
            if current.status != SubscriptionStatus.ACTIVE or current.next_period != period:
                return None
            now = self.now()
            held = current.renewal_claimed_until is not None and current.renewal_claimed_until > now
            if current.renewal_job_id not in (None, job_id) and held:
                return None
            claimed.append(current)
            if current.renewal_job_id == job_id and held:
                return None  # ours already (a repeated attempt)
            return current.model_copy(
                update={
                    "renewal_job_id": job_id,
                    "renewal_claimed_until": now + RENEWAL_CLAIM,
                    "updated_at": now,
                }
            )

        after = self.change_subscription(subscription_id, decide)
        return after if claimed else None

    def renewed(self, subscription_id: str, period: int, payment_id: str) -> Subscription:
        def decide(current: Subscription) -> Subscription | None:
            if current.next_period != period:
                return None
            start = max(current.paid_until, self.now()) if period == 1 else current.paid_until
            return current.model_copy(
                update={
                    "next_period": period + 1,
                    "paid_until": start + INTERVALS[current.interval],
                    "declines": 0,
                    "payments": [*current.payments, payment_id],
                    "renewal_job_id": None,
                    "renewal_claimed_until": None,
                    "updated_at": self.now(),
                }
            )

        return self.change_subscription(subscription_id, decide)

    def declined(self, subscription_id: str, period: int, decline: int, last: bool) -> Subscription:
        """One more decline of `period`; PAST_DUE at the fifth (or when no attempt is left)."""

        def decide(current: Subscription) -> Subscription | None:
            if current.next_period != period or current.declines != decline:
                return None
            declines = decline + 1
            past_due = declines >= RENEWAL_DECLINES or last
            now = self.now()
            wait = timedelta(days=RENEWAL_DECLINE_DAYS[min(declines, len(RENEWAL_DECLINE_DAYS)) - 1])
            return current.model_copy(
                update={
                    "declines": declines,
                    "status": SubscriptionStatus.PAST_DUE if past_due else current.status,
                    "renewal_claimed_until": None if past_due else now + wait + RENEWAL_CLAIM,
                    "updated_at": now,
                }
            )

        return self.change_subscription(subscription_id, decide)


def is_open_at_gateway(report: GatewayPayment) -> bool:
    return report.status in (GatewayStatus.PENDING, GatewayStatus.IN_PROCESS, GatewayStatus.AUTHORIZED)
