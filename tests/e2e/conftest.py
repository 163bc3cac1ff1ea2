"""Starts `tarefa local` as a subprocess on free ports and talks to it only as a user would."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from tarefa.local.process import StackProcess

BIN = Path(sys.executable).parent


class RunningStack(StackProcess):
    """The stack as a user meets it: HTTP with tokens, and SQS through boto3."""

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        status, _, answer = self.exchange(method, path, body, token, raw)
        return status, answer

    def exchange(
        self, method: str, path: str, body: Any = None, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """Status, headers (lower-case names) and JSON body."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                return response.status, headers, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            headers = {k.lower(): v for k, v in exc.headers.items()}
            return exc.code, headers, json.loads(exc.read() or b"null")

    def sqs(self) -> Any:
        return boto3.client("sqs", endpoint_url=self.state["awsEndpointUrl"], region_name="us-east-1")

    def mapping_states(self) -> dict[str, str]:
        """Each event source mapping's state as AWS Lambda reports it (Enabled, Disabled, ...),
        by UUID: one per queue the worker consumes."""
        client = boto3.client("lambda", endpoint_url=self.state["awsEndpointUrl"], region_name="us-east-1")
        mappings = client.list_event_source_mappings()["EventSourceMappings"]
        return {m["UUID"]: m["State"] for m in mappings}

    def visible_messages(self, queue: str) -> int:
        """Messages waiting in one of the template's queues, neither in flight nor delayed."""
        attributes = self.sqs().get_queue_attributes(
            QueueUrl=self.state["queues"][queue], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        """Poll a condition instead of sleeping through a guess of how long it takes."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"never {what} within {timeout} s")
            time.sleep(0.05)

    def wait_for_status(self, job_id: str, token: str, wanted: str, timeout: float = 30) -> list[str]:
        """Poll as a client would; returns every status seen on the way."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.request("GET", f"/jobs/{job_id}", token=token)
            if status == 200 and (not seen or seen[-1] != job["status"]):
                seen.append(job["status"])
            if seen and seen[-1] == wanted:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never became {wanted}; saw {seen}")


def start_stack(tmp: Path, *extra: str) -> RunningStack:
    return RunningStack(tmp, *extra)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("tarefa"), "--schedule-speedup", "60")
    yield running
    running.stop()


Received = list[tuple[dict[str, str], bytes]]


@contextmanager
def receiver(path: str, answers: Sequence[int] = ()) -> Iterator[tuple[str, Received]]:
    """A subscriber on loopback: its URL, and the (headers, body) of every POST it was sent. It
    answers them with `answers` in turn (e.g. (500, 500): fails twice), then 204."""
    received: Received = []
    planned = list(answers)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = planned.pop(0) if planned else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}", received
    finally:
        server.shutdown()
        server.server_close()
