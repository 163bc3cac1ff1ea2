"""EventBridge schedule expressions: rate() intervals and cron() minute matching (UTC).

`cron(minutes hours day-of-month month day-of-week year)` takes numbers and, for month and
day-of-week, names (JAN-DEC, SUN-SAT, any case), with `*`, lists (`,`), ranges (`-`) and steps
(`/`); one of day-of-month and day-of-week must be `?`. `L`, `W` and `#` are valid on AWS but
not run locally: they are refused with a ValueError, as is anything EventBridge would refuse,
when the expression is parsed, so a scheduler finds out at start-up rather than on some minute.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((.+)\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
NUMBER = re.compile(r"^\d+$")
UNSUPPORTED = re.compile(r"#|^\d*L$|^LW$|^L-\d+$|^\d+W$")  # valid on AWS, not run locally

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # EventBridge: 1 = Sunday


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i
    any_allowed: bool = False  # `?`


FIELDS = (
    _Field("minutes", 0, 59),
    _Field("hours", 0, 23),
    _Field("day-of-month", 1, 31, any_allowed=True),
    _Field("month", 1, 12, MONTHS),
    _Field("day-of-week", 1, 7, WEEKDAYS, any_allowed=True),
    _Field("year", 1970, 2199),
)


@dataclass(frozen=True)
class Cron:
    """A parsed cron(): the values each field fires on (None: any)."""

    expression: str
    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days: frozenset[int] | None
    months: frozenset[int] | None
    weekdays: frozenset[int] | None
    years: frozenset[int] | None

    def matches(self, moment: datetime) -> bool:
        """Whether the minute of `moment` (UTC) is one this fires on."""
        weekday = (moment.isoweekday() % 7) + 1  # EventBridge: 1 = Sunday
        return all(
            allowed is None or value in allowed
            for allowed, value in (
                (self.minutes, moment.minute),
                (self.hours, moment.hour),
                (self.days, moment.day),
                (self.months, moment.month),
                (self.weekdays, weekday),
                (self.years, moment.year),
            )
        )


def rate_seconds(expression: str) -> int | None:
    """The interval of a rate() expression; None when it is not one."""
    found = RATE.match(expression.strip())
    if not found:
        return None
    seconds = int(found.group(1)) * UNIT_SECONDS[found.group(2).rstrip("s")]
    if seconds <= 0:
        raise ValueError(f"{expression}: a rate must be at least 1")
    return seconds


def parse_cron(expression: str) -> Cron:
    """Parse cron(...) or raise a ValueError that names the expression and what is wrong."""
    found = CRON.match(expression.strip())
    if not found:
        raise ValueError(f"not a schedule expression: {expression}")
    specs = found.group(1).split()
    if len(specs) != len(FIELDS):
        raise ValueError(
            f"{expression}: cron needs 6 fields (minutes hours day-of-month month day-of-week year),"
            f" got {len(specs)}"
        )
    dom, dow = specs[2], specs[4]
    if (dom == "?") == (dow == "?"):
        raise ValueError(f"{expression}: exactly one of day-of-month and day-of-week must be ?")
    values = [_values(expression, spec, field) for spec, field in zip(specs, FIELDS, strict=True)]
    return Cron(expression, *values)


def parse_schedule(expression: str) -> int | Cron:
    """A rate()'s seconds or a parsed cron(); a ValueError for anything else."""
    seconds = rate_seconds(expression)
    return seconds if seconds is not None else parse_cron(expression)


def cron_matches(expression: str, moment: datetime) -> bool:
    """Whether the minute of `moment` (UTC) is one the cron(m h dom mon dow year) fires on."""
    return parse_cron(expression).matches(moment)


def _values(expression: str, spec: str, field: _Field) -> frozenset[int] | None:
    def bad(why: str) -> ValueError:
        return ValueError(f"{expression}: {field.name} field {spec!r}: {why}")

    if spec == "?":
        if not field.any_allowed:
            raise bad("? is only allowed in day-of-month or day-of-week")
        return None
    if spec == "*":
        return None
    chosen: set[int] = set()
    for part in spec.split(","):
        if UNSUPPORTED.search(part.upper()) and field.any_allowed:
            raise bad(f"{part!r} (L, W and #) is not supported by the local scheduler")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not NUMBER.match(step_text):
                raise bad(f"the step in {part!r} must be a whole number")
            step = int(step_text)
            if step < 1:
                raise bad(f"the step in {part!r} must be at least 1")
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, field, bad), _value(last, field, bad)
            if low > high:
                raise bad(f"the range {base!r} runs backwards")
        else:
            low = _value(base, field, bad)
            high = field.high if slash else low
        chosen.update(range(low, high + 1, step))
    return frozenset(chosen)


def _value(token: str, field: _Field, bad: Callable[[str], ValueError]) -> int:
    upper = token.upper()
    if upper in field.names:
        return field.low + field.names.index(upper)
    if not NUMBER.match(token):
        if not token:
            raise bad("a value is missing")
        raise bad(
            f"{token!r} is not a number" + (f" or one of {'/'.join(field.names)}" if field.names else "")
        )
    value = int(token)
    if not field.low <= value <= field.high:
        raise bad(f"{value} is outside {field.low}-{field.high}")
    return value
