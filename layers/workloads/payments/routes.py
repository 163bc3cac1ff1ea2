"""The payments workload's HTTP routes, served by a function of their own (functions/payments)
behind the same API, with the engine's error shape, limits and outage answers (`tarefa.api`).

Every route needs a JWT and a user sees only their own payments and subscriptions (another's
is a 404, as if it did not exist); admins see all. One route is public: the gateway's webhook,
authenticated by Mercado Pago's `x-signature` instead, and answered at once: the work (reading
the payment back from the gateway) is a `payments.webhook` job.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from payments.jobs import SECRET_NAME, service
from payments.models import (
    Payment,
    PaymentJob,
    PaymentQuery,
    PaymentRequest,
    PaymentStatus,
    RefundJob,
    RefundRequest,
    RefundStatus,
    RetryRequest,
    Subscription,
    SubscriptionRequest,
)
from payments.provider.signature import InvalidSignatureError, verify_signature
from payments.service import NotFoundError
from tarefa import api

logger = Logger(child=True)
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped
WEBHOOK = "POST /webhooks/payments"
# The gateway's notifications come from a few addresses: a generous limit, per address, that
# still stops a flood of forged requests before it reaches the signature check's secret read.
api.declare_limit(WEBHOOK, "3000/60")
GATEWAY = api.as_user("payments:gateway")  # owns the webhook jobs (admins see them)
SIGNATURE_TOLERANCE_SECONDS = 300


def _visible_payment(payment_id: str) -> Payment:
    who = api.caller(router.current_event)
    payment = service().payment(payment_id)
    if not (who.is_admin or payment.owner == who.user_id):
        raise NotFoundError(f"Payment {payment_id} not found")
    return payment


def _visible_subscription(subscription_id: str) -> Subscription:
    who = api.caller(router.current_event)
    subscription = service().subscription(subscription_id)
    if not (who.is_admin or subscription.owner == who.user_id):
        raise NotFoundError(f"Subscription {subscription_id} not found")
    return subscription


# -- payments ------------------------------------------------------------------------------------


@router.post("/payments")
def create_payment() -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, PaymentRequest)
    payment, created = service().create(who.user_id, request)
    body: dict[str, Any] = {"payment": payment.public()}
    if payment.status == PaymentStatus.PENDING and payment.generation == 0:
        # The first request's job, or its own again when that request failed before sending it:
        # keyed by the payment, so this is never a second job.
        enqueued = api.enqueue(
            who,
            "payments.process",
            PaymentJob(payment_id=payment.payment_id).model_dump(by_alias=True),
            idempotency_key=f"payment-{payment.payment_id}-0",
        )
        body["jobId"] = enqueued.job.job_id
    return api.json_response(202 if created else 200, body)


@router.get("/payments")
def list_payments() -> Response[str]:
    who = api.caller(router.current_event)
    query = api.parse_query(router.current_event, PaymentQuery)
    owner = who.user_id
    if query.user_id and query.user_id != who.user_id:
        if not who.is_admin:
            return api.error_response(403, "FORBIDDEN", "Only admins list another user's payments")
        owner = query.user_id
    if query.order_id:
        found = service().store.order(owner, query.order_id)
        payment = service().store.get_payment(found[0]) if found else None
        items = [payment] if payment and (query.status is None or payment.status == query.status) else []
        return api.json_response(200, {"items": [p.public() for p in items], "cursor": None})
    items, cursor = service().store.list_payments(
        owner, str(query.status) if query.status else None, query.cursor, query.limit
    )
    return api.json_response(200, {"items": [p.public() for p in items], "cursor": cursor})


@router.get("/payments/<payment_id>")
def get_payment(payment_id: str) -> Response[str]:
    return api.json_response(200, {"payment": _visible_payment(payment_id).public()})


@router.post("/payments/<payment_id>/refund")
def refund_payment(payment_id: str) -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, RefundRequest, required=False)
    payment, refund = service().request_refund(_visible_payment(payment_id), request.amount_cents)
    try:
        enqueued = api.enqueue(
            who,
            "payments.refund",
            RefundJob(payment_id=payment_id, refund_id=refund.refund_id).model_dump(by_alias=True),
            idempotency_key=f"refund-{refund.refund_id}",
        )
    except Exception:  # the reservation must not outlive a refund that will never run
        service().settle_refund(payment_id, refund.refund_id, RefundStatus.FAILED, None, "ENQUEUE_FAILED")
        raise
    payment = service().note_job(payment_id, enqueued.job.job_id)
    refund = refund.model_copy(update={"job_id": enqueued.job.job_id})
    return api.json_response(
        202,
        {
            "payment": payment.public(),
            "refund": refund.model_dump(mode="json", by_alias=True),
            "jobId": enqueued.job.job_id,
        },
    )


@router.post("/payments/<payment_id>/retry")
def retry_payment(payment_id: str) -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, RetryRequest, required=False)
    payment = service().request_retry(_visible_payment(payment_id), request.card_token)
    try:
        enqueued = api.enqueue(
            who,
            "payments.retry",
            PaymentJob(payment_id=payment_id, generation=payment.generation).model_dump(by_alias=True),
            idempotency_key=f"payment-{payment_id}-{payment.generation}",
        )
    except Exception:  # FAILED again, so that the user can ask once more
        service().mark(payment_id, payment.generation, PaymentStatus.FAILED, "enqueue_failed")
        raise
    return api.json_response(202, {"payment": payment.public(), "jobId": enqueued.job.job_id})


# -- subscriptions ---------------------------------------------------------------------------------


@router.post("/subscriptions")
def create_subscription() -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, SubscriptionRequest)
    email = request.payer.email if request.payer else str(api.claims(router.current_event).get("email") or "")
    if "@" not in email:
        return api.error_response(
            422,
            "VALIDATION_ERROR",
            "The request is not valid",
            [{"field": "payer.email", "message": "payer.email is required (the token has no e-mail)"}],
        )
    subscription = service().subscribe(who.user_id, request, email)
    # The first period is charged at once; if this enqueue fails, the daily run charges it
    # (the subscription is due), with the same key, so it is never charged twice.
    enqueued = api.enqueue(
        who,
        "payments.subscription_renewal",
        {"subscriptionId": subscription.subscription_id, "period": 1},
        idempotency_key=f"renewal-{subscription.subscription_id}-1",
    )
    return api.json_response(201, {"subscription": subscription.public(), "jobId": enqueued.job.job_id})


@router.post("/subscriptions/renewals")
def run_renewals() -> Response[str]:
    """The daily renewal run, now (admins): after an outage, or to watch it on the local stack.
    The same keys as the schedule's, so it never makes a second job for a period."""
    api.admin(router.current_event)
    from payments.renewals import enqueue_due

    return api.json_response(200, enqueue_due())


@router.get("/subscriptions/<subscription_id>")
def get_subscription(subscription_id: str) -> Response[str]:
    return api.json_response(200, {"subscription": _visible_subscription(subscription_id).public()})


@router.post("/subscriptions/<subscription_id>/cancel")
def cancel_subscription(subscription_id: str) -> Response[str]:
    subscription = service().cancel_subscription(_visible_subscription(subscription_id))
    return api.json_response(200, {"subscription": subscription.public()})


# -- the gateway's webhook (public: checked by its signature) --------------------------------------


@router.post("/webhooks/payments")
def gateway_webhook() -> Response[str]:
    event = router.current_event
    query = event.query_string_parameters or {}
    headers = {k.lower(): v for k, v in (event.headers or {}).items()}
    data_id = query.get("data.id") or query.get("id")
    try:
        secret = str(api.secret(SECRET_NAME, "json").get("webhookSecret") or "")
    except Exception:  # Secrets Manager down, or the secret not created: nothing can be checked
        logger.exception("the gateway's webhook secret cannot be read")
        secret = ""
    if not secret:
        return api.error_response(
            503, "GATEWAY_NOT_CONFIGURED", "The payment gateway's webhook secret is not set"
        )
    try:
        verify_signature(
            headers.get("x-signature"),
            headers.get("x-request-id"),
            data_id,
            secret,
            now=time.time(),
            tolerance_seconds=SIGNATURE_TOLERANCE_SECONDS,
        )
    except InvalidSignatureError as exc:
        return api.error_response(
            401, "INVALID_SIGNATURE", f"The notification's signature is not valid ({exc.reason})"
        )
    try:
        body = json.loads(event.body or "{}")
    except json.JSONDecodeError:
        body = {}
    kind = query.get("type") or (body.get("type") if isinstance(body, dict) else None)
    if kind != "payment" or not data_id:
        return api.json_response(200, {"received": True, "ignored": True})
    action = body.get("action") if isinstance(body, dict) else None
    request_id = headers.get("x-request-id") or ""
    enqueued = api.enqueue(
        GATEWAY,
        "payments.webhook",
        {"gatewayPaymentId": data_id, "action": str(action or "")[:64], "notificationId": request_id[:128]},
        idempotency_key=f"mercadopago-{request_id}",  # signed: a replay is the same job
    )
    return api.json_response(200, {"received": True, "jobId": enqueued.job.job_id})
