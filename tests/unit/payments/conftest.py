"""The fakes every payments unit test starts from: a clock at START, the in-memory store, the
real service on it, and a scripted gateway."""

from __future__ import annotations

import pytest
from payments.service import PaymentService

from ..fakes import Clock, Ids
from .fakes import START, FakeGateway, FakePaymentsStore, fake_service


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def store() -> FakePaymentsStore:
    return FakePaymentsStore()


@pytest.fixture
def service(store: FakePaymentsStore, clock: Clock) -> PaymentService:
    return fake_service(store, clock, Ids("pay"))


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()
