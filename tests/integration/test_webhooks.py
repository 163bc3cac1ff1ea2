"""Webhook subscriptions, signed deliveries and job callbacks: the real API and worker handlers on
moto, delivering over real HTTP to a receiver on loopback (allowed by HttpAllow, as the local
stack allows its sandboxes), which checks signatures with the Standard Webhooks reference
library."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws
from standardwebhooks import Webhook

from tarefa import api, wiring
from tarefa.job import Job, JobStatus
from tarefa.local.app import HttpResult, LocalApp

from .conftest import ADMIN, ALICE, BOB, Clock, job_of, let_sqs_timers_pass
from .test_dead_letter_sweep import redriven


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A subscriber's endpoint: answers each path with the statuses scripted for it (then 200)."""

    server: ThreadingHTTPServer
    hits: list[Hit] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def on(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            hit = Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
            with box.lock:
                box.hits.append(hit)
                planned = box.script.get(self.path) or []
                status = planned.pop(0) if planned else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()


@pytest.fixture
def hooks() -> Iterator[LocalApp]:
    """The application, its outbound client allowed to reach loopback (the receiver)."""
    with mock_aws():
        yield LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), parameters={"HttpAllow": "127.0.0.1"})
    wiring.reset()


@pytest.fixture
def clock(hooks: LocalApp) -> Clock:
    clock = Clock()
    wiring.container().clock = clock
    return clock


def subscribe(
    app: LocalApp, url: str, events: list[str] | None = None, claims: dict[str, Any] = ALICE
) -> dict[str, Any]:
    created = app.api("POST", "/webhooks", {"url": url, "events": events or ["*"]}, claims)
    assert created.status == 201, created.body
    body: dict[str, Any] = created.body
    return body


def run(app: LocalApp, clock: Clock | None = None, seconds: float = 0) -> None:
    if clock is not None and seconds:
        clock.advance(seconds)
    let_sqs_timers_pass()
    app.drain()


def verified(hit: Hit, secret: str) -> Any:
    """The body, once the reference library accepts its signature (raises otherwise)."""
    return Webhook(secret).verify(hit.body, hit.headers)


def deliveries(
    app: LocalApp, subscription_id: str, claims: dict[str, Any] = ALICE, query: str = ""
) -> HttpResult:
    return app.api("GET", f"/webhooks/{subscription_id}/deliveries{query}", claims=claims)


# -- subscriptions ------------------------------------------------------------------------------
def test_a_subscription_is_created_read_listed_rotated_and_deleted_by_its_owner_only(
    hooks: LocalApp, receiver: Receiver
) -> None:
    created = subscribe(hooks, receiver.url(), ["job.completed", "job.failed", "job.completed"])
    assert created["id"].startswith("wh_") and created["secret"].startswith("whsec_")
    assert len(Webhook(created["secret"])._whsecret) >= 24  # the spec's minimum of random bytes
    assert created["events"] == ["job.completed", "job.failed"]  # deduplicated
    assert (created["status"], created["timeoutSeconds"], created["userId"]) == ("ACTIVE", 10, "alice")
    sid = created["id"]

    read = hooks.api("GET", f"/webhooks/{sid}", claims=ALICE)
    assert read.status == 200 and "secret" not in read.body and read.body["url"] == receiver.url()
    assert "secret" not in read.text and created["secret"] not in read.text
    listed = hooks.api("GET", "/webhooks", claims=ALICE)
    assert [s["id"] for s in listed.body["items"]] == [sid] and listed.body["nextCursor"] is None
    assert created["secret"] not in listed.text

    # Another user sees nothing of it: not found, whether reading, deleting, testing or rotating
    for method, path in (
        ("GET", f"/webhooks/{sid}"),
        ("DELETE", f"/webhooks/{sid}"),
        ("POST", f"/webhooks/{sid}/test"),
        ("POST", f"/webhooks/{sid}/rotate-secret"),
        ("GET", f"/webhooks/{sid}/deliveries"),
    ):
        answer = hooks.api(method, path, claims=BOB)
        assert answer.status == 404 and answer.body["error"]["code"] == "WEBHOOK_NOT_FOUND", (method, path)
    assert hooks.api("GET", "/webhooks", claims=BOB).body["items"] == []
    # an admin sees every user's
    assert hooks.api("GET", f"/webhooks/{sid}", claims=ADMIN).status == 200
    assert sid in [s["id"] for s in hooks.api("GET", "/webhooks", claims=ADMIN).body["items"]]

    # One subscription per URL and owner; another owner may subscribe the same URL
    again = hooks.api("POST", "/webhooks", {"url": receiver.url(), "events": ["*"]}, ALICE)
    assert again.status == 409 and again.body["error"]["code"] == "WEBHOOK_EXISTS"
    assert subscribe(hooks, receiver.url(), claims=BOB)["id"] != sid

    rotated = hooks.api("POST", f"/webhooks/{sid}/rotate-secret", claims=ALICE)
    assert rotated.status == 200 and rotated.body["secret"].startswith("whsec_")
    assert rotated.body["secret"] != created["secret"] and "previousSecretExpiresAt" in rotated.body
    assert "secret" not in hooks.api("GET", f"/webhooks/{sid}", claims=ALICE).body

    gone = hooks.api("DELETE", f"/webhooks/{sid}", claims=ALICE)
    assert gone.status == 204
    assert hooks.api("GET", f"/webhooks/{sid}", claims=ALICE).status == 404
    assert hooks.api("DELETE", f"/webhooks/{sid}", claims=ALICE).status == 404
    # the URL is free again
    assert subscribe(hooks, receiver.url())["id"] != sid


def test_the_secret_is_stored_sealed_never_in_the_clear(hooks: LocalApp, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url())
    store: Any = wiring.container().webhooks.store
    items = store.client.scan(TableName=store.table)["Items"]  # a test's look at the whole table
    assert items and created["secret"] not in json.dumps(items)
    assert created["secret"].removeprefix("whsec_") not in json.dumps(items)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",  # loopback (this app allows none)
        "https://127.0.0.1/hook",
        "https://localhost/hook",  # a name for loopback
        "https://10.0.0.7/hook",  # private
        "https://192.168.1.1/hook",
        "https://172.16.0.1/hook",
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://169.254.169.254/latest/meta-data/",  # the metadata service
        "https://[fd00:ec2::254]/",  # its IPv6 address
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "https://[fe80::1]/hook",  # link-local
        "https://0x7f.0.0.1/hook",  # a non-canonical IPv4 literal
        "https://2130706433/hook",  # 127.0.0.1 as a number
        "https://0.0.0.0/hook",
        "http://8.8.8.8/hook",  # public, but http is only for allow-listed hosts
        "ftp://8.8.8.8/hook",
        "https://user:secret@8.8.8.8/hook",  # credentials would be shown to readers
        "not a url",
    ],
)
def test_private_metadata_and_plain_http_urls_are_refused_at_creation(url: str) -> None:
    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"))
        try:
            answer = app.api("POST", "/webhooks", {"url": url, "events": ["job.completed"]}, ALICE)
            assert answer.status == 422, (url, answer.body)
            assert answer.body["error"]["details"][0]["field"] == "url"
            assert app.api("GET", "/webhooks", claims=ALICE).body["items"] == []
        finally:
            wiring.reset()


def test_a_public_https_url_is_accepted_and_bad_bodies_are_422() -> None:
    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"))
        try:
            ok = app.api(
                "POST",
                "/webhooks",
                {"url": "https://8.8.8.8/hook", "events": ["*"], "timeoutSeconds": 30},
                ALICE,
            )
            assert ok.status == 201 and ok.body["timeoutSeconds"] == 30
            for body, where in (
                ({"url": "https://8.8.4.4/h", "events": []}, "events"),
                ({"url": "https://8.8.4.4/h", "events": ["Job Completed"]}, "events"),
                ({"url": "https://8.8.4.4/h", "events": ["*"], "timeoutSeconds": 31}, "timeoutSeconds"),
                ({"url": "https://8.8.4.4/h"}, "events"),
                ({"url": "https://8.8.4.4/h", "events": ["*"], "secret": "mine"}, "secret"),
            ):
                answer = app.api("POST", "/webhooks", body, ALICE)
                assert answer.status == 422, body
                assert where in [d["field"] for d in answer.body["error"]["details"]], answer.body
            assert app.api("POST", "/webhooks", {"url": "https://8.8.4.4/h", "events": ["*"]}).status == 401
        finally:
            wiring.reset()


# -- deliveries ---------------------------------------------------------------------------------
def test_a_test_event_is_delivered_signed_and_the_log_shows_it(hooks: LocalApp, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url(), ["job.completed"])
    sent = hooks.api("POST", f"/webhooks/{created['id']}/test", claims=ALICE)
    assert sent.status == 202 and sent.body["deliveryId"].startswith("msg_") and sent.body["jobId"]
    hooks.drain()
    [hit] = receiver.on("/hook")
    body = verified(hit, created["secret"])
    assert body["type"] == "webhook.test" and body["data"]["subscriptionId"] == created["id"]
    assert body["timestamp"].endswith("Z")
    assert hit.headers["webhook-id"] == sent.body["deliveryId"]
    assert hit.headers["x-tarefa-event"] == "webhook.test"
    assert hit.headers["user-agent"] == "Tarefa-Webhooks/1"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["webhook-signature"].startswith("v1,") and " " not in hit.headers["webhook-signature"]
    # A tampered body or another secret does not verify
    with pytest.raises(Exception, match="signature"):
        Webhook(created["secret"]).verify(hit.body.replace(b"webhook.test", b"webhook.tast"), hit.headers)
    job = job_of(hooks, sent.body["jobId"])
    assert job["type"] == "webhook.delivery" and job["status"] == "COMPLETED" and job["priority"] == "LOW"
    assert created["secret"] not in json.dumps(job)  # the secret is never in the job
    [logged] = deliveries(hooks, created["id"]).body["items"]
    assert logged["id"] == sent.body["deliveryId"] and logged["status"] == "DELIVERED"
    assert (logged["attempts"], logged["responseCode"], logged["event"]) == (1, 200, "webhook.test")
    assert isinstance(logged["latencyMs"], int) and logged["jobId"] == sent.body["jobId"]


def test_a_receiver_that_fails_twice_then_succeeds_gets_it_on_the_third_attempt(
    hooks: LocalApp, receiver: Receiver, clock: Clock
) -> None:
    receiver.script["/flaky"] = [500, 503]
    created = subscribe(hooks, receiver.url("/flaky"))
    sent = hooks.api("POST", f"/webhooks/{created['id']}/test", claims=ALICE).body
    hooks.drain()
    [entry] = deliveries(hooks, created["id"]).body["items"]
    assert (entry["status"], entry["attempts"], entry["responseCode"]) == ("RETRYING", 1, 500)
    assert job_of(hooks, sent["jobId"])["status"] == "RETRYING"
    run(hooks, clock, 12)  # the first retry waits ~10 s
    [entry] = deliveries(hooks, created["id"]).body["items"]
    assert (entry["status"], entry["attempts"], entry["responseCode"]) == ("RETRYING", 2, 503)
    run(hooks, clock, 35)  # the second ~30 s
    [entry] = deliveries(hooks, created["id"]).body["items"]
    assert (entry["status"], entry["attempts"], entry["responseCode"], entry["error"]) == (
        "DELIVERED",
        3,
        200,
        None,
    )
    # the log keeps every attempt's answer, not only the last one's
    assert [(a["attempt"], a["responseCode"], a["error"]) for a in entry["history"]] == [
        (1, 500, "the receiver answered 500"),
        (2, 503, "the receiver answered 503"),
        (3, 200, None),
    ]
    assert all(isinstance(a["latencyMs"], int) and a["at"] for a in entry["history"])
    hits = receiver.on("/flaky")
    assert len(hits) == 3 and {h.headers["webhook-id"] for h in hits} == {sent["deliveryId"]}
    for hit in hits:
        verified(hit, created["secret"])
    assert job_of(hooks, sent["jobId"])["status"] == "COMPLETED"


def test_a_receiver_that_keeps_failing_fails_the_delivery_after_3_attempts(
    hooks: LocalApp, receiver: Receiver, clock: Clock
) -> None:
    receiver.script["/down"] = [502, 429, 500, 200]
    created = subscribe(hooks, receiver.url("/down"))
    sent = hooks.api("POST", f"/webhooks/{created['id']}/test", claims=ALICE).body
    hooks.drain()
    run(hooks, clock, 12)
    run(hooks, clock, 35)
    run(hooks, clock, 100)
    [entry] = deliveries(hooks, created["id"]).body["items"]
    assert (entry["status"], entry["attempts"], entry["responseCode"]) == ("FAILED", 3, 500)
    assert job_of(hooks, sent["jobId"])["status"] == "FAILED"
    assert len(receiver.on("/down")) == 3


def test_a_4xx_fails_at_once_and_410_disables_the_subscription(hooks: LocalApp, receiver: Receiver) -> None:
    receiver.script["/bad"] = [400]
    receiver.script["/gone"] = [410]
    bad = subscribe(hooks, receiver.url("/bad"))
    gone = subscribe(hooks, receiver.url("/gone"))
    refused = hooks.api("POST", f"/webhooks/{bad['id']}/test", claims=ALICE).body
    disabled = hooks.api("POST", f"/webhooks/{gone['id']}/test", claims=ALICE).body
    hooks.drain()
    failed = job_of(hooks, refused["jobId"])
    assert (
        failed["status"] == "FAILED"
        and failed["errorDetails"]["code"] == "HTTP_400"
        and failed["attempts"] == 1
    )
    assert hooks.api("GET", f"/webhooks/{bad['id']}", claims=ALICE).body["status"] == "ACTIVE"
    ended = job_of(hooks, disabled["jobId"])
    assert ended["status"] == "FAILED" and ended["errorDetails"]["code"] == "WEBHOOK_GONE"
    subscription = hooks.api("GET", f"/webhooks/{gone['id']}", claims=ALICE).body
    assert subscription["status"] == "DISABLED" and "410" in subscription["disabledReason"]
    [entry] = deliveries(hooks, gone["id"]).body["items"]
    assert (entry["status"], entry["responseCode"]) == ("FAILED", 410)
    again = hooks.api("POST", f"/webhooks/{gone['id']}/test", claims=ALICE)
    assert again.status == 409 and again.body["error"]["code"] == "WEBHOOK_DISABLED"
    # nothing more is published to it, and a job cannot name it as its callback
    assert len(api.publish("alice", "thing.happened", {"n": 1}, key="k1")) == 1  # /bad's only
    hooks.drain()
    assert len(receiver.on("/gone")) == 1
    answer = hooks.api("POST", "/jobs", {"type": "system.echo", "callbackUrl": receiver.url("/gone")}, ALICE)
    assert answer.status == 422


def test_a_delivery_pending_when_its_subscription_is_deleted_ends_without_sending(
    hooks: LocalApp, receiver: Receiver
) -> None:
    created = subscribe(hooks, receiver.url("/later"))
    sent = hooks.api("POST", f"/webhooks/{created['id']}/test", claims=ALICE).body
    assert hooks.api("DELETE", f"/webhooks/{created['id']}", claims=ALICE).status == 204
    hooks.drain()
    job = job_of(hooks, sent["jobId"])
    assert job["status"] == "COMPLETED" and job["result"]["delivered"] is False
    assert "deleted" in job["result"]["skipped"]
    assert receiver.on("/later") == []


def test_during_a_rotation_deliveries_carry_both_signatures(hooks: LocalApp, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url())
    rotated = hooks.api("POST", f"/webhooks/{created['id']}/rotate-secret", claims=ALICE).body
    hooks.api("POST", f"/webhooks/{created['id']}/test", claims=ALICE)
    hooks.drain()
    [hit] = receiver.on("/hook")
    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    verified(hit, created["secret"])  # receivers still on the old secret
    verified(hit, rotated["secret"])  # and those that switched


def test_the_delivery_log_is_paged_newest_first(hooks: LocalApp, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url())
    sent = [
        hooks.api("POST", f"/webhooks/{created['id']}/test", claims=ALICE).body["deliveryId"]
        for _ in range(3)
    ]
    hooks.drain()
    first = deliveries(hooks, created["id"], query="?limit=2").body
    assert [d["id"] for d in first["items"]] == [sent[2], sent[1]] and first["nextCursor"]
    second = deliveries(hooks, created["id"], query=f"?limit=2&cursor={first['nextCursor']}").body
    assert [d["id"] for d in second["items"]] == [sent[0]] and second["nextCursor"] is None
    assert deliveries(hooks, created["id"], query="?cursor=bm9wZQ").status == 400
    assert deliveries(hooks, created["id"], query="?limit=0").status == 422
    assert deliveries(hooks, created["id"], claims=ADMIN).status == 200


# -- publish (the interface workloads use) --------------------------------------------------------
def test_publish_reaches_matching_subscriptions_once_per_key(hooks: LocalApp, receiver: Receiver) -> None:
    everything = subscribe(hooks, receiver.url("/all"), ["*"])
    messages = subscribe(hooks, receiver.url("/messages"), ["message.received"])
    named = subscribe(hooks, receiver.url("/named"), ["job.completed"])
    subscribe(hooks, receiver.url("/bobs"), ["*"], claims=BOB)
    first = api.publish(
        "alice", "message.received", {"text": "olá"}, key="m-1", url=receiver.url("/named"),
        headers={"X-Tarefa-Session": "s-9"},
    )  # fmt: skip
    assert len(first) == 3
    again = api.publish("alice", "message.received", {"text": "olá"}, key="m-1", url=receiver.url("/named"))
    assert sorted(again) == sorted(first)  # the same key makes no second delivery
    hooks.drain()
    for path, sub in (("/all", everything), ("/messages", messages), ("/named", named)):
        [hit] = receiver.on(path)
        body = verified(hit, sub["secret"])
        assert body["type"] == "message.received" and body["data"] == {"text": "olá"}
        assert (
            hit.headers["x-tarefa-session"] == "s-9" and hit.headers["x-tarefa-event"] == "message.received"
        )
    assert receiver.on("/bobs") == []  # another owner's subscriptions are never reached
    other = api.publish("alice", "message.received", {"text": "2"}, key="m-2")
    assert len(other) == 2 and not set(other) & set(first)  # a new key: new deliveries
    assert len(api.publish("alice", "nobody.listens", {}, key="x")) == 1  # only the "*" one
    with pytest.raises(ValueError, match="X-Tarefa-"):
        api.publish("alice", "message.received", {}, key="h", headers={"Authorization": "x"})
    with pytest.raises(ValueError, match="event name"):
        api.publish("alice", "Message Received", {}, key="h")
    assert api.subscription_exists("alice", receiver.url("/all"))
    assert not api.subscription_exists("bob", receiver.url("/all"))
    assert not api.subscription_exists("alice", receiver.url("/nowhere"))
    jobs = {job_of(hooks, j)["userId"] for j in first}
    assert jobs == {"alice"}  # the delivery jobs are the owner's


# -- job callbacks ------------------------------------------------------------------------------
def callbacks(receiver: Receiver, path: str = "/cb") -> list[Any]:
    return [h.json for h in receiver.on(path)]


def test_a_job_with_a_callback_url_gets_job_completed_signed(hooks: LocalApp, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url("/cb"), ["job.completed"])
    answer = hooks.api(
        "POST",
        "/jobs",
        {"type": "system.echo", "payload": {"a": 1}, "callbackUrl": receiver.url("/cb")},
        ALICE,
    )
    assert answer.status == 202 and answer.body["callbackUrl"] == receiver.url("/cb")
    hooks.drain()
    [hit] = receiver.on("/cb")
    body = verified(hit, created["secret"])
    assert body["type"] == "job.completed"
    assert body["data"]["jobId"] == answer.body["jobId"] and body["data"]["status"] == "COMPLETED"
    assert body["data"]["result"] == {"a": 1}
    assert body["data"] == job_of(hooks, answer.body["jobId"])  # the job as GET /jobs/{id} shows it


def test_failed_cancelled_and_dead_lettered_jobs_get_their_callbacks(
    hooks: LocalApp, receiver: Receiver, clock: Clock
) -> None:
    subscribe(hooks, receiver.url("/cb"), ["job.failed", "job.cancelled"])
    cb = receiver.url("/cb")
    failed = hooks.api(
        "POST",
        "/jobs",
        {"type": "system.fail", "payload": {"failTimes": 1, "permanent": True}, "callbackUrl": cb},
        ALICE,
    ).body
    exhausted = hooks.api(
        "POST",
        "/jobs",
        {"type": "system.fail", "payload": {"failTimes": 5}, "maxAttempts": 1, "callbackUrl": cb},
        ALICE,
    ).body
    hooks.drain()
    later = hooks.api(
        "POST", "/jobs", {"type": "system.echo", "delaySeconds": 3600, "callbackUrl": cb}, ALICE
    ).body
    assert hooks.api("POST", f"/jobs/{later['jobId']}/cancel", claims=ALICE).status == 200
    hooks.drain()  # the cancelled job's message is dropped: no second callback
    stranded = hooks.api("POST", "/jobs", {"type": "system.echo", "callbackUrl": cb}, ALICE).body
    redriven(hooks)  # SQS's redrive moved its message to the DLQ
    assert hooks.fire("DeadLetters") == {"deadLettered": 1}
    hooks.drain()
    got = {(c["data"]["jobId"], c["type"]) for c in callbacks(receiver)}
    assert got == {
        (failed["jobId"], "job.failed"),
        (exhausted["jobId"], "job.failed"),
        (later["jobId"], "job.cancelled"),
        (stranded["jobId"], "job.failed"),
    }
    assert len(callbacks(receiver)) == 4
    dead = next(c["data"] for c in callbacks(receiver) if c["data"]["jobId"] == stranded["jobId"])
    assert dead["deadLettered"] is True and dead["errorDetails"]["code"] == "DEAD_LETTERED"
    # events the subscription does not list still reach it: a callback names the URL itself
    done = hooks.api("POST", "/jobs", {"type": "system.echo", "callbackUrl": cb}, ALICE).body
    hooks.drain()
    assert (done["jobId"], "job.completed") in {(c["data"]["jobId"], c["type"]) for c in callbacks(receiver)}


def test_a_job_the_stuck_sweep_gives_up_on_gets_job_failed(
    hooks: LocalApp, receiver: Receiver, clock: Clock
) -> None:
    subscribe(hooks, receiver.url("/cb"))
    job_id = hooks.api(
        "POST", "/jobs", {"type": "system.echo", "callbackUrl": receiver.url("/cb")}, ALICE
    ).body["jobId"]
    store = wiring.container().store
    queued = store.get(job_id)
    assert queued is not None
    now = clock()
    # Its workers died twice already and the third is gone too: PROCESSING, lease long over
    dying = queued.transition(JobStatus.PROCESSING, now, attempts=1, crashes=2, processing_started_at=now)
    store.put(dying, expected_version=queued.version)
    clock.advance(3600)
    assert hooks.fire("Recover") == {"recovered": 1}
    hooks.drain()
    [callback] = callbacks(receiver)
    assert callback["type"] == "job.failed" and callback["data"]["errorDetails"]["code"] == "WORKER_CRASHED"


def test_a_callback_url_must_be_one_of_the_callers_subscriptions(hooks: LocalApp, receiver: Receiver) -> None:
    subscribe(hooks, receiver.url("/alices"))
    for claims, url in (
        (ALICE, receiver.url("/elsewhere")),
        (BOB, receiver.url("/alices")),
        (ALICE, "https://8.8.8.8/x"),
    ):
        answer = hooks.api("POST", "/jobs", {"type": "system.echo", "callbackUrl": url}, claims)
        assert answer.status == 422, answer.body
        assert answer.body["error"]["details"] == [
            {"field": "callbackUrl", "message": answer.body["error"]["details"][0]["message"]}
        ]
    assert hooks.api("GET", "/jobs", claims=ALICE).body["items"] == []  # nothing was enqueued
    hooks.drain()
    assert receiver.hits == []


def test_a_crash_between_the_completed_write_and_the_callback_still_makes_exactly_one(
    hooks: LocalApp, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = subscribe(hooks, receiver.url("/cb"))
    service = wiring.container().webhooks
    real = service.job_ended
    crashes = {"left": 1}

    def crash_once(job: Job) -> str | None:
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("the worker died after recording COMPLETED")
        return real(job)

    monkeypatch.setattr(service, "job_ended", crash_once)
    job_id = hooks.api(
        "POST", "/jobs", {"type": "system.echo", "payload": 7, "callbackUrl": receiver.url("/cb")}, ALICE
    ).body["jobId"]
    hooks.drain()
    assert job_of(hooks, job_id)["status"] == "COMPLETED" and crashes["left"] == 0
    assert receiver.on("/cb") == []  # no callback yet: the message stayed in the queue
    let_sqs_timers_pass()
    hooks.drain()  # the redelivered message finds the job COMPLETED and makes the callback
    let_sqs_timers_pass()
    hooks.drain()
    [hit] = receiver.on("/cb")
    assert verified(hit, created["secret"])["data"]["jobId"] == job_id
    # however often the ending is seen again, it is the same delivery
    ended = wiring.container().store.get(job_id)
    assert ended is not None
    assert len({real(ended) for _ in range(3)}) == 1
    hooks.drain()
    assert len(receiver.on("/cb")) == 1
    assert len(deliveries(hooks, created["id"]).body["items"]) == 1


def test_a_crash_between_recording_a_delivery_and_enqueuing_its_job_makes_one_job(
    hooks: LocalApp, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = subscribe(hooks, receiver.url())
    service = wiring.container().webhooks
    real = service.enqueue
    crashes = {"left": 1}

    def crash_once(caller: Any, request: Any) -> Any:
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("died between the delivery's record and its job")
        return real(caller, request)

    monkeypatch.setattr(service, "enqueue", crash_once)
    with pytest.raises(RuntimeError):
        api.publish("alice", "order.shipped", {"order": 1}, key="o-1")
    [job_id] = api.publish("alice", "order.shipped", {"order": 1}, key="o-1")
    assert api.publish("alice", "order.shipped", {"order": 1}, key="o-1") == [job_id]
    hooks.drain()
    assert len(receiver.on("/hook")) == 1
    [entry] = deliveries(hooks, created["id"]).body["items"]
    assert entry["jobId"] == job_id and entry["status"] == "DELIVERED"


def test_a_crash_between_the_post_and_its_record_sends_again_with_the_same_webhook_id(
    hooks: LocalApp, receiver: Receiver, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = subscribe(hooks, receiver.url())
    store = wiring.container().webhooks.store
    real = store.put_delivery
    crashes = {"left": 1}

    def crash_once(delivery: Any, expires_at: Any) -> None:
        if delivery.attempts and crashes["left"]:  # the attempt's record, after the POST
            crashes["left"] -= 1
            raise RuntimeError("died after the POST")
        real(delivery, expires_at)

    monkeypatch.setattr(store, "put_delivery", crash_once)
    sent = hooks.api("POST", f"/webhooks/{created['id']}/test", claims=ALICE).body
    hooks.drain()
    run(hooks, clock, 15)
    hits = receiver.on("/hook")
    # at least once: the receiver dedupes by webhook-id, the one id of this delivery
    assert len(hits) == 2 and {h.headers["webhook-id"] for h in hits} == {sent["deliveryId"]}
    [entry] = deliveries(hooks, created["id"]).body["items"]
    assert entry["status"] == "DELIVERED" and job_of(hooks, sent["jobId"])["status"] == "COMPLETED"


def test_a_delivery_job_enqueued_by_hand_sends_nothing(hooks: LocalApp, receiver: Receiver) -> None:
    alices = subscribe(hooks, receiver.url("/alices"))
    sent = hooks.api("POST", f"/webhooks/{alices['id']}/test", claims=ALICE).body
    hooks.drain()
    assert len(receiver.on("/alices")) == 1
    forged = {
        "subscriptionId": alices["id"],
        "event": "job.completed",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"jobId": "not-a-job", "status": "COMPLETED"},
    }
    attempts = [
        (BOB, {**forged, "deliveryId": sent["deliveryId"]}),  # another user's real delivery
        (BOB, {**forged, "deliveryId": "msg_000000000000ffffffffffffffff"}),
        (ALICE, {**forged, "deliveryId": "msg_000000000000ffffffffffffffff"}),  # even the owner's own
        (
            ALICE,
            {**forged, "deliveryId": sent["deliveryId"], "event": "webhook.test"},
        ),  # a replay of a sent one
        (ALICE, {**forged, "deliveryId": sent["deliveryId"], "event": "webhook.test", "webhook:delivery": 1}),
    ]
    made = []
    for claims, payload in attempts:
        answer = hooks.api("POST", "/jobs", {"type": "webhook:delivery", "payload": payload}, claims)
        if answer.status == 202:
            made.append((claims, answer.body["jobId"]))
        else:
            assert answer.status == 422  # not even a valid payload
    assert len(made) == 4
    hooks.drain()
    for claims, job_id in made:
        job = job_of(hooks, job_id, claims)
        assert job["status"] == "FAILED" and job["errorDetails"]["code"] == "NOT_A_DELIVERY", job
    assert len(receiver.on("/alices")) == 1  # nothing more was sent
    [entry] = deliveries(hooks, alices["id"]).body["items"]
    assert (entry["status"], entry["attempts"]) == ("DELIVERED", 1)  # and the log is untouched


def test_a_job_the_worker_dead_letters_gets_job_failed(hooks: LocalApp, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url("/cb"), ["job.failed"])
    job = hooks.api(
        "POST",
        "/jobs",
        {"type": "system.echo", "delaySeconds": 3600, "callbackUrl": receiver.url("/cb")},
        ALICE,
    ).body
    # A message for it that no worker can run (its type is gone from this deployment): poison
    hooks.sqs.send_message(
        QueueUrl=hooks.stack.queue_urls["MediumQueue"],
        MessageBody=json.dumps({"jobId": job["jobId"], "type": "gone.type"}),
    )
    hooks.drain()
    dead = job_of(hooks, job["jobId"])
    assert (dead["status"], dead["deadLettered"]) == ("FAILED", True)
    [hit] = receiver.on("/cb")
    body = verified(hit, created["secret"])
    assert body["type"] == "job.failed" and body["data"]["jobId"] == job["jobId"]
    assert body["data"]["errorDetails"]["code"] == "POISON_MESSAGE"


# -- turning a subscription off and on (PATCH /webhooks/{id}) --------------------------------------
def test_a_subscription_a_410_disabled_is_enabled_again_by_its_owner_and_delivers_again(
    hooks: LocalApp, receiver: Receiver
) -> None:
    receiver.script["/gone"] = [410]
    created = subscribe(hooks, receiver.url("/gone"), ["thing.happened"])
    sid = created["id"]
    hooks.api("POST", f"/webhooks/{sid}/test", claims=ALICE)
    hooks.drain()
    assert hooks.api("GET", f"/webhooks/{sid}", claims=ALICE).body["status"] == "DISABLED"
    refused = hooks.api("POST", f"/webhooks/{sid}/test", claims=ALICE)
    assert refused.status == 409 and "PATCH /webhooks/" in refused.body["error"]["message"]

    # someone else's, an admin's (the URL and its receiver are the owner's), a missing one: 404
    for claims in (BOB, ADMIN):
        answer = hooks.api("PATCH", f"/webhooks/{sid}", {"enabled": True}, claims)
        assert answer.status == 404 and answer.body["error"]["code"] == "WEBHOOK_NOT_FOUND"
    assert hooks.api("PATCH", "/webhooks/wh_000000000000000000000000", {"enabled": True}, ALICE).status == 404
    for bad in ({}, {"enabled": "maybe"}, {"enabled": True, "url": "https://8.8.8.8/x"}):
        answer = hooks.api("PATCH", f"/webhooks/{sid}", bad, ALICE)
        assert answer.status == 422, (bad, answer.body)
    assert hooks.api("GET", f"/webhooks/{sid}", claims=ALICE).body["status"] == "DISABLED"

    enabled = hooks.api("PATCH", f"/webhooks/{sid}", {"enabled": True}, ALICE)
    assert enabled.status == 200 and enabled.body["status"] == "ACTIVE"
    assert "disabledAt" not in enabled.body and "disabledReason" not in enabled.body
    assert "secret" not in enabled.body and created["secret"] not in enabled.text
    assert hooks.api("PATCH", f"/webhooks/{sid}", {"enabled": True}, ALICE).body["status"] == "ACTIVE"

    # it delivers again: a publish reaches it, signed with the secret it always had
    [job_id] = api.publish("alice", "thing.happened", {"n": 1}, key="after-enable")
    hooks.drain()
    assert job_of(hooks, job_id)["status"] == "COMPLETED"
    hits = receiver.on("/gone")
    assert len(hits) == 2 and verified(hits[-1], created["secret"])["data"] == {"n": 1}
    log = deliveries(hooks, sid).body["items"]
    assert [(d["event"], d["status"], d["responseCode"]) for d in log] == [
        ("thing.happened", "DELIVERED", 200),
        ("webhook.test", "FAILED", 410),
    ]
    # and a job may name it as its callback again
    assert (
        hooks.api(
            "POST", "/jobs", {"type": "system.echo", "callbackUrl": receiver.url("/gone")}, ALICE
        ).status
        == 202
    )


def test_an_owner_disables_a_subscription_and_nothing_is_sent_until_it_is_enabled(
    hooks: LocalApp, receiver: Receiver
) -> None:
    created = subscribe(hooks, receiver.url("/paused"), ["thing.happened"])
    sid = created["id"]
    pending = api.publish("alice", "thing.happened", {"n": 1}, key="before")  # queued, not yet sent
    disabled = hooks.api("PATCH", f"/webhooks/{sid}", {"enabled": False}, ALICE)
    assert disabled.status == 200
    assert (disabled.body["status"], disabled.body["disabledReason"]) == ("DISABLED", "disabled by its owner")
    assert api.publish("alice", "thing.happened", {"n": 2}, key="while-off") == []
    hooks.drain()
    assert receiver.on("/paused") == []
    [skipped] = deliveries(hooks, sid).body["items"]
    assert skipped["status"] == "SKIPPED" and job_of(hooks, pending[0])["result"]["delivered"] is False
    assert hooks.api("PATCH", f"/webhooks/{sid}", {"enabled": True}, ALICE).body["status"] == "ACTIVE"
    api.publish("alice", "thing.happened", {"n": 3}, key="after")
    hooks.drain()
    assert [verified(h, created["secret"])["data"] for h in receiver.on("/paused")] == [{"n": 3}]


def test_enabling_vets_the_url_again() -> None:
    """A subscription whose host is no longer allowed (here: the allow-list changed, as a DNS
    answer that moved to a private address would) is not enabled: 422 naming url."""
    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), parameters={"HttpAllow": "127.0.0.1"})
        try:
            from tarefa.outbound import _AllowList

            created = subscribe(app, "http://127.0.0.1:9/hook")
            assert app.api("PATCH", f"/webhooks/{created['id']}", {"enabled": False}, ALICE).status == 200
            wiring.container().http.allow = _AllowList.parse("")  # loopback is not allowed any more
            answer = app.api("PATCH", f"/webhooks/{created['id']}", {"enabled": True}, ALICE)
            assert answer.status == 422 and answer.body["error"]["details"][0]["field"] == "url"
            assert app.api("GET", f"/webhooks/{created['id']}", claims=ALICE).body["status"] == "DISABLED"
        finally:
            wiring.reset()


# -- the event data is a sealed field of the delivery job ---------------------------------------
def test_a_delivery_jobs_event_data_is_sealed_in_the_table_and_the_api_and_posted_in_clear(
    hooks: LocalApp, receiver: Receiver
) -> None:
    created = subscribe(hooks, receiver.url("/inbox"), ["message.received"])
    data = {"from": "+5521998765432", "text": "Tem entrega hoje, moça?", "sessionId": "s-1"}
    [job_id] = api.publish("alice", "message.received", data, key="sealed-1")
    registry = wiring.container().registry
    assert registry.get("webhook.delivery").sensitive_keys == ("data",)

    def everywhere() -> str:
        """The jobs table and the queues, as a test sees them whole."""
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        seen = json.dumps(dynamodb.scan(TableName=wiring.container().settings.jobs_table)["Items"])
        for url in sqs.list_queues()["QueueUrls"]:
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
                "Messages", []
            ):
                seen += message["Body"]
        return seen

    stored = everywhere()
    assert "ciphertext" in stored  # the envelope is there ...
    for clear in ("+5521998765432", "5521998765432", "Tem entrega hoje", "moça"):
        assert clear not in stored  # ... and the data is not
    shown = job_of(hooks, job_id)
    assert shown["payload"]["data"] == "[redacted]" and "sealed" not in shown
    assert shown["payload"]["event"] == "message.received"  # what is not data stays readable
    assert "Tem entrega" not in hooks.api("GET", "/jobs?limit=100", claims=ALICE).text

    hooks.drain()
    [hit] = receiver.on("/inbox")
    assert verified(hit, created["secret"])["data"] == data  # the receiver gets the real data
    done = job_of(hooks, job_id)
    assert done["status"] == "COMPLETED" and done["payload"]["data"] == "[redacted]"
    assert "Tem entrega" not in everywhere()  # nor after it ran


def test_sealed_event_data_is_at_most_150_kb_and_a_large_one_still_goes_through_sqs(
    hooks: LocalApp, receiver: Receiver
) -> None:
    from tarefa.webhooks import SEALED_MAX_DATA_BYTES

    created = subscribe(hooks, receiver.url("/big"), ["report.ready"])
    assert wiring.container().webhooks.max_data_bytes == SEALED_MAX_DATA_BYTES
    big = {"blob": "x" * (SEALED_MAX_DATA_BYTES - 100)}  # sealed, about 200 KB of base64
    [job_id] = api.publish("alice", "report.ready", big, key="big")
    with pytest.raises(ValueError, match="at most 150000 bytes"):
        api.publish("alice", "report.ready", {"blob": "x" * SEALED_MAX_DATA_BYTES}, key="too-big")
    hooks.drain()
    assert job_of(hooks, job_id)["status"] == "COMPLETED"
    [hit] = receiver.on("/big")
    assert verified(hit, created["secret"])["data"] == big
