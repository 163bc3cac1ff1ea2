"""The small public functions tarefa.api gained for the guests routes: a refused per-key limit
answered as the route limits answer it."""

from __future__ import annotations

import json

from tarefa import api
from tarefa.ratelimit import Decision


def test_a_refused_limit_is_a_429_with_the_usual_headers() -> None:
    answer = api.limited(Decision(allowed=False, limit=100, remaining=0, reset_after=42))
    assert answer.status_code == 429
    assert json.loads(str(answer.body))["error"]["code"] == "RATE_LIMITED"
    assert answer.headers["Retry-After"] == "42" and answer.headers["X-RateLimit-Limit"] == "100"
    assert answer.headers["X-RateLimit-Remaining"] == "0" and answer.headers["X-RateLimit-Reset"] == "42"


def test_a_limiter_that_is_down_and_fails_closed_is_a_503() -> None:
    answer = api.limited(Decision(allowed=False, limit=5, remaining=0, reset_after=30, degraded=True))
    assert answer.status_code == 503
    assert json.loads(str(answer.body))["error"]["code"] == "RATE_LIMITER_UNAVAILABLE"
    assert answer.headers["Retry-After"] == "30"
