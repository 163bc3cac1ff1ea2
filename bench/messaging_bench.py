"""`make bench-messaging`: what a WhatsApp message and a webhook delivery cost on AWS, and how
many messages a second the local stack sends.

1. A message sent: `POST /sessions/{id}/messages` (the messaging function behind API Gateway),
   its `message:send` job (SENT with the provider's id), and the three status callbacks the
   WhatsApp sandbox sends as the Cloud API does (`sent`, `delivered`, `read`: each a `POST
   /webhooks/whatsapp`, signed, and its LOW-priority `message:status` job), until the message
   is READ; with the stats stream consumer. On moto in this process, the sandbox on loopback
   speaking real HTTP to the real adapter, metered as bench/payments_bench.py meters a payment
   (its Meter: every AWS request by kind, DynamoDB write and read units by table and index,
   Lambda invocations and GB-seconds, log bytes; prices from bench/prices.json). Sessions are
   opened before the window (a session serves many messages), ROUND_SIZE messages over
   SESSIONS sessions (under the 80-a-minute rate: the clock does not move within a round).
2. A webhook delivered: one event published for a user with one matching subscription
   (`tarefa.api.publish`, as a handler's `ctx.publish` does: the delivery recorded, its
   `webhook.delivery` job enqueued, its event data sealed with KMS) and that job POSTing it,
   signed, to a subscriber on loopback answering 2xx. The publish runs inside the caller's
   invocation (e.g. `message:receive`): its AWS requests are counted here, its milliseconds are
   in the caller's bill, not in these figures.
3. `tarefa local` as a subprocess with its WhatsApp sandbox (the contract's timings: delivered
   ~1 s after the send, read ~1 s later): LOCAL_SESSIONS sessions, one per user, client threads
   POSTing messages round-robin over them for a window; then how many were SENT and READ a
   second, from each message's sentAt/readAt in the listings. The per-session rate (80 a minute)
   caps what any one session sends: the sessions' ceiling is LOCAL_SESSIONS x 80 a minute, set
   above what the stack carries, so the figure is the stack's; the report gives the most one
   session sent in any 60 s, and says which bound (the rate, when a session reached 80).
4. One session's rate on `tarefa local`: RATE_BURST messages POSTed at once to one session; how
   many were SENT in the first minute and in any 60 s (at most 80: the rest wait, delayed, and
   none fails), and when the last one went.

Writes bench/results.json under "messaging", keeping every other key. Reports; never fails.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.payments_bench

from bench.payments_bench import (
    RESULTS,
    ROOT,
    Clock,
    Meter,
    Receiver,
    Tables,
    _children,
    _cpu_seconds,
    _load,
    _stamp,
    captured_stdout,
    let_sqs_timers_pass,
    machine,
    percentile,
    summarise,
)

MESSAGES = 100
WEBHOOKS = 100
ROUND_SIZE = 50  # each round on a fresh stack (moto copies a table per transaction)
SESSIONS = 5  # sessions a round's messages go over
SECRETS_PREFIX = "tarefa/dev/"
SANDBOX_STEP_SECONDS = 0.02  # the in-process sandbox's delivered/read delays (the contract's 1 s locally)
SOURCE_IP = "203.0.113.9"  # Meta's webhooks, as API Gateway passes them
TO = "+5511987654321"
TEXT = "Olá! Seu pedido saiu para entrega e chega hoje entre 14h e 16h."
LOCAL_SECONDS = 60.0
LOCAL_SESSIONS = 8  # one per user: 8 x 80 a minute = 10.7 a second, above the stack's pace
LOCAL_CLIENTS = 4
RATE_PER_SESSION_PER_MINUTE = 80
RATE_BURST = 120  # messages at once to one session: 80 go in the first minute, 40 in the next
BACKLOG_TIMEOUT_SECONDS = 420  # the status callbacks' LOW-priority jobs lag the sends


def _environment() -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "tarefa",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    for path in (ROOT / "layers" / "tarefa", ROOT / "layers" / "workloads"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def number_id(n: int) -> str:
    """A Cloud API phone number id the sandbox knows (one ending 404 does not exist)."""
    return f"1065403{n:08d}1"


class Harness:
    """The messaging workload on moto with the WhatsApp sandbox, as tests/integration/messaging
    builds it; the sandbox's webhooks are collected and handed to the API's route."""

    def __init__(self, meter: Meter) -> None:
        import boto3
        from aws_lambda_powertools.utilities import parameters
        from messaging import jobs as messaging_jobs
        from messaging.local import start_sandbox

        from tarefa import wiring
        from tarefa.local.app import LocalApp

        self.inbox = Receiver()  # where the sandbox posts its webhooks (Meta's, for the API)
        self.subscriber = Receiver()  # a user's webhook endpoint: 200 to every delivery
        self.local = start_sandbox(
            self.inbox.url, port=0, delivered_after=SANDBOX_STEP_SECONDS, read_after=SANDBOX_STEP_SECONDS
        )
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        messaging_jobs.service.cache_clear()
        secrets = boto3.client("secretsmanager")
        for name, value in self.local.secrets.items():
            secrets.create_secret(Name=SECRETS_PREFIX + name, SecretString=value)
        self.app = LocalApp(
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            parameters={"LogLevel": "INFO", **self.local.parameters, "MessagingPublicUrl": self.inbox.url},
            batching_window=0,
        )
        self.clock = Clock()
        wiring.container().clock = self.clock
        messaging_jobs.service().now = self.clock
        meter.tables = Tables({v: k for k, v in self.app.stack.tables.items()})
        meter.queues = {url: name for name, url in self.app.stack.queue_urls.items()}
        meter.poller_clients = {id(self.app.sqs)}
        meter.emulator_clients = {id(self.app.lambda_), id(self.app.streams)}
        self.callbacks = 0
        self.sessions = 0

    def close(self) -> None:
        from aws_lambda_powertools.utilities import parameters
        from messaging import jobs as messaging_jobs

        from tarefa import wiring

        self.local.stop()
        self.inbox.stop()
        self.subscriber.stop()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        messaging_jobs.service.cache_clear()
        wiring.reset()

    def call(self, method: str, path: str, body: Any = None, user: str = "bench-user") -> Any:
        answer = self.app.api(method, path, body, {"sub": user})
        if answer.status >= 300:
            raise RuntimeError(f"{method} {path} answered {answer.status}: {answer.body}")
        return answer.body

    def run(self) -> None:
        let_sqs_timers_pass()
        self.app.drain()

    def open_session(self, user: str = "bench-user") -> str:
        self.sessions += 1
        created = self.call(
            "POST", "/sessions", {"name": "Loja", "phoneNumberId": number_id(self.sessions)}, user
        )
        self.run()
        session_id = str(created["session"]["sessionId"])
        status = self.call("GET", f"/sessions/{session_id}", user=user)["session"]["status"]
        if status != "CONNECTED":
            raise RuntimeError(f"a session ended {status}")
        return session_id

    def hand_callbacks(self, wanted: int, timeout: float = 10.0) -> int:
        """The sandbox's webhooks (at least `wanted`, or what came within `timeout`), handed to
        POST /webhooks/whatsapp as API Gateway would, then the jobs they made run."""
        notes = self.inbox.take(wanted, timeout)
        for note in notes:
            headers = {k: v for k, v in note.headers.items() if k.startswith("x-") or k == "content-type"}
            answer = self.app.api("POST", note.path, note.body, headers=headers, source_ip=SOURCE_IP)
            if answer.status != 200:
                raise RuntimeError(f"the whatsapp webhook answered {answer.status}: {answer.body}")
        self.callbacks += len(notes)
        self.run()
        return len(notes)

    def send(self, sessions: list[str], n: int) -> list[str]:
        """n messages over `sessions`, each until READ: the send, then the sandbox's callbacks."""
        ids = [
            str(
                self.call(
                    "POST", f"/sessions/{sessions[i % len(sessions)]}/messages", {"to": TO, "text": TEXT}
                )["message"]["messageId"]
            )
            for i in range(n)
        ]
        self.run()  # message:send: SENT, and the sandbox reports sent, delivered, read
        expected, handed = 3 * n, 0
        deadline = time.monotonic() + 30
        while handed < expected and time.monotonic() < deadline:
            handed += self.hand_callbacks(expected - handed, timeout=max(0.1, deadline - time.monotonic()))
        self.hand_callbacks(0, timeout=0.2)  # any straggler
        return ids

    def statuses(self, ids: list[str]) -> Counter[str]:
        return Counter(str(self.call("GET", f"/messages/{m}")["message"]["status"]) for m in ids)


@contextlib.contextmanager
def metered(meter: Meter) -> Iterator[None]:
    with meter.installed():
        meter.active = True
        try:
            yield
        finally:
            meter.active = False


Round = Callable[[Harness, Meter, int, Callable[[], int]], dict[str, Any]]


def rounds(count: int, round_size: int, run: Round) -> dict[str, Any]:
    """`run(harness, meter, n, log_bytes)` over rounds of `round_size`, each on a fresh stack; the figures
    per unit come from the meter they all add to."""
    from moto import mock_aws

    meter = Meter()
    log_total, seconds = 0, 0.0
    outcome: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    remaining = count
    while remaining > 0:
        n = min(remaining, round_size)
        remaining -= n
        with mock_aws(), captured_stdout() as log_bytes:
            h = Harness(meter)
            try:
                found = run(h, meter, n, log_bytes)
                seconds += found.pop("seconds")
                log_total += found.pop("log_bytes")
                outcome.update(found.pop("outcome"))
                extra.update(found)
            finally:
                h.close()
    return {"meter": meter, "log_bytes": log_total, "seconds": seconds, "outcome": outcome, "extra": extra}


def message_round(h: Harness, meter: Meter, n: int, log_bytes: Callable[[], int]) -> dict[str, Any]:
    sessions = [h.open_session() for _ in range(SESSIONS)]
    h.send(sessions[:1], 1)  # warm-up: each function's first invocation belongs to its cold start
    logged, callbacks = log_bytes(), h.callbacks
    started = time.perf_counter()
    with metered(meter):
        ids = h.send(sessions, n)
    took = time.perf_counter() - started
    return {
        "seconds": took,
        "log_bytes": log_bytes() - logged,
        "outcome": h.statuses(ids),
        "callbacks": h.callbacks - callbacks,
    }


def webhook_round(h: Harness, meter: Meter, n: int, log_bytes: Callable[[], int]) -> dict[str, Any]:
    from tarefa import api

    owner = "bench-user"
    h.call("POST", "/webhooks", {"url": h.subscriber.url + "/hooks", "events": ["message.received"]})
    data = {
        "sessionId": "9f1c2b7a-bench",
        "message": {
            "messageId": "m-bench",
            "direction": "inbound",
            "from": "+5521998765432",
            "text": "Oi, tem entrega hoje? Queria saber se chega antes das 18h.",
            "status": "RECEIVED",
            "createdAt": "2026-12-02T12:00:00Z",
        },
    }
    headers = {"X-Tarefa-Session": "9f1c2b7a-bench"}
    api.publish(owner, "message.received", data, key="warm-up", headers=headers)  # warm-up
    h.run()
    h.subscriber.take(1, timeout=5)
    logged = log_bytes()
    started = time.perf_counter()
    with metered(meter):
        job_ids = [
            job_id
            for i in range(n)
            for job_id in api.publish(owner, "message.received", data, key=f"bench-{i}", headers=headers)
        ]
        h.run()
    took = time.perf_counter() - started
    posted = len(h.subscriber.take(n, timeout=5))
    statuses = Counter(str(h.call("GET", f"/jobs/{j}")["status"]) for j in job_ids)
    sealed = sum(1 for j in job_ids if h.call("GET", f"/jobs/{j}")["payload"]["data"] == "[redacted]")
    return {
        "seconds": took,
        "log_bytes": log_bytes() - logged,
        "outcome": statuses,
        "posted": posted,
        "sealed": sealed,
    }


def message_scenario(count: int) -> dict[str, Any]:
    r = rounds(count, ROUND_SIZE, message_round)
    figures = summarise(r["meter"], count, r["log_bytes"], unit="message")
    return {
        "messages": count,
        "mode": f"{math.ceil(count / ROUND_SIZE)} rounds of {min(count, ROUND_SIZE)} over {SESSIONS} sessions",
        "outcome": dict(r["outcome"]),
        "status_callbacks_per_message": round(r["extra"]["callbacks"] / count, 3),
        "usd_per_1000": round(figures["usd_per_million_messages"] / 1000, 4),
        "bench_seconds": round(r["seconds"], 1),
        **figures,
    }


def webhook_scenario(count: int) -> dict[str, Any]:
    r = rounds(count, ROUND_SIZE, webhook_round)
    figures = summarise(r["meter"], count, r["log_bytes"], unit="webhook")
    return {
        "webhooks": count,
        "mode": f"{math.ceil(count / ROUND_SIZE)} rounds of {min(count, ROUND_SIZE)}, one subscription",
        "outcome": dict(r["outcome"]),
        "posted_to_the_subscriber": r["extra"]["posted"],
        "data_sealed": r["extra"]["sealed"],
        "usd_per_1000": round(figures["usd_per_million_webhooks"] / 1000, 4),
        "bench_seconds": round(r["seconds"], 1),
        **figures,
    }


# ----------------------------------------------------------------------- the local stack, live
def _request(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection.request(method, path, data, headers)
        response = connection.getresponse()
        text = response.read()
        return response.status, (json.loads(text) if text else None)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return 0, str(exc)
    finally:
        connection.close()


class Client(threading.Thread):
    """One shop: a keep-alive connection, POSTing messages round-robin over its sessions."""

    def __init__(self, port: int, sessions: list[tuple[str, str]], until: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.sessions = sessions  # (session id, its owner's token)
        self.until = until
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.accepted: list[str] = []

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        n = 0
        while time.monotonic() < self.until:
            session_id, token = self.sessions[n % len(self.sessions)]
            n += 1
            body = json.dumps({"to": TO, "text": TEXT}).encode()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            started = time.perf_counter()
            try:
                connection.request("POST", f"/sessions/{session_id}/messages", body, headers)
                response = connection.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                status, answer = 0, b""
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.statuses[status] += 1
            if status == 202:
                self.accepted.append(json.loads(answer)["message"]["messageId"])
        connection.close()


def _messages(port: int, session_id: str, token: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = f"/sessions/{session_id}/messages?limit=100" + (f"&cursor={cursor}" if cursor else "")
        status, body = _request(port, "GET", path, token)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body}")
        found += body["items"]
        cursor = body.get("cursor")
        if not cursor:
            return found


def _most_in_a_minute(stamps: list[float]) -> int:
    ordered, best, first = sorted(stamps), 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= 60:
            first += 1
        best = max(best, last - first + 1)
    return best


def local_stack(seconds: float, sessions_count: int, clients: int) -> dict[str, Any]:
    from tarefa.local.auth import LocalAuthority
    from tarefa.local.process import StackProcess

    state_dir = Path(tempfile.mkdtemp(prefix="tarefa-bench-messaging-"))
    started_stack = time.perf_counter()
    stack = StackProcess(state_dir)
    figures: dict[str, Any] = {"run": False}
    try:
        figures["stack_ready_seconds"] = round(time.perf_counter() - started_stack, 1)
        figures["sandboxes"] = stack.state.get("sandboxes") or {}
        authority = LocalAuthority(state_dir)
        sessions: list[tuple[str, str]] = []
        for n in range(sessions_count):
            token = authority.mint(f"bench-shop-{n}", ttl_seconds=3600)
            status, created = _request(
                stack.api_port,
                "POST",
                "/sessions",
                token,
                {"name": f"Loja {n}", "phoneNumberId": number_id(n)},
            )
            if status != 202:
                figures["why"] = f"POST /sessions answered {status}: {created}"
                return figures
            sessions.append((created["session"]["sessionId"], token))
        deadline = time.monotonic() + 60
        pending = list(sessions)
        while pending and time.monotonic() < deadline:
            pending = [
                (s, t)
                for s, t in pending
                if _request(stack.api_port, "GET", f"/sessions/{s}", t)[1]["session"]["status"] != "CONNECTED"
            ]
            time.sleep(0.5)
        if pending:
            figures["why"] = f"{len(pending)} sessions never CONNECTED (is the sandbox started?)"
            return figures
        figures.update(local_window(stack, sessions, seconds, clients))
        figures["run"] = True
    finally:
        try:
            stack.stop()
        except Exception:  # a stack that would not stop is reported, not raised
            traceback.print_exc()
    return figures


def local_window(stack: Any, sessions: list[tuple[str, str]], seconds: float, clients: int) -> dict[str, Any]:
    processes = {"stack": stack.process.pid}
    for pid in _children(stack.process.pid):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            processes["emulator" if "emulator" in command else f"child {pid}"] = pid
    cpu_before = {name: _cpu_seconds(pid) for name, pid in processes.items()}
    window_start = time.time()
    until = time.monotonic() + seconds
    threads = [Client(stack.api_port, sessions[n::clients], until) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window_end = time.time()
    cpu = {
        name: (_cpu_seconds(pid) - cpu_before[name]) / (window_end - window_start)
        for name, pid in processes.items()
    }
    accepted = sum(len(t.accepted) for t in threads)
    # the backlog: until every accepted message is READ (or FAILED), or the timeout
    deadline = time.monotonic() + BACKLOG_TIMEOUT_SECONDS
    by_session: dict[str, list[dict[str, Any]]] = {}
    listed: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        by_session = {s: _messages(stack.api_port, s, t) for s, t in sessions}
        listed = [m for found in by_session.values() for m in found]
        if sum(1 for m in listed if m["status"] in ("READ", "FAILED")) >= accepted:
            break
        time.sleep(3)
    # the most one session sent in any 60 s: at 80 the per-session rate was what held it back
    busiest = max(
        (
            _most_in_a_minute([_stamp(m["sentAt"]) for m in found if m.get("sentAt")])
            for found in by_session.values()
        ),
        default=0,
    )
    waited = time.time() - window_end
    statuses = Counter(m["status"] for m in listed)
    sent_at = sorted(_stamp(m["sentAt"]) for m in listed if m.get("sentAt"))
    read_at = sorted(_stamp(m["readAt"]) for m in listed if m.get("readAt"))
    minutes = (window_end - window_start) / 60
    span = window_end - window_start
    in_window = sum(1 for at in sent_at if window_start <= at <= window_end)
    read_in_window = sum(1 for at in read_at if window_start <= at <= window_end)
    buckets = [0] * max(1, math.ceil(span / 10))
    for at in sent_at:
        if window_start <= at < window_end:
            buckets[int((at - window_start) // 10)] += 1
    last_sent = max(sent_at) if sent_at else window_end
    last_read = max(read_at) if read_at else window_end
    latencies = [ms for t in threads for ms in t.latencies]
    codes: Counter[int] = Counter()
    for thread in threads:
        codes.update(thread.statuses)
    ceiling = len(sessions) * RATE_PER_SESSION_PER_MINUTE / 60
    sent_per_second = in_window / span
    return {
        "sessions": len(sessions),
        "clients": clients,
        "seconds": round(span, 1),
        "rate_ceiling_per_second": round(ceiling, 2),
        "submitted": sum(codes.values()),
        "accepted": accepted,
        "answers": {str(k): v for k, v in sorted(codes.items())},
        "accepted_per_second": round(accepted / span, 2),
        "sent_within_the_window": in_window,
        "sent_per_second_within_the_window": round(sent_per_second, 2),
        "read_per_second_within_the_window": round(read_in_window / span, 2),
        "sent_per_second_first_submit_to_last_sent": round(
            len(sent_at) / max(last_sent - window_start, 1e-9), 2
        ),
        "read_per_second_first_submit_to_last_read": round(
            len(read_at) / max(last_read - window_start, 1e-9), 2
        ),
        "sent_per_minute_within_the_window": round(in_window / minutes, 1),
        "sent_per_10_seconds": buckets,
        "most_sent_by_one_session_in_60_seconds": busiest,
        "bound": "the per-session rate (80 a minute)"
        if busiest >= 0.95 * RATE_PER_SESSION_PER_MINUTE
        else "the local stack (no session reached 80 in a minute)",
        "statuses_at_the_end": dict(statuses),
        "backlog_read_seconds_after_the_window": round(max(0.0, last_read - window_end), 1),
        "waited_for_backlog_seconds": round(waited, 1),
        "submit_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "submit_p95_ms": round(percentile(latencies, 0.95), 1) if latencies else None,
        "cpu_per_second": {name: round(v, 2) for name, v in cpu.items()},
        # what held jobs back, from the stack's log: attempts that failed and will retry
        # (RetryableJobError, RetryLater), and messages waiting for another invocation's lease
        "stack_log_failed_attempts": stack.count(" failed: "),
        "stack_log_lease_waits": stack.count("message waits for its lease"),
    }


def one_session(count: int = RATE_BURST) -> dict[str, Any]:
    """`count` messages POSTed at once to one session of `tarefa local`: the per-session rate,
    not the stack, decides when they go (80 in any minute; the rest wait, delayed, never fail)."""
    from tarefa.local.auth import LocalAuthority
    from tarefa.local.process import StackProcess

    state_dir = Path(tempfile.mkdtemp(prefix="tarefa-bench-messaging-rate-"))
    stack = StackProcess(state_dir)
    figures: dict[str, Any] = {"run": False, "messages": count}
    try:
        token = LocalAuthority(state_dir).mint("bench-one-shop", ttl_seconds=3600)
        status, created = _request(
            stack.api_port, "POST", "/sessions", token, {"name": "Loja", "phoneNumberId": number_id(999)}
        )
        if status != 202:
            figures["why"] = f"POST /sessions answered {status}: {created}"
            return figures
        session_id = created["session"]["sessionId"]
        deadline = time.monotonic() + 60
        while _request(stack.api_port, "GET", f"/sessions/{session_id}", token)[1]["session"]["status"] != (
            "CONNECTED"
        ):
            if time.monotonic() > deadline:
                figures["why"] = "the session never CONNECTED"
                return figures
            time.sleep(0.5)
        started = time.time()
        answers: Counter[int] = Counter()
        for _ in range(count):
            code, _ = _request(
                stack.api_port, "POST", f"/sessions/{session_id}/messages", token, {"to": TO, "text": TEXT}
            )
            answers[code] += 1
        submitted = time.time() - started
        deadline = time.monotonic() + BACKLOG_TIMEOUT_SECONDS
        listed: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            listed = _messages(stack.api_port, session_id, token)
            if sum(1 for m in listed if m.get("sentAt") or m["status"] == "FAILED") >= answers[202]:
                break
            time.sleep(2)
        sent_at = sorted(_stamp(m["sentAt"]) for m in listed if m.get("sentAt"))
        first = sent_at[0] if sent_at else started
        figures.update(
            {
                "run": True,
                "answers": {str(k): v for k, v in sorted(answers.items())},
                "submitted_in_seconds": round(submitted, 1),
                "sent": len(sent_at),
                "stack_log_failed_attempts": stack.count(" failed: "),
                "statuses_at_the_end": dict(Counter(m["status"] for m in listed)),
                "sent_in_the_first_60_seconds": sum(1 for at in sent_at if at - first < 60),
                "most_sent_in_any_60_seconds": _most_in_a_minute(sent_at),
                "last_sent_seconds_after_the_first": round((sent_at[-1] - first) if sent_at else 0.0, 1),
                "sent_per_second_first_to_last": round((len(sent_at) - 1) / max(sent_at[-1] - first, 1e-9), 2)
                if len(sent_at) > 1
                else None,
            }
        )
    finally:
        try:
            stack.stop()
        except Exception:  # a stack that would not stop is reported, not raised
            traceback.print_exc()
    return figures


# --------------------------------------------------------------------------------------- main
def _reported(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"messaging bench: {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    before = _load()
    try:
        figures = measure()
    except Exception as exc:  # the bench reports, it does not fail
        traceback.print_exc()
        figures = {"run": False, "why": f"{type(exc).__name__}: {exc}"}
    figures["load_average_1min"] = {"before": before, "after": _load()}
    figures["part_seconds"] = round(time.perf_counter() - started, 1)
    print(f"messaging bench: {name} took {figures['part_seconds']:.0f} s", file=sys.stderr, flush=True)
    return figures


def measure(parts: list[str], messages: int, webhooks: int, seconds: float, sessions: int) -> dict[str, Any]:
    _environment()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "prices": "bench/prices.json; Secrets Manager and KMS from bench/payments_bench.py's EXTRA_PRICES",
    }
    if "message" in parts:
        results["message_sent"] = _reported("message sent", lambda: message_scenario(messages))
    if "webhook" in parts:
        results["webhook_delivered"] = _reported("webhook delivered", lambda: webhook_scenario(webhooks))
    if "local" in parts:
        results["local_stack"] = _reported(
            "local stack", lambda: local_stack(seconds, sessions, LOCAL_CLIENTS)
        )
    if "rate" in parts:
        results["local_one_session"] = _reported("one session's rate", one_session)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    return results


def write(results: dict[str, Any], path: Path = RESULTS) -> None:
    """Under "messaging", keeping every other key (and the parts of "messaging" not run now)."""
    kept: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    previous = kept.get("messaging") if isinstance(kept.get("messaging"), dict) else {}
    kept["messaging"] = {**(previous or {}), **results}
    path.write_text(json.dumps(kept, indent=2) + "\n")


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"Messaging benchmarks, {r['date']}, {m['nproc']} cores ({m['cpu']}), Python {m['python']}")
    for key, unit in (("message_sent", "message"), ("webhook_delivered", "webhook")):
        s = r.get(key)
        if not isinstance(s, dict):
            continue
        if f"usd_per_million_{unit}s" not in s:
            print(f"\n{key}: not run: {s.get('why')}")
            continue
        print(f"\n{key} ({s['mode']}; {s['outcome']})")
        print(f"  $ per 1,000: {s['usd_per_1000']}  (per million: {s[f'usd_per_million_{unit}s']})")
        for part, usd in s["usd_breakdown_per_million"].items():
            print(f"    {part:28} ${usd / 1000:.5f} per 1,000")
        print(f"  AWS requests per {unit}: {s[f'aws_requests_per_{unit}_total']}")
        for name, v in s[f"aws_requests_per_{unit}"].items():
            print(f"    {name:70} {v}")
        print(f"  Lambda invocations per {unit}: {s[f'lambda_invocations_per_{unit}']}")
    local = r.get("local_stack")
    if isinstance(local, dict):
        print("\nlocal stack (tarefa local + its WhatsApp sandbox)")
        if not local.get("run"):
            print(f"  not run: {local.get('why')}")
        else:
            for name in (
                "sessions",
                "clients",
                "seconds",
                "rate_ceiling_per_second",
                "accepted",
                "accepted_per_second",
                "sent_per_second_within_the_window",
                "read_per_second_within_the_window",
                "sent_per_second_first_submit_to_last_sent",
                "read_per_second_first_submit_to_last_read",
                "sent_per_10_seconds",
                "most_sent_by_one_session_in_60_seconds",
                "bound",
                "statuses_at_the_end",
                "submit_p50_ms",
                "submit_p95_ms",
                "answers",
                "cpu_per_second",
            ):
                print(f"  {name:<45} {local.get(name)}")
    rate = r.get("local_one_session")
    if isinstance(rate, dict):
        print(f"\none session on the local stack, {rate.get('messages')} messages at once")
        if not rate.get("run"):
            print(f"  not run: {rate.get('why')}")
        for name in (
            "answers",
            "sent",
            "sent_in_the_first_60_seconds",
            "most_sent_in_any_60_seconds",
            "last_sent_seconds_after_the_first",
            "sent_per_second_first_to_last",
            "statuses_at_the_end",
        ):
            if name in rate:
                print(f"  {name:<45} {rate[name]}")
    print(f"\nbench took {r['bench_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--parts", default="message,webhook,local,rate", help="of message,webhook,local,rate (default all)"
    )
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--webhooks", type=int, default=WEBHOOKS)
    parser.add_argument("--seconds", type=float, default=LOCAL_SECONDS, help="the local stack's window")
    parser.add_argument("--sessions", type=int, default=LOCAL_SESSIONS, help="sessions on the local stack")
    parser.add_argument("--no-write", action="store_true", help="print only; leave results.json alone")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    results = measure(parts, args.messages, args.webhooks, args.seconds, args.sessions)
    if not args.no_write:
        write(results)
    try:
        print_table(results)
    except Exception:  # the figures are written already
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
