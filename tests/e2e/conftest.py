"""Starts `tarefa local` as a subprocess on free ports and talks to it only as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RunningStack:
    def __init__(self, state_dir: Path, process: subprocess.Popen[str], api_port: int) -> None:
        self.state_dir = state_dir
        self.process = process
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def wait_for_line(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line with {text!r}; output:\n" + "\n".join(self.output[-40:]))

    @property
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "local.json").read_text())
        return data

    def token(self, user: str, *extra: str) -> str:
        return subprocess.run(
            [str(BIN / "tarefa"), "--state-dir", str(self.state_dir), "token", "--user", user, *extra],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

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


def start_stack(tmp: Path, *extra: str) -> tuple[RunningStack, int, int]:
    api_port, aws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [
            str(BIN / "tarefa"),
            "--state-dir",
            str(tmp),
            "local",
            "--api-port",
            str(api_port),
            "--aws-port",
            str(aws_port),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    stack = RunningStack(tmp, process, api_port)
    stack.wait_for_line("Ready in", timeout=60)
    return stack, api_port, aws_port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running, _, _ = start_stack(tmp_path_factory.mktemp("tarefa"), "--schedule-speedup", "60")
    yield running
    running.process.send_signal(signal.SIGINT)
    running.process.wait(timeout=30)
