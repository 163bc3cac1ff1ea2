"""Phone numbers, message bodies and the providers' credentials never reach a log or a job's
error: a run of every flow (sent and read, not on WhatsApp, rate limited, server errors, time
outs, an inbound message, a bad signature, a provider outage) at DEBUG, every line captured
(the workload's and the engine's), scanned."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from messaging import local

from ..conftest import ADMIN, ALICE
from .conftest import ANA, PHONE_NUMBER_ID, Messaging

NUMBERS = (ANA, "+5511987650000", "+5511987650429", "+5511987650500", "+5511987650408", "+5521998765432")
BODY = "Segredo do pedido 7781: entregar na portaria"
INBOUND = "Resposta confidencial 5512"
SECRETS = (
    local.SANDBOX_ACCESS_TOKEN,
    local.SANDBOX_APP_SECRET,
    local.SANDBOX_API_KEY,
    local.SANDBOX_VERIFY_TOKEN,
    local.SANDBOX_WEBHOOK_SECRET,
)


class Lines(logging.Handler):
    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def powertools_lines() -> Iterator[Lines]:
    parent = logging.getLogger("tarefa")
    lines = Lines(parent.handlers[0].formatter if parent.handlers else None)
    parent.addHandler(lines)
    yield lines
    parent.removeHandler(lines)


def test_no_number_body_or_secret_in_any_log_line_or_job_error(
    messaging: Messaging,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    powertools_lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESSAGING_SEND_GRACE_SECONDS", "5")
    caplog.set_level(logging.DEBUG)
    for name, existing in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(existing, logging.Logger) and name.split(".")[0] in ("tarefa", "messaging"):
            caplog.set_level(logging.DEBUG, logger=name)
    for library in ("botocore", "boto3", "urllib3"):  # their DEBUG prints every request body
        caplog.set_level(logging.INFO, logger=library)
    session = messaging.open_session()
    # a subscriber of message.received: the inbound message's delivery job is scanned too (its
    # event data, the sender and the text, is a sealed field)
    subscribed = messaging.app.api(
        "POST",
        "/webhooks",
        {"url": messaging.receiver.url + "/subscriber", "events": ["message.received"]},
        ALICE,
    )
    assert subscribed.status == 201, subscribed.body
    jobs = []
    for to in NUMBERS[:5]:
        jobs.append(messaging.send(session["sessionId"], to, text=BODY).body["jobId"])
    bad = messaging.app.api(
        "POST", f"/sessions/{session['sessionId']}/messages", {"to": "+55119", "text": BODY}
    )
    for _ in range(6):
        messaging.run(seconds=200)
        for answer in messaging.webhooks(wait_for=1, timeout=1):
            jobs += answer.body.get("jobIds", [])
    messaging.sandbox.inbound(PHONE_NUMBER_ID, NUMBERS[5], INBOUND)
    for answer in messaging.webhooks(wait_for=1):
        jobs += answer.body["jobIds"]
    messaging.run()  # message:receive, then its webhook.delivery to the subscriber
    posted = [n for n in messaging.receiver.take() if n.path == "/subscriber"]
    assert len(posted) == 1 and INBOUND.encode() in posted[0].body  # the subscriber gets the text
    deliveries = messaging.app.api("GET", f"/webhooks/{subscribed.body['id']}/deliveries", claims=ALICE)
    jobs += [d["jobId"] for d in deliveries.body["items"]]
    _, raw, _, _ = messaging.sandbox.deliveries[-1]
    messaging.app.api("POST", "/webhooks/whatsapp", raw, headers={"x-hub-signature-256": "sha256=00"})
    messaging.run()
    messaging.sandbox.stop()  # an outage: its errors must be as clean
    jobs.append(messaging.send(session["sessionId"], ANA, text=BODY).body["jobId"])
    messaging.run(seconds=10)
    assert bad is not None

    captured = capfd.readouterr()
    lines = [
        *captured.out.splitlines(),
        *captured.err.splitlines(),
        *(r.getMessage() for r in caplog.records),
    ]
    lines += powertools_lines.lines
    lines += [json.dumps(r.__dict__, default=str) for r in caplog.records]
    assert len(powertools_lines.lines) > 20, "the run logged almost nothing: the scan would prove nothing"
    for line in lines:
        for number in NUMBERS:
            assert number not in line and number.lstrip("+") not in line, line
        assert BODY not in line and INBOUND not in line, line
        for secret in SECRETS:
            assert secret not in line, line
    kinds = set()
    for job_id in jobs:
        job = messaging.job(job_id, ADMIN)
        kinds.add((job["type"], job["status"]))
        shown = json.dumps({k: job.get(k) for k in ("error", "errorDetails", "result", "payload")})
        for number in NUMBERS:
            assert number.lstrip("+") not in shown, shown
        assert BODY not in shown and INBOUND not in shown
        for secret in SECRETS:
            assert secret not in shown
    assert ("messaging.message.send", "FAILED") in kinds and (
        "messaging.message.receive",
        "COMPLETED",
    ) in kinds
    assert ("webhook.delivery", "COMPLETED") in kinds
