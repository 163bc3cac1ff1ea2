"""The payments workload's records and bodies: what a payment and a subscription are, what the
routes accept and answer, and the job payloads.

Money is integer cents with an ISO currency. Card numbers never enter the system, only the
gateway's card tokens, and no token is ever shown back. The payer's e-mail is personal data: it
is stored (the gateway needs it) and shown to the payment's owner, never logged.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from payments.provider.port import GatewayStatus, Method, PixCode

DEFAULT_CURRENCY = "BRL"
MAX_AMOUNT_CENTS = 100_000_000_00  # a hundred million in the currency: beyond that, a typo
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PaymentStatus(StrEnum):
    PENDING = "PENDING"  # accepted; a job will charge it (or a PIX charge waits for its payer)
    PROCESSING = "PROCESSING"  # at the gateway, its answer not final yet
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"  # declined: a business outcome, retried only when the user asks
    FAILED = "FAILED"  # the system gave up after its attempts (the gateway's truth may follow)
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"  # a PIX charge nobody paid in time (cancelled at the gateway)


# How far along a payment is: the gateway's reports only ever move it forward, so a late or
# repeated webhook cannot undo what a newer one said. FAILED sits below the outcomes: it means
# "we gave up asking", and the gateway's word (approved after all) wins.
RANK = {
    PaymentStatus.PENDING: 0,
    PaymentStatus.PROCESSING: 1,
    PaymentStatus.FAILED: 2,
    PaymentStatus.APPROVED: 3,
    PaymentStatus.REJECTED: 3,
    PaymentStatus.CANCELLED: 3,
    PaymentStatus.EXPIRED: 3,
    PaymentStatus.PARTIALLY_REFUNDED: 4,
    PaymentStatus.REFUNDED: 5,
}
OPEN = frozenset({PaymentStatus.PENDING, PaymentStatus.PROCESSING})
RETRYABLE = frozenset({PaymentStatus.REJECTED, PaymentStatus.FAILED})
REFUNDABLE = frozenset({PaymentStatus.APPROVED, PaymentStatus.PARTIALLY_REFUNDED})


def status_from_gateway(status: GatewayStatus, amount_cents: int, refunded_cents: int) -> PaymentStatus:
    if status in (GatewayStatus.APPROVED, GatewayStatus.IN_MEDIATION):
        if refunded_cents >= amount_cents > 0:
            return PaymentStatus.REFUNDED
        return PaymentStatus.PARTIALLY_REFUNDED if refunded_cents > 0 else PaymentStatus.APPROVED
    return {
        GatewayStatus.PENDING: PaymentStatus.PENDING,
        GatewayStatus.AUTHORIZED: PaymentStatus.PROCESSING,
        GatewayStatus.IN_PROCESS: PaymentStatus.PROCESSING,
        GatewayStatus.REJECTED: PaymentStatus.REJECTED,
        GatewayStatus.CANCELLED: PaymentStatus.CANCELLED,
        GatewayStatus.REFUNDED: PaymentStatus.REFUNDED,
        GatewayStatus.CHARGED_BACK: PaymentStatus.REFUNDED,
    }[status]


def _currency(value: str) -> str:
    if len(value) != 3 or not value.isalpha():
        raise ValueError("currency must be an ISO 4217 code such as BRL")
    return value.upper()


Currency = Annotated[str, AfterValidator(_currency)]
Cents = Annotated[int, Field(gt=0, le=MAX_AMOUNT_CENTS)]


class PixInstructions(Camel):
    """What the payer needs while a PIX charge can be paid (the gateway's PixCode, in our names)."""

    qr_code: str  # the copy-and-paste (EMV) code
    qr_code_base64: str = ""  # a PNG of the QR code
    ticket_url: str = ""
    expires_at: str | None = None

    @classmethod
    def of(cls, code: PixCode) -> PixInstructions:
        return cls.model_validate(code.model_dump())


class RefundStatus(StrEnum):
    PENDING = "PENDING"
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"


class Refund(Camel):
    refund_id: str
    amount_cents: int  # 0 while PENDING for "all that is left": fixed when the job runs
    status: RefundStatus = RefundStatus.PENDING
    full: bool = False  # asked for "all that is left"
    gateway_refund_id: str | None = None
    job_id: str | None = None
    created_at: datetime
    error: str | None = None


class Payer(Camel):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class Payment(Camel):
    """A payment as this system records it."""

    payment_id: str
    owner: str
    order_id: str
    amount_cents: int
    currency: str = DEFAULT_CURRENCY
    method: Method
    status: PaymentStatus = PaymentStatus.PENDING
    status_detail: str = ""
    description: str = ""
    payer: Payer
    card_token: str | None = Field(None, exclude=True)  # kept for a retry; never shown
    generation: int = 0  # attempts the user asked for (POST .../retry): each a new charge
    gateway_id: str | None = None  # the gateway's payment of this generation
    pix: PixInstructions | None = None  # while it can be paid
    pix_expires_at: datetime | None = Field(None, exclude=True)  # fixed when its charge starts
    refunded_cents: int = 0
    refunds: list[Refund] = Field(default_factory=list)
    jobs: list[str] = Field(default_factory=list)
    verification_job_id: str | None = None
    subscription_id: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 0

    @property
    def refundable_cents(self) -> int:
        """What is left to refund, counting refunds still on their way."""
        reserved = sum(r.amount_cents for r in self.refunds if r.status == RefundStatus.PENDING)
        return self.amount_cents - self.refunded_cents - reserved

    def reference(self) -> str:
        """The gateway's external_reference: our id and the generation, so a report about an
        older attempt's charge is never taken for the current one's."""
        return f"{self.payment_id}/{self.generation}"

    def public(self) -> dict[str, object]:
        body = self.model_dump(mode="json", by_alias=True, exclude={"owner", "version"})
        if self.status not in OPEN:
            body.pop("pix", None)  # a paid, expired or cancelled charge can no longer be paid
        return body


def parse_reference(reference: str | None) -> tuple[str, int] | None:
    if not reference or "/" not in reference:
        return None
    payment_id, _, generation = reference.rpartition("/")
    return (payment_id, int(generation)) if generation.isdigit() else None


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"


class SubscriptionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAST_DUE = "PAST_DUE"  # five declines in a row: no more automatic charges
    CANCELLED = "CANCELLED"


class Subscription(Camel):
    subscription_id: str
    owner: str
    plan_id: str
    amount_cents: int
    currency: str = DEFAULT_CURRENCY
    interval: Interval
    card_token: str = Field(exclude=True)
    payer: Payer
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    next_period: int = 1  # the period the next renewal charges
    paid_until: datetime  # the end of the last paid period (its creation, before the first)
    declines: int = 0  # declines of the next period's charge so far
    payments: list[str] = Field(default_factory=list)
    # The renewal job working on next_period, and until when its claim holds: a second job for
    # the same period (the daily run, a day after the first job's key expired) stands aside
    # while it holds, and takes over once a job that died has let it lapse.
    renewal_job_id: str | None = None
    renewal_claimed_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None = None
    version: int = 0

    def public(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude={"owner", "version"})


# -- HTTP bodies ---------------------------------------------------------------------------------


class PaymentRequest(Camel):
    order_id: str = Field(
        pattern=ID_PATTERN, description="yours: the same orderId again returns the same payment"
    )
    amount_cents: Cents
    currency: Currency = DEFAULT_CURRENCY
    method: Literal["card", "pix"]
    card_token: str | None = Field(
        None, min_length=1, max_length=256, description="the gateway's card token (cards)"
    )
    description: str = Field("", max_length=256)
    payer: Payer

    @model_validator(mode="after")
    def _token_for_cards(self) -> PaymentRequest:
        if self.method == "card" and not self.card_token:
            raise ValueError("cardToken is required for a card payment")
        if self.method == "pix" and self.card_token:
            raise ValueError("cardToken is only for card payments")
        return self

    def fingerprint(self) -> str:
        """What makes a repeated orderId the same request: amount, currency and method."""
        return f"{self.amount_cents}:{self.currency}:{self.method}"


class RefundRequest(Camel):
    amount_cents: Cents | None = Field(None, description="omit for all that is left")


class RetryRequest(Camel):
    card_token: str | None = Field(
        None, min_length=1, max_length=256, description="a new card token, else the last one"
    )


class SubscriptionRequest(Camel):
    plan_id: str = Field(pattern=ID_PATTERN)
    amount_cents: Cents
    currency: Currency = DEFAULT_CURRENCY
    interval: Interval
    card_token: str = Field(min_length=1, max_length=256)
    payer: Payer | None = None


class PaymentQuery(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    order_id: str | None = Field(None, pattern=ID_PATTERN)
    status: PaymentStatus | None = None
    cursor: str | None = None
    limit: int = Field(25, ge=1, le=100)
    user_id: str | None = Field(None, description="admins: another user's payments")


class PaymentAccepted(Camel):
    payment: dict[str, object]
    job_id: str | None = None


# -- job payloads ----------------------------------------------------------------------------------


class PaymentJob(Camel):
    payment_id: str
    generation: int = Field(0, ge=0)


class RefundJob(Camel):
    payment_id: str
    refund_id: str


class CheckoutValidation(Camel):
    card_token: str = Field(min_length=1, max_length=256)
    amount_cents: Cents | None = None


class WebhookJob(Camel):
    gateway_payment_id: str = Field(min_length=1, max_length=64)
    action: str = Field("", max_length=64)
    notification_id: str = Field("", max_length=128)


class RenewalJob(Camel):
    subscription_id: str
    period: int = Field(ge=1)
