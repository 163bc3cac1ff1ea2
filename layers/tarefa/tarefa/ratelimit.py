"""Sliding-window rate limits for API routes and job types, over Redis or DynamoDB.

A limit is `N/SECONDS`: at most N hits in any window of SECONDS ending now. The API limits per
route and identity (the authenticated user, else the source IP API Gateway saw); a job type may
limit per key of its payload (seed 003: 80 messages a minute per WhatsApp session), and the
worker delays a limited job instead of failing it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tarefa.breaker import BackendUnavailableError
from tarefa.ports import CacheBackend

metrics = Metrics()

OFF = ("", "off", "none", "0")


@dataclass(frozen=True)
class Rate:
    limit: int
    window_seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`600/60` → 600 hits per 60 seconds."""
        count, slash, seconds = str(text).strip().partition("/")
        try:
            rate = cls(int(count), int(seconds))
        except ValueError:
            rate = None
        if not slash or rate is None or rate.limit < 1 or rate.window_seconds < 1:
            raise ValueError(f"a rate is N/SECONDS with both at least 1, like 600/60; got {text!r}")
        return rate

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_seconds}"


def _rate(value: Any) -> Any:
    return Rate.parse(value) if isinstance(value, str) else value


class RouteLimit(BaseModel):
    """One entry of TAREFA_RATE_LIMITS, e.g. {"GET /jobs": {"rate": "1200/60", "failOpen": false}}."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", arbitrary_types_allowed=True)

    rate: Annotated[Rate, BeforeValidator(_rate)]
    fail_open: bool = Field(True, alias="failOpen")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the oldest counted hit leaves the window
    degraded: bool = False  # the backend was down; the route's policy decided

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_after)

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    def __init__(
        self,
        backend: CacheBackend,
        prefix: str = "tarefa:",
        clock: Callable[[], float] = time.time,
        outage_retry_after: int = 30,
    ) -> None:
        self.backend = backend
        self.prefix = prefix
        self.clock = clock
        self.outage_retry_after = outage_retry_after

    def hit(self, scope: str, identity: str, rate: Rate, fail_open: bool = True, cost: int = 1) -> Decision:
        """Count `cost` hits for `identity` in `scope` (a batch of jobs counts as its jobs)
        unless they do not all fit in its window: then none is counted."""
        now = self.clock()
        try:
            window = self.backend.hit_window(
                f"{self.prefix}rl:{scope}:{identity}", rate.limit, rate.window_seconds, now, cost
            )
        except BackendUnavailableError:
            metrics.add_metric("RateLimitDegraded", MetricUnit.Count, 1)
            if fail_open:
                return Decision(True, rate.limit, rate.limit, 0, degraded=True)
            return Decision(False, rate.limit, 0, self.outage_retry_after, degraded=True)
        oldest = window.oldest_at if window.oldest_at is not None else now
        reset_after = max(0, math.ceil(oldest + rate.window_seconds - now))
        if not window.allowed:
            metrics.add_metric("RateLimited", MetricUnit.Count, 1)
        return Decision(window.allowed, rate.limit, max(0, rate.limit - window.count), reset_after)
