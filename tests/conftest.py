"""Shared test set-up: no test ever talks to real AWS."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for the tests: $REDIS_URL (default redis://127.0.0.1:6379/0) when it answers,
    else a throw-away `redis-server` on a free port. Tests keep to their own key prefix."""
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if _redis_answers(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            f"No Redis answers at {url} and there is no redis-server to start: "
            "install one (e.g. apt-get install redis-server) or set REDIS_URL."
        )
    from tarefa.local.process import free_port

    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(url):
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.05)
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
