"""Failed logins per phone: after `limit` failures within `window` seconds (default 5 a minute,
GUESTS_LOGIN_FAILURE_LIMIT), the phone's next login is refused at submit (429 with Retry-After)
and a job already queued for it ends TOO_MANY_ATTEMPTS without checking its password.

The failures are counted by the jobs (they check passwords) and read by the routes, so the
count must be readable without counting: each failure takes one of `limit` slots on the
platform's cache backend for `window` seconds, with the backend's atomic add-if-absent (two
failures at once never take one slot), and expires by itself; the check reads the slots until
it finds a free one (one read for a phone without recent failures). The keys hold the phone's
keyed hash, never the number. An outage of the backend lets logins through (the bcrypt cost
still bounds guessing), as the platform's limits fail open.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from tarefa import Rate

if TYPE_CHECKING:
    from tarefa.ratelimit import RateLimiter

logger = Logger(child=True)

RATE_VARIABLE = "GUESTS_LOGIN_FAILURE_LIMIT"
DEFAULT_RATE = "5/60"


def configured_rate() -> Rate | None:
    text = (os.environ.get(RATE_VARIABLE) or DEFAULT_RATE).strip()
    return None if text.lower() == "off" else Rate.parse(text)


class FailedLogins:
    def __init__(
        self, limiter: RateLimiter | None, rate: Rate | None = None, scope: str = "guests-login"
    ) -> None:
        self.limiter = limiter
        self.rate = rate
        self.scope = scope

    @classmethod
    def configured(cls, limiter: RateLimiter | None) -> FailedLogins:
        return cls(limiter, configured_rate())

    def _key(self, phone_key: str, slot: int) -> str:
        assert self.limiter is not None
        return f"{self.limiter.prefix}fails:{self.scope}:{phone_key}:{slot}"

    def record(self, phone_key: str) -> None:
        """One more failure for the phone (nothing when its slots are all taken: it is blocked)."""
        if self.limiter is None or self.rate is None:
            return
        from tarefa.breaker import BackendUnavailableError

        now = self.limiter.clock()
        try:
            for slot in range(self.rate.limit):
                if self.limiter.backend.add(self._key(phone_key, slot), repr(now), self.rate.window_seconds):
                    return
        except BackendUnavailableError:
            logger.warning("a failed login could not be counted: the cache backend is down")

    def retry_after(self, phone_key: str) -> int:
        """0 while the phone may try again, else the seconds until its oldest failure expires."""
        if self.limiter is None or self.rate is None:
            return 0
        from tarefa.breaker import BackendUnavailableError

        now = self.limiter.clock()
        oldest: float | None = None
        try:
            for slot in range(self.rate.limit):
                raw = self.limiter.backend.get(self._key(phone_key, slot))
                try:
                    at = float(raw) if raw is not None else None
                except ValueError:
                    at = None
                if at is None or at + self.rate.window_seconds <= now:
                    return 0
                oldest = at if oldest is None else min(oldest, at)
        except BackendUnavailableError:
            logger.warning("failed logins could not be read: the cache backend is down")
            return 0
        assert oldest is not None
        return max(1, math.ceil(oldest + self.rate.window_seconds - now))
