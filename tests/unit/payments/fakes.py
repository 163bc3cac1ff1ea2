"""In-memory stand-ins for the payments workload's ports, for unit tests with no network.

- `FakePaymentsStore`: `PaymentsStore`'s public methods and semantics (optimistic versions,
  one payment per owner's order, the sparse RenewalsDue rule, ByOwner's newest-first pages
  with the real cursor encoding), records kept as the real store keeps them (its JSON doc,
  card tokens included).
- `FakeGateway`: the `PaymentGateway` port, deterministic: gateway ids count up, outcomes are
  scripted per idempotency key (charges, cancels, refunds) or per gateway id (reads), a repeated
  key answers what the first call made, and every call is recorded with its key.
- `FakeJobContext`: a real `JobContext` (attempt, is_last_attempt, job_id, step_key) whose
  enqueue and wake are recorded instead of sent.
- `Clock` and `Ids` (tests/unit/fakes.py): a clock the test moves and ids that count up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from payments.models import Payment, Subscription, SubscriptionStatus
from payments.provider.port import (
    CardCharge,
    CardCheck,
    GatewayPayment,
    GatewayRefund,
    GatewayStatus,
    PixCharge,
    PixCode,
    ReadPurpose,
)
from payments.service import PaymentService
from payments.store import (
    OrderExistsError,
    StaleRecordError,
    _doc,
    _stamp,
    decode_cursor,
    encode_cursor,
    renew_shard,
)

from tarefa import JobContext, PermanentJobError

if TYPE_CHECKING:
    from payments.store import PaymentsStore

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def fake_service(
    store: FakePaymentsStore, clock: Callable[[], datetime], new_id: Callable[[], str] | None = None
) -> PaymentService:
    """The real PaymentService on the fake store (a PaymentsStore in all but its class)."""
    if new_id is None:
        return PaymentService(cast("PaymentsStore", store), now=clock)
    return PaymentService(cast("PaymentsStore", store), now=clock, new_id=new_id)


# -- the store ------------------------------------------------------------------------------------


class FakePaymentsStore:
    """`PaymentsStore` in memory. Records are kept as the real store's `doc` (JSON, with the
    fields views exclude), so every read is a fresh copy and nothing the caller holds aliases
    what is stored.

    `before_write` holds callables to play a concurrent writer between a caller's read and its
    write: the first is run (and removed) just before each write."""

    def __init__(self) -> None:
        self.payments: dict[str, str] = {}
        self.orders: dict[tuple[str, str], tuple[str, str]] = {}
        self.subscriptions: dict[str, str] = {}
        self.before_write: list[Callable[[], object]] = []
        self._interleaving = False
        self.writes = 0
        self.stale = 0  # conditional writes refused

    def _interleave(self) -> None:
        if self.before_write and not self._interleaving:  # the writer's own writes run none
            self._interleaving = True
            try:
                self.before_write.pop(0)()
            finally:
                self._interleaving = False

    # -- payments ------------------------------------------------------------------------------
    def get_payment(self, payment_id: str) -> Payment | None:
        doc = self.payments.get(payment_id)
        return Payment.model_validate_json(doc) if doc is not None else None

    def order(self, owner: str, order_id: str) -> tuple[str, str] | None:
        return self.orders.get((owner, order_id))

    def create_payment(self, payment: Payment, fingerprint: str) -> None:
        self._interleave()
        found = self.orders.get((payment.owner, payment.order_id))
        if found is not None:
            raise OrderExistsError(*found)
        if payment.payment_id in self.payments:  # the real store: the transaction is cancelled
            raise StaleRecordError(payment.payment_id)
        self.orders[(payment.owner, payment.order_id)] = (payment.payment_id, fingerprint)
        self.payments[payment.payment_id] = _doc(payment)
        self.writes += 1

    def put_payment(self, payment: Payment, expected_version: int) -> Payment:
        self._interleave()
        written = payment.model_copy(update={"version": expected_version + 1})
        current = self.get_payment(payment.payment_id)
        if current is None or current.version != expected_version:  # `version = :v` fails
            self.stale += 1
            raise StaleRecordError(f"payment#{payment.payment_id}")
        self.payments[payment.payment_id] = _doc(written)
        self.writes += 1
        return written

    def list_payments(
        self, owner: str, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Payment], str | None]:
        """ByOwner, newest first. As DynamoDB does, `limit` items are read and then filtered
        by status, so a page may hold fewer than `limit` and still carry a cursor."""
        owner_kind = f"{owner}#payment"
        mine = [p for p in map(Payment.model_validate_json, self.payments.values()) if p.owner == owner]
        mine.sort(key=lambda p: (_stamp(p.created_at), p.payment_id), reverse=True)
        if cursor:
            key = decode_cursor(cursor, owner_kind)
            after = (key["createdAt"]["S"], key["pk"]["S"].removeprefix("payment#"))
            mine = [p for p in mine if (_stamp(p.created_at), p.payment_id) < after]
        page, rest = mine[:limit], mine[limit:]
        items = [p for p in page if status is None or str(p.status) == status]
        if not rest:
            return items, None
        last = page[-1]
        return items, encode_cursor(
            {
                "pk": {"S": f"payment#{last.payment_id}"},
                "ownerKind": {"S": owner_kind},
                "createdAt": {"S": _stamp(last.created_at)},
            }
        )

    # -- subscriptions -------------------------------------------------------------------------
    def get_subscription(self, subscription_id: str) -> Subscription | None:
        doc = self.subscriptions.get(subscription_id)
        return Subscription.model_validate_json(doc) if doc is not None else None

    def create_subscription(self, subscription: Subscription) -> None:
        self._interleave()
        if subscription.subscription_id in self.subscriptions:  # `attribute_not_exists(pk)`
            raise StaleRecordError(subscription.subscription_id)
        self.subscriptions[subscription.subscription_id] = _doc(subscription)
        self.writes += 1

    def put_subscription(self, subscription: Subscription, expected_version: int) -> Subscription:
        self._interleave()
        written = subscription.model_copy(update={"version": expected_version + 1})
        current = self.get_subscription(subscription.subscription_id)
        if current is None or current.version != expected_version:
            self.stale += 1
            raise StaleRecordError(f"subscription#{subscription.subscription_id}")
        self.subscriptions[subscription.subscription_id] = _doc(written)
        self.writes += 1
        return written

    def due_subscriptions(self, until: datetime) -> Iterator[tuple[str, int]]:
        """RenewalsDue, shard by shard: only ACTIVE subscriptions are in the index, each found
        when its paidUntil is `until` or earlier (compared as the index's strings)."""
        indexed = [
            s
            for s in map(Subscription.model_validate_json, self.subscriptions.values())
            if s.status == SubscriptionStatus.ACTIVE
        ]
        indexed.sort(key=lambda s: (int(renew_shard(s.subscription_id)), _stamp(s.paid_until)))
        for subscription in indexed:
            if _stamp(subscription.paid_until) <= _stamp(until):
                yield subscription.subscription_id, subscription.next_period


# -- the gateway ----------------------------------------------------------------------------------

Scripted = GatewayStatus | GatewayPayment | Exception


@dataclass(frozen=True)
class Call:
    """One call the gateway received: its method, idempotency key (None for reads and card
    checks), and what it was given (the charge, the gateway id, the refund's amount...)."""

    method: str
    key: str | None
    request: Any = None
    purpose: ReadPurpose | None = None


@dataclass
class FakeGateway:
    """The `PaymentGateway` port in memory.

    Charges: `script(key, ...)` queues outcomes for one idempotency key (a status, a whole
    report, or an exception to raise); each call with the key takes the next one. Without one, a
    card is `card_status` (approved) and a PIX charge `pending`. A key that already made a
    payment answers that payment again, as the gateway does. `fail_next(method, ...)` makes the
    next calls of a method raise whatever their key (a timeout before the gateway made anything).

    Reads: `script_reads(gateway_id, ...)` queues what the next reads answer (a status moves
    the gateway's payment there; an exception is raised). Without one, the payment as it is.
    `settle(gateway_id, status)` changes the gateway's truth (a payer paying a PIX code).

    Cancels: a pending or in-process payment becomes cancelled; any other state raises the
    adapter's GATEWAY_INVALID_STATE. Refunds: approved, of what is asked or all that is left.
    """

    card_status: GatewayStatus = GatewayStatus.APPROVED
    calls: list[Call] = field(default_factory=list)
    payments: dict[str, GatewayPayment] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)  # idempotency key -> gateway id
    refunds_by_key: dict[str, GatewayRefund] = field(default_factory=dict)
    scripted: dict[str, list[Scripted]] = field(default_factory=dict)
    scripted_reads: dict[str, list[GatewayStatus | Exception]] = field(default_factory=dict)
    cards: dict[str, CardCheck] = field(default_factory=dict)
    failures: dict[str, list[Exception]] = field(default_factory=dict)  # method -> next errors
    count: int = 0

    # -- scripting -------------------------------------------------------------------------------
    def script(self, key: str, *outcomes: Scripted) -> None:
        self.scripted.setdefault(key, []).extend(outcomes)

    def fail_next(self, method: str, *errors: Exception) -> None:
        """The next calls of `method` (whatever their key) raise these, before anything is made."""
        self.failures.setdefault(method, []).extend(errors)

    def _failure(self, method: str) -> None:
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)

    def script_reads(self, gateway_id: str, *outcomes: GatewayStatus | Exception) -> None:
        self.scripted_reads.setdefault(gateway_id, []).extend(outcomes)

    def settle(self, gateway_id: str, status: GatewayStatus, **changes: Any) -> GatewayPayment:
        moved = self.payments[gateway_id].model_copy(update={"status": status, **changes})
        self.payments[gateway_id] = moved
        return moved

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def _next(self, key: str) -> Scripted | None:
        queued = self.scripted.get(key)
        return queued.pop(0) if queued else None

    def _create(self, key: str, report: GatewayPayment) -> GatewayPayment:
        if key in self.by_key:  # the gateway's idempotency: the same key is the same payment
            return self.payments[self.by_key[key]]
        self.count += 1
        made = report.model_copy(update={"gateway_id": report.gateway_id or f"gw-{self.count}"})
        self.payments[made.gateway_id] = made
        self.by_key[key] = made.gateway_id
        return made

    def _charge(self, key: str, base: GatewayPayment) -> GatewayPayment:
        scripted = self._next(key)
        if isinstance(scripted, Exception):
            raise scripted
        if isinstance(scripted, GatewayPayment):
            return self._create(key, scripted)
        if scripted is not None:
            base = base.model_copy(update={"status": scripted})
        return self._create(key, base)

    # -- the port --------------------------------------------------------------------------------
    def charge_card(self, charge: CardCharge, idempotency_key: str) -> GatewayPayment:
        self.calls.append(Call("charge_card", idempotency_key, charge))
        self._failure("charge_card")
        detail = {GatewayStatus.APPROVED: "accredited", GatewayStatus.REJECTED: "cc_rejected_other_reason"}
        return self._charge(
            idempotency_key,
            GatewayPayment(
                gateway_id="",
                status=self.card_status,
                status_detail=detail.get(self.card_status, ""),
                method="card",
                amount_cents=charge.amount_cents,
                currency=charge.currency,
                external_reference=charge.external_reference,
            ),
        )

    def create_pix(self, charge: PixCharge, idempotency_key: str) -> GatewayPayment:
        self.calls.append(Call("create_pix", idempotency_key, charge))
        self._failure("create_pix")
        expires = charge.expires_at.isoformat() if charge.expires_at else None
        return self._charge(
            idempotency_key,
            GatewayPayment(
                gateway_id="",
                status=GatewayStatus.PENDING,
                status_detail="pending_waiting_transfer",
                method="pix",
                amount_cents=charge.amount_cents,
                currency=charge.currency,
                external_reference=charge.external_reference,
                pix=PixCode(qr_code=f"000201pix-{idempotency_key[:8]}", expires_at=expires),
            ),
        )

    def get_payment(self, gateway_id: str, purpose: ReadPurpose = "read") -> GatewayPayment:
        self.calls.append(Call("get_payment", None, gateway_id, purpose))
        queued = self.scripted_reads.get(gateway_id)
        if queued:
            outcome = queued.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            self.settle(gateway_id, outcome)
        if gateway_id not in self.payments:
            raise PermanentJobError(f"payment {gateway_id} not found", code="GATEWAY_NOT_FOUND")
        return self.payments[gateway_id]

    def cancel(self, gateway_id: str, idempotency_key: str) -> GatewayPayment:
        self.calls.append(Call("cancel", idempotency_key, gateway_id))
        self._failure("cancel")
        scripted = self._next(idempotency_key)
        if isinstance(scripted, Exception):
            raise scripted
        current = self.payments[gateway_id]
        if current.status == GatewayStatus.CANCELLED:
            return current
        if current.status not in (GatewayStatus.PENDING, GatewayStatus.IN_PROCESS):
            raise PermanentJobError(f"payment {gateway_id} is {current.status}", code="GATEWAY_INVALID_STATE")
        return self.settle(gateway_id, GatewayStatus.CANCELLED, status_detail="by_collector")

    def refund(self, gateway_id: str, amount_cents: int | None, idempotency_key: str) -> GatewayRefund:
        self.calls.append(Call("refund", idempotency_key, (gateway_id, amount_cents)))
        self._failure("refund")
        scripted = self._next(idempotency_key)
        if isinstance(scripted, Exception):
            raise scripted
        if idempotency_key in self.refunds_by_key:
            return self.refunds_by_key[idempotency_key]
        current = self.payments[gateway_id]
        amount = current.amount_cents - current.refunded_cents if amount_cents is None else amount_cents
        self.count += 1
        made = GatewayRefund(gateway_id=f"rf-{self.count}", amount_cents=amount, status="approved")
        refunded = current.refunded_cents + amount
        self.settle(
            gateway_id,
            GatewayStatus.REFUNDED if refunded >= current.amount_cents else current.status,
            refunded_cents=refunded,
            refunds=(*current.refunds, made),
        )
        self.refunds_by_key[idempotency_key] = made
        return made

    def check_card(self, card_token: str) -> CardCheck:
        self.calls.append(Call("check_card", None, card_token))
        return self.cards.get(card_token, CardCheck(valid=True, last_four="4242", expiration="12/2030"))


# -- the job context ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enqueued:
    job_type: str
    payload: Any
    step: str | None
    delay_seconds: int
    job_id: str


class FakeJobContext(JobContext):
    """A real JobContext (attempt, max_attempts, is_last_attempt, job_id, step_key) whose
    follow-up jobs and wake-ups are recorded. An enqueue is idempotent per step, as the real
    one is: the same step gives the same job id. secret() and http are not configured (the
    tests replace `payments.jobs.gateway`)."""

    def __init__(
        self, job_id: str = "job-1", attempt: int = 1, max_attempts: int = 3, user_id: str = "user-1"
    ) -> None:
        super().__init__(job_id, attempt, max_attempts, user_id)
        self.enqueued: list[Enqueued] = []
        self.woken: list[str] = []

    def enqueue(
        self,
        job_type: str,
        payload: Any,
        *,
        step: str | None = None,
        priority: str | None = None,
        delay_seconds: int = 0,
        max_attempts: int | None = None,
        order_id: str | None = None,
        callback_url: str | None = None,
    ) -> str:
        job_id = str(uuid.uuid5(uuid.NAMESPACE_URL, self.step_key(f"enqueue:{step or job_type}")))
        self.enqueued.append(Enqueued(job_type, payload, step, delay_seconds, job_id))
        return job_id

    def wake(self, job_id: str) -> bool:
        self.woken.append(job_id)
        return True
