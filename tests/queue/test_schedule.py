from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.clock import ManualClock, SystemClock
from postroom.outbound.schedule import (
    RetryPolicy,
    backoff_delay,
    deadline,
    is_expired,
    next_attempt,
)

POLICY = RetryPolicy.from_seconds(5 * 86400)
MINUTE = dt.timedelta(minutes=1)


def test_first_retry_within_minutes_then_doubling_capped_at_hours() -> None:
    delays = [backoff_delay(n, POLICY) for n in range(1, 10)]
    assert delays[0] == 5 * MINUTE
    assert delays[1:5] == [10 * MINUTE, 20 * MINUTE, 40 * MINUTE, 80 * MINUTE]
    assert delays[5] == 160 * MINUTE
    assert delays[6:] == [dt.timedelta(hours=4)] * 3


def test_jitter_spreads_within_ten_percent() -> None:
    assert backoff_delay(1, POLICY, 0.0) == dt.timedelta(minutes=4.5)
    assert backoff_delay(1, POLICY, 0.5) == 5 * MINUTE
    assert dt.timedelta(minutes=5.49) < backoff_delay(1, POLICY, 0.999) < 5.5 * MINUTE
    assert backoff_delay(50, POLICY, 0.0) == dt.timedelta(hours=3.6)


def test_backoff_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, POLICY)


def test_manual_clock_drives_the_schedule_to_give_up() -> None:
    clock = ManualClock()
    created = clock.now()
    failures = 0
    when = created
    while True:
        clock.set(when)
        failures += 1
        upcoming = next_attempt(created, clock.now(), failures, POLICY)
        if upcoming is None:
            break
        assert upcoming > clock.now()
        when = upcoming
    # Last try happens exactly at the deadline, then the recipient is given up.
    assert clock.now() == deadline(created, POLICY)
    assert is_expired(created, clock.now(), POLICY)
    # 5 days: 5+10+…+160 min (≈5.25 h), then 4-hourly ≈ 30 more tries.
    assert 30 < failures < 45


def test_never_scheduled_past_the_deadline() -> None:
    created = ManualClock().now()
    short = RetryPolicy.from_seconds(600)
    now = created + dt.timedelta(minutes=8)
    assert next_attempt(created, now, 3, short) == created + dt.timedelta(minutes=10)
    assert next_attempt(created, created + dt.timedelta(minutes=10), 4, short) is None


def test_clocks_are_aware_utc() -> None:
    assert SystemClock().now().tzinfo is dt.UTC
    clock = ManualClock()
    before = clock.now()
    assert clock.advance(90) == before + dt.timedelta(seconds=90)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        ManualClock(dt.datetime(2026, 1, 1))


@settings(max_examples=200, deadline=None)
@given(failures=st.integers(1, 200), unit=st.floats(0, 0.999999),
       elapsed=st.integers(0, 6 * 86400))
def test_next_attempt_is_after_now_and_within_lifetime(failures: int, unit: float,
                                                       elapsed: int) -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    now = created + dt.timedelta(seconds=elapsed)
    result = next_attempt(created, now, failures, POLICY, unit)
    if elapsed >= POLICY.lifetime.total_seconds():
        assert result is None
    else:
        assert result is not None
        assert now < result <= deadline(created, POLICY)
        assert result - now <= dt.timedelta(hours=4.4)
