from __future__ import annotations

from datetime import UTC, datetime

from tarefa.local.schedules import cron_matches, rate_seconds
from tarefa.local.template import Resolver, load_template


def test_rate_expressions() -> None:
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("cron(0 3 * * ? *)") is None


def test_daily_cleanup_cron_fires_at_three_utc_only() -> None:
    assert cron_matches("cron(0 3 * * ? *)", datetime(2026, 1, 5, 3, 0, tzinfo=UTC))
    assert not cron_matches("cron(0 3 * * ? *)", datetime(2026, 1, 5, 3, 1, tzinfo=UTC))
    assert not cron_matches("cron(0 3 * * ? *)", datetime(2026, 1, 5, 4, 0, tzinfo=UTC))


def test_cron_lists_ranges_and_steps() -> None:
    monday_10_15 = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    assert cron_matches("cron(0/15 9-17 ? * MON-FRI *)".replace("MON-FRI", "2-6"), monday_10_15)
    assert not cron_matches("cron(0/20 * * * ? *)", monday_10_15)
    assert cron_matches("cron(15,45 10 23 11 ? 2026)", monday_10_15)


def test_resolver_handles_the_intrinsics_the_template_uses() -> None:
    resolver = Resolver(load_template(), {"Stage": "prod"})
    resolver.refs["UserPool"] = "pool-1"
    assert resolver.resolve({"Fn::Sub": "tarefa-${Stage}-jobs"}) == "tarefa-prod-jobs"
    assert resolver.resolve({"Fn::FindInMap": ["Worker", "Limits", "TimeoutSeconds"]}) == 120
    assert resolver.condition("CreateUserPool") is True
    assert resolver.resolve({"Fn::If": ["CreateUserPool", {"Ref": "UserPool"}, "x"]}) == "pool-1"
    assert resolver.resolve({"Fn::Sub": "${AWS::Region}"}) == "us-east-1"
