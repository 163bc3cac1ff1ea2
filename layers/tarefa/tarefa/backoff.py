"""Retry delays: seed 000's 60/120/300/600 s ladder, or an exponential from a chosen base.

Jitter spreads retries of jobs that failed together (a gateway outage) so they do not all come
back in the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

DEFAULT_LADDER: tuple[int, ...] = (60, 120, 300, 600)
MAX_DELAY_SECONDS = 43_200  # SQS caps a message's visibility timeout at 12 hours.
JITTER = 0.1


def scaled(seconds: float, speedup: float) -> int:
    """A delay divided by the local stack's --delay-speedup (1 everywhere else), never 0 s
    unless it was 0, so a demo can watch a 28-minute polling ladder in seconds."""
    if speedup == 1:
        return round(seconds)
    return 0 if seconds <= 0 else max(1, round(seconds / speedup))


def retry_delay(
    attempt: int,
    base_seconds: int | None = None,
    ladder: Sequence[int] = DEFAULT_LADDER,
    rand: Callable[[], float] = random.random,
) -> int:
    """Seconds to wait after failed attempt number `attempt` (1-based), with +-10% jitter.

    With a base, the delay is base * 2**(attempt-1); without, the ladder's step for the attempt
    (its last step repeats). Always within 0..MAX_DELAY_SECONDS.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    raw: float
    if base_seconds is not None:
        raw = base_seconds * 2.0 ** min(attempt - 1, 30)
    else:
        raw = ladder[min(attempt, len(ladder)) - 1]
    jittered = raw * (1 + JITTER * (2 * rand() - 1))
    return max(0, min(MAX_DELAY_SECONDS, round(jittered)))
