"""Contract tests for SieveStore (issue 19), on every backend: scripts with one active
at most, global scripts, vacation replies and duplicate ids that expire."""

from __future__ import annotations

import datetime as dt

from postroom.store.api import Store

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


async def _account(store: Store) -> int:
    return (await store.create_account("sieve@example.com", "x")).id


async def test_scripts_have_at_most_one_active(store: Store) -> None:
    account = await _account(store)
    await store.put_sieve_script(account, "main", "keep;", NOW)
    await store.put_sieve_script(account, "other", "discard;", NOW)
    assert await store.active_sieve_script(account) is None
    assert await store.activate_sieve_script(account, "main")
    assert await store.activate_sieve_script(account, "other")
    assert await store.active_sieve_script(account) == ("other", "discard;")
    listed = await store.list_sieve_scripts(account)
    assert [(info.name, info.is_active, info.size) for info in listed] == [
        ("main", False, 5), ("other", True, 8)]
    assert not await store.activate_sieve_script(account, "missing")
    assert await store.activate_sieve_script(account, None)
    assert await store.active_sieve_script(account) is None


async def test_replacing_an_active_script_keeps_it_active(store: Store) -> None:
    account = await _account(store)
    await store.put_sieve_script(account, "main", "keep;", NOW)
    await store.activate_sieve_script(account, "main")
    await store.put_sieve_script(account, "main", "discard;", NOW)
    assert await store.active_sieve_script(account) == ("main", "discard;")


async def test_rename_and_delete(store: Store) -> None:
    account = await _account(store)
    await store.put_sieve_script(account, "a", "keep;", NOW)
    assert await store.rename_sieve_script(account, "a", "b")
    assert not await store.rename_sieve_script(account, "a", "c")
    assert await store.get_sieve_script(account, "b") == "keep;"
    assert await store.delete_sieve_script(account, "b")
    assert not await store.delete_sieve_script(account, "b")
    assert await store.list_sieve_scripts(account) == []


async def test_global_scripts(store: Store) -> None:
    await store.put_global_sieve_script("before", "keep;", NOW)
    await store.put_global_sieve_script("before", "discard;", NOW)
    assert await store.get_global_sieve_script("before") == "discard;"
    assert [info.name for info in await store.list_global_sieve_scripts()] == ["before"]
    assert await store.delete_global_sieve_script("before")
    assert await store.get_global_sieve_script("before") is None


async def test_vacation_replies_expire(store: Store) -> None:
    account = await _account(store)
    assert not await store.vacation_replied(account, "h", "Joe@Example.org", NOW)
    await store.record_vacation_reply(account, "h", "Joe@Example.org", NOW + DAY, NOW)
    assert await store.vacation_replied(account, "h", "joe@example.org", NOW)
    assert not await store.vacation_replied(account, "other", "joe@example.org", NOW)
    assert not await store.vacation_replied(account, "h", "joe@example.org", NOW + DAY)


async def test_duplicate_ids_expire(store: Store) -> None:
    account = await _account(store)
    await store.record_sieve_duplicates(account, [("", "<a@b>", NOW + DAY)], NOW)
    assert await store.sieve_duplicates(account, NOW) == frozenset({("", "<a@b>")})
    assert await store.sieve_duplicates(account, NOW + DAY) == frozenset()


async def test_deleting_the_account_deletes_its_scripts(store: Store) -> None:
    account = await _account(store)
    await store.put_sieve_script(account, "main", "keep;", NOW)
    await store.delete_account("sieve@example.com")
    assert await store.list_sieve_scripts(account) == []
