"""EventBridge Scheduler's schedule expressions, parsed strictly, and when they fire next.

`rate(value unit)`: a positive whole number of minutes, hours or days (`rate(1 minute)`,
`rate(5 minutes)`; the singular only for 1). Scheduler fires a rate schedule at its start and
every interval after it; a day is 24 hours whatever daylight saving time does.

`cron(minutes hours day-of-month month day-of-week year)`, evaluated in the schedule's IANA time
zone: numbers, `*`, lists (`,`), ranges (`-`), steps (`/`), month names JAN-DEC and day names
SUN-SAT (1 = Sunday), exactly one of day-of-month and day-of-week `?`, and the special forms
Scheduler documents: `L` (last day of the month), `L-n` (n days before it), `nW` (the weekday
nearest day n, within the month), `LW` (the last weekday), `nL` in day-of-week (the last such
weekday of the month) and `n#k` (the k-th such weekday). The special forms stand alone in their
field. A local time that daylight saving time skips does not fire; one it repeats fires once
(at its first occurrence), as Scheduler does.

Anything else is a ScheduleExpressionError naming what is wrong (the API answers it 422).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # Scheduler: 1 = Sunday
YEARS = (1970, 2199)
RATE = re.compile(r"^rate\((\d{1,9}) (minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((.*)\)$")
NUMBER = re.compile(r"^\d{1,4}$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
MAX_RATE_SECONDS = 10 * 365 * 86_400


class ScheduleExpressionError(ValueError):
    """The expression or time zone is not one Scheduler (or this calculator) accepts."""


@dataclass(frozen=True)
class Rate:
    expression: str
    seconds: int

    def next_after(self, moment: datetime, anchor: datetime) -> datetime:
        """The first firing strictly after `moment` of a schedule that started at `anchor`."""
        if moment < anchor:
            return anchor
        periods = int((moment - anchor).total_seconds() // self.seconds) + 1
        return anchor + timedelta(seconds=periods * self.seconds)

    def last_at_or_before(self, moment: datetime, anchor: datetime) -> datetime | None:
        if moment < anchor:
            return None
        periods = int((moment - anchor).total_seconds() // self.seconds)
        return anchor + timedelta(seconds=periods * self.seconds)


@dataclass(frozen=True)
class DayOfMonth:
    """`*` (values None), a set of days, or one special form."""

    values: frozenset[int] | None = None
    last_offset: int | None = None  # L (0) or L-n (n)
    nearest_weekday: int | None = None  # nW
    last_weekday: bool = False  # LW

    def matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if self.last_offset is not None:
            return day.day == last - self.last_offset
        if self.nearest_weekday is not None:
            return day.day == _nearest_weekday(day.year, day.month, min(self.nearest_weekday, last))
        if self.last_weekday:
            return day.day == _nearest_weekday(day.year, day.month, last)
        return self.values is None or day.day in self.values


@dataclass(frozen=True)
class DayOfWeek:
    values: frozenset[int] | None = None  # 1 = Sunday
    last_of_month: int | None = None  # nL
    nth: tuple[int, int] | None = None  # n#k: (weekday, k)

    def matches(self, day: date) -> bool:
        weekday = day.isoweekday() % 7 + 1
        if self.last_of_month is not None:
            last = calendar.monthrange(day.year, day.month)[1]
            return weekday == self.last_of_month and day.day + 7 > last
        if self.nth is not None:
            return weekday == self.nth[0] and (day.day - 1) // 7 + 1 == self.nth[1]
        return self.values is None or weekday in self.values


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day_of_month: DayOfMonth | None  # None: `?`
    months: frozenset[int]
    day_of_week: DayOfWeek | None  # None: `?`
    years: frozenset[int]

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months or day.year not in self.years:
            return False
        if self.day_of_month is not None:
            return self.day_of_month.matches(day)
        assert self.day_of_week is not None
        return self.day_of_week.matches(day)

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The first firing strictly after `moment` (aware), in UTC; None when there is none
        before the end of Scheduler's years."""
        local = moment.astimezone(zone)
        day = local.date()
        while day.year <= YEARS[1]:
            if day.year not in self.years:
                later = [y for y in self.years if y > day.year]
                if not later:
                    return None
                day = date(min(later), 1, 1)
                continue
            if self.day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        fire = _instant(day, hour, minute, zone)
                        if fire is not None and fire > moment:
                            return fire.astimezone(UTC)
            day += timedelta(days=1)
        return None

    def last_at_or_before(self, moment: datetime, zone: ZoneInfo, not_before: datetime) -> datetime | None:
        """The latest firing at or before `moment` and not before `not_before`, in UTC."""
        local = moment.astimezone(zone)
        day = local.date()
        floor = not_before.astimezone(zone).date()
        while day >= floor:
            if self.day_matches(day):
                for hour in reversed(self.hours):
                    for minute in reversed(self.minutes):
                        fire = _instant(day, hour, minute, zone)
                        if fire is not None and not_before <= fire <= moment:
                            return fire.astimezone(UTC)
            day -= timedelta(days=1)
        return None


Expression = Rate | Cron


def parse(expression: str) -> Expression:
    """A rate() or cron() expression, or ScheduleExpressionError."""
    if not isinstance(expression, str) or expression != expression.strip():
        raise ScheduleExpressionError("a schedule expression has no leading or trailing spaces")
    if expression.startswith("rate("):
        return parse_rate(expression)
    if expression.startswith("cron("):
        return parse_cron(expression)
    raise ScheduleExpressionError(
        f"{expression!r} is neither rate(value unit) nor cron(minutes hours day-of-month month "
        "day-of-week year)"
    )


def parse_rate(expression: str) -> Rate:
    found = RATE.match(expression)
    if not found:
        raise ScheduleExpressionError(
            f"{expression!r}: a rate is rate(value unit) with a whole number and minute(s), "
            "hour(s) or day(s), e.g. rate(5 minutes)"
        )
    value, unit = int(found.group(1)), found.group(2)
    if value < 1:
        raise ScheduleExpressionError(f"{expression!r}: the value must be at least 1")
    if (value == 1) != (not unit.endswith("s")):
        raise ScheduleExpressionError(
            f"{expression!r}: use the singular unit for 1 and the plural otherwise "
            "(rate(1 minute), rate(5 minutes))"
        )
    seconds = value * UNIT_SECONDS[unit.rstrip("s")]
    if seconds > MAX_RATE_SECONDS:
        raise ScheduleExpressionError(f"{expression!r}: at most ten years between firings")
    return Rate(expression, seconds)


def parse_cron(expression: str) -> Cron:
    found = CRON.match(expression)
    if not found:
        raise ScheduleExpressionError(f"{expression!r} is not cron(...)")
    specs = found.group(1).split(" ")
    if len(specs) != 6 or any(not s for s in specs):
        raise ScheduleExpressionError(
            f"{expression!r}: cron takes 6 fields separated by single spaces (minutes hours "
            "day-of-month month day-of-week year)"
        )
    minutes_, hours_, dom, month_, dow, year_ = specs

    def bad(field: str, spec: str, why: str) -> ScheduleExpressionError:
        return ScheduleExpressionError(f"{expression!r}: {field} field {spec!r}: {why}")

    if (dom == "?") == (dow == "?"):
        raise ScheduleExpressionError(
            f"{expression!r}: exactly one of day-of-month and day-of-week must be ? (the other "
            "says which days)"
        )
    minutes = _set("minutes", minutes_, 0, 59, (), bad)
    hours = _set("hours", hours_, 0, 23, (), bad)
    months = _set("month", month_, 1, 12, MONTHS, bad)
    years = _set("year", year_, YEARS[0], YEARS[1], (), bad)
    cron = Cron(
        expression,
        tuple(sorted(minutes or range(60))),
        tuple(sorted(hours or range(24))),
        None if dom == "?" else _day_of_month(dom, bad),
        frozenset(months or range(1, 13)),
        None if dow == "?" else _day_of_week(dow, bad),
        frozenset(years or range(YEARS[0], YEARS[1] + 1)),
    )
    return cron


def zone_of(name: str) -> ZoneInfo:
    """An IANA time zone (UTC, America/Sao_Paulo), or ScheduleExpressionError."""
    if not re.match(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$", name or ""):
        raise ScheduleExpressionError(f"{name!r} is not an IANA time zone name (e.g. America/Sao_Paulo)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleExpressionError(
            f"{name!r} is not an IANA time zone name (e.g. America/Sao_Paulo)"
        ) from None


def next_fire(expression: Expression, after: datetime, zone: ZoneInfo, anchor: datetime) -> datetime | None:
    """The first firing strictly after `after` of a schedule that began at `anchor`."""
    if isinstance(expression, Rate):
        return expression.next_after(after, anchor)
    return expression.next_after(max(after, anchor - timedelta(microseconds=1)), zone)


def last_fire(expression: Expression, at: datetime, zone: ZoneInfo, anchor: datetime) -> datetime | None:
    """The latest firing at or before `at` of a schedule that began at `anchor`."""
    if isinstance(expression, Rate):
        return expression.last_at_or_before(at, anchor)
    return expression.last_at_or_before(at, zone, anchor)


# -- parsing helpers --------------------------------------------------------------------------
Bad = Callable[[str, str, str], ScheduleExpressionError]


def _set(
    field: str, spec: str, low: int, high: int, names: tuple[str, ...], bad: Bad
) -> frozenset[int] | None:
    """The values a field lists; None for `*`."""
    if spec == "*":
        return None
    if spec == "?":
        raise bad(field, spec, "? is only allowed in day-of-month or day-of-week")
    chosen: set[int] = set()
    for part in spec.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not NUMBER.match(step_text) or int(step_text) < 1:
                raise bad(field, spec, f"the step in {part!r} must be a whole number of at least 1")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = (
                _number(field, spec, a, low, high, names, bad),
                _number(field, spec, b, low, high, names, bad),
            )
            if first > last:
                raise bad(field, spec, f"the range {base!r} runs backwards")
        else:
            first = _number(field, spec, base, low, high, names, bad)
            last = high if slash else first
        chosen.update(range(first, last + 1, step))
    return frozenset(chosen)


def _number(field: str, spec: str, token: str, low: int, high: int, names: tuple[str, ...], bad: Bad) -> int:
    if token.upper() in names:
        return low + names.index(token.upper())
    if not NUMBER.match(token):
        hint = f" or one of {', '.join(names)}" if names else ""
        raise bad(field, spec, f"{token!r} is not a number{hint}")
    value = int(token)
    if not low <= value <= high:
        raise bad(field, spec, f"{value} is outside {low}-{high}")
    return value


def _day_of_month(spec: str, bad: Bad) -> DayOfMonth:
    upper = spec.upper()
    if upper == "L":
        return DayOfMonth(last_offset=0)
    if upper == "LW":
        return DayOfMonth(last_weekday=True)
    if found := re.match(r"^L-(\d{1,2})$", upper):
        offset = int(found.group(1))
        if not 1 <= offset <= 30:
            raise bad("day-of-month", spec, "L-n takes n from 1 to 30")
        return DayOfMonth(last_offset=offset)
    if found := re.match(r"^(\d{1,2})W$", upper):
        day = int(found.group(1))
        if not 1 <= day <= 31:
            raise bad("day-of-month", spec, "nW takes a day from 1 to 31")
        return DayOfMonth(nearest_weekday=day)
    if "L" in upper or "W" in upper or "#" in upper:
        raise bad("day-of-month", spec, "L, L-n, nW and LW stand alone in the field; # is day-of-week's")
    return DayOfMonth(values=_set("day-of-month", spec, 1, 31, (), bad))


def _day_of_week(spec: str, bad: Bad) -> DayOfWeek:
    upper = spec.upper()
    if found := re.match(r"^([1-7]|[A-Z]{3})L$", upper):
        return DayOfWeek(last_of_month=_number("day-of-week", spec, found.group(1), 1, 7, WEEKDAYS, bad))
    if found := re.match(r"^([1-7]|[A-Z]{3})#(\d)$", upper):
        nth = int(found.group(2))
        if not 1 <= nth <= 5:
            raise bad("day-of-week", spec, "n#k takes k from 1 to 5")
        return DayOfWeek(nth=(_number("day-of-week", spec, found.group(1), 1, 7, WEEKDAYS, bad), nth))
    if upper == "L":
        return DayOfWeek(values=frozenset({7}))  # Scheduler: L alone in day-of-week is Saturday
    if "#" in upper or upper.endswith("L"):
        raise bad("day-of-week", spec, "nL and n#k stand alone in the field, with one weekday")
    return DayOfWeek(values=_set("day-of-week", spec, 1, 7, WEEKDAYS, bad))


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Mon-Fri) nearest `day`, never leaving the month."""
    last = calendar.monthrange(year, month)[1]
    weekday = date(year, month, day).weekday()  # Monday 0
    if weekday == 5:  # Saturday: Friday before, or Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, or Friday before on the last day
        return day + 1 if day < last else day - 2
    return day


def _instant(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime | None:
    """The instant of a local wall time, or None when daylight saving time skips it; a repeated
    time is its first occurrence (fold 0)."""
    naive = datetime.combine(day, time(hour, minute))
    aware = naive.replace(tzinfo=zone)
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return aware
