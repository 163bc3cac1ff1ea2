"""PIX charges and their verification, the gateway's webhooks (signature, replay, order) and
subscription renewals, through the real routes and handlers against the sandbox."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

from payments.provider.signature import sign_notification
from payments.renewals import enqueue_due
from payments.service import PIX_LADDER

from tarefa.local.app import HttpResult

from ..conftest import ALICE, BOB, Clock, job_of
from .conftest import Payments
from .test_payment_flows import ADMIN, pay, payment_of

SECRET = "sandbox-webhook-secret"


def pix(payments: Payments, email: str, order: str = "pix-1", claims: dict[str, Any] = ALICE) -> HttpResult:
    return pay(payments, claims, orderId=order, method="pix", email=email, amountCents=5_000)


def verification_of(payments: Payments, payment_id: str) -> dict[str, Any]:
    job_id = payment_of(payments, payment_id)["verificationJobId"]
    assert job_id
    return job_of(payments.app, job_id)


def poll_once(payments: Payments, clock: Clock, seconds: float) -> None:
    payments.run(clock, seconds + 0.1 * seconds + 1)  # past the wait and its jitter


def test_a_pix_charge_paid_on_the_third_poll(payments: Payments, clock: Clock) -> None:
    accepted = pix(payments, "paid-after-3@example.com")
    payment_id = accepted.body["payment"]["paymentId"]
    payments.app.drain()
    waiting = payment_of(payments, payment_id)
    assert waiting["status"] == "PENDING"
    assert waiting["pix"]["qrCode"] and waiting["pix"]["qrCodeBase64"]  # what the payer needs
    assert job_of(payments.app, accepted.body["jobId"])["result"]["status"] == "PENDING"
    poll_once(payments, clock, 60)  # poll 1
    assert verification_of(payments, payment_id)["status"] == "RETRYING"
    poll_once(payments, clock, PIX_LADDER[0])  # poll 2
    poll_once(payments, clock, PIX_LADDER[1])  # poll 3: paid
    done = payment_of(payments, payment_id)
    assert done["status"] == "APPROVED" and "pix" not in done  # no code once paid
    verification = verification_of(payments, payment_id)
    assert (verification["status"], verification["attempts"], verification["result"]["polls"]) == (
        "COMPLETED",
        3,
        3,
    )
    assert verification["type"] == "payments.verify"
    assert payments.sandbox.polls(done["gatewayId"]) == 3


def test_a_pix_charge_never_paid_expires_after_ten_polls_and_is_cancelled(
    payments: Payments, clock: Clock
) -> None:
    payment_id = pix(payments, "never@example.com").body["payment"]["paymentId"]
    payments.app.drain()
    poll_once(payments, clock, 60)
    for wait in PIX_LADDER:
        assert payment_of(payments, payment_id)["status"] == "PENDING"
        poll_once(payments, clock, wait)
    expired = payment_of(payments, payment_id)
    assert (expired["status"], expired["statusDetail"]) == ("EXPIRED", "expired_unpaid")
    verification = verification_of(payments, payment_id)
    # a business outcome: the job completes, having polled ten times
    assert (verification["status"], verification["attempts"]) == ("COMPLETED", 10)
    assert (
        verification["errorDetails"] is None
        or verification["errorDetails"].get("code") != "ATTEMPTS_EXHAUSTED"
    )
    assert payments.sandbox.polls(expired["gatewayId"]) == 10
    assert payments.sandbox.payment(expired["gatewayId"])["status"] == "cancelled"


def test_a_webhook_that_arrives_before_the_poll_settles_the_payment_and_wakes_the_verification(
    payments: Payments, clock: Clock
) -> None:
    payment_id = pix(payments, "ana@example.com").body["payment"]["paymentId"]
    payments.app.drain()
    gateway_id = payment_of(payments, payment_id)["gatewayId"]
    payments.deliver_webhooks(wait_for=1)  # payment.created: nothing to change
    payments.app.drain()
    payments.sandbox.pay_pix(gateway_id)  # the payer pays; the gateway notifies
    answers = payments.deliver_webhooks(wait_for=1)
    assert [a.status for a in answers] == [200]
    payments.app.drain()  # the webhook job, then the woken verification
    assert payment_of(payments, payment_id)["status"] == "APPROVED"
    verification = verification_of(payments, payment_id)
    assert verification["status"] == "COMPLETED" and verification["result"]["polled"] is False
    assert payments.sandbox.polls(gateway_id) == 0  # the webhook's read is not a poll
    webhook_job = answers[0].body["jobId"]
    assert job_of(payments.app, webhook_job, ADMIN)["type"] == "payments.webhook"
    assert payments.app.api("GET", f"/jobs/{webhook_job}", claims=ALICE).status == 404  # the gateway's


def signed(
    data_id: str, request_id: str | None = None, ts: int | None = None, secret: str = SECRET
) -> dict[str, str]:
    request_id = request_id or str(uuid.uuid4())
    return {
        "x-signature": sign_notification(data_id, request_id, secret, int(time.time()) if ts is None else ts),
        "x-request-id": request_id,
        "content-type": "application/json",
    }


def notify(
    payments: Payments, data_id: str, headers: dict[str, str], query_id: str | None = None
) -> HttpResult:
    body = json.dumps({"id": 1, "type": "payment", "action": "payment.updated", "data": {"id": data_id}})
    return payments.app.api(
        "POST", f"/webhooks/payments?data.id={query_id or data_id}&type=payment", body, headers=headers
    )


def test_webhook_signatures_are_checked_and_replays_refused(payments: Payments) -> None:
    good = notify(payments, "123", signed("123"))
    assert good.status == 200 and good.body["received"] is True
    tampered = notify(payments, "123", signed("123"), query_id="999")  # another payment's id
    assert tampered.status == 401 and tampered.body["error"]["code"] == "INVALID_SIGNATURE"
    assert notify(payments, "123", signed("123", secret="not-the-secret")).status == 401
    assert notify(payments, "123", {"content-type": "application/json"}).status == 401
    old = notify(payments, "123", signed("123", ts=int(time.time()) - 301))
    assert old.status == 401 and "expired" in old.body["error"]["message"]
    assert notify(payments, "123", signed("123", ts=int(time.time()) - 290)).status == 200
    # no JWT needed, and none helps: a bearer token does not replace the signature
    assert (
        notify(payments, "123", {"authorization": "Bearer x", "content-type": "application/json"}).status
        == 401
    )


def test_the_same_notification_twice_is_one_job(payments: Payments) -> None:
    headers = signed("123", request_id="req-1")
    first, second = notify(payments, "123", headers), notify(payments, "123", headers)
    assert first.status == second.status == 200
    assert first.body["jobId"] == second.body["jobId"]


def test_webhooks_out_of_order_never_move_a_payment_backwards(payments: Payments) -> None:
    payment_id = pay(payments, amountCents=4_000).body["payment"]["paymentId"]
    payments.app.drain()
    payments.app.api("POST", f"/payments/{payment_id}/refund", {}, ALICE)
    payments.app.drain()
    assert payment_of(payments, payment_id)["status"] == "REFUNDED"
    # every notification the gateway sent (created, refunded), replayed late and out of order
    notes = payments.receiver.take()
    gateway_id = payment_of(payments, payment_id)["gatewayId"]
    for note in reversed(notes):
        payments.app.api("POST", note.path, note.body, headers=dict(note.headers))
    notify(payments, gateway_id, signed(gateway_id))
    payments.app.drain()
    assert payment_of(payments, payment_id)["status"] == "REFUNDED"


def test_a_webhook_about_an_unknown_payment_completes_without_change(payments: Payments) -> None:
    answer = notify(payments, "424242", signed("424242"))
    payments.app.drain()
    job = job_of(payments.app, answer.body["jobId"], ADMIN)
    assert job["status"] == "COMPLETED" and job["result"]["applied"] is False


def test_checkout_validation_asks_the_gateway_about_a_card_token(payments: Payments) -> None:
    good = payments.app.api(
        "POST", "/jobs", {"type": "CHECKOUT_VALIDATION", "payload": {"cardToken": "APRO"}}, ALICE
    )
    unknown = payments.app.api(
        "POST", "/jobs", {"type": "CHECKOUT_VALIDATION", "payload": {"cardToken": "NOPE"}}, ALICE
    )
    expired = payments.app.api(
        "POST", "/jobs", {"type": "CHECKOUT_VALIDATION", "payload": {"cardToken": "EXPI"}}, ALICE
    )
    payments.app.drain()
    assert good.body["type"] == "payments.checkout_validation"  # the seed's name is an alias
    results = [job_of(payments.app, a.body["jobId"]) for a in (good, unknown, expired)]
    assert [r["status"] for r in results] == ["COMPLETED"] * 3
    assert [r["result"]["valid"] for r in results] == [True, False, False]


# -- subscriptions ---------------------------------------------------------------------------------


def subscribe(payments: Payments, token: str = "APRO", claims: dict[str, Any] = ALICE) -> HttpResult:
    body = {
        "planId": "pro",
        "amountCents": 2_990,
        "interval": "month",
        "cardToken": token,
        "payer": {"email": "ana@example.com"},
    }
    return payments.app.api("POST", "/subscriptions", body, claims)


def test_a_subscription_charges_its_first_period_and_the_daily_run_renews_it(
    payments: Payments, clock: Clock
) -> None:
    created = subscribe(payments)
    assert created.status == 201, created.body
    subscription_id = created.body["subscription"]["subscriptionId"]
    payments.app.drain()
    first = payments.app.api("GET", f"/subscriptions/{subscription_id}", claims=ALICE).body["subscription"]
    assert (first["status"], first["nextPeriod"], len(first["payments"])) == ("ACTIVE", 2, 1)
    assert job_of(payments.app, created.body["jobId"])["result"]["outcome"] == "RENEWED"
    # nothing is due yet: the run enqueues nothing
    assert enqueue_due(clock())["enqueued"] == 0
    clock.advance(timedelta(days=29, hours=1).total_seconds())  # within a day of the period's end
    assert enqueue_due(clock())["enqueued"] == 1
    assert enqueue_due(clock())["enqueued"] == 1  # the same job again, not a second one
    payments.app.fire("Renewals")  # the template's schedule runs the same
    payments.app.drain()
    renewed = payments.app.api("GET", f"/subscriptions/{subscription_id}", claims=ALICE).body["subscription"]
    assert (renewed["nextPeriod"], len(renewed["payments"])) == (3, 2)
    renewal_jobs = [
        j
        for j in payments.app.api("GET", "/jobs?limit=100", claims=ALICE).body["items"]
        if j["type"] == "payments.subscription_renewal"
    ]
    # period 1's job finished 29 days ago, past the jobs' 7-day retention: no read shows it
    # any more (TTL deletes it lazily); period 2's is listed, once
    assert payments.app.api("GET", f"/jobs/{created.body['jobId']}", claims=ALICE).status == 404
    assert [j["jobId"] != created.body["jobId"] for j in renewal_jobs] == [True]
    assert enqueue_due(clock())["enqueued"] == 0


def test_a_declined_renewal_tries_again_in_days_and_ends_past_due(payments: Payments, clock: Clock) -> None:
    created = subscribe(payments, token="FUND")
    subscription_id = created.body["subscription"]["subscriptionId"]
    payments.app.drain()
    job = job_of(payments.app, created.body["jobId"])
    assert (job["status"], job["errorDetails"]["code"]) == ("RETRYING", "WAITING")  # not a failure
    for days in (1, 2, 3, 5):
        state = payments.app.api("GET", f"/subscriptions/{subscription_id}", claims=ALICE).body[
            "subscription"
        ]
        assert state["status"] == "ACTIVE"
        clock.advance(timedelta(days=days, minutes=10).total_seconds())
        payments.app.fire("Promote")  # held past SQS's 12 hours: promoted when due
        payments.run(clock, 1)
    past_due = payments.app.api("GET", f"/subscriptions/{subscription_id}", claims=ALICE).body["subscription"]
    assert (past_due["status"], past_due["declines"]) == ("PAST_DUE", 5)
    done = job_of(payments.app, created.body["jobId"])
    assert (done["status"], done["attempts"], done["result"]["outcome"]) == ("COMPLETED", 5, "PAST_DUE")
    # five declines, five charges at the gateway, each its own payment
    charges = [p for p in payments.app.api("GET", "/payments?limit=100", claims=ALICE).body["items"]]
    assert len(charges) == 5 and {p["status"] for p in charges} == {"REJECTED"}
    assert enqueue_due(clock())["enqueued"] == 0  # past due: out of the renewal index


def test_a_cancelled_subscription_is_not_renewed_and_others_cannot_touch_it(
    payments: Payments, clock: Clock
) -> None:
    subscription_id = subscribe(payments).body["subscription"]["subscriptionId"]
    payments.app.drain()
    assert payments.app.api("POST", f"/subscriptions/{subscription_id}/cancel", {}, BOB).status == 404
    assert payments.app.api("GET", f"/subscriptions/{subscription_id}", claims=BOB).status == 404
    cancelled = payments.app.api("POST", f"/subscriptions/{subscription_id}/cancel", {}, ALICE)
    assert cancelled.status == 200 and cancelled.body["subscription"]["status"] == "CANCELLED"
    clock.advance(timedelta(days=31).total_seconds())
    assert enqueue_due(clock())["enqueued"] == 0


def test_a_renewal_job_run_twice_for_one_period_charges_once(payments: Payments) -> None:
    subscription_id = subscribe(payments).body["subscription"]["subscriptionId"]
    # a second job for the same period (as if the first one's key had expired)
    other = payments.app.api(
        "POST",
        "/jobs",
        {
            "type": "SUBSCRIPTION_RENEWAL",
            "payload": {"subscriptionId": subscription_id, "period": 1},
            "idempotencyKey": "other",
        },
        ALICE,
    )
    payments.app.drain()
    state = payments.app.api("GET", f"/subscriptions/{subscription_id}", claims=ALICE).body["subscription"]
    assert (state["nextPeriod"], len(state["payments"])) == (2, 1)
    assert job_of(payments.app, other.body["jobId"])["result"]["outcome"] in ("NOTHING_TO_DO", "RENEWED")
    charges = payments.app.api("GET", "/payments?limit=100", claims=ALICE).body["items"]
    assert len(charges) == 1


def test_admins_run_the_renewal_batch_on_demand_and_it_is_idempotent(
    payments: Payments, clock: Clock
) -> None:
    first = subscribe(payments).body["jobId"]
    payments.app.drain()
    clock.advance(timedelta(days=29, hours=12).total_seconds())
    assert payments.app.api("POST", "/subscriptions/renewals", {}, ALICE).status == 403
    runs = [payments.app.api("POST", "/subscriptions/renewals", {}, ADMIN) for _ in range(2)]
    assert [(r.status, r.body) for r in runs] == [(200, {"enqueued": 1, "failed": 0})] * 2
    payments.app.drain()
    jobs = payments.app.api("GET", "/jobs?limit=100", claims=ALICE).body["items"]
    # period 2's job, once; period 1's finished past the jobs' 7-day retention: no read shows it
    renewals = [j["jobId"] for j in jobs if j["type"] == "payments.subscription_renewal"]
    assert len(renewals) == 1 and renewals[0] != first
