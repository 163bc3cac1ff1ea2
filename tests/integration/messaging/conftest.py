"""The messaging workload's integration fixtures: the real handlers on moto (in process), the
WhatsApp sandbox on loopback speaking real HTTP to the real adapters, and a receiver that
collects the sandbox's webhooks so a test hands them to the API when it chooses."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from messaging import jobs as messaging_jobs
from messaging.local import LocalMessaging, start_sandbox
from messaging.provider.sandbox import WhatsAppSandbox
from moto import mock_aws

from tarefa import wiring
from tarefa.local.app import HttpResult, LocalApp

from ..conftest import ALICE, Clock, let_sqs_timers_pass

SECRETS_PREFIX = "tarefa/dev/"
HANG_SECONDS = 1.0  # the sandbox's 0408 hangs this long...
PROVIDER_TIMEOUT_SECONDS = "0.3"  # ...past the adapter's read timeout
PHONE_NUMBER_ID = "106540352242922"
ANA = "+5511987654321"


@dataclass
class Notification:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    received: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def take(self) -> list[Notification]:
        with self.lock:
            taken, self.received[:] = list(self.received), []
        return taken


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            note = Notification(
                self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
            )
            with box.lock:
                box.received.append(note)
            self.send_response(200)
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


@dataclass
class Messaging:
    app: LocalApp
    sandbox: WhatsAppSandbox
    receiver: Receiver
    local: LocalMessaging
    clock: Clock

    def webhooks(self, wait_for: int = 0, timeout: float = 5.0) -> list[HttpResult]:
        """Hand the sandbox's webhooks so far to the API, as API Gateway would (waiting for at
        least `wait_for` of them)."""
        deadline = time.monotonic() + timeout
        while len(self.receiver.received) < wait_for and time.monotonic() < deadline:
            time.sleep(0.02)
        answers = []
        for note in self.receiver.take():
            headers = {k: v for k, v in note.headers.items() if k.startswith("x-") or k == "content-type"}
            answers.append(
                self.app.api("POST", note.path, note.body, headers=headers, source_ip="203.0.113.9")
            )
        return answers

    def run(self, seconds: float = 0) -> None:
        """Let `seconds` pass (the clock and SQS's timers), then run what is due."""
        if seconds:
            self.clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()

    def settle(self, callbacks: int, timeout: float = 5.0) -> None:
        """Run the jobs; hand over webhooks and run their jobs until `callbacks` of them came
        (or `timeout` s passed), then once more for what those jobs caused."""
        self.run()
        handed = 0
        deadline = time.monotonic() + timeout
        while handed < callbacks and time.monotonic() < deadline:
            handed += len(self.webhooks(wait_for=1, timeout=max(0.0, deadline - time.monotonic())))
            self.run()
        self.webhooks()
        self.run()

    def open_session(
        self, claims: dict[str, Any] = ALICE, number_id: str = PHONE_NUMBER_ID, **fields: Any
    ) -> dict[str, Any]:
        answer = self.app.api(
            "POST", "/sessions", {"name": "Loja", "phoneNumberId": number_id, **fields}, claims
        )
        assert answer.status == 202, answer.body
        self.run()
        session = self.app.api("GET", f"/sessions/{answer.body['session']['sessionId']}", claims=claims)
        assert session.status == 200, session.body
        found: dict[str, Any] = session.body["session"]
        return found

    def send(
        self, session_id: str, to: str = ANA, claims: dict[str, Any] = ALICE, **fields: Any
    ) -> HttpResult:
        body = {"to": to, "text": "Olá! Seu pedido saiu para entrega.", **fields}
        return self.app.api("POST", f"/sessions/{session_id}/messages", body, claims)

    def message(self, message_id: str, claims: dict[str, Any] = ALICE) -> dict[str, Any]:
        answer = self.app.api("GET", f"/messages/{message_id}", claims=claims)
        assert answer.status == 200, answer.body
        found: dict[str, Any] = answer.body["message"]
        return found

    def job(self, job_id: str, claims: dict[str, Any] = ALICE) -> dict[str, Any]:
        answer = self.app.api("GET", f"/jobs/{job_id}", claims=claims)
        assert answer.status == 200, answer.body
        found: dict[str, Any] = answer.body
        return found


@pytest.fixture
def messaging(receiver: Receiver, request: pytest.FixtureRequest) -> Iterator[Messaging]:
    """The stack with the sandbox; `parametrize("messaging", [{...}], indirect=True)` overrides
    template parameters (WhatsAppProvider=evolution)."""
    from aws_lambda_powertools.utilities import parameters

    overrides: dict[str, str] = getattr(request, "param", {})
    local = start_sandbox(
        receiver.url, port=0, delivered_after=0.05, read_after=0.05, hang_seconds=HANG_SECONDS
    )
    local.sandbox.failed_after = 0.05
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    messaging_jobs.service.cache_clear()
    try:
        with mock_aws():
            secrets = boto3.client("secretsmanager")
            for name, value in local.secrets.items():
                secrets.create_secret(Name=SECRETS_PREFIX + name, SecretString=value)
            app = LocalApp(
                boto3.client("sqs"),
                boto3.client("dynamodb"),
                parameters={**local.parameters, "MessagingPublicUrl": receiver.url, **overrides},
                environment={messaging_jobs.TIMEOUT_VARIABLE: PROVIDER_TIMEOUT_SECONDS},
            )
            clock = Clock()
            wiring.container().clock = clock
            messaging_jobs.service().now = clock
            yield Messaging(app, local.sandbox, receiver, local, clock)
    finally:
        local.stop()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        messaging_jobs.service.cache_clear()
        wiring.reset()
