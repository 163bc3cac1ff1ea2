"""Passwords, phone numbers and e-mails never leak: a full run of the workload (registrations,
logins right and wrong, a taken phone, the failed-login limit, a retried attempt, a failed job, a
dead letter and its listing) at DEBUG, with every log line captured (Powertools' own handler,
every logger's records with their extras, the process's stdout and stderr), then every item of
every table, every message of every queue, and every answer of the API scanned.

- The passwords appear nowhere at all.
- A phone number appears in no log line, no key of any table or cache entry, and no job
  record; the one place it is stored is its client's record in the guests table.
- The e-mail appears in no log line and no job record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from guests import jobs as guest_jobs
from guests.service import ADMIT_TRIES
from guests.store import ContentionError

from tarefa.local.app import HttpResult

from ..conftest import ADMIN, ALICE, job_of
from .conftest import PASSWORD, PHONES, Guests

WRONG = "Wr0ng-guess-password"
OTHER = "An0ther-password-here"
EMAIL = "maria.privacy-check@example.com"
TYPED = "912 345 678"  # how the first phone is typed


class Lines(logging.Handler):
    """Every record, formatted as the Powertools handler writes it, and its extras."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.lines.append(f"{record.msg} {record.args}")
        self.lines.append(json.dumps(record.__dict__, default=str))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def every_line() -> Iterator[Lines]:
    """A handler beside every logger's own (Powertools' parent does not propagate)."""
    parent = logging.getLogger("tarefa")
    lines = Lines(parent.handlers[0].formatter if parent.handlers else None)
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        logger.addHandler(lines)
        if logger.name.split(".")[0] in ("tarefa", "guests") or logger.name == "root":
            logger.setLevel(logging.DEBUG)
    for library in ("botocore", "boto3", "urllib3"):  # their DEBUG prints every request body
        logging.getLogger(library).setLevel(logging.INFO)
    yield lines
    for logger in loggers:
        logger.removeHandler(lines)


def everything_stored() -> tuple[list[dict[str, Any]], str]:
    """Every item of every table (with its table's name) and every message of every queue."""
    from moto.backends import get_backend

    dynamodb = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            items += [{"table": table, **item} for item in page["Items"]]
    backend = get_backend("sqs")["123456789012"]["us-east-1"]
    messages = "\n".join(m.body for q in backend.queues.values() for m in q._messages)
    return items, messages


KEY_ATTRIBUTES = ("pk", "sk", "jobId", "eventShard", "sortKey", "idempotencyKey", "key")


@pytest.mark.parametrize("guests", [{"LogLevel": "DEBUG"}], indirect=True)
def test_no_password_phone_or_email_leaks_from_a_full_run(
    guests: Guests,
    every_line: Lines,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[HttpResult] = []
    real_api = guests.app.api

    def recorded(*args: Any, **kwargs: Any) -> HttpResult:
        answer = real_api(*args, **kwargs)
        answers.append(answer)
        return answer

    monkeypatch.setattr(guests.app, "api", recorded)
    maria, joao, ana = PHONES[:3]
    event = guests.create_event(capacity=2)
    event_id = event["eventId"]
    guests.verify(event_id, TYPED)
    first = guests.joined(guests.register(event_id, TYPED, email=EMAIL, promoterSlug="miguel"))
    guests.done(guests.register(event_id, maria, password=PASSWORD, email=EMAIL))  # a double submit
    guests.done(guests.register(event_id, maria, password=OTHER))  # PHONE_TAKEN, a failed login
    for _ in range(4):
        guests.done(guests.login(event_id, maria, password=WRONG))
    refused = guests.login(event_id, maria, password=WRONG)
    assert refused.status == 429
    # A retried attempt (every try of its first met another transaction), then the event full
    store = guest_jobs.service().store
    admit = store.admit
    calls = {"n": 0}

    def contended_at_first(guest: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= ADMIT_TRIES:
            raise ContentionError(guest.guest_id)
        return admit(guest)

    monkeypatch.setattr(store, "admit", contended_at_first)
    second = guests.register(event_id, joao, password=OTHER, email=EMAIL)
    guests.run()
    guests.run(5)
    assert guests.done(second)["status"] == "COMPLETED"
    assert job_of(guests.app, second.body["jobId"], ALICE)["attempts"] == 2
    guests.done(guests.register(event_id, ana, password=OTHER))  # EVENT_FULL
    # A job that fails for good: the keys' secret unreadable in the worker
    broken = guests.register(event_id, PHONES[3], password=OTHER, email=EMAIL)
    monkeypatch.setattr(guest_jobs, "keys", lambda secret: (_ for _ in ()).throw(RuntimeError("keys down")))
    guests.run()
    guests.run(5)
    guests.run(10)
    failed = guests.status(broken.body["jobId"], broken.body["statusToken"])
    assert failed.body == {"status": "FAILED", "result": {"success": False, "code": "FAILED"}}
    monkeypatch.undo()
    monkeypatch.setattr(guests.app, "api", recorded)
    # A message SQS's redrive moved to the DLQ before a worker recorded it, listed by an admin
    dead = guests.login(event_id, PHONES[4], password=WRONG)
    app = guests.app
    queue, dlq = app.stack.queue_urls["HighQueue"], app.stack.queue_urls["HighDeadLetterQueue"]
    message = app.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]
    app.sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"])
    app.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert app.fire("DeadLetters") == {"deadLettered": 1}
    listing = guests.app.api("GET", "/queues/high/dead-letters", claims=ADMIN)
    assert listing.status == 200 and dead.body["jobId"] in listing.text
    # The organiser's views
    guests.check_in(event_id, first["pass"]["token"])
    guests.app.api("GET", f"/events/{event_id}/guests", claims=ALICE)
    guests.app.api("GET", f"/events/{event_id}/metrics", claims=ALICE)
    jobs = guests.app.api("GET", "/jobs?limit=100", claims=ALICE)
    assert len(jobs.body["items"]) >= 10
    for item in jobs.body["items"]:
        job_of(guests.app, item["jobId"], ALICE)

    passwords = (PASSWORD, WRONG, OTHER)
    phones = (*PHONES, TYPED, TYPED.replace(" ", ""))
    captured = capfd.readouterr()
    lines = [*every_line.lines, *captured.out.splitlines(), *captured.err.splitlines()]
    assert len(every_line.lines) > 40, "the run logged almost nothing: the scan would prove nothing"
    for line in lines:
        for secret in (*passwords, *phones, EMAIL):
            assert secret not in line, (secret, line[:300])
    for answer in answers:
        shown = answer.text + json.dumps(answer.headers)
        for secret in passwords:
            assert secret not in shown, (secret, shown[:300])
        assert EMAIL not in shown
        assert not any(phone in shown for phone in PHONES[1:]), shown[:300]  # only the E.164 of the check
    items, messages = everything_stored()
    everything = json.dumps(items) + messages
    for secret in passwords:
        assert secret not in everything, secret
    assert "[redacted]" in everything  # the scan did read the jobs
    for item in items:
        keys = json.dumps({k: v for k, v in item.items() if k in KEY_ATTRIBUTES})
        assert not any(p.lstrip("+") in keys for p in PHONES), keys
        if item["table"].endswith("-guests") and item["pk"]["S"].startswith("client#"):
            continue  # the client's record is where the phone and e-mail are kept
        text = json.dumps(item)
        assert not any(p in text for p in PHONES), (item["table"], text[:300])
        assert EMAIL not in text, (item["table"], text[:300])
    assert not any(p in messages for p in PHONES) and EMAIL not in messages
    clients = [i for i in items if i["table"].endswith("-guests") and i["pk"]["S"].startswith("client#")]
    assert len(clients) == 2 and all("$2b$04$" in c["doc"]["S"] for c in clients)  # bcrypt hashes only
