"""Standard Webhooks signing, secret rotation, how receivers' answers are classified, and the
keys that make publishing and callbacks idempotent: no network, in-memory stand-ins."""

from __future__ import annotations

import base64
import os
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tarefa.errors import ConflictError
from tarefa.job import Job, JobStatus, Priority
from tarefa.jobs import Caller
from tarefa.jobtypes import JobTypeError, default_registry
from tarefa.ports import QueueMessageRef
from tarefa.sensitive import Codec, SensitiveFieldsError
from tarefa.signing import InvalidSecretError, new_secret, secret_key, sign, signature_header, verify
from tarefa.webhooks import (
    ROTATION_OVERLAP,
    Delivery,
    EnvelopeSecrets,
    PlainSecrets,
    StoredSecret,
    Subscription,
    Verdict,
    WebhookService,
    _publisher_headers,
    callback_key,
    classify,
)
from tarefa.worker import DONE, Worker

from .fakes import Clock, MemoryQueue, MemoryStore

# The Standard Webhooks libraries' own test vector (libraries/go/webhook_test.go TestWebhookSign,
# the same in the C#, Java and JavaScript suites of github.com/standard-webhooks/standard-webhooks).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# -- signing ------------------------------------------------------------------------------------
def test_signing_matches_the_specifications_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.encode()) == SPEC_SIGNATURE
    # the prefix is optional, as the reference libraries allow
    assert sign(SPEC_SECRET.removeprefix("whsec_"), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert verify(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE)
    assert not verify(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY, SPEC_SIGNATURE)
    assert not verify(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY + " ", SPEC_SIGNATURE)
    assert not verify(SPEC_SECRET, "msg_other", SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE)


def test_the_reference_library_verifies_what_tarefa_signs() -> None:
    secret = new_secret()
    now = int(time.time())
    body = '{"type":"job.completed","timestamp":"2026-01-01T00:00:00Z","data":{"jobId":"j-1"}}'
    headers = {
        "webhook-id": "msg_0001",
        "webhook-timestamp": str(now),
        "webhook-signature": signature_header([secret], "msg_0001", now, body),
    }
    assert Webhook(secret).verify(body, headers) == {
        "type": "job.completed",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"jobId": "j-1"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)  # another secret
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("j-1", "j-2"), headers)  # another body
    # and the library's own signature is one tarefa accepts
    library = Webhook(secret).sign("msg_0001", datetime.fromtimestamp(now), body)
    assert verify(secret, "msg_0001", now, body, library)


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50 and all(s.startswith("whsec_") for s in made)
    assert all(len(base64.b64decode(s.removeprefix("whsec_"))) == 32 for s in made)
    for bad in ("whsec_", "whsec_not base64!"):
        with pytest.raises(InvalidSecretError):
            secret_key(bad)
    with pytest.raises(InvalidSecretError):
        signature_header([], "msg", 1, "{}")


def test_two_secrets_make_two_space_separated_signatures_either_verifies() -> None:
    old, new = new_secret(), new_secret()
    now = int(time.time())
    header = signature_header([new, old], "msg_1", now, "{}")
    assert header.count(" ") == 1 and all(p.startswith("v1,") for p in header.split(" "))
    for secret in (old, new):
        Webhook(secret).verify(
            "{}", {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
        )
    assert not verify(new_secret(), "msg_1", now, "{}", header)


# -- how a receiver's answer is taken -----------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (299, Verdict.DELIVERED),
        (410, Verdict.DISABLE),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (None, Verdict.RETRY),  # a timeout or a dropped connection
        (301, Verdict.FAIL),  # redirects are not followed
        (400, Verdict.FAIL),
        (401, Verdict.FAIL),
        (403, Verdict.FAIL),
        (404, Verdict.FAIL),
        (413, Verdict.FAIL),
        (100, Verdict.FAIL),
    ],
)
def test_status_classification(status: int | None, verdict: Verdict) -> None:
    assert classify(status) == verdict


# -- rotation, with in-memory stand-ins ----------------------------------------------------------
class MemoryWebhookStore:
    def __init__(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.urls: dict[tuple[str, str], str] = {}
        self.deliveries_by_id: dict[tuple[str, str], Delivery] = {}
        self.keys: dict[tuple[str, str], str] = {}

    def create(self, subscription: Subscription) -> None:
        if (subscription.user_id, subscription.url) in self.urls:
            raise ConflictError(subscription.id)
        self.urls[(subscription.user_id, subscription.url)] = subscription.id
        self.subscriptions[subscription.id] = subscription

    def get(self, subscription_id: str) -> Subscription | None:
        return self.subscriptions.get(subscription_id)

    def by_url(self, user_id: str, url: str) -> Subscription | None:
        found = self.urls.get((user_id, url))
        return self.subscriptions.get(found) if found else None

    def for_user(
        self, user_id: str | None, limit: int, before_key: str | None
    ) -> tuple[list[Subscription], str | None]:
        mine = [s for s in self.subscriptions.values() if user_id is None or s.user_id == user_id]
        return sorted(mine, key=lambda s: s.listing_key, reverse=True)[:limit], None

    def save(self, subscription: Subscription, expected_version: int) -> None:
        if self.subscriptions[subscription.id].version != expected_version:
            raise ConflictError(subscription.id)
        self.subscriptions[subscription.id] = subscription

    def delete(self, subscription: Subscription) -> None:
        self.subscriptions.pop(subscription.id, None)
        self.urls.pop((subscription.user_id, subscription.url), None)

    def claim_delivery(self, delivery: Delivery, key_hash: str, expires_at: datetime) -> Delivery | None:
        key = (delivery.subscription_id, key_hash)
        if key in self.keys:
            return self.deliveries_by_id[(delivery.subscription_id, self.keys[key])]
        self.keys[key] = delivery.id
        self.deliveries_by_id[(delivery.subscription_id, delivery.id)] = delivery
        return None

    def get_delivery(self, subscription_id: str, delivery_id: str) -> Delivery | None:
        return self.deliveries_by_id.get((subscription_id, delivery_id))

    def put_delivery(self, delivery: Delivery, expires_at: datetime) -> None:
        self.deliveries_by_id[(delivery.subscription_id, delivery.id)] = delivery

    def deliveries(
        self, subscription_id: str, limit: int, after: str | None
    ) -> tuple[list[Delivery], str | None]:
        return [d for (s, _), d in self.deliveries_by_id.items() if s == subscription_id][:limit], None


class FakeKeys:
    """A KMS stand-in: data keys "encrypted" by a prefix (the codec's AES-GCM is real)."""

    key_id = "alias/test"

    def generate_data_key(self) -> tuple[bytes, bytes]:
        plaintext = os.urandom(32)
        return plaintext, b"sealed:" + plaintext

    def decrypt_data_key(self, encrypted: bytes) -> bytes:
        return encrypted.removeprefix(b"sealed:")


class Enqueued:
    def __init__(self, job_id: str) -> None:
        self.job = Job(job_id=job_id, type="webhook.delivery")
        self.created = True


def service(clock: Clock, secrets: Any = None) -> tuple[WebhookService, list[Any]]:
    requests: list[Any] = []

    def enqueue(caller: Caller, request: Any) -> Any:
        requests.append(request)
        return Enqueued(f"job-{len(requests)}")

    def no_http() -> Any:
        raise AssertionError("these tests send nothing")

    return WebhookService(
        MemoryWebhookStore(), secrets or PlainSecrets(), no_http, enqueue, now=clock
    ), requests


def subscription(
    svc: WebhookService, clock: Clock, url: str = "https://hooks.example/a", events: list[str] | None = None
) -> tuple[Subscription, str]:
    """A subscription as create() makes it (create() itself vets the URL over DNS)."""
    secret = new_secret()
    subscription_id = f"wh_{len(svc.store.for_user(None, 100, None)[0]):024x}"
    sub = Subscription(
        id=subscription_id,
        user_id="alice",
        url=url,
        events=events or ["*"],
        created_at=clock(),
        updated_at=clock(),
        secrets=[StoredSecret(sealed=svc.secrets.seal(subscription_id, secret), created_at=clock())],
    )
    svc.store.create(sub)
    return sub, secret


def test_a_rotated_out_secret_signs_for_24_hours_then_only_the_new_one() -> None:
    clock = Clock()
    svc, _ = service(clock)
    sub, old = subscription(svc, clock)
    assert svc.signing_secrets(sub, clock()) == [old]
    rotated, new = svc.rotate(Caller("alice"), sub.id)
    assert new != old and new.startswith("whsec_")
    assert svc.signing_secrets(rotated, clock()) == [new, old]  # newest first: both sign
    shown = rotated.public(clock())
    assert shown["previousSecretExpiresAt"] == (clock() + ROTATION_OVERLAP).isoformat()
    assert "secrets" not in shown and old not in str(shown) and new not in str(shown)
    clock.advance(seconds=ROTATION_OVERLAP.total_seconds() - 1)
    assert svc.signing_secrets(rotated, clock()) == [new, old]
    clock.advance(seconds=2)
    assert svc.signing_secrets(rotated, clock()) == [new]
    assert "previousSecretExpiresAt" not in rotated.public(clock())
    # a rotation after the window keeps no expired secret
    again, newest = svc.rotate(Caller("alice"), sub.id)
    assert len(again.secrets) == 2 and svc.signing_secrets(again, clock()) == [newest, new]
    # another user cannot rotate it
    with pytest.raises(Exception, match="not found"):
        svc.rotate(Caller("bob"), sub.id)


def test_secrets_sealed_with_the_envelope_codec_open_only_for_their_subscription() -> None:
    codec = Codec(FakeKeys())
    box = EnvelopeSecrets(lambda: codec)
    secret = new_secret()
    sealed = box.seal("wh_1", secret)
    assert secret not in str(sealed) and secret.removeprefix("whsec_") not in str(sealed)
    assert box.open("wh_1", sealed) == secret
    with pytest.raises(SensitiveFieldsError):
        box.open("wh_2", sealed)  # bound to the subscription's id
    assert box.open("wh_1", PlainSecrets().seal("wh_1", secret)) == secret  # stored before a key existed


# -- idempotency keys -----------------------------------------------------------------------------
def test_a_callback_key_is_one_per_ending_of_a_job() -> None:
    now = datetime(2026, 1, 1)
    job = Job(job_id="j-1", type="system.echo", status=JobStatus.COMPLETED, processing_started_at=now)
    assert callback_key(job) == callback_key(
        job.model_copy(update={"updated_at": now + timedelta(1), "version": 9})
    )
    others = {
        callback_key(job.model_copy(update={"status": JobStatus.FAILED})),
        callback_key(job.model_copy(update={"wake": 1})),  # retried, then ended again
        callback_key(
            job.model_copy(update={"processing_started_at": now + timedelta(seconds=1)})
        ),  # redriven
        callback_key(job.model_copy(update={"job_id": "j-2"})),
    }
    assert len(others) == 4 and callback_key(job) not in others


def test_publish_is_idempotent_per_subscription_and_key() -> None:
    clock = Clock()
    svc, requests = service(clock)
    everything, _ = subscription(svc, clock, "https://hooks.example/a", ["*"])
    only, _ = subscription(svc, clock, "https://hooks.example/b", ["job.completed"])
    first = svc.publish("alice", "order.paid", {"n": 1}, key="k")
    assert len(first) == 1 and len(requests) == 1
    assert svc.publish("alice", "order.paid", {"n": 1}, key="k") == first and len(requests) == 1
    named = svc.publish("alice", "order.paid", {"n": 1}, key="k", url=only.url)  # adds the named one
    assert len(named) == 2 and first[0] in named and len(requests) == 2
    assert svc.publish("bob", "order.paid", {}, key="k") == []
    payload = requests[0].payload
    assert set(payload) == {"subscriptionId", "deliveryId", "event", "timestamp", "data", "headers"}
    assert payload["subscriptionId"] == everything.id and "secret" not in str(payload).lower()
    assert (
        requests[0].type == "webhook.delivery"
        and requests[0].idempotency_key == f"webhook-delivery:{payload['deliveryId']}"
    )


def test_job_ended_sends_nothing_without_a_callback_or_before_the_end() -> None:
    clock = Clock()
    svc, requests = service(clock)
    sub, _ = subscription(svc, clock)
    running = Job(
        job_id="j", type="system.echo", status=JobStatus.PROCESSING, user_id="alice", callback_url=sub.url
    )
    assert svc.job_ended(running) is None
    assert (
        svc.job_ended(running.model_copy(update={"status": JobStatus.COMPLETED, "callback_url": None}))
        is None
    )
    assert svc.job_ended(running.model_copy(update={"status": JobStatus.COMPLETED, "user_id": "bob"})) is None
    assert requests == []
    done = running.model_copy(update={"status": JobStatus.COMPLETED})
    assert svc.job_ended(done) == svc.job_ended(done) == "job-1"
    assert requests[0].payload["event"] == "job.completed" and requests[0].payload["data"]["jobId"] == "j"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer x"},
        {"X-Tarefa-Event": "spoofed"},  # the engine sets it
        {"X-Tarefa-Session": "a\r\nInjected: 1"},
        {"X-Tarefa-Sessão": "1"},
        {f"X-Tarefa-{n}": "v" for n in range(11)},
    ],
)
def test_a_publishers_headers_are_x_tarefa_printable_and_few(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        _publisher_headers(headers)


def test_good_publisher_headers_pass() -> None:
    assert _publisher_headers({"X-Tarefa-Session": "s-1", "x-tarefa-tenant": "t"}) == {
        "X-Tarefa-Session": "s-1",
        "x-tarefa-tenant": "t",
    }


def test_the_local_router_prefers_a_static_segment_to_a_subscription_id() -> None:
    from tarefa.local.provision import HttpRoute
    from tarefa.local.runtime import match_route

    routes = [  # the engine's {id} routes come first in the template, as they do here
        HttpRoute("GET", "/webhooks/{subscriptionId}", True),
        HttpRoute("POST", "/webhooks/{subscriptionId}/test", True),
        HttpRoute("GET", "/webhooks/whatsapp", False),
        HttpRoute("POST", "/webhooks/payments", False),
    ]
    assert match_route(routes, "GET", "/webhooks/whatsapp") == (routes[2], {})
    assert match_route(routes, "POST", "/webhooks/payments") == (routes[3], {})
    assert match_route(routes, "GET", "/webhooks/wh_1") == (routes[0], {"subscriptionId": "wh_1"})
    assert match_route(routes, "POST", "/webhooks/wh_1/test") == (routes[1], {"subscriptionId": "wh_1"})
    assert match_route(routes, "POST", "/webhooks/whatsapp") is None


# -- the worker's endings, with in-memory ports ----------------------------------------------------
class LostAnswerStore(MemoryStore):
    """The COMPLETED write lands, but its answer is lost the first time (a timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose = 1

    def put(self, job: Job, expected_version: int | None) -> None:
        super().put(job, expected_version)
        if job.status == JobStatus.COMPLETED and self.lose:
            self.lose -= 1
            raise TimeoutError("the answer was lost")


def worker_with(store: MemoryStore, ended: list[Job], fail: int = 0) -> Worker:
    def on_end(job: Job) -> None:
        ended.append(job)
        if len(ended) <= fail:
            raise RuntimeError("the webhooks table is unavailable")

    return Worker(
        store, MemoryQueue(), default_registry(test_jobs=True), 30, 120, sleep=lambda _: None, on_end=on_end
    )


def test_a_completed_write_whose_answer_was_lost_still_gets_its_callback() -> None:
    store = LostAnswerStore()
    store.put(Job(job_id="j1", type="system.echo", payload=1, callback_url="https://h.example/cb"), None)
    ended: list[Job] = []
    ref = QueueMessageRef(Priority.MEDIUM, "rh", "m1", 1)
    assert worker_with(store, ended).process('{"jobId": "j1", "type": "system.echo"}', ref) == DONE
    assert [j.status for j in ended] == [JobStatus.COMPLETED]


def test_a_failing_callback_keeps_the_message_and_the_next_delivery_makes_it() -> None:
    store = MemoryStore()
    store.put(Job(job_id="j1", type="system.echo", payload=1, callback_url="https://h.example/cb"), None)
    ended: list[Job] = []
    worker = worker_with(store, ended, fail=1)
    ref = QueueMessageRef(Priority.MEDIUM, "rh", "m1", 1)
    with pytest.raises(RuntimeError):  # the batch reports this message failed: SQS shows it again
        worker.process('{"jobId": "j1", "type": "system.echo"}', ref)
    assert store.jobs["j1"].status == JobStatus.COMPLETED
    assert worker.process('{"jobId": "j1", "type": "system.echo"}', ref) == DONE
    assert [j.status for j in ended] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    # a job without a callback never calls it
    store.put(Job(job_id="j2", type="system.echo", payload=1), None)
    assert worker.process('{"jobId": "j2", "type": "system.echo"}', ref) == DONE
    assert len(ended) == 2


def test_the_delivery_types_data_is_sensitive_only_where_a_key_seals_it() -> None:
    """With a KMS key the event data is sealed; without one the type declares no sensitive field
    (a deployment without a key refuses to start any type that does)."""
    plain = default_registry(test_jobs=False).get("webhook.delivery")
    sealed = default_registry(test_jobs=False, seal_deliveries=True).get("webhook.delivery")
    assert plain.sensitive_keys == () and sealed.sensitive_keys == ("data",)
    assert sealed.policy.max_attempts == plain.policy.max_attempts == 3
    assert sealed.policy.backoff == plain.policy.backoff and sealed.policy.priority == plain.policy.priority
    default_registry(test_jobs=False).check_no_sensitive_fields("no key")  # starts without a key
    with pytest.raises(JobTypeError, match="sensitive fields"):
        default_registry(test_jobs=False, seal_deliveries=True).check_no_sensitive_fields("no key")


def test_a_delivery_keeps_each_attempts_answer_once_and_in_order() -> None:
    from tarefa.webhooks import MAX_ATTEMPT_LOG, AttemptRecord

    at = datetime(2026, 12, 2, 12, 0)
    delivery = Delivery(
        id="msg_1", subscription_id="wh_1", user_id="alice", event="e.x", created_at=at, updated_at=at
    )
    for attempt, code in ((2, 503), (1, 500), (2, 502)):  # a repeated attempt replaces its record
        delivery = delivery.model_copy(
            update={
                "history": delivery.with_attempt(AttemptRecord(attempt=attempt, at=at, response_code=code))
            }
        )
    assert [(r.attempt, r.response_code) for r in delivery.history] == [(1, 500), (2, 502)]
    for attempt in range(3, 30):
        delivery = delivery.model_copy(
            update={"history": delivery.with_attempt(AttemptRecord(attempt=attempt, at=at))}
        )
    assert len(delivery.history) == MAX_ATTEMPT_LOG and delivery.history[-1].attempt == 29
    assert delivery.public()["history"][-1] == {
        "attempt": 29,
        "at": "2026-12-02T12:00:00",
        "responseCode": None,
        "latencyMs": None,
        "error": None,
    }
