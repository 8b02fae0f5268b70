"""The injectable clock: every piece of code that schedules or times out asks a `Clock`.

Owns what "now" means. Production uses `SystemClock`; tests use `ManualClock` and move
time forward explicitly, so queue back-off and lifetimes are tested without sleeping.

Invariant: `now()` always returns a timezone-aware datetime in UTC: stored and compared
times stay in UTC. Dates a person or another program reads (Received, Date, DSN fields,
log lines) are rendered in TZ's zone: `display_zone(config.timezone)` gives it.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


@functools.lru_cache(maxsize=8)
def display_zone(name: str) -> dt.tzinfo:
    """The zone dates are rendered in: TZ's IANA name (config.py validated it), UTC for
    "UTC" or an empty name."""
    if name in {"", "UTC"}:
        return dt.UTC
    return ZoneInfo(name)


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        start = start or dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta | float) -> dt.datetime:
        """Move forward by a timedelta or a number of seconds; returns the new now."""
        if not isinstance(delta, dt.timedelta):
            delta = dt.timedelta(seconds=delta)
        if delta < dt.timedelta(0):
            raise ValueError("time does not run backwards")
        self._now += delta
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = when.astimezone(dt.UTC)
