from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durian.backoff import next_delay, parse_retry_after, retry_after_delay, tier_for

SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_schedule_without_jitter_is_the_schedule() -> None:
    delays = [next_delay(n, SCHEDULE, jitter=0) for n in range(1, 8)]
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert next_delay(8, SCHEDULE) is None


def test_jitter_spreads_both_ways() -> None:
    assert next_delay(1, SCHEDULE, jitter=0.2, rand=lambda: 0.0) == pytest.approx(4.0)
    assert next_delay(1, SCHEDULE, jitter=0.2, rand=lambda: 1.0) == pytest.approx(6.0)


@given(st.integers(1, 7), st.floats(0, 0.99), st.floats(0, 1))
def test_jitter_stays_within_its_band(attempt: int, jitter: float, r: float) -> None:
    base = SCHEDULE[attempt - 1]
    delay = next_delay(attempt, SCHEDULE, jitter=jitter, rand=lambda: r)
    assert delay is not None
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        next_delay(0, SCHEDULE)


@pytest.mark.parametrize(
    ("delay", "tier"), [(4.2, 5), (5.9, 5), (299, 5), (360, 300), (40000, 36000), (1, 5)]
)
def test_tier_is_the_longest_not_longer_than_the_delay(delay: float, tier: float) -> None:
    assert tier_for(delay, SCHEDULE) == tier


def test_retry_after_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_retry_after_is_honoured_between_the_schedule_and_the_ceiling() -> None:
    assert retry_after_delay(300, 1, ceiling=3600) == 300  # never sooner than scheduled
    assert retry_after_delay(300, 500, ceiling=3600) == 500
    assert retry_after_delay(300, 10_000, ceiling=3600) == 3600  # cut to the ceiling
    assert retry_after_delay(300, None, ceiling=3600) == 300
    assert retry_after_delay(7200, 10_000, ceiling=3600) == 7200  # the schedule wins
