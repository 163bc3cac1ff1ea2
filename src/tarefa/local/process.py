"""`tarefa local` as a child process on free ports, as the end-to-end tests and the benchmark
run it: start, read its output, mint tokens, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TAREFA = Path(sys.executable).parent / "tarefa"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class StackProcess:
    def __init__(self, state_dir: Path, *extra_args: str, ready_timeout: float = 60) -> None:
        self.state_dir = state_dir
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        # Its own emulator and, unless --redis-url says otherwise, its own DynamoDB cache.
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "REDIS_URL"}
        self.process = subprocess.Popen(  # noqa: S603 - our own console script
            [
                str(TAREFA),
                "--state-dir",
                str(state_dir),
                "local",
                "--api-port",
                str(self.api_port),
                "--aws-port",
                str(free_port()),
                *extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        self.output: list[str] = []
        self._tokens: dict[tuple[str, ...], str] = {}
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for_line("Ready in", timeout=ready_timeout)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(line.count(text) for line in list(self.output))

    def wait_for_line(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r}; last output:\n" + "\n".join(self.output[-40:]))

    @property
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "local.json").read_text())
        return data

    def token(self, user: str, *extra_args: str) -> str:
        """`tarefa token` as a user runs it. An hour's token is minted once per user and flags
        and then reused (each run is a Python start-up); one with a --ttl of its own is fresh."""
        key = (user, *extra_args)
        if key in self._tokens:
            return self._tokens[key]
        token = subprocess.run(  # noqa: S603 - our own console script
            [str(TAREFA), "--state-dir", str(self.state_dir), "token", "--user", user, *extra_args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if "--ttl" not in extra_args:
            self._tokens[key] = token
        return token

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C, and its exit code; one that has not stopped within `timeout` is killed (no
        stack outlives its test) and the timeout raised."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
