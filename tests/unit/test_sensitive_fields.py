"""The sensitive-field codec and its rules, with an in-memory KMS: round trips, the job id as
associated data, tampering of every part of the envelope, the data key caches' bounds, what
KMS's answers become, the declaration, redaction, scrubbing, and the job service and worker on
memory fakes."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from tarefa.adapters.kms import KmsKeyService
from tarefa.errors import EncryptionUnavailableError, InvalidTransitionError, RetryableJobError
from tarefa.job import TERMINAL, Job, JobStatus
from tarefa.jobs import Caller, EnqueueRequest, JobService
from tarefa.jobtypes import JobPolicy, JobType, JobTypeError, JobTypeRegistry
from tarefa.ports import QueueMessageRef
from tarefa.queue import QueueMessage
from tarefa.sensitive import (
    FIELDS_DROPPED,
    KEY_UNUSABLE,
    KMS_UNAVAILABLE,
    REDACTED,
    TAMPERED,
    WITHHELD,
    Codec,
    InvalidCiphertextError,
    KeyServiceUnavailableError,
    KeyUnusableError,
    SealingUnavailableError,
    SensitiveFields,
    SensitiveFieldsError,
    SensitiveFieldsUnavailableError,
    associated_data,
    redact,
    scrubber,
    secret_strings,
    withholding,
)
from tarefa.worker import Worker

from .fakes import Clock, MemoryQueue, MemoryStore

PASSWORD = "correct-horse-battery-staple"


class FakeKms:
    """A KMS key in memory: data keys wrapped with AES-GCM under a master key; `failing` makes
    the next calls raise."""

    key_id = "arn:aws:kms:us-east-1:123456789012:key/test"

    def __init__(self) -> None:
        self.master = AESGCM(os.urandom(32))
        self.generated = 0
        self.decrypted = 0
        self.failing: Exception | None = None

    def generate_data_key(self) -> tuple[bytes, bytes]:
        if self.failing is not None:
            raise self.failing
        self.generated += 1
        plaintext = os.urandom(32)
        nonce = os.urandom(12)
        return plaintext, nonce + self.master.encrypt(nonce, plaintext, b"kms")

    def decrypt_data_key(self, encrypted: bytes) -> bytes:
        if self.failing is not None:
            raise self.failing
        self.decrypted += 1
        try:
            return self.master.decrypt(encrypted[:12], encrypted[12:], b"kms")
        except Exception:
            raise InvalidCiphertextError("InvalidCiphertextException") from None


class Now:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def kms() -> FakeKms:
    return FakeKms()


def flip(text: str) -> str:
    data = bytearray(base64.b64decode(text))
    data[len(data) // 2] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


# -- the codec ---------------------------------------------------------------------------------------
def test_a_round_trip_gives_the_values_back_and_the_envelope_holds_none_of_them(kms: FakeKms) -> None:
    codec = Codec(kms)
    values = {"password": PASSWORD, "pin": 987_654_321, "answers": {"pet": "Rexanthemum"}}
    envelope = codec.seal("job-1", values)
    assert set(envelope) == {"v", "keyId", "dataKey", "nonce", "fields", "ciphertext"}
    assert envelope["fields"] == ["answers", "password", "pin"] and envelope["keyId"] == kms.key_id
    text = json.dumps(envelope)
    assert PASSWORD not in text and "987654321" not in text and "Rexanthemum" not in text
    assert Codec(kms).open("job-1", envelope) == values  # another environment opens it
    again = codec.seal("job-1", values)
    assert again["nonce"] != envelope["nonce"] and again["ciphertext"] != envelope["ciphertext"]


def test_the_job_id_is_the_associated_data_so_an_envelope_cannot_move_to_another_job(kms: FakeKms) -> None:
    envelope = Codec(kms).seal("job-1", {"password": PASSWORD})
    with pytest.raises(SensitiveFieldsError) as moved:
        Codec(kms).open("job-2", envelope)
    assert moved.value.code == TAMPERED
    assert associated_data("job-1", ["password"]) != associated_data("job-2", ["password"])
    assert associated_data("job-1", ["password"]) != associated_data("job-1", ["email"])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: {**e, "ciphertext": flip(e["ciphertext"])},
        lambda e: {**e, "nonce": flip(e["nonce"])},
        lambda e: {**e, "dataKey": flip(e["dataKey"])},
        lambda e: {**e, "fields": ["email"]},
        lambda e: {**e, "fields": []},
        lambda e: {**e, "v": 2},
        lambda e: {**e, "nonce": base64.b64encode(b"short").decode()},
        lambda e: {**e, "ciphertext": "not base64!"},
        lambda e: {k: v for k, v in e.items() if k != "dataKey"},
        lambda e: "not an envelope",
    ],
    ids=[
        "ciphertext",
        "nonce",
        "data-key",
        "fields",
        "no-fields",
        "version",
        "nonce-size",
        "base64",
        "missing",
        "type",
    ],
)
def test_any_tampering_is_a_permanent_failure_with_its_code(
    kms: FakeKms, tamper: Callable[[dict[str, Any]], Any]
) -> None:
    envelope = Codec(kms).seal("job-1", {"password": PASSWORD})
    with pytest.raises(SensitiveFieldsError) as refused:
        Codec(kms).open("job-1", tamper(envelope))
    assert refused.value.code == TAMPERED
    assert PASSWORD not in str(refused.value)


def test_kms_down_is_retryable_and_a_refused_key_is_permanent(kms: FakeKms) -> None:
    envelope = Codec(kms).seal("job-1", {"password": PASSWORD})
    kms.failing = KeyServiceUnavailableError("ThrottlingException")
    with pytest.raises(SensitiveFieldsUnavailableError) as down:
        Codec(kms).open("job-1", envelope)
    assert isinstance(down.value, RetryableJobError) and down.value.code == KMS_UNAVAILABLE
    kms.failing = KeyUnusableError("DisabledException")
    with pytest.raises(SensitiveFieldsError) as refused:
        Codec(kms).open("job-1", envelope)
    assert refused.value.code == KEY_UNUSABLE
    with pytest.raises(SealingUnavailableError):
        Codec(kms).seal("job-2", {"password": PASSWORD})


def test_a_data_key_is_reused_for_at_most_its_uses_and_its_age(kms: FakeKms) -> None:
    now = Now()
    codec = Codec(kms, max_key_uses=3, max_key_age=300, clock=now)
    keys = [codec.seal(f"job-{n}", {"password": PASSWORD})["dataKey"] for n in range(7)]
    assert kms.generated == 3 == codec.generated  # 3 + 3 + 1 seals
    assert keys[0] == keys[1] == keys[2] != keys[3] == keys[4] == keys[5] != keys[6]
    now.t += 299
    assert codec.seal("job-7", {"password": PASSWORD})["dataKey"] == keys[6]
    now.t += 1  # 300 s after it was made
    assert codec.seal("job-8", {"password": PASSWORD})["dataKey"] != keys[6]
    assert kms.generated == 4


def test_opened_data_keys_are_cached_bounded_in_number_and_age(kms: FakeKms) -> None:
    now = Now()
    sealers = [Codec(kms, clock=now) for _ in range(3)]  # three API environments: three data keys
    envelopes = [s.seal(f"job-{n}", {"password": PASSWORD}) for n, s in enumerate(sealers)]
    # What an environment sealed itself it opens without KMS (a chained job in the worker)
    assert sealers[0].open("job-0", envelopes[0]) == {"password": PASSWORD} and kms.decrypted == 0
    worker = Codec(kms, open_cache_entries=2, open_cache_seconds=600, clock=now)
    worker.open("job-0", envelopes[0])
    worker.open("job-0", envelopes[0])
    assert kms.decrypted == 1  # the second open needs no KMS call
    worker.open("job-1", envelopes[1])
    worker.open("job-2", envelopes[2])  # pushes job-0's key out (least recently used)
    assert kms.decrypted == 3
    worker.open("job-0", envelopes[0])
    assert kms.decrypted == 4
    worker.open("job-2", envelopes[2])
    assert kms.decrypted == 4
    now.t += 600
    worker.open("job-2", envelopes[2])  # too old: opened again
    assert kms.decrypted == 5 == worker.decrypted
    sealers[0].forget()
    sealers[0].open("job-0", envelopes[0])
    assert kms.decrypted == 6


# -- the KMS adapter -----------------------------------------------------------------------------------
class RecordingKmsClient:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def generate_data_key(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("GenerateDataKey", kwargs))
        if self.error:
            raise self.error
        return {"Plaintext": b"k" * 32, "CiphertextBlob": b"blob", "KeyId": kwargs["KeyId"]}

    def decrypt(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("Decrypt", kwargs))
        if self.error:
            raise self.error
        return {"Plaintext": b"k" * 32}


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Decrypt")


def test_the_adapter_asks_for_aes_256_with_the_encryption_context_and_pins_the_key() -> None:
    client = RecordingKmsClient()
    keys = KmsKeyService(client, "arn:key", "tarefa-dev-jobs")
    assert keys.generate_data_key() == (b"k" * 32, b"blob")
    assert keys.decrypt_data_key(b"blob") == b"k" * 32
    context = {"tarefa-jobs-table": "tarefa-dev-jobs"}
    assert client.calls == [
        ("GenerateDataKey", {"KeyId": "arn:key", "KeySpec": "AES_256", "EncryptionContext": context}),
        ("Decrypt", {"CiphertextBlob": b"blob", "KeyId": "arn:key", "EncryptionContext": context}),
    ]


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (client_error("ThrottlingException"), KeyServiceUnavailableError),
        (client_error("KMSInternalException", 500), KeyServiceUnavailableError),
        (client_error("KeyUnavailableException", 500), KeyServiceUnavailableError),
        (EndpointConnectionError(endpoint_url="https://kms"), KeyServiceUnavailableError),
        (client_error("InvalidCiphertextException"), InvalidCiphertextError),
        (client_error("DisabledException"), KeyUnusableError),
        (client_error("KMSInvalidStateException"), KeyUnusableError),
        (client_error("NotFoundException"), KeyUnusableError),
        (client_error("AccessDeniedException"), KeyUnusableError),
        (client_error("IncorrectKeyException"), KeyUnusableError),
    ],
)
def test_the_adapter_sorts_kms_errors_into_retryable_tampered_and_refused(
    error: Exception, raised: type[Exception]
) -> None:
    keys = KmsKeyService(RecordingKmsClient(error), "arn:key", "t")
    with pytest.raises(raised):
        keys.decrypt_data_key(b"blob")


# -- the declaration -------------------------------------------------------------------------------------
class Guest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    email: str
    pass_word: str = Field(alias="passWord", min_length=8)
    pin: int | None = None

    @field_validator("pass_word")
    @classmethod
    def _quote(cls, value: str) -> str:
        if "@" in value:
            raise ValueError(f"{value!r} looks like an e-mail")
        return value


def handler(payload: Guest, ctx: Any) -> dict[str, Any]:
    return {"seen": payload.pass_word}


def guest_type(*sensitive: str) -> JobType:
    return JobType("guests.register", Guest, handler, JobPolicy(sensitive=sensitive))


def test_sensitive_fields_are_named_by_field_name_or_alias_and_stored_under_the_alias() -> None:
    for declared in (("pass_word",), ("passWord",)):
        (field,) = guest_type(*declared).sensitive_fields
        assert field.key == "passWord" and field.inputs == {"pass_word", "passWord"}
    assert guest_type("passWord", "pin").sensitive_keys == ("passWord", "pin")
    described = guest_type("passWord").describe()
    assert described["sensitive"] == ["passWord"]
    assert described["payloadSchema"]["properties"]["passWord"]["writeOnly"] is True
    assert "writeOnly" not in described["payloadSchema"]["properties"]["email"]
    assert JobType("x.y", Guest, handler).describe()["sensitive"] == []


def test_a_sensitive_field_the_model_does_not_have_is_refused_at_declaration() -> None:
    with pytest.raises(JobTypeError, match=r"'password' is not a top-level field of Guest"):
        guest_type("password")
    with pytest.raises(JobTypeError, match="named twice"):
        guest_type("pass_word", "passWord")
    with pytest.raises(JobTypeError, match="a sequence of field names"):
        JobPolicy(sensitive="password")
    with pytest.raises(JobTypeError, match="non-empty"):
        JobPolicy(sensitive=("",))

    class Anything(RootModel[dict[str, str]]):
        pass

    def raw(payload: Anything, ctx: Any) -> None: ...

    with pytest.raises(JobTypeError, match="no fields"):
        JobType("x.raw", Anything, raw, JobPolicy(sensitive=("password",)))
    registry = JobTypeRegistry()
    with pytest.raises(JobTypeError, match="not a top-level field"):
        registry.job_type("x.z", policy=JobPolicy(sensitive=("nope",)))(handler)


def test_a_type_with_sensitive_fields_needs_a_key_to_start() -> None:
    registry = JobTypeRegistry()
    registry.register(guest_type("passWord"))
    with pytest.raises(JobTypeError, match=r"'guests.register'.*declares sensitive fields \['passWord'\]"):
        registry.check_no_sensitive_fields("no key")
    JobTypeRegistry().check_no_sensitive_fields("no key")  # none declared: fine


# -- redaction, scrubbing, the job record -----------------------------------------------------------------
def test_seal_redacts_what_it_seals_and_open_puts_it_back(kms: FakeKms) -> None:
    fields = SensitiveFields(lambda: Codec(kms))
    guests = guest_type("passWord", "pin")
    payload = {"email": "a@b", "passWord": PASSWORD, "pin": None}
    redacted, sealed = fields.seal(guests, "job-1", payload)
    assert redacted == {"email": "a@b", "passWord": REDACTED, "pin": None}  # None is not sealed
    assert sealed is not None and sealed["fields"] == ["passWord"]
    opened, secrets = fields.open(guests, "job-1", redacted, sealed)
    assert opened == payload and secrets == [PASSWORD]
    assert fields.seal(guests, "job-2", {"email": "a@b"}) == ({"email": "a@b"}, None)
    assert fields.open(guests, "job-2", {"email": "a@b"}, None) == ({"email": "a@b"}, [])
    with pytest.raises(SensitiveFieldsError) as dropped:
        fields.open(guests, "job-1", redacted, None)  # the job ended once: its envelope is gone
    assert dropped.value.code == FIELDS_DROPPED
    with pytest.raises(SealingUnavailableError):
        SensitiveFields(None).seal(guests, "job-3", payload)
    with pytest.raises(SensitiveFieldsError) as unconfigured:
        SensitiveFields(None).open(guests, "job-1", redacted, sealed)
    assert unconfigured.value.code == KEY_UNUSABLE
    # Input under any of its keys is redacted
    assert redact(guests, {"pass_word": "x", "passWord": "y", "email": "e"}) == {
        "pass_word": REDACTED,
        "passWord": REDACTED,
        "email": "e",
    }


def test_scrubbing_replaces_values_and_withholding_replaces_whole_messages() -> None:
    secrets = secret_strings([PASSWORD, 1234, {"pet": "Rex"}, True])
    assert PASSWORD in secrets and "1234" in secrets and "Rex" in secrets and "True" not in secrets
    scrub = scrubber(secrets)
    assert scrub(f"refused {PASSWORD} and 1234") == f"refused {REDACTED} and {REDACTED}"
    assert scrubber(["abc"])("abc") == "abc"  # too short to tell from ordinary text
    withhold = withholding(["abc"])
    assert withhold("'abc' is too common") == WITHHELD and withhold("too short") == "too short"


def test_the_write_that_ends_a_job_drops_its_envelope_and_no_view_shows_it() -> None:
    job = Job(job_id="j", type="guests.register", payload={"passWord": REDACTED}, sealed={"v": 1})
    running = job.transition(JobStatus.PROCESSING, job.created_at)
    assert running.sealed == {"v": 1}
    assert running.transition(JobStatus.RETRYING, job.created_at).sealed == {"v": 1}
    for status in TERMINAL:
        before = job if status == JobStatus.CANCELLED else running
        assert before.transition(status, job.created_at).sealed is None, status
    assert "sealed" not in job.public()
    assert json.loads(QueueMessage.for_new_job(job, None, None))["sealed"] == {"v": 1}


# -- the job service and the worker on memory fakes ----------------------------------------------------------
def services(kms: FakeKms) -> tuple[JobService, Worker, MemoryStore, MemoryQueue, SensitiveFields]:
    registry = JobTypeRegistry()
    registry.register(guest_type("passWord"))
    store, queue, clock = MemoryStore(), MemoryQueue(), Clock()
    fields = SensitiveFields(lambda: Codec(kms))
    jobs = JobService(store, queue, registry, now=clock, sensitive=fields)
    worker = Worker(store, queue, registry, 30, 120, now=clock, sensitive=fields)
    return jobs, worker, store, queue, fields


def request(password: str = PASSWORD, key: str | None = None) -> EnqueueRequest:
    payload = {"email": "ana@example.com", "passWord": password}
    return EnqueueRequest(type="guests.register", payload=payload, idempotency_key=key)


def test_enqueue_seals_before_it_stores_or_sends_and_the_worker_opens_for_the_handler(kms: FakeKms) -> None:
    jobs, worker, store, queue, _ = services(kms)
    job = jobs.enqueue(Caller("alice"), request(key="k-1")).job
    assert job.payload["passWord"] == REDACTED and job.sealed is not None
    ((_, body, _),) = queue.sent
    assert PASSWORD not in body and PASSWORD not in store.jobs[job.job_id].model_dump_json()
    assert PASSWORD not in json.dumps(store.fingerprints)
    ref = QueueMessageRef(job.priority, "r-1", "m-1", 1)
    assert worker.process(body, ref).visible_again_in is None
    done = store.jobs[job.job_id]
    assert done.status == JobStatus.COMPLETED and done.sealed is None
    assert done.result == {"seen": REDACTED}  # the handler saw it; what it returned is scrubbed
    # The same key with another password is the same request (the fingerprint is redacted)
    assert jobs.enqueue(Caller("alice"), request("other-password", key="k-1")).job.job_id == job.job_id


def test_enqueue_refuses_with_503_when_nothing_can_seal_and_sends_nothing(kms: FakeKms) -> None:
    jobs, _, store, queue, _ = services(kms)
    kms.failing = KeyServiceUnavailableError("ThrottlingException")
    with pytest.raises(EncryptionUnavailableError) as refused:
        jobs.enqueue(Caller("alice"), request())
    assert refused.value.code == "ENCRYPTION_UNAVAILABLE"
    assert not queue.sent and not store.jobs
    unkeyed = JobService(store, queue, jobs.registry, sensitive=SensitiveFields(None))
    with pytest.raises(EncryptionUnavailableError):
        unkeyed.enqueue(Caller("alice"), request())


def test_a_validation_error_never_quotes_the_value(kms: FakeKms) -> None:
    from tarefa.errors import ValidationFailedError

    jobs, *_ = services(kms)
    for bad in ("short", "looks@like-an-email"):
        with pytest.raises(ValidationFailedError) as refused:
            jobs.enqueue(Caller("alice"), request(bad))
        assert bad not in json.dumps(refused.value.details)


def test_a_failed_job_cannot_be_retried_once_its_fields_are_dropped(kms: FakeKms) -> None:
    jobs, _, store, _, _ = services(kms)
    job = jobs.enqueue(Caller("alice"), request()).job
    failed = job.transition(JobStatus.FAILED, job.created_at, error="boom")
    store.put(failed, expected_version=job.version)
    with pytest.raises(InvalidTransitionError, match="sensitive fields were dropped"):
        jobs.retry(Caller("alice"), job.job_id)
