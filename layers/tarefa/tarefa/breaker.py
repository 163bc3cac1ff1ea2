"""A circuit breaker around the cache backend, so an outage costs one timeout, not one per call.

Closed: calls go through. After `failure_threshold` failures in a row it opens: calls fail at
once with BackendUnavailableError for `reset_after` seconds. Then one trial call goes through
(half-open): success closes it, failure opens it again. The outage is logged once when the
circuit opens and once when it closes, and every failure is counted as a metric.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tarefa.ports import CacheBackend, WindowCount

logger = Logger(child=True)
metrics = Metrics()

T = TypeVar("T")


class BackendUnavailableError(Exception):
    """The cache backend failed, or its circuit is open; callers fall back."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failure_threshold: int = 3,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self.clock() - self._opened_at >= self.reset_after else "open"

    def call(self, operation: Callable[[], T]) -> T:
        if not self._admit():
            raise BackendUnavailableError(f"{self.name} circuit is open")
        try:
            result = operation()
        except Exception as exc:
            self._failed(exc)
            raise BackendUnavailableError(f"{self.name}: {type(exc).__name__}") from exc
        self._succeeded()
        return result

    def _admit(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self.clock() - self._opened_at < self.reset_after or self._trial_running:
                return False
            self._trial_running = True  # half-open: exactly one trial call
            return True

    def _failed(self, exc: Exception) -> None:
        metrics.add_metric("CacheErrors", MetricUnit.Count, 1)
        with self._lock:
            self._failures += 1
            was_open = self._opened_at is not None
            if was_open or self._failures >= self.failure_threshold:
                self._opened_at = self.clock()
            self._trial_running = False
            opened_now = not was_open and self._opened_at is not None
        if opened_now:
            logger.warning(
                "cache backend unavailable; falling back to the source",
                extra={
                    "backend": self.name,
                    "error": type(exc).__name__,
                    "retry_in_seconds": self.reset_after,
                },
            )

    def _succeeded(self) -> None:
        with self._lock:
            recovered = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._trial_running = False
        if recovered:
            logger.info("cache backend recovered", extra={"backend": self.name})


class GuardedBackend:
    """A CacheBackend whose every call goes through a breaker; failures become
    BackendUnavailableError, which the cache, limiter and sessions handle."""

    def __init__(self, inner: CacheBackend, breaker: CircuitBreaker | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.breaker = breaker or CircuitBreaker(inner.name)

    def get(self, key: str) -> str | None:
        return self.breaker.call(lambda: self.inner.get(key))

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        self.breaker.call(lambda: self.inner.set(key, value, ttl_seconds))

    def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        return self.breaker.call(lambda: self.inner.add(key, value, ttl_seconds))

    def release(self, key: str, value: str) -> None:
        self.breaker.call(lambda: self.inner.release(key, value))

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.breaker.call(lambda: self.inner.delete(keys))

    def delete_prefix(self, prefix: str) -> int:
        return self.breaker.call(lambda: self.inner.delete_prefix(prefix))

    def hit_window(
        self, key: str, limit: int, window_seconds: float, now: float, cost: int = 1
    ) -> WindowCount:
        return self.breaker.call(lambda: self.inner.hit_window(key, limit, window_seconds, now, cost))

    def ping(self) -> None:
        self.breaker.call(self.inner.ping)
