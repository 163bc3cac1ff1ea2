"""The payments workload end to end in process: the real routes and job handlers on moto, the
real Mercado Pago adapter talking HTTP to the sandbox, and the sandbox's signed webhooks handed
to the public route. Time is the test's clock (and SQS's timers made to pass), never slept."""

from __future__ import annotations

from typing import Any

import pytest
from payments.service import PaymentService

from tarefa.local.app import HttpResult

from ..conftest import ALICE, BOB, Clock, job_of
from .conftest import Payments, reference

ADMIN = {"sub": "root", "cognito:groups": ["admin"]}


def pay(payments: Payments, claims: dict[str, Any] = ALICE, **fields: Any) -> HttpResult:
    body = {
        "orderId": fields.pop("orderId", "order-1"),
        "amountCents": fields.pop("amountCents", 12_345),
        "method": fields.pop("method", "card"),
        "payer": {"email": fields.pop("email", "ana@example.com")},
        **fields,
    }
    if body["method"] == "card":
        body.setdefault("cardToken", "APRO")
    return payments.app.api("POST", "/payments", body, claims)


def payment_of(payments: Payments, payment_id: str, claims: dict[str, Any] = ALICE) -> dict[str, Any]:
    answer = payments.app.api("GET", f"/payments/{payment_id}", claims=claims)
    assert answer.status == 200, answer.body
    found: dict[str, Any] = answer.body["payment"]
    return found


def test_an_approved_card_payment(payments: Payments) -> None:
    accepted = pay(payments)
    assert accepted.status == 202, accepted.body
    payment = accepted.body["payment"]
    assert {k: payment[k] for k in ("status", "amountCents", "currency", "method")} == {
        "status": "PENDING",
        "amountCents": 12_345,
        "currency": "BRL",
        "method": "card",
    }
    assert "cardToken" not in payment  # a token is never shown back
    payments.app.drain()
    done = payment_of(payments, payment["paymentId"])
    assert (done["status"], done["statusDetail"]) == ("APPROVED", "accredited")
    assert done["gatewayId"] and done["jobs"] == [accepted.body["jobId"]]
    job = job_of(payments.app, accepted.body["jobId"])
    assert (job["type"], job["status"], job["attempts"]) == ("payments.process", "COMPLETED", 1)
    assert job["result"]["status"] == "APPROVED"
    at_gateway = payments.sandbox.payments_for(reference(payment))
    assert len(at_gateway) == 1 and at_gateway[0]["transaction_amount"] in (123.45, "123.45")


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("OTHE", "cc_rejected_other_reason"),
        ("FUND", "cc_rejected_insufficient_amount"),
        ("SECU", "cc_rejected_bad_filled_security_code"),
        ("EXPI", "cc_rejected_bad_filled_date"),
        ("FORM", "cc_rejected_bad_filled_other"),
        ("CALL", "cc_rejected_call_for_authorize"),
    ],
)
def test_a_declined_card_is_rejected_once_and_the_job_completes(
    payments: Payments, token: str, detail: str
) -> None:
    accepted = pay(payments, cardToken=token)
    payments.app.drain()
    done = payment_of(payments, accepted.body["payment"]["paymentId"])
    assert (done["status"], done["statusDetail"]) == ("REJECTED", detail)
    job = job_of(payments.app, accepted.body["jobId"])
    # a business outcome: no retry, not a failure
    assert (job["status"], job["attempts"], job["result"]["status"]) == ("COMPLETED", 1, "REJECTED")


def test_a_gateway_timeout_retries_and_charges_once(payments: Payments, clock: Clock) -> None:
    accepted = pay(payments, cardToken="TIMEOUT")
    payment_id = accepted.body["payment"]["paymentId"]
    payments.app.drain()  # attempt 1: the gateway charged, its answer never came
    job = job_of(payments.app, accepted.body["jobId"])
    assert (job["status"], job["attempts"]) == ("RETRYING", 1)
    assert payment_of(payments, payment_id)["status"] == "PROCESSING"
    payments.run(clock, 70)  # the policy's first delay: 60 s
    done = payment_of(payments, payment_id)
    assert done["status"] == "APPROVED"
    assert len(payments.sandbox.payments_for(f"{payment_id}/0")) == 1, "charged twice"
    assert job_of(payments.app, accepted.body["jobId"])["status"] == "COMPLETED"


def test_a_rate_limited_gateway_is_retried_after_its_retry_after(payments: Payments, clock: Clock) -> None:
    accepted = pay(payments, cardToken="RATE_LIMIT")
    payments.app.drain()
    job = job_of(payments.app, accepted.body["jobId"])
    assert job["status"] == "RETRYING"
    payments.run(clock, 2)  # the gateway's Retry-After: 1 s (not the policy's 60)
    assert payment_of(payments, accepted.body["payment"]["paymentId"])["status"] == "APPROVED"


def test_gateway_errors_retry_with_the_seed_ladder_until_it_answers(payments: Payments, clock: Clock) -> None:
    accepted = pay(payments, cardToken="ERROR")  # 500, 500, then approved
    payment_id = accepted.body["payment"]["paymentId"]
    payments.app.drain()
    payments.run(clock, 70)
    assert job_of(payments.app, accepted.body["jobId"])["attempts"] == 2
    payments.run(clock, 135)
    assert payment_of(payments, payment_id)["status"] == "APPROVED"
    assert len(payments.sandbox.payments_for(f"{payment_id}/0")) == 1


def test_a_gateway_that_stays_down_fails_the_payment_and_the_job_visibly(
    payments: Payments, clock: Clock
) -> None:
    accepted = pay(payments)
    payment_id = accepted.body["payment"]["paymentId"]
    payments.sandbox.stop()  # connection refused from now on
    payments.app.drain()
    payments.run(clock, 70)
    payments.run(clock, 135)
    job = job_of(payments.app, accepted.body["jobId"])
    assert (job["status"], job["attempts"]) == ("FAILED", 3)
    failed = payment_of(payments, payment_id)
    assert (failed["status"], failed["statusDetail"]) == ("FAILED", "gateway_unavailable")
    # what the user can do about it: ask again
    assert payments.app.api("POST", f"/payments/{payment_id}/retry", {}, ALICE).status == 202


class WorkerDied(BaseException):
    """The Lambda's process going away: nothing in the worker catches it."""


def test_a_worker_that_dies_after_the_gateway_charged_never_charges_twice(
    payments: Payments, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proof of "no double charge": the gateway has charged, the worker dies before the
    payment or the job recorded anything; the next attempt charges with the same key and the
    gateway answers with the same payment."""
    accepted = pay(payments)
    payment_id = accepted.body["payment"]["paymentId"]
    record = PaymentService.record
    died: list[str] = []

    def die_once(self: PaymentService, pid: str, report: Any) -> Any:
        if not died:
            died.append(report.gateway_id)
            raise WorkerDied
        return record(self, pid, report)

    monkeypatch.setattr(PaymentService, "record", die_once)
    with pytest.raises(WorkerDied):
        payments.app.drain()
    assert died and len(payments.sandbox.payments_for(f"{payment_id}/0")) == 1
    assert payment_of(payments, payment_id)["gatewayId"] is None  # nothing was recorded
    # The message comes back after its visibility; the job's lease is over by then.
    payments.run(clock, 721)
    payments.app.fire("Recover")
    payments.run(clock, 70)
    done = payment_of(payments, payment_id)
    assert (done["status"], done["gatewayId"]) == ("APPROVED", died[0])
    assert len(payments.sandbox.payments_for(f"{payment_id}/0")) == 1, "charged twice"


def test_the_same_order_returns_the_same_payment_and_another_amount_is_refused(payments: Payments) -> None:
    first = pay(payments)
    again = pay(payments)
    assert again.status == 200 and again.body["payment"]["paymentId"] == first.body["payment"]["paymentId"]
    assert again.body.get("jobId") == first.body["jobId"]  # still PENDING: the same job, not another
    payments.app.drain()
    settled = pay(payments)
    assert (
        settled.status == 200
        and settled.body["payment"]["status"] == "APPROVED"
        and "jobId" not in settled.body
    )
    other = pay(payments, amountCents=999)
    assert other.status == 409 and other.body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert pay(payments, method="pix").status == 409
    # the order belongs to its user: Bob's order-1 is his own payment
    bobs = pay(payments, BOB)
    assert bobs.status == 202 and bobs.body["payment"]["paymentId"] != first.body["payment"]["paymentId"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amountCents": 0}, "amountCents"),
        ({"amountCents": -5}, "amountCents"),
        ({"method": "boleto"}, "method"),
        ({"cardToken": None}, "cardToken"),
        ({"currency": "R$"}, "currency"),
    ],
)
def test_bad_payments_are_refused_naming_the_field(
    payments: Payments, change: dict[str, Any], field: str
) -> None:
    body = {
        "orderId": "o-bad",
        "amountCents": 100,
        "method": "card",
        "cardToken": "APRO",
        "payer": {"email": "a@b.co"},
    }
    body.update(change)
    if body.get("cardToken") is None:
        body.pop("cardToken")
    refused = payments.app.api("POST", "/payments", body, ALICE)
    assert refused.status == 422, refused.body
    assert refused.body["error"]["code"] == "VALIDATION_ERROR"
    assert field in " ".join(f"{d['field']} {d['message']}" for d in refused.body["error"]["details"])


def test_a_user_sees_only_their_own_payments_and_an_admin_sees_all(payments: Payments) -> None:
    mine = pay(payments).body["payment"]["paymentId"]
    pay(payments, BOB, orderId="bob-1")
    assert payments.app.api("GET", f"/payments/{mine}", claims=BOB).status == 404
    assert payments.app.api("POST", f"/payments/{mine}/refund", {}, BOB).status == 404
    assert payments.app.api("POST", f"/payments/{mine}/retry", {}, BOB).status == 404
    assert payments.app.api("GET", f"/payments/{mine}", claims=ADMIN).status == 200
    listed = payments.app.api("GET", "/payments", claims=ALICE).body["items"]
    assert [p["paymentId"] for p in listed] == [mine]
    assert payments.app.api("GET", "/payments?userId=bob", claims=ALICE).status == 403
    bobs = payments.app.api("GET", "/payments?userId=bob", claims=ADMIN).body["items"]
    assert [p["orderId"] for p in bobs] == ["bob-1"]
    assert payments.app.api("GET", "/payments").status == 401


def test_listing_filters_by_order_and_status_and_pages(payments: Payments) -> None:
    ids = [
        pay(payments, orderId=f"o-{n}", cardToken="APRO" if n % 2 else "OTHE").body["payment"]["paymentId"]
        for n in range(5)
    ]
    payments.app.drain()
    by_order = payments.app.api("GET", "/payments?orderId=o-3", claims=ALICE).body["items"]
    assert [p["paymentId"] for p in by_order] == [ids[3]]
    rejected = payments.app.api("GET", "/payments?status=REJECTED&limit=100", claims=ALICE).body["items"]
    assert {p["paymentId"] for p in rejected} == {ids[0], ids[2], ids[4]}
    seen: list[str] = []
    cursor = None
    while True:
        page = payments.app.api(
            "GET", "/payments?limit=2" + (f"&cursor={cursor}" if cursor else ""), claims=ALICE
        ).body
        seen += [p["paymentId"] for p in page["items"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, each once
    # another user's cursor is refused
    alices_cursor = payments.app.api("GET", "/payments?limit=2", claims=ALICE).body["cursor"]
    stolen = payments.app.api("GET", f"/payments?cursor={alices_cursor}", claims=BOB)
    assert stolen.status == 422


def test_partial_then_full_refund(payments: Payments) -> None:
    payment_id = pay(payments, amountCents=10_000).body["payment"]["paymentId"]
    payments.app.drain()
    partial = payments.app.api("POST", f"/payments/{payment_id}/refund", {"amountCents": 2_500}, ALICE)
    assert partial.status == 202, partial.body
    assert partial.body["refund"]["amountCents"] == 2_500
    too_much = payments.app.api("POST", f"/payments/{payment_id}/refund", {"amountCents": 7_501}, ALICE)
    assert too_much.status == 409 and too_much.body["error"]["code"] == "REFUND_EXCEEDS_BALANCE"
    payments.app.drain()
    after_partial = payment_of(payments, payment_id)
    assert (after_partial["status"], after_partial["refundedCents"]) == ("PARTIALLY_REFUNDED", 2_500)
    full = payments.app.api("POST", f"/payments/{payment_id}/refund", {}, ALICE)
    assert full.status == 202 and full.body["refund"]["amountCents"] == 7_500
    payments.app.drain()
    refunded = payment_of(payments, payment_id)
    assert (refunded["status"], refunded["refundedCents"]) == ("REFUNDED", 10_000)
    assert [r["status"] for r in refunded["refunds"]] == ["REFUNDED", "REFUNDED"]
    assert payments.sandbox.payment(refunded["gatewayId"])["status"] == "refunded"
    nothing_left = payments.app.api("POST", f"/payments/{payment_id}/refund", {}, ALICE)
    assert nothing_left.status == 409


def test_a_refund_of_an_unpaid_payment_is_refused(payments: Payments) -> None:
    payment_id = pay(payments, cardToken="OTHE").body["payment"]["paymentId"]
    payments.app.drain()
    refused = payments.app.api("POST", f"/payments/{payment_id}/refund", {}, ALICE)
    assert refused.status == 409 and refused.body["error"]["code"] == "INVALID_STATE"


def test_a_rejected_payment_retried_by_its_user_is_a_new_charge(payments: Payments) -> None:
    payment_id = pay(payments, cardToken="FUND").body["payment"]["paymentId"]
    payments.app.drain()
    assert payments.app.api("POST", f"/payments/{payment_id}/retry", {}, ALICE).status == 202
    payments.app.drain()
    # a retry with the same declined card is declined again, as a new gateway payment
    again = payment_of(payments, payment_id)
    assert (again["status"], again["generation"]) == ("REJECTED", 1)
    retried = payments.app.api("POST", f"/payments/{payment_id}/retry", {"cardToken": "APRO"}, ALICE)
    assert retried.status == 202
    job = retried.body["jobId"]
    payments.app.drain()
    done = payment_of(payments, payment_id)
    assert (done["status"], done["generation"]) == ("APPROVED", 2)
    assert job_of(payments.app, job)["type"] == "payments.retry"
    assert len(payments.sandbox.payments_for(f"{payment_id}/2")) == 1
    approved = payments.app.api("POST", f"/payments/{payment_id}/retry", {}, ALICE)
    assert approved.status == 409 and approved.body["error"]["code"] == "INVALID_STATE"


def test_a_contingency_card_settles_through_the_gateway_webhook(payments: Payments, clock: Clock) -> None:
    accepted = pay(payments, cardToken="CONT")
    payment_id = accepted.body["payment"]["paymentId"]
    payments.app.drain()
    assert payment_of(payments, payment_id)["status"] == "PROCESSING"
    answers = payments.deliver_webhooks(wait_for=2)  # created, then updated (approved)
    assert answers and all(a.status == 200 for a in answers), [a.body for a in answers]
    payments.app.drain()
    assert payment_of(payments, payment_id)["status"] == "APPROVED"
