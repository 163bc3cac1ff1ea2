"""What the payments workload needs from a payment gateway, in its own terms.

Money is integer cents with an ISO currency; the adapter converts to whatever the gateway speaks.
Every call that creates or moves money takes an idempotency key: the same key for every attempt
of the same step, so a repeated call is recognised by the gateway and never charges twice.

Failures come back as the engine's job errors (from the engine's outbound client): timeouts,
connection errors, 429 and 5xx are `RetryableJobError` (with the gateway's Retry-After), other
4xx are `PermanentJobError`. A declined card is not an error: it is a payment whose status is
`rejected`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class GatewayStatus(StrEnum):
    """The gateway's own payment statuses (Mercado Pago's `status`)."""

    PENDING = "pending"
    APPROVED = "approved"
    AUTHORIZED = "authorized"
    IN_PROCESS = "in_process"
    IN_MEDIATION = "in_mediation"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    CHARGED_BACK = "charged_back"


Method = Literal["card", "pix"]
# Why a payment is read: only a verification's poll counts as a poll in the sandbox's
# "paid after N polls"; a webhook's re-read and an API read do not.
ReadPurpose = Literal["poll", "webhook", "read"]


class PixCode(BaseModel):
    """What a payer needs to pay a PIX charge."""

    model_config = ConfigDict(frozen=True)

    qr_code: str  # the copy-and-paste (EMV) code
    qr_code_base64: str = ""  # a PNG of the QR code, base64
    ticket_url: str = ""
    expires_at: str | None = None  # ISO 8601


class GatewayRefund(BaseModel):
    model_config = ConfigDict(frozen=True)

    gateway_id: str
    amount_cents: int
    status: str  # "approved" once the money went back


class GatewayPayment(BaseModel):
    """A payment as the gateway reports it."""

    model_config = ConfigDict(frozen=True)

    gateway_id: str
    status: GatewayStatus
    status_detail: str = ""
    method: Method
    amount_cents: int
    currency: str = "BRL"
    refunded_cents: int = 0
    external_reference: str | None = None  # our paymentId, set at creation
    pix: PixCode | None = None
    refunds: tuple[GatewayRefund, ...] = ()


class CardCharge(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount_cents: int = Field(gt=0)
    currency: str = "BRL"
    card_token: str
    payer_email: str
    description: str = ""
    external_reference: str  # our paymentId
    notification_url: str | None = None  # where the gateway sends this payment's webhooks
    installments: int = 1
    payment_method_id: str = "visa"


class PixCharge(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount_cents: int = Field(gt=0)
    currency: str = "BRL"
    payer_email: str
    description: str = ""
    external_reference: str
    notification_url: str | None = None
    # When the charge stops being payable: decided once per charge and sent the same on every
    # attempt (a gateway binds an idempotency key to the body). Without it, 30 min from now.
    expires_at: datetime | None = None
    expires_in_seconds: int = 1800


class CardCheck(BaseModel):
    """What the gateway knows of a card token before anything is charged."""

    model_config = ConfigDict(frozen=True)

    valid: bool
    reason: str = ""  # why not: "not_found", "expired", "used", ...
    last_four: str = ""
    expiration: str = ""  # "MM/YYYY"


class PaymentGateway(Protocol):
    def charge_card(self, charge: CardCharge, idempotency_key: str) -> GatewayPayment:
        """Create a card payment; a declined card is a payment with status `rejected`."""
        ...

    def create_pix(self, charge: PixCharge, idempotency_key: str) -> GatewayPayment:
        """Create a PIX charge: status `pending` with its code until the payer pays."""
        ...

    def get_payment(self, gateway_id: str, purpose: ReadPurpose = "read") -> GatewayPayment: ...

    def cancel(self, gateway_id: str, idempotency_key: str) -> GatewayPayment:
        """Cancel a payment that is still pending (an expired PIX charge)."""
        ...

    def refund(self, gateway_id: str, amount_cents: int | None, idempotency_key: str) -> GatewayRefund:
        """Refund `amount_cents`, or all that is left when None."""
        ...

    def check_card(self, card_token: str) -> CardCheck:
        """Validate a card token without charging it."""
        ...
