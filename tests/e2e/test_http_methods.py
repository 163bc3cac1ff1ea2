"""End to end: every HTTP method reaches the routes, and one with no route is API Gateway's 404."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from .conftest import RunningStack


def _send(stack: RunningStack, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(stack.api_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("TRACE", "/health"),
        ("OPTIONS", "/health"),
        ("OPTIONS", "/jobs"),
        ("PATCH", "/jobs"),
        ("PUT", "/health"),
        ("DELETE", "/jobs"),
        ("TRACE", "/no/such/route"),
    ],
)
def test_a_method_with_no_route_is_a_json_404(stack: RunningStack, method: str, path: str) -> None:
    status, headers, body = _send(stack, method, path)
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"message": "Not Found"}


def test_head_with_no_route_is_a_404_without_a_body(stack: RunningStack) -> None:
    status, headers, body = _send(stack, "HEAD", "/health")
    assert (status, body) == (404, b"")
    assert headers["content-type"].startswith("application/json")


def test_the_routed_methods_still_answer(stack: RunningStack) -> None:
    status, _, body = _send(stack, "GET", "/health")
    assert status == 200
    assert json.loads(body)["status"]
