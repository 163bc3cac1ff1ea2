from __future__ import annotations

import pytest

from tarefa.backoff import MAX_DELAY_SECONDS, retry_delay


@pytest.mark.parametrize(("attempt", "expected"), [(1, 60), (2, 120), (3, 300), (4, 600), (9, 600)])
def test_default_ladder_is_seed_000s(attempt: int, expected: int) -> None:
    assert retry_delay(attempt, rand=lambda: 0.5) == expected


def test_jitter_stays_within_ten_percent() -> None:
    assert retry_delay(1, rand=lambda: 0.0) == 54
    assert retry_delay(1, rand=lambda: 1.0) == 66


def test_base_doubles_each_attempt_and_is_capped() -> None:
    assert [retry_delay(n, base_seconds=10, rand=lambda: 0.5) for n in (1, 2, 3)] == [10, 20, 40]
    assert retry_delay(25, base_seconds=43_200, rand=lambda: 1.0) == MAX_DELAY_SECONDS
    assert retry_delay(3, base_seconds=0) == 0


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError):
        retry_delay(0)
