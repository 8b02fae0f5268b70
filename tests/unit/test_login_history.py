"""The login history (accounts/logins.py, issue 21) on a real store: logins wait in
memory and are written together, with the listener and client of the connection task;
the app password used is noted; the history is capped."""

from __future__ import annotations

import asyncio
import datetime as dt

from postroom.accounts import logins
from postroom.accounts.authcache import AuthCache
from postroom.accounts.logins import LoginHistory
from postroom.accounts.service import AccountService
from postroom.clock import ManualClock
from postroom.runtime import Runtime
from postroom.security.peer import CLIENT_ADDRESS, LISTENER


async def test_logins_are_written_in_batches_with_their_connection_facts(
        runtime: Runtime) -> None:
    store = runtime.store
    history = LoginHistory(store, flush_seconds=3600)  # only flush() writes here
    accounts = AccountService(store, logins=history)
    account = await accounts.add_account("me@example.test", "secret password")
    row, password = await accounts.add_app_password(account, "Phone")

    async def imap_connection() -> None:
        CLIENT_ADDRESS.set("192.0.2.7")
        LISTENER.set("imaps")
        assert await accounts.authenticate("me@example.test", password) is not None
        assert await accounts.authenticate("me@example.test", "secret password") is not None
        assert await accounts.authenticate("me@example.test", "wrong") is None

    await asyncio.create_task(imap_connection())
    assert await store.recent_logins(account.id, 10) == []  # nothing written yet
    recent = await history.recent(account.id)
    assert [(r.protocol, r.client, r.credential) for r in recent] == [
        ("imaps", "192.0.2.7", "password"), ("imaps", "192.0.2.7", "app password Phone")]
    (used,) = await accounts.list_app_passwords(account)
    assert used.id == row.id and used.last_used is not None
    await history.close()


async def test_the_history_is_capped(runtime: Runtime) -> None:
    history = LoginHistory(runtime.store, flush_seconds=3600)
    accounts = AccountService(runtime.store, logins=history)
    account = await accounts.add_account("me@example.test", "pw")
    for _ in range(logins.KEEP_PER_ACCOUNT + 5):
        history.record(account.id, "password")
    await history.close()
    assert len(await runtime.store.recent_logins(account.id, 1000)) == logins.KEEP_PER_ACCOUNT


async def test_a_revoked_app_password_fails_at_once_even_when_cached(
        runtime: Runtime) -> None:
    accounts = AccountService(runtime.store, auth_cache=AuthCache())
    account = await accounts.add_account("me@example.test", "pw")
    row, password = await accounts.add_app_password(account, "Phone")
    assert await accounts.authenticate("me@example.test", password) is not None
    assert await accounts.authenticate("me@example.test", password) is not None  # cached
    await accounts.revoke_app_password(account, row.id)
    assert await accounts.authenticate("me@example.test", password) is None
    assert await accounts.authenticate("me@example.test", password,
                                       app_passwords=False) is None


async def test_a_per_request_protocol_counts_once_per_client_within_its_window(
        runtime: Runtime) -> None:
    # JMAP authenticates every request: one client polling must not push the other
    # logins out of the KEEP_PER_ACCOUNT kept; IMAP logins are all recorded.
    clock = ManualClock(dt.datetime.now(dt.UTC))
    history = LoginHistory(runtime.store, clock, flush_seconds=3600)
    accounts = AccountService(runtime.store, logins=history)
    account = await accounts.add_account("me@example.test", "secret password")

    async def requests(listener: str, client: str, count: int) -> None:
        CLIENT_ADDRESS.set(client)
        LISTENER.set(listener)
        for _ in range(count):
            assert await accounts.authenticate("me@example.test", "secret password")

    await asyncio.create_task(requests("jmap", "192.0.2.7", 20))
    await asyncio.create_task(requests("jmap", "192.0.2.8", 2))  # another client: listed
    await asyncio.create_task(requests("imaps", "192.0.2.7", 2))
    recent = await history.recent(account.id)
    assert sorted((r.protocol, r.client) for r in recent) == [
        ("imaps", "192.0.2.7"), ("imaps", "192.0.2.7"), ("jmap", "192.0.2.7"),
        ("jmap", "192.0.2.8")]
    # Past the window the same client is listed again.
    clock.advance(logins.REPEAT_WINDOWS["jmap"])
    await asyncio.create_task(requests("jmap", "192.0.2.7", 1))
    assert len(await history.recent(account.id)) == 5
    await history.close()
