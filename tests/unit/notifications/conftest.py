"""The fakes every notifications unit test starts from: a clock, the in-memory table and the
real service on it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from notifications.service import NotificationService

from ..fakes import Clock
from .fakes import FakeNotificationsStore, Steps

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def store() -> FakeNotificationsStore:
    return FakeNotificationsStore()


@pytest.fixture
def service(store: FakeNotificationsStore, clock: Clock) -> NotificationService:
    ids = (f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 10_000))
    return NotificationService(store, clock, lambda: next(ids), retention_seconds=3600)


@pytest.fixture
def steps() -> Steps:
    return Steps()
