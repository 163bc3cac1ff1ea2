"""The next-fire-time calculator of Scheduler's cron() and rate() expressions (tarefa.cron)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tarefa import cron
from tarefa.cron import ScheduleExpressionError, parse, zone_of

UTC_ZONE = zone_of("UTC")


def fires(expression: str, after: datetime, count: int = 3, zone: str = "UTC") -> list[datetime]:
    parsed = parse(expression)
    assert isinstance(parsed, cron.Cron)
    found: list[datetime] = []
    moment = after
    for _ in range(count):
        nxt = parsed.next_after(moment, zone_of(zone))
        assert nxt is not None
        found.append(nxt)
        moment = nxt
    return found


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_every_day_at_a_time_with_question_mark_in_day_of_week() -> None:
    assert fires("cron(0 3 * * ? *)", utc(2026, 12, 2, 7, 0)) == [
        utc(2026, 12, 3, 3, 0),
        utc(2026, 12, 4, 3, 0),
        utc(2026, 12, 5, 3, 0),
    ]


def test_strictly_after_the_moment_given() -> None:
    assert fires("cron(0 3 * * ? *)", utc(2026, 12, 3, 3, 0), 1) == [utc(2026, 12, 4, 3, 0)]
    assert fires("cron(0 3 * * ? *)", utc(2026, 12, 3, 2, 59, 59), 1) == [utc(2026, 12, 3, 3, 0)]


def test_ranges_steps_lists_and_names() -> None:
    # every 20 minutes from 8 to 9, weekdays: Friday 4 Dec 2026, then Monday 7 Dec
    got = fires("cron(0/20 8-9 ? * MON-FRI *)", utc(2026, 12, 4, 9, 30), 4)
    assert got == [
        utc(2026, 12, 4, 9, 40),
        utc(2026, 12, 7, 8, 0),
        utc(2026, 12, 7, 8, 20),
        utc(2026, 12, 7, 8, 40),
    ]
    assert fires("cron(15,45 12 1,15 JAN,jul ? *)", utc(2026, 12, 2), 3) == [
        utc(2027, 1, 1, 12, 15),
        utc(2027, 1, 1, 12, 45),
        utc(2027, 1, 15, 12, 15),
    ]
    assert fires("cron(0 0 ? * 1 *)", utc(2026, 12, 2), 1) == [utc(2026, 12, 6)]  # 1 = Sunday
    assert fires("cron(5/30 * * * ? *)", utc(2026, 12, 2, 10, 6), 2) == [
        utc(2026, 12, 2, 10, 35),
        utc(2026, 12, 2, 11, 5),
    ]


def test_years_restrict_and_jump() -> None:
    assert fires("cron(0 0 1 1 ? 2030-2031)", utc(2026, 12, 2), 2) == [utc(2030, 1, 1), utc(2031, 1, 1)]
    parsed = parse("cron(0 0 1 1 ? 2027)")
    assert isinstance(parsed, cron.Cron)
    assert parsed.next_after(utc(2027, 1, 1, 0, 0), UTC_ZONE) is None


def test_last_day_and_last_day_offsets() -> None:
    assert fires("cron(0 9 L * ? *)", utc(2027, 1, 31, 10), 3) == [
        utc(2027, 2, 28, 9),
        utc(2027, 3, 31, 9),
        utc(2027, 4, 30, 9),
    ]
    assert fires("cron(0 9 L * ? *)", utc(2028, 2, 1), 1) == [utc(2028, 2, 29, 9)]  # leap year
    assert fires("cron(0 9 L-2 * ? *)", utc(2027, 2, 1), 1) == [utc(2027, 2, 26, 9)]


def test_nearest_weekday_and_last_weekday() -> None:
    # 15 Aug 2027 is a Sunday: Monday 16th; 1 May 2027 is a Saturday: Monday 3rd (never April)
    assert fires("cron(0 9 15W * ? *)", utc(2027, 8, 1), 1) == [utc(2027, 8, 16, 9)]
    assert fires("cron(0 9 1W * ? *)", utc(2027, 4, 30), 1) == [utc(2027, 5, 3, 9)]
    # 31 Jul 2027 is a Saturday: the last weekday is Friday 30th
    assert fires("cron(0 9 LW * ? *)", utc(2027, 7, 1), 1) == [utc(2027, 7, 30, 9)]


def test_last_and_nth_weekday_of_the_month() -> None:
    assert fires("cron(0 9 ? * 6L *)", utc(2026, 12, 1), 2) == [utc(2026, 12, 25, 9), utc(2027, 1, 29, 9)]
    assert fires("cron(0 9 ? * MON#2 *)", utc(2026, 12, 1), 2) == [utc(2026, 12, 14, 9), utc(2027, 1, 11, 9)]


def test_time_zone_and_daylight_saving_time() -> None:
    # 02:30 New York: 8 Mar 2026 springs forward from 02:00 to 03:00, so that day is skipped
    assert fires("cron(30 2 * * ? *)", utc(2026, 3, 7, 12), 2, "America/New_York") == [
        utc(2026, 3, 9, 6, 30),  # EDT, UTC-4
        utc(2026, 3, 10, 6, 30),
    ]
    # 01:30 New York happens twice on 1 Nov 2026: it fires once, at the first (EDT)
    got = fires("cron(30 1 * * ? *)", utc(2026, 10, 31, 12), 2, "America/New_York")
    assert got == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # 09:00 in São Paulo is 12:00 UTC
    assert fires("cron(0 9 * * ? *)", utc(2026, 12, 2), 1, "America/Sao_Paulo") == [utc(2026, 12, 2, 12)]


def test_last_fire_at_or_before() -> None:
    parsed = parse("cron(0 3 * * ? *)")
    assert cron.last_fire(parsed, utc(2026, 12, 5, 2), UTC_ZONE, utc(2026, 12, 1)) == utc(2026, 12, 4, 3)
    assert cron.last_fire(parsed, utc(2026, 12, 5, 3), UTC_ZONE, utc(2026, 12, 1)) == utc(2026, 12, 5, 3)
    assert cron.last_fire(parsed, utc(2026, 12, 1, 2), UTC_ZONE, utc(2026, 12, 1)) is None  # before it began


def test_rate_parsing_and_firings() -> None:
    assert parse("rate(1 minute)") == cron.Rate("rate(1 minute)", 60)
    assert parse("rate(5 minutes)") == cron.Rate("rate(5 minutes)", 300)
    assert parse("rate(2 hours)") == cron.Rate("rate(2 hours)", 7200)
    assert parse("rate(1 day)") == cron.Rate("rate(1 day)", 86_400)
    rate = parse("rate(5 minutes)")
    start = utc(2026, 12, 2, 7, 15)
    assert cron.next_fire(rate, utc(2026, 12, 2, 7), UTC_ZONE, start) == start  # fires at its start
    assert cron.next_fire(rate, start, UTC_ZONE, start) == start + timedelta(minutes=5)
    assert cron.next_fire(rate, utc(2026, 12, 2, 7, 31), UTC_ZONE, start) == utc(2026, 12, 2, 7, 35)
    assert cron.last_fire(rate, utc(2026, 12, 2, 7, 31), UTC_ZONE, start) == utc(2026, 12, 2, 7, 30)
    assert cron.last_fire(rate, utc(2026, 12, 2, 7), UTC_ZONE, start) is None
    # a day is 24 hours through daylight saving time
    day = parse("rate(1 day)")
    assert cron.next_fire(day, utc(2026, 3, 8, 1), zone_of("America/New_York"), utc(2026, 3, 7, 12)) == utc(
        2026, 3, 8, 12
    )


@pytest.mark.parametrize(
    "expression",
    [
        "rate(0 minutes)",
        "rate(1 minutes)",
        "rate(2 minute)",
        "rate(5 seconds)",
        "rate(-5 minutes)",
        "rate(5 Minutes)",
        "rate(5minutes)",
        " rate(5 minutes)",
        "rate(99999 days)",
        "cron(0 3 * * * *)",
        "cron(0 3 ? * ? *)",
        "cron(0 3 * * ?)",
        "cron(0 3 * * ? * *)",
        "cron(0  3 * * ? *)",
        "cron(61 3 * * ? *)",
        "cron(0 3 0 * ? *)",
        "cron(0 3 ? 13 * *)",
        "cron(0 3 ? * 8 *)",
        "cron(0 3 ? * MON#0 *)",
        "cron(0 3 ? * MON#6 *)",
        "cron(0 3 L-31 * ? *)",
        "cron(0 3 32W * ? *)",
        "cron(0 3 1,L * ? *)",
        "cron(0 3 ? * 6L,2 *)",
        "cron(0 3 ? * 1#2,3 *)",
        "cron(0 3 * * ? 1969)",
        "cron(*/0 3 * * ? *)",
        "cron(0 3-1 * * ? *)",
        "cron(a 3 * * ? *)",
        "cron(? 3 * * ? *)",
        "every day",
        "",
    ],
)
def test_what_scheduler_refuses_is_refused(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse(expression)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "America/Sao Paulo", "/UTC"])
def test_bad_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        zone_of(name)


def test_the_shard_counts_of_the_bulk_index_agree() -> None:
    from tarefa.adapters import dynamodb
    from tarefa.bulk import BULK_SHARDS

    assert dynamodb.BULK_SHARDS == BULK_SHARDS
