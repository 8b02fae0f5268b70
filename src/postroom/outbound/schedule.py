"""When to try a queued recipient again, and when to give up (pure, sans-IO).

Owns the retry policy: the first retry comes within minutes, each later delay doubles,
delays are capped at a few hours, and a recipient still undelivered once the queue
lifetime (QUEUE_LIFETIME, Postfix's `maximal_queue_lifetime`, 5 days by default) has
passed since it was queued is given up and bounced.

Numbers follow Postfix (`minimal_backoff_time` 300 s) and mox (doubling with jitter, see
mox `queue/queue.go`). Jitter spreads retries of a large queue so they do not all wake
at once after an outage; it is injected as a number in [0, 1) so tests are exact.

Invariants: `next_attempt` never schedules past the lifetime deadline (the last try
happens at the deadline itself, so a recipient is never bounced without a final
attempt); it returns None exactly when the deadline has been reached.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

FIRST_DELAY = dt.timedelta(minutes=5)
MAX_DELAY = dt.timedelta(hours=4)
JITTER_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    lifetime: dt.timedelta
    first_delay: dt.timedelta = FIRST_DELAY
    max_delay: dt.timedelta = MAX_DELAY
    jitter_fraction: float = JITTER_FRACTION

    @classmethod
    def from_seconds(cls, lifetime_seconds: int) -> RetryPolicy:
        return cls(lifetime=dt.timedelta(seconds=lifetime_seconds))


def backoff_delay(failed_attempts: int, policy: RetryPolicy, random_unit: float = 0.5
                  ) -> dt.timedelta:
    """Delay after the `failed_attempts`-th failure (1 = the first failure).

    `random_unit` in [0, 1) picks the jitter: 0.5 means none, 0 the shortest (-10 %),
    values near 1 the longest (+10 %). The cap applies before jitter, so capped delays
    still spread out.
    """
    if failed_attempts < 1:
        raise ValueError("failed_attempts starts at 1")
    exponent = min(failed_attempts - 1, 32)  # 2**32 × minutes is far past any cap
    base = min(policy.first_delay * (2 ** exponent), policy.max_delay)
    factor = 1 + policy.jitter_fraction * (2 * random_unit - 1)
    return base * factor


def deadline(created: dt.datetime, policy: RetryPolicy) -> dt.datetime:
    return created + policy.lifetime


def is_expired(created: dt.datetime, now: dt.datetime, policy: RetryPolicy) -> bool:
    """True once the queue lifetime has run out: the next failure bounces."""
    return now >= deadline(created, policy)


def next_attempt(created: dt.datetime, now: dt.datetime, failed_attempts: int,
                 policy: RetryPolicy, random_unit: float = 0.5) -> dt.datetime | None:
    """When to retry after a temporary failure at `now`, or None to give up (bounce)."""
    if is_expired(created, now, policy):
        return None
    when = now + backoff_delay(failed_attempts, policy, random_unit)
    return min(when, deadline(created, policy))
