"""Sliding-window rate limits for API routes and job types, over Redis or DynamoDB.

A limit is `N/SECONDS`: at most N hits in any window of SECONDS ending now. The API limits per
route and identity (the authenticated user, else the source IP API Gateway saw); a job type may
limit per key of its payload (seed 003: 80 messages a minute per WhatsApp session), and the
worker delays a limited job instead of failing it.

Leases (the API's route limits, issue 14): on the DynamoDB backend every counted hit is a
write, as dear as a job's own status write. A warm instance that keeps hitting one key counts
several hits in one write and spends them locally for a tenth of the window: the lease grows
from 1 to LEASE_MAX (or a twentieth of the limit, if smaller) while its hits come fast enough
to use it, and shrinks when they do not. The price is exactness: per warm instance, up to a
lease's hits may be refused early (counted but unused) or admitted a tenth of a window late.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
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
LEASE_MAX = 16  # hits one write may count ahead for one instance
LEASE_SHARE = 20  # ...and never more than limit / LEASE_SHARE
LEASE_LIFE = 0.1  # of the window: unused hits of a lease expire after this
LEASES_KEPT = 1024  # keys an instance keeps leases for (least recently used go first)


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


@dataclass
class _Lease:
    """Hits counted ahead in the backend, spent locally until `until`."""

    left: int
    until: float
    size: int  # the next lease's size
    limit: int
    remaining: int  # the window's allowance left after this lease was counted
    reset_after: int
    taken_at: float


class RateLimiter:
    def __init__(
        self,
        backend: CacheBackend,
        prefix: str = "tarefa:",
        clock: Callable[[], float] = time.time,
        outage_retry_after: int = 30,
        leases: bool = False,
    ) -> None:
        self.backend = backend
        self.prefix = prefix
        self.clock = clock
        self.outage_retry_after = outage_retry_after
        # On for the DynamoDB backend (tarefa.wiring): a Redis hit costs no request charge.
        self.leases_on = leases
        self._leases: OrderedDict[str, _Lease] = OrderedDict()
        self._lock = threading.Lock()

    def hit(
        self,
        scope: str,
        identity: str,
        rate: Rate,
        fail_open: bool = True,
        cost: int = 1,
        lease: bool = False,
    ) -> Decision:
        """Count `cost` hits for `identity` in `scope` unless its window would overflow.
        `lease`: the caller accepts a leased count (the API's route limits; see the module)."""
        key = f"{self.prefix}rl:{scope}:{identity}"
        if not (lease and self.leases_on) or rate.limit < 2 * LEASE_SHARE:
            return self._count(key, rate, fail_open, cost)
        now = self.clock()
        with self._lock:
            held = self._leases.get(key)
            if held is not None and held.until > now and held.left >= cost and held.limit == rate.limit:
                held.left -= cost
                self._leases.move_to_end(key)
                remaining = max(0, held.remaining + held.left)
                return Decision(
                    True, rate.limit, remaining, max(0, math.ceil(held.reset_after - (now - held.taken_at)))
                )
        size = max(cost, self._next_size(held, now, rate))
        decision = self._count(key, rate, fail_open, size)
        if decision.allowed and not decision.degraded:
            with self._lock:
                self._leases[key] = _Lease(
                    left=size - cost,
                    until=now + rate.window_seconds * LEASE_LIFE,
                    size=size,
                    limit=rate.limit,
                    remaining=decision.remaining,
                    reset_after=decision.reset_after,
                    taken_at=now,
                )
                self._leases.move_to_end(key)
                while len(self._leases) > LEASES_KEPT:
                    self._leases.popitem(last=False)
            return Decision(True, rate.limit, decision.remaining + size - cost, decision.reset_after)
        with self._lock:  # near the limit (or the backend is down): leases start small again
            self._leases.pop(key, None)
        if decision.degraded or size == cost:
            return decision
        return self._count(key, rate, fail_open, cost)  # the lease did not fit: exact hits

    @staticmethod
    def _next_size(held: _Lease | None, now: float, rate: Rate) -> int:
        """Double while leases are used up before they expire, halve when they expire unused."""
        most = max(1, min(LEASE_MAX, rate.limit // LEASE_SHARE))
        if held is None or held.limit != rate.limit:
            return 1
        if held.until > now or held.left == 0:  # used up (in time, or just now)
            return min(most, held.size * 2)
        return max(1, held.size // 2)

    def _count(self, key: str, rate: Rate, fail_open: bool, cost: int) -> Decision:
        now = self.clock()
        try:
            window = self.backend.hit_window(key, rate.limit, rate.window_seconds, now, cost)
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
