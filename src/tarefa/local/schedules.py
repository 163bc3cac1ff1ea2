"""EventBridge schedule expressions: rate() intervals and cron() minute matching (UTC)."""

from __future__ import annotations

import re
from datetime import datetime

RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((.+)\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}


def rate_seconds(expression: str) -> int | None:
    found = RATE.match(expression.strip())
    if not found:
        return None
    return int(found.group(1)) * UNIT_SECONDS[found.group(2).rstrip("s")]


def cron_matches(expression: str, moment: datetime) -> bool:
    """Whether the minute of `moment` (UTC) is one the cron(m h dom mon dow year) fires on."""
    found = CRON.match(expression.strip())
    if not found:
        raise ValueError(f"not a schedule expression: {expression}")
    fields = found.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"cron needs 6 fields: {expression}")
    minute, hour, dom, month, dow, year = fields
    weekday = (moment.isoweekday() % 7) + 1  # EventBridge: 1 = Sunday
    return (
        _field(minute, moment.minute)
        and _field(hour, moment.hour)
        and _field(dom, moment.day)
        and _field(month, moment.month)
        and _field(dow, weekday)
        and _field(year, moment.year)
    )


def _field(spec: str, value: int) -> bool:
    if spec in ("*", "?"):
        return True
    for part in spec.split(","):
        base, _, step = part.partition("/")
        if base in ("*", "?"):
            low, high = 0, 10_000
        elif "-" in base:
            a, b = base.split("-", 1)
            low, high = int(a), int(b)
        else:
            low = int(base)
            high = low if not step else 10_000
        if low <= value <= high and (value - low) % int(step or 1) == 0:
            return True
    return False
