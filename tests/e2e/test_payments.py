"""The README's payments tour on `tarefa local`, over HTTP as a user would, against the Mercado
Pago sandbox the stack starts (with --delay-speedup, so a minute of backoff or polling is half a
second; the time is the stack's, never a sleep of the test's)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunningStack, start_stack

SPEEDUP = "120"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAYMENTS_GATEWAY_TIMEOUT_SECONDS", "2")  # the TIMEOUT card hangs 12 s
        running = start_stack(Path(tmp_path_factory.mktemp("payments")), "--delay-speedup", SPEEDUP)
    yield running
    running.stop()


def pay(shop: RunningStack, token: str, order: str, **fields: Any) -> dict[str, Any]:
    body = {"orderId": order, "amountCents": 12_345, "method": "card", "payer": {"email": "ana@example.com"}}
    body.update(fields)
    status, answer = shop.request("POST", "/payments", body, token=token)
    assert status == 202, answer
    payment: dict[str, Any] = answer["payment"]
    return payment


def payment(shop: RunningStack, token: str, payment_id: str) -> dict[str, Any]:
    status, answer = shop.request("GET", f"/payments/{payment_id}", token=token)
    assert status == 200, answer
    found: dict[str, Any] = answer["payment"]
    return found


def wait_for(
    shop: RunningStack, token: str, payment_id: str, wanted: str, timeout: float = 40
) -> dict[str, Any]:
    shop.wait_until(
        lambda: payment(shop, token, payment_id)["status"] == wanted, f"{payment_id} {wanted}", timeout
    )
    return payment(shop, token, payment_id)


def test_the_sandbox_is_started_and_written_down(shop: RunningStack) -> None:
    assert shop.state["sandboxes"]["payments"].startswith("http://127.0.0.1:")
    status, types = shop.request("GET", "/job-types", token=shop.token("ana"))
    assert status == 200
    names = {t["name"]: t["aliases"] for t in types["items"]}
    assert names["payments.process"] == ["PAYMENT_PROCESS"] and names["payments.verify"] == [
        "PIX_VERIFICATION"
    ]


def test_cards_approved_declined_and_timed_out(shop: RunningStack) -> None:
    token = shop.token("ana")
    approved = pay(shop, token, "e2e-1", cardToken="APRO")
    assert approved["status"] == "PENDING"
    assert wait_for(shop, token, approved["paymentId"], "APPROVED")["statusDetail"] == "accredited"
    declined = pay(shop, token, "e2e-2", cardToken="FUND")
    done = wait_for(shop, token, declined["paymentId"], "REJECTED")
    _, job = shop.request("GET", f"/jobs/{done['jobs'][0]}", token=token)
    assert (job["status"], job["attempts"]) == ("COMPLETED", 1)  # no retries for a decline
    timed_out = pay(shop, token, "e2e-3", cardToken="TIMEOUT")
    seen = shop.wait_for_status(shop_job(shop, token, timed_out["paymentId"]), token, "COMPLETED", timeout=60)
    assert "RETRYING" in seen
    assert payment(shop, token, timed_out["paymentId"])["status"] == "APPROVED"


def shop_job(shop: RunningStack, token: str, payment_id: str) -> str:
    shop.wait_until(lambda: bool(payment(shop, token, payment_id)["jobs"]), "a job on the payment")
    job_id: str = payment(shop, token, payment_id)["jobs"][0]
    return job_id


def test_pix_paid_on_the_third_poll_and_never_paid(shop: RunningStack) -> None:
    token = shop.token("ana")
    third = pay(shop, token, "e2e-pix-3", method="pix", payer={"email": "paid-after-3@example.com"})
    never = pay(shop, token, "e2e-pix-never", method="pix", payer={"email": "never@example.com"})
    paid = wait_for(shop, token, third["paymentId"], "APPROVED")
    _, verification = shop.request("GET", f"/jobs/{paid['verificationJobId']}", token=token)
    assert (verification["type"], verification["attempts"]) == ("payments.verify", 3)
    expired = wait_for(shop, token, never["paymentId"], "EXPIRED", timeout=90)
    _, verification = shop.request("GET", f"/jobs/{expired['verificationJobId']}", token=token)
    assert (verification["status"], verification["attempts"]) == ("COMPLETED", 10)


def test_a_webhook_before_the_poll(shop: RunningStack) -> None:
    token = shop.token("ana")
    created = pay(shop, token, "e2e-pix-hook", method="pix", payer={"email": "bia@example.com"})
    shop.wait_until(
        lambda: payment(shop, token, created["paymentId"])["gatewayId"] is not None, "at the gateway"
    )
    waiting = payment(shop, token, created["paymentId"])
    assert waiting["status"] == "PENDING" and waiting["pix"]["qrCode"]
    request = urllib.request.Request(
        f"{shop.state['sandboxes']['payments']}/sandbox/pix/{waiting['gatewayId']}/pay",
        data=b"",
        method="POST",
        headers={"Authorization": "Bearer TEST-sandbox-access-token"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "approved"
    paid = wait_for(shop, token, created["paymentId"], "APPROVED", timeout=10)  # well before the first poll
    shop.wait_for_status(paid["verificationJobId"], token, "COMPLETED")
    _, verification = shop.request("GET", f"/jobs/{paid['verificationJobId']}", token=token)
    assert verification["result"]["polled"] is False


def test_a_partial_then_a_full_refund(shop: RunningStack) -> None:
    token = shop.token("ana")
    paid = pay(shop, token, "e2e-refund", cardToken="APRO", amountCents=10_000)
    wait_for(shop, token, paid["paymentId"], "APPROVED")
    status, partial = shop.request(
        "POST", f"/payments/{paid['paymentId']}/refund", {"amountCents": 2_500}, token=token
    )
    assert status == 202, partial
    wait_for(shop, token, paid["paymentId"], "PARTIALLY_REFUNDED")
    status, full = shop.request("POST", f"/payments/{paid['paymentId']}/refund", {}, token=token)
    assert status == 202 and full["refund"]["amountCents"] == 7_500
    assert wait_for(shop, token, paid["paymentId"], "REFUNDED")["refundedCents"] == 10_000


def test_another_user_sees_nothing_and_the_webhook_needs_a_signature(shop: RunningStack) -> None:
    ana, bob = shop.token("ana"), shop.token("bob")
    mine = pay(shop, ana, "e2e-private", cardToken="APRO")
    assert shop.request("GET", f"/payments/{mine['paymentId']}", token=bob)[0] == 404
    status, refused = shop.request("POST", "/webhooks/payments?data.id=1&type=payment", {"data": {"id": "1"}})
    assert status == 401 and refused["error"]["code"] == "INVALID_SIGNATURE"


def test_a_subscription_charges_its_first_period(shop: RunningStack) -> None:
    token = shop.token("ana")
    body = {
        "planId": "pro",
        "amountCents": 2_990,
        "interval": "month",
        "cardToken": "APRO",
        "payer": {"email": "ana@example.com"},
    }
    status, created = shop.request("POST", "/subscriptions", body, token=token)
    assert status == 201, created
    shop.wait_for_status(created["jobId"], token, "COMPLETED")
    _, subscription = shop.request(
        "GET", f"/subscriptions/{created['subscription']['subscriptionId']}", token=token
    )
    assert (subscription["subscription"]["nextPeriod"], len(subscription["subscription"]["payments"])) == (
        2,
        1,
    )
    status, run = shop.request("POST", "/subscriptions/renewals", token=shop.token("root", "--admin"))
    assert (status, run) == (200, {"enqueued": 0, "failed": 0})  # nothing due for a month
    assert shop.request("POST", "/subscriptions/renewals", token=token)[0] == 403
