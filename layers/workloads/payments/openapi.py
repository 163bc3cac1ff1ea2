"""The payments workload's routes in the API's OpenAPI document (read when the document is built)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from payments.models import (
    PaymentAccepted,
    PaymentQuery,
    PaymentRequest,
    RefundRequest,
    RetryRequest,
    SubscriptionRequest,
)
from tarefa.openapi import RouteDoc


class PaymentBody(BaseModel):
    payment: dict[str, object]


class PaymentPage(BaseModel):
    items: list[dict[str, object]]
    cursor: str | None


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    subscription: dict[str, object]
    jobId: str | None = None


class RenewalRun(BaseModel):
    enqueued: int
    failed: int


class WebhookAnswer(BaseModel):
    received: bool
    jobId: str | None = None


ROUTES = [
    RouteDoc("POST", "/payments", "Create a payment (card by gateway token, or PIX); the same orderId again returns it (200), with another amount or method 409 IDEMPOTENCY_KEY_REUSED", 202, PaymentAccepted, PaymentRequest, errors=(400, 401, 409, 422, 429, 503), tag="payments"),
    RouteDoc("GET", "/payments", "Your payments, newest first (orderId, status, cursor)", 200, PaymentPage, query=PaymentQuery, errors=(401, 403, 422), tag="payments"),
    RouteDoc("GET", "/payments/{paymentId}", "One payment: status, amounts, refunds, the PIX code while payable, its jobs", 200, PaymentBody, errors=(401, 404), tag="payments"),
    RouteDoc("POST", "/payments/{paymentId}/refund", "Refund all that is left or amountCents (409 REFUND_EXCEEDS_BALANCE, 409 INVALID_STATE)", 202, PaymentAccepted, RefundRequest, errors=(401, 404, 409, 422, 503), tag="payments"),
    RouteDoc("POST", "/payments/{paymentId}/retry", "Charge a REJECTED or FAILED payment again (409 INVALID_STATE otherwise)", 202, PaymentAccepted, RetryRequest, errors=(401, 404, 409, 422, 503), tag="payments"),
    RouteDoc("POST", "/subscriptions", "Subscribe: the first period is charged at once, the next ones by the daily renewal run", 201, SubscriptionBody, SubscriptionRequest, errors=(400, 401, 422, 503), tag="payments"),
    RouteDoc("POST", "/subscriptions/renewals", "Run the daily renewal batch now: {enqueued, failed} (one job per subscription and period, however often)", 200, RenewalRun, admin=True, errors=(401, 403), tag="payments"),
    RouteDoc("GET", "/subscriptions/{subscriptionId}", "One subscription", 200, SubscriptionBody, errors=(401, 404), tag="payments"),
    RouteDoc("POST", "/subscriptions/{subscriptionId}/cancel", "Cancel a subscription: no more renewals", 200, SubscriptionBody, errors=(401, 404), tag="payments"),
    RouteDoc("POST", "/webhooks/payments", "Mercado Pago's notifications (public: checked by its x-signature; 401 when bad, missing or older than 5 minutes)", 200, WebhookAnswer, errors=(401, 429, 503), public=True, tag="payments"),
]  # fmt: skip
