"""Contract tests for GuardStore's bans (issue 7), on every backend: a ban is in force
until it expires, adding one replaces the address's ban and purges expired ones, and
lists come soonest-to-expire first. (Failed logins: test_auth_failures.py.)"""

from __future__ import annotations

import datetime as dt

from postroom.store.api import Ban, GuardStore

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _ban(address: str, expires_in: dt.timedelta, failures: int = 5,
         created: dt.datetime = NOW) -> Ban:  # fmt: skip
    return Ban(address, created, created + expires_in, failures, "auth")


async def test_a_ban_is_in_force_until_it_expires(store: GuardStore) -> None:
    await store.add_ban(_ban("192.0.2.7", HOUR))
    found = await store.get_ban("192.0.2.7", NOW)
    assert found == _ban("192.0.2.7", HOUR)
    assert found is not None and found.expires.tzinfo is not None
    assert await store.get_ban("192.0.2.7", NOW + HOUR) is None  # expires is exclusive
    assert await store.get_ban("192.0.2.8", NOW) is None


async def test_adding_a_ban_replaces_the_address_ban(store: GuardStore) -> None:
    await store.add_ban(_ban("2001:db8::1", HOUR, failures=3))
    await store.add_ban(_ban("2001:db8::1", 2 * HOUR, failures=9))
    assert await store.list_bans(NOW) == [_ban("2001:db8::1", 2 * HOUR, failures=9)]


async def test_list_is_soonest_to_expire_first_and_purges_expired(store: GuardStore) -> None:
    await store.add_ban(_ban("198.51.100.2", 3 * HOUR))
    await store.add_ban(_ban("198.51.100.1", HOUR))
    await store.add_ban(_ban("198.51.100.3", HOUR))
    bans = await store.list_bans(NOW)
    assert [ban.address for ban in bans] == ["198.51.100.1", "198.51.100.3", "198.51.100.2"]
    assert [ban.address for ban in await store.list_bans(NOW + 2 * HOUR)] == ["198.51.100.2"]
    # A new ban made after the others expired purges them: they are gone, not hidden.
    later = NOW + 4 * HOUR
    await store.add_ban(_ban("198.51.100.9", HOUR, created=later))
    assert await store.delete_ban("198.51.100.1") == 0
    assert [ban.address for ban in await store.list_bans(NOW)] == ["198.51.100.9"]


async def test_delete_ban_counts_what_it_removed(store: GuardStore) -> None:
    await store.add_ban(_ban("192.0.2.50", HOUR))
    assert await store.delete_ban("192.0.2.50") == 1
    assert await store.delete_ban("192.0.2.50") == 0
    assert await store.get_ban("192.0.2.50", NOW) is None
