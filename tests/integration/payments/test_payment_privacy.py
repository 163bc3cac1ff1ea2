"""Personal and card data never reach a log or a job's error: a run of every flow (approved,
declined, timed out, PIX, refund, webhook, subscription, a gateway outage) at DEBUG, every line
captured (the workload's and the engine's, at DEBUG), scanned for the payer's e-mail and the
card tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from ..conftest import ALICE, Clock, job_of
from .conftest import Payments
from .test_payment_flows import ADMIN, pay, payment_of
from .test_pix_webhooks_renewals import subscribe

EMAIL = "maria.privacy-check@example.com"
TOKENS = ("APRO", "FUND", "TIMEOUT", "CONT", "RATE_LIMIT")


class Lines(logging.Handler):
    """Every record, formatted as the Powertools handler would write it (keys and extras)."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def powertools_lines() -> Iterator[Lines]:
    """Powertools' parent logger does not propagate and writes to the stdout it found at import
    (under pytest, a capture file): a handler of our own beside its own sees every line."""
    parent = logging.getLogger("tarefa")
    lines = Lines(parent.handlers[0].formatter if parent.handlers else None)
    parent.addHandler(lines)
    yield lines
    parent.removeHandler(lines)


def test_no_email_or_card_token_in_any_log_line_or_job_error(
    payments: Payments,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    powertools_lines: Lines,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Powertools gives every child logger its own level (the service's, at import): each to DEBUG.
    # (Only loggers that exist: making one of a placeholder would orphan its Powertools children.)
    for name, existing in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(existing, logging.Logger) and name.split(".")[0] in ("tarefa", "payments"):
            caplog.set_level(logging.DEBUG, logger=name)
    # botocore's own DEBUG lines print every request body (any AWS client's, any item): a
    # debugging tool of the library, off in a deployment (Lambda's root logger is at WARNING).
    for library in ("botocore", "boto3", "urllib3"):
        caplog.set_level(logging.INFO, logger=library)
    jobs = []
    for n, token in enumerate(TOKENS):
        jobs.append(pay(payments, orderId=f"priv-{n}", cardToken=token, email=EMAIL).body["jobId"])
    jobs.append(pay(payments, orderId="priv-pix", method="pix", email=EMAIL).body["jobId"])
    payments.app.drain()
    payments.run(clock, 70)
    approved = payment_of(
        payments,
        payments.app.api("GET", "/payments?orderId=priv-0", claims=ALICE).body["items"][0]["paymentId"],
    )
    refund = payments.app.api(
        "POST", f"/payments/{approved['paymentId']}/refund", {"amountCents": 100}, ALICE
    )
    assert refund.status == 202, refund.body
    jobs.append(refund.body["jobId"])
    for answer in payments.deliver_webhooks(wait_for=3):
        if answer.body and answer.body.get("jobId"):
            jobs.append(answer.body["jobId"])
    jobs.append(subscribe(payments, token="FUND").body["jobId"])
    payments.app.drain()
    payments.sandbox.stop()  # an outage: its errors must be as clean
    jobs.append(pay(payments, orderId="priv-down", cardToken="APRO", email=EMAIL).body["jobId"])
    payments.app.drain()

    captured = capfd.readouterr()  # Powertools writes to the process's stdout, unpropagated
    lines = [
        *captured.out.splitlines(),
        *captured.err.splitlines(),
        *(r.getMessage() for r in caplog.records),
    ]
    lines += powertools_lines.lines
    lines += [json.dumps(r.__dict__, default=str) for r in caplog.records]  # extras too
    assert len(powertools_lines.lines) > 20, "the run logged almost nothing: the scan would prove nothing"
    for line in lines:
        assert EMAIL not in line, line
        for token in TOKENS:
            assert f'"{token}"' not in line and f"'{token}'" not in line and f"={token}" not in line, line
    for job_id in jobs:
        job = job_of(payments.app, job_id, ADMIN)
        shown = json.dumps({k: job[k] for k in ("error", "errorDetails", "result", "payload")})
        assert EMAIL not in shown
        assert not any(f'"{t}"' in shown for t in TOKENS), shown
