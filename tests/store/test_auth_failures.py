"""Failed logins counted in the store (issue 10), on every backend: counts within a
window, old failures pruned, one address's count independent of the others', cleared on
demand, and concurrent failures for one address each counted."""

from __future__ import annotations

import asyncio
import datetime as dt

from postroom.store.api import Store

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(minutes=10)


async def fail(store: Store, address: str, at: dt.datetime) -> int:
    return await store.record_auth_failure(address, at, at - WINDOW)


async def test_failures_count_within_the_window(store: Store) -> None:
    assert await fail(store, "192.0.2.1", NOW) == 1
    assert await fail(store, "192.0.2.1", NOW + dt.timedelta(minutes=5)) == 2
    assert await fail(store, "2001:db8::/64", NOW + dt.timedelta(minutes=5)) == 1
    # 10 minutes after the first it still counts (inclusive); a second later it is gone.
    assert await fail(store, "192.0.2.1", NOW + WINDOW) == 3
    at = NOW + WINDOW + dt.timedelta(seconds=1)
    assert await store.count_auth_failures("192.0.2.1", at - WINDOW) == 2
    assert await fail(store, "192.0.2.1", at) == 3
    assert await store.count_auth_failures("2001:db8::/64", at - WINDOW) == 1


async def test_old_failures_are_pruned_for_every_address(store: Store) -> None:
    await fail(store, "192.0.2.1", NOW)
    await fail(store, "192.0.2.2", NOW)
    much_later = NOW + dt.timedelta(days=1)
    await fail(store, "192.0.2.3", much_later)
    # Pruned, not merely outside the window: a count over all time finds nothing.
    for address in ("192.0.2.1", "192.0.2.2"):
        assert await store.count_auth_failures(address, NOW - dt.timedelta(days=365)) == 0


async def test_clear_drops_one_address_only(store: Store) -> None:
    for minute in range(3):
        await fail(store, "192.0.2.1", NOW + dt.timedelta(minutes=minute))
    await fail(store, "192.0.2.2", NOW)
    assert await store.clear_auth_failures("192.0.2.1") == 3
    assert await store.clear_auth_failures("192.0.2.1") == 0
    assert await store.count_auth_failures("192.0.2.1", NOW - WINDOW) == 0
    assert await store.count_auth_failures("192.0.2.2", NOW - WINDOW) == 1
    assert await fail(store, "192.0.2.1", NOW + dt.timedelta(minutes=4)) == 1


async def test_concurrent_failures_each_see_the_others(store: Store) -> None:
    counts = await asyncio.gather(*(fail(store, "192.0.2.9", NOW) for _ in range(8)))
    assert sorted(counts) == list(range(1, 9))  # no two callers saw the same count
