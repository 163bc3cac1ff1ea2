"""Addresses, subjects and bodies never reach a log or a job's error: a run of every flow (sent,
refused, retried, timed out, the provider down, not configured) at DEBUG on each provider,
every line captured (the workload's and the engine's), scanned for them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import boto3
import pytest

from ..conftest import ADMIN, job_of
from .conftest import Mail, clock_for, start

ADDRESS = "maria.privacy-check@example.com"
SUBJECT = "Assunto-confidencial-7731"
BODY = "Corpo-confidencial-4410"
HTML = "<p>Html-confidencial-9902</p>"
SECRETS = (ADDRESS, SUBJECT, BODY, "Html-confidencial-9902", "privacy-check")


class Lines(logging.Handler):
    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(params=["ses", "resend"])
def mail(request: pytest.FixtureRequest) -> Iterator[Mail]:
    yield from start(request.param)


@pytest.fixture
def powertools_lines() -> Iterator[Lines]:
    parent = logging.getLogger("tarefa")
    lines = Lines(parent.handlers[0].formatter if parent.handlers else None)
    parent.addHandler(lines)
    yield lines
    parent.removeHandler(lines)


def test_no_address_subject_or_body_in_any_log_line_or_job(
    mail: Mail,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    powertools_lines: Lines,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name, existing in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(existing, logging.Logger) and name.split(".")[0] in ("tarefa", "notifications"):
            caplog.set_level(logging.DEBUG, logger=name)
    for library in ("botocore", "boto3", "urllib3"):  # their DEBUG prints every request body
        caplog.set_level(logging.INFO, logger=library)
    clock = clock_for(mail)
    jobs = []
    recipients = [ADDRESS, "bounce.privacy-check@example.com"]
    if mail.app.stack.functions["WorkerFunction"].environment["EMAIL_PROVIDER"] == "resend":
        recipients = [ADDRESS, "bounce@privacy-check.example.com", "fail@privacy-check.example.com"]
        recipients.append("slow@privacy-check.example.com")
    for n, to in enumerate(recipients):
        answer = mail.send(to=[to, ADDRESS], subject=f"{SUBJECT} {n}", text=BODY, html=HTML)
        assert answer.status == 202, answer.body
        jobs.append(answer.body["jobId"])
    refused = mail.send(to=f"{ADDRESS}\r\nBcc: x@example.com", subject=SUBJECT, text=BODY)
    assert refused.status == 422 and ADDRESS not in json.dumps(refused.body)
    for _ in range(6):
        mail.run(clock, 60)
    # the provider unreachable, then not configured: their errors must be as clean
    mail.sandbox.stop()
    boto3.client("sesv2").delete_email_identity(EmailIdentity="example.com")
    jobs.append(mail.send(to=ADDRESS, subject=SUBJECT, text=BODY).body["jobId"])
    for _ in range(6):
        mail.run(clock, 60)

    captured = capfd.readouterr()
    lines = [
        *captured.out.splitlines(),
        *captured.err.splitlines(),
        *(r.getMessage() for r in caplog.records),
    ]
    lines += powertools_lines.lines
    lines += [json.dumps(r.__dict__, default=str) for r in caplog.records]
    assert len(powertools_lines.lines) >= 3 and len(lines) > 10, (
        "the run logged almost nothing: the scan would prove nothing"
    )
    for line in lines:
        for secret in SECRETS:
            assert secret not in line, line
    statuses = set()
    for job_id in jobs:
        job = job_of(mail.app, job_id, ADMIN)
        statuses.add(job["status"])
        shown = json.dumps({k: job.get(k) for k in ("error", "errorDetails", "result", "payload")})
        assert not any(secret in shown for secret in SECRETS), shown
    assert statuses == {"COMPLETED", "FAILED"}  # the run went through both endings
