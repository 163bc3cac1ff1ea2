"""Starts `tarefa local` as a subprocess on free ports and talks to it only as a user would."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never became {wanted}; saw {seen}")


def start_stack(tmp: Path, *extra: str) -> RunningStack:
    return RunningStack(tmp, *extra)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("tarefa"), "--schedule-speedup", "60")
    yield running
    running.stop()
