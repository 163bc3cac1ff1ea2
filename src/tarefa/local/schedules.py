"""EventBridge schedule expressions: rate() intervals and cron() minute matching (UTC).

`cron(minutes hours day-of-month month day-of-week year)` takes numbers and, for month and
day-of-week, names (JAN-DEC, SUN-SAT, any case), with `*`, lists (`,`), ranges (`-`) and steps
(`/`); one of day-of-month and day-of-week must be `?`. `L`, `W` and `#` are valid on AWS but
not run locally: they are refused with a ValueError, as is anything EventBridge would refuse,
when the expression is parsed, so a scheduler finds out at start-up rather than on some minute.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


# -- user schedules (POST /schedules): the local stack plays EventBridge Scheduler ---------------
class UserScheduleRunner:
    """Fires the schedules the API put in the stage's Scheduler group, as Scheduler would: the
    schedule's definition is read from the emulator's Scheduler (moto stores them and fires
    nothing), its next firing comes from the engine's calculator (tarefa.cron, the same one
    nextRunAt uses), and a firing sends the target's Input, with <aws.scheduler.scheduled-time>
    replaced by the firing's time, to the target queue. `speedup` compresses rate schedules
    (an interval of N s fires every N/speedup s, labelled with the wall-clock second it fires);
    cron schedules keep real time. What differs from AWS: no retries of a failed send, no
    flexible windows, and a firing missed while the stack was down is not made up."""

    SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"

    def __init__(self, scheduler: Any, sqs: Any, group: str, speedup: float = 1.0) -> None:
        self.scheduler = scheduler
        self.sqs = sqs
        self.group = group
        self.speedup = speedup
        self.due: dict[str, tuple[str, datetime]] = {}  # name -> (definition's fingerprint, next firing)
        self._queue_urls: dict[str, str] = {}

    def tick(self, now: datetime) -> list[str]:
        """Send every firing due at `now`; the message bodies sent."""
        sent: list[str] = []
        seen: set[str] = set()
        for name in self._names():
            seen.add(name)
            detail = self.scheduler.get_schedule(Name=name, GroupName=self.group)
            if detail.get("State") != "ENABLED":
                self.due.pop(name, None)
                continue
            fingerprint = json.dumps(
                [detail["ScheduleExpression"], detail.get("ScheduleExpressionTimezone"), detail["Target"]],
                sort_keys=True,
                default=str,
            )
            known = self.due.get(name)
            if known is None or known[0] != fingerprint:
                first = self._first(detail, now)
                if first is None:
                    continue
                self.due[name] = (fingerprint, first)
            due = self.due[name][1]
            if due > now:
                continue
            sent.append(self.fire(detail, due))
            following = self._after(detail, max(due, now))
            if following is None:
                self.due.pop(name)
            else:
                self.due[name] = (fingerprint, following)
        for gone in set(self.due) - seen:
            del self.due[gone]
        return sent

    def fire(self, detail: dict[str, Any], at: datetime) -> str:
        """One firing of a schedule (as get_schedule describes it) at `at`: what Scheduler sends."""
        target = detail["Target"]
        label = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = str(target["Input"]).replace(self.SCHEDULED_TIME, label)
        self.sqs.send_message(QueueUrl=self._queue_url(target["Arn"]), MessageBody=body)
        return body

    def _names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            page = self.scheduler.list_schedules(GroupName=self.group, **extra)
            names += [s["Name"] for s in page.get("Schedules", [])]
            token = page.get("NextToken")
            if not token:
                return names

    def _first(self, detail: dict[str, Any], now: datetime) -> datetime | None:
        from tarefa import cron

        parsed = cron.parse(detail["ScheduleExpression"])
        changed = _aware(detail.get("LastModificationDate")) or now
        if isinstance(parsed, cron.Rate) and self.speedup != 1:
            start = _aware(detail.get("StartDate")) or changed
            wait = max(0.0, (start - now).total_seconds()) / self.speedup
            return now + timedelta(seconds=wait)
        return self._next(detail, changed - timedelta(microseconds=1))

    def _after(self, detail: dict[str, Any], moment: datetime) -> datetime | None:
        from tarefa import cron

        parsed = cron.parse(detail["ScheduleExpression"])
        if isinstance(parsed, cron.Rate) and self.speedup != 1:
            return moment + timedelta(seconds=max(1.0, parsed.seconds / self.speedup))
        return self._next(detail, moment)

    def _next(self, detail: dict[str, Any], after: datetime) -> datetime | None:
        from tarefa import cron

        parsed = cron.parse(detail["ScheduleExpression"])
        zone = cron.zone_of(detail.get("ScheduleExpressionTimezone") or "UTC")
        anchor = _aware(detail.get("StartDate")) or _aware(detail.get("CreationDate")) or after
        return cron.next_fire(parsed, after, zone, anchor)

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            self._queue_urls[arn] = self.sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
        return self._queue_urls[arn]


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)
