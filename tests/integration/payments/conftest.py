"""The payments workload's integration fixtures: the real handlers on moto (in process), the
Mercado Pago sandbox on loopback speaking real HTTP to the real adapter, and a receiver that
collects the sandbox's signed webhooks so a test hands them to the API when it chooses."""

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
from payments import jobs as payment_jobs
from payments.local import LocalPayments, start_sandbox
from payments.provider.sandbox import MercadoPagoSandbox

from tarefa import wiring
from tarefa.local.app import HttpResult, LocalApp

from ..conftest import Clock, let_sqs_timers_pass

SECRETS_PREFIX = "tarefa/dev/"  # the template's TAREFA_SECRETS_PREFIX for the default stage
HANG_SECONDS = 1.2  # the sandbox's TIMEOUT card hangs this long...
GATEWAY_TIMEOUT_SECONDS = "0.4"  # ...past the adapter's read timeout


@dataclass
class Notification:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Stands where the API's webhook route would be: records what the sandbox sends."""

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
class Payments:
    app: LocalApp
    sandbox: MercadoPagoSandbox
    receiver: Receiver
    local: LocalPayments

    def deliver_webhooks(self, wait_for: int = 0, timeout: float = 5.0) -> list[HttpResult]:
        """Hand the sandbox's notifications so far to the API's webhook route, as API Gateway
        would (waiting for at least `wait_for` of them)."""
        import time

        deadline = time.monotonic() + timeout
        while len(self.receiver.received) < wait_for and time.monotonic() < deadline:
            time.sleep(0.02)
        answers = []
        for note in self.receiver.take():
            path = note.path.replace("/webhooks/payments", "/webhooks/payments", 1)
            headers = {k: v for k, v in note.headers.items() if k.startswith("x-") or k == "content-type"}
            answers.append(self.app.api("POST", path, note.body, headers=headers, source_ip="203.0.113.7"))
        return answers

    def run(self, clock: Clock | None = None, seconds: float = 0) -> None:
        """Let `seconds` pass (the clock and SQS's timers), then run what is due."""
        if clock is not None and seconds:
            clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()


def create_secret(name: str, value: str) -> None:
    boto3.client("secretsmanager").create_secret(Name=SECRETS_PREFIX + name, SecretString=value)


@pytest.fixture
def payments(receiver: Receiver) -> Iterator[Payments]:
    from aws_lambda_powertools.utilities import parameters

    local = start_sandbox(receiver.url, port=0, hang_seconds=HANG_SECONDS, contingency_seconds=0.2)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    payment_jobs.service.cache_clear()
    try:
        with mock_aws():
            for name, value in local.secrets.items():
                create_secret(name, value)
            app = LocalApp(
                boto3.client("sqs"),
                boto3.client("dynamodb"),
                parameters=local.parameters,
                environment={payment_jobs.TIMEOUT_VARIABLE: GATEWAY_TIMEOUT_SECONDS},
            )
            yield Payments(app, local.sandbox, receiver, local)
    finally:
        local.stop()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        payment_jobs.service.cache_clear()
        wiring.reset()


@pytest.fixture
def clock(payments: Payments) -> Clock:
    clock = Clock()
    wiring.container().clock = clock
    payment_jobs.service().now = clock
    return clock


def reference(body: dict[str, Any], generation: int = 0) -> str:
    return f"{body['paymentId']}/{generation}"


def loads(text: str | bytes) -> Any:
    return json.loads(text)
