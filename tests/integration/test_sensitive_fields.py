"""Sensitive payload fields on the real handlers against moto (KMS included): a guest's password
is sealed by the API, opened by the worker for the handler only, and found nowhere else: no
stored item of any table, no stream record, no message of any queue (DLQs included), no API
answer (job, listings, dead letters, a 422), no log line of the whole run. The ciphertext goes
with the write that ends the job; retries and crash recovery before that still open it;
tampering, a refused key and KMS outages end in states a user can see, with their codes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tarefa import wiring
from tarefa.job import JobStatus
from tarefa.local.app import LocalApp
from tarefa.sensitive import REDACTED

from .conftest import ADMIN, ALICE, Clock, job_of, let_sqs_timers_pass
from .sensitive_workload import jobs as guests

MODULES = "tests.integration.sensitive_workload"
PASSWORD = "correct-horse-battery-staple"
EMAIL = "ana@example.com"


class Captured(logging.Handler):
    """Every log record of every logger, with its arguments, extras and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg} {record.args}"
        extras = json.dumps(record.__dict__, default=str)
        trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        self.lines.append(f"{message} {extras} {trace}")


class Rig:
    def __init__(self, app: LocalApp, clock: Clock, logs: Captured) -> None:
        self.app = app
        self.clock = clock
        self.logs = logs
        self.dynamodb = boto3.client("dynamodb")

    def enqueue(self, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        body = {"type": "vault.register", "payload": {"email": EMAIL, "password": password, **extra}}
        answer = self.app.api("POST", "/jobs", body, ALICE)
        assert answer.status == 202, answer.body
        assert answer.body["payload"]["password"] == REDACTED
        job: dict[str, Any] = answer.body
        return job

    def item(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.dynamodb.get_item(
            TableName=self.app.stack.tables["JobsTable"], Key={"jobId": {"S": job_id}}
        )["Item"]
        return found

    def sealed(self, job_id: str) -> dict[str, Any]:
        envelope: dict[str, Any] = json.loads(self.item(job_id)["sealed"]["S"])
        return envelope

    def put_sealed(self, job_id: str, envelope: dict[str, Any]) -> None:
        item = self.item(job_id)
        item["sealed"] = {"S": json.dumps(envelope)}
        self.dynamodb.put_item(TableName=self.app.stack.tables["JobsTable"], Item=item)

    def later(self, seconds: float = 10) -> None:
        self.clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()

    def kms(self) -> Any:
        """The KMS client the functions' codec uses (built on first use)."""
        return wiring.container().sensitive.codec.keys.client  # type: ignore[attr-defined]

    def forget_data_keys(self) -> None:
        """The local API and worker share one codec: forgetting makes the worker call KMS."""
        wiring.container().sensitive.codec.forget()

    # -- everywhere a plaintext could be left ------------------------------------------------
    def everything_stored(self) -> str:
        """Every item of every table, every record of every stream, every message of every
        queue (DLQs and placeholders included), as one text."""
        parts: list[str] = []
        for table in self.dynamodb.list_tables()["TableNames"]:
            for page in self.dynamodb.get_paginator("scan").paginate(TableName=table):
                parts.append(json.dumps(page["Items"]))
        streams = self.app.streams
        for stream in streams.list_streams()["Streams"]:
            description = streams.describe_stream(StreamArn=stream["StreamArn"])["StreamDescription"]
            for shard in description["Shards"]:
                iterator = streams.get_shard_iterator(
                    StreamArn=stream["StreamArn"], ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
                parts.append(json.dumps(records, default=str))
        parts.extend(queue_bodies())
        return "\n".join(parts)

    def assert_nowhere(self, secret: str = PASSWORD, capfd: pytest.CaptureFixture[str] | None = None) -> None:
        stored = self.everything_stored()
        assert secret not in stored
        assert REDACTED in stored  # the search did look at the jobs
        assert not [line for line in self.logs.lines if secret in line]
        if capfd is not None:
            out, err = capfd.readouterr()
            assert secret not in out and secret not in err


def seen() -> list[tuple[str, int, str]]:
    """(job id, attempt, password) as each call of the handler saw it."""
    return list(guests.SEEN)


def queue_bodies() -> list[str]:
    from moto.backends import get_backend

    backend = get_backend("sqs")["123456789012"]["us-east-1"]
    return [m.body for q in backend.queues.values() for m in q._messages]


@pytest.fixture
def rig() -> Iterator[Rig]:
    logs = Captured()
    with mock_aws():
        app = LocalApp(
            boto3.client("sqs"), boto3.client("dynamodb"), {"JobModules": MODULES, "LogLevel": "DEBUG"}
        )
        clock = Clock()
        wiring.container().clock = clock
        loggers = [logging.getLogger()] + [
            lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
        ]
        for logger in loggers:
            logger.addHandler(logs)
        guests.SEEN.clear()
        try:
            yield Rig(app, clock, logs)
        finally:
            for logger in loggers:
                logger.removeHandler(logs)
    wiring.reset()


def test_the_password_is_sealed_opened_only_for_the_handler_and_dropped_when_the_job_ends(
    rig: Rig, capfd: pytest.CaptureFixture[str]
) -> None:
    app = rig.app
    job = rig.enqueue()
    job_id = job["jobId"]
    # Stored and sent sealed: the item and the message carry the envelope, never the value
    item = rig.item(job_id)
    assert json.loads(item["payload"]["S"])["password"] == REDACTED
    assert rig.sealed(job_id)["fields"] == ["password"]
    assert any(job_id in body and '"sealed"' in body for body in queue_bodies())
    rig.assert_nowhere()
    # The handler sees the plaintext, and only the handler
    app.drain()
    assert seen() == [(job_id, 1, PASSWORD)]
    done = job_of(app, job_id)
    assert done["status"] == "COMPLETED"
    assert done["result"]["hash"] == guests.digest(PASSWORD, EMAIL)
    # What the handler put in its progress and result (a workload bug) is scrubbed
    assert done["result"]["echo"] == REDACTED
    assert done["progress"]["message"] == f"hashing the password {REDACTED}"
    # What it logged with the value (ctx.logger, plain logging, an extra) is scrubbed
    logged = [line for line in rig.logs.lines if "registering ana@example.com with" in line]
    assert logged and all(f"with {REDACTED}" in line for line in logged)
    assert [line for line in rig.logs.lines if f"plain logging sees {REDACTED}" in line]
    # The terminal write dropped the ciphertext
    assert "sealed" not in rig.item(job_id)
    # Every view says "[redacted]": the job (from the table, then from the cache), listings
    views = [
        app.api("GET", f"/jobs/{job_id}", claims=ALICE),
        app.api("GET", f"/jobs/{job_id}", claims=ALICE),
        app.api("GET", "/jobs", claims=ALICE),
        app.api("GET", "/jobs?type=vault.register", claims=ADMIN),
        app.api("GET", "/jobs?status=COMPLETED", claims=ADMIN),
    ]
    assert views[1].headers["x-cache"] == "HIT"
    for view in views:
        assert view.status == 200 and PASSWORD not in view.text and REDACTED in view.text
    listed = app.api("GET", "/job-types", claims=ALICE).body["items"]
    (register,) = [t for t in listed if t["name"] == "vault.register"]
    assert register["sensitive"] == ["password"]
    assert register["payloadSchema"]["properties"]["password"]["writeOnly"] is True
    rig.assert_nowhere(capfd=capfd)


def test_an_idempotent_retry_answers_with_the_first_job_whatever_the_password(rig: Rig) -> None:
    """The fingerprint is taken with the sensitive values redacted (a hash of a password is a
    password to a dictionary): the key decides, and nothing derived from the value is stored."""
    body = {
        "type": "vault.register",
        "payload": {"email": EMAIL, "password": PASSWORD},
        "idempotencyKey": "g-1",
    }
    first = rig.app.api("POST", "/jobs", body, ALICE)
    again = rig.app.api("POST", "/jobs", body, ALICE)
    other = rig.app.api(
        "POST", "/jobs", {**body, "payload": {"email": EMAIL, "password": "another-password-9"}}, ALICE
    )
    assert first.status == 202 and again.status == 200 and other.status == 200
    assert first.body["jobId"] == again.body["jobId"] == other.body["jobId"]
    # Another non-sensitive field is another request
    changed = rig.app.api(
        "POST", "/jobs", {**body, "payload": {"email": "bia@example.com", "password": PASSWORD}}, ALICE
    )
    assert changed.status == 409 and changed.body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    rig.app.drain()
    assert seen() == [(first.body["jobId"], 1, PASSWORD)]  # the first request's password
    rig.assert_nowhere()
    rig.assert_nowhere("another-password-9")


@pytest.mark.parametrize(
    ("password", "field"),
    [
        ("short", "payload.password"),  # pydantic's own constraint
        ("looks@like.an-email", "payload.password"),  # a validator that quotes its input
    ],
)
def test_a_422_never_echoes_the_value(rig: Rig, password: str, field: str) -> None:
    body = {"type": "vault.register", "payload": {"email": "x", "password": password}}
    refused = rig.app.api("POST", "/jobs", body, ALICE)
    assert refused.status == 422
    assert password not in refused.text
    fields = {d["field"] for d in refused.body["error"]["details"]}
    assert fields == {field, "payload.email"}  # the other field's error is told as usual
    email = [d for d in refused.body["error"]["details"] if d["field"] == "payload.email"]
    assert "at least 3 characters" in email[0]["message"]
    stored = rig.everything_stored()
    assert "vault.register" not in stored and password not in stored  # nothing was enqueued
    assert not [line for line in rig.logs.lines if password in line]


def test_a_retried_attempt_and_a_crashed_one_open_the_fields_again_and_their_errors_are_scrubbed(
    rig: Rig, capfd: pytest.CaptureFixture[str]
) -> None:
    retried = rig.enqueue(failFirst="retryable")["jobId"]
    crashed = rig.enqueue(failFirst="crash")["jobId"]
    rig.app.drain()
    for job_id in (retried, crashed):
        waiting = job_of(rig.app, job_id)
        assert waiting["status"] == "RETRYING" and waiting["attempts"] == 1
        assert REDACTED in waiting["error"] and PASSWORD not in json.dumps(waiting)
        assert rig.sealed(job_id)["fields"] == ["password"]  # kept for the next attempt
    # The crash's traceback is logged, scrubbed
    tracebacks = [line for line in rig.logs.lines if "unexpected character in" in line]
    assert tracebacks and all(REDACTED in line for line in tracebacks)
    # A fresh worker environment (no cached data key) opens them through KMS
    rig.forget_data_keys()
    rig.later(10)
    for job_id in (retried, crashed):
        assert job_of(rig.app, job_id)["status"] == "COMPLETED"
        assert [s for s in seen() if s[0] == job_id] == [(job_id, 1, PASSWORD), (job_id, 2, PASSWORD)]
    assert wiring.container().sensitive.codec.decrypted >= 1
    rig.assert_nowhere(capfd=capfd)


def test_a_job_whose_worker_died_is_recovered_by_the_sweep_and_still_opens(rig: Rig) -> None:
    app = rig.app
    job_id = rig.enqueue()["jobId"]
    # A worker took the message, claimed the job and died
    queue = app.stack.queue_urls["MediumQueue"]
    app.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=900)
    store = wiring.container().store
    record = store.get(job_id)
    assert record is not None and record.sealed is not None
    now = wiring.container().now()
    claimed = record.transition(JobStatus.PROCESSING, now, attempts=1, processing_started_at=now)
    store.put(claimed, expected_version=record.version)
    # The stuck-job sweep gives it back, and the next attempt opens the fields
    rig.clock.advance(400)
    assert app.fire("Recover") == {"recovered": 1}
    assert job_of(app, job_id)["status"] == "RETRYING"
    assert rig.sealed(job_id)["fields"] == ["password"]
    rig.forget_data_keys()
    rig.later(61)
    assert job_of(app, job_id)["status"] == "COMPLETED"
    assert seen() == [(job_id, 1, PASSWORD)]  # the attempt was given back
    assert "sealed" not in rig.item(job_id)
    rig.assert_nowhere()


def flip(text: str) -> str:
    """The base64 text with one byte of its data changed."""
    import base64

    data = bytearray(base64.b64decode(text))
    data[len(data) // 2] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e, other: {**e, "ciphertext": flip(e["ciphertext"])},
        lambda e, other: {**e, "nonce": flip(e["nonce"])},
        lambda e, other: {**e, "dataKey": flip(e["dataKey"])},  # KMS refuses it
        lambda e, other: {**e, "fields": ["email"]},
        lambda e, other: other,  # another job's envelope: the job id is the associated data
        lambda e, other: {"v": 1, "fields": "password"},
    ],
    ids=["ciphertext", "nonce", "data-key", "field-list", "moved-from-another-job", "malformed"],
)
def test_a_tampered_envelope_fails_the_job_permanently_with_a_clear_code(
    rig: Rig, tamper: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
) -> None:
    victim = rig.enqueue()["jobId"]
    other = rig.enqueue("another-password-9")["jobId"]
    rig.put_sealed(victim, tamper(rig.sealed(victim), rig.sealed(other)))
    rig.forget_data_keys()
    rig.app.drain()
    failed = job_of(rig.app, victim)
    assert failed["status"] == "FAILED", failed
    assert failed["errorDetails"]["code"] == "SENSITIVE_TAMPERED"
    assert failed["attempts"] == 1 and "sealed" not in rig.item(victim)
    assert not [s for s in seen() if s[0] == victim]  # the handler never ran
    assert job_of(rig.app, other)["status"] == "COMPLETED"
    rig.assert_nowhere()


def kms_error(code: str, status: int = 400) -> Callable[..., Any]:
    def hook(**kwargs: Any) -> None:
        response: Any = {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        raise ClientError(response, "Decrypt")

    return hook


def test_kms_down_is_retried_and_a_refused_key_fails_the_job_permanently(rig: Rig) -> None:
    app = rig.app
    waits = rig.enqueue()["jobId"]
    kms = rig.kms()
    rig.forget_data_keys()
    outage = kms_error("ThrottlingException")
    kms.meta.events.register("before-call.kms.Decrypt", outage)
    try:
        app.drain()
        retrying = job_of(app, waits)
        assert retrying["status"] == "RETRYING"
        assert retrying["errorDetails"]["code"] == "SENSITIVE_KMS_UNAVAILABLE"
        assert rig.sealed(waits)["fields"] == ["password"]
    finally:
        kms.meta.events.unregister("before-call.kms.Decrypt", outage)
    rig.later(10)
    assert job_of(app, waits)["status"] == "COMPLETED"
    # A key that was disabled (or scheduled for deletion, or is not ours) does not come back
    refused = rig.enqueue()["jobId"]
    rig.forget_data_keys()
    disabled = kms_error("DisabledException")
    kms.meta.events.register("before-call.kms.Decrypt", disabled)
    try:
        app.drain()
    finally:
        kms.meta.events.unregister("before-call.kms.Decrypt", disabled)
    failed = job_of(app, refused)
    assert failed["status"] == "FAILED" and failed["errorDetails"]["code"] == "SENSITIVE_KEY_UNUSABLE"
    assert "sealed" not in rig.item(refused)
    rig.assert_nowhere()


def test_an_enqueue_while_kms_is_down_is_a_503_and_stores_or_sends_nothing(rig: Rig) -> None:
    kms = rig.kms()
    rig.forget_data_keys()
    outage = kms_error("KMSInternalException", 500)
    kms.meta.events.register("before-call.kms.GenerateDataKey", outage)
    try:
        body = {"type": "vault.register", "payload": {"email": EMAIL, "password": PASSWORD}}
        refused = rig.app.api("POST", "/jobs", body, ALICE)
    finally:
        kms.meta.events.unregister("before-call.kms.GenerateDataKey", outage)
    assert refused.status == 503 and refused.body["error"]["code"] == "ENCRYPTION_UNAVAILABLE"
    assert "vault.register" not in rig.everything_stored()
    assert rig.enqueue()["status"] == "PENDING"  # and once KMS answers, it works


def test_a_failed_job_keeps_no_ciphertext_cannot_be_retried_and_its_dead_letter_holds_no_plaintext(
    rig: Rig, capfd: pytest.CaptureFixture[str]
) -> None:
    app = rig.app
    # A permanent failure whose message quotes the password
    breached = rig.enqueue(failFirst="permanent")["jobId"]
    app.drain()
    failed = job_of(app, breached)
    assert failed["status"] == "FAILED" and failed["errorDetails"]["code"] == "BREACHED_PASSWORD"
    assert failed["error"] == f"{REDACTED} is on the breach list"
    assert "sealed" not in rig.item(breached)
    again = app.api("POST", f"/jobs/{breached}/retry", claims=ALICE)
    assert again.status == 409 and "sensitive fields were dropped" in again.body["error"]["message"]
    # A job whose message SQS's redrive moved to the DLQ (its workers kept dying)
    dead = rig.enqueue()["jobId"]
    queue, dlq = app.stack.queue_urls["MediumQueue"], app.stack.queue_urls["MediumDeadLetterQueue"]
    message = app.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]
    app.sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"])
    app.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert app.fire("DeadLetters") == {"deadLettered": 1}
    recorded = job_of(app, dead)
    assert recorded["status"] == "FAILED" and recorded["deadLettered"] is True
    assert "sealed" not in rig.item(dead)  # the sweep's terminal write dropped it too
    browsed = app.api("GET", "/queues/medium/dead-letters", claims=ADMIN)
    assert browsed.status == 200 and [i["jobId"] for i in browsed.body["items"]] == [dead]
    assert PASSWORD not in browsed.text
    rig.assert_nowhere(capfd=capfd)  # the DLQ's message has the envelope, never the value
    # Redriven, it cannot run: its fields are gone for good, and it says so
    moved = app.api("POST", "/queues/medium/dead-letters/redrive", {"jobIds": [dead]}, ADMIN)
    assert moved.status == 200 and moved.body["jobIds"] == [dead]
    app.drain()
    gone = job_of(app, dead)
    assert gone["status"] == "FAILED" and gone["errorDetails"]["code"] == "SENSITIVE_FIELDS_DROPPED"
    assert not [s for s in seen() if s[0] == dead]


def test_a_producer_sending_straight_to_sqs_has_its_plaintext_sealed_on_first_sight(rig: Rig) -> None:
    app = rig.app
    body = {
        "type": "vault.register",
        "jobId": "direct-1",
        "userId": "alice",
        "payload": {"email": EMAIL, "password": PASSWORD},
    }
    app.sqs.send_message(QueueUrl=app.stack.queue_urls["MediumQueue"], MessageBody=json.dumps(body))
    app.drain()
    assert seen() == [("direct-1", 1, PASSWORD)]
    assert job_of(app, "direct-1")["status"] == "COMPLETED"
    rig.assert_nowhere()  # the producer's message, the only copy in the clear, is deleted
    # An invalid one is recorded FAILED with the value redacted and its messages withheld
    bad = {**body, "jobId": "direct-2", "payload": {"email": EMAIL, "password": "bad@" + PASSWORD}}
    app.sqs.send_message(QueueUrl=app.stack.queue_urls["MediumQueue"], MessageBody=json.dumps(bad))
    app.drain()
    rejected = job_of(app, "direct-2")
    assert rejected["status"] == "FAILED" and rejected["errorDetails"]["code"] == "INVALID_PAYLOAD"
    assert rejected["payload"]["password"] == REDACTED
    rig.assert_nowhere("bad@" + PASSWORD)


def test_kms_calls_are_amortised_by_the_data_key_caches(rig: Rig) -> None:
    """20 jobs: one GenerateDataKey for all of them (the API's cached data key), and one Decrypt
    in a worker environment that did not make the key (here: after forgetting it)."""
    kms = rig.kms()
    calls: list[str] = []

    def count(event_name: str, **kwargs: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[1])

    kms.meta.events.register("before-call.kms.*", count)
    try:
        rig.forget_data_keys()
        jobs = [rig.enqueue(f"password-number-{n}")["jobId"] for n in range(20)]
        assert calls == ["GenerateDataKey"]
        rig.forget_data_keys()  # the worker is another execution environment
        rig.app.drain()
    finally:
        kms.meta.events.unregister("before-call.kms.*", count)
    assert calls == ["GenerateDataKey", "Decrypt"]
    assert all(job_of(rig.app, j)["status"] == "COMPLETED" for j in jobs)
    assert sorted(s[2] for s in seen()) == sorted(f"password-number-{n}" for n in range(20))
