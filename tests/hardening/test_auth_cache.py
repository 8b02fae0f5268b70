"""The verified-login cache inside AccountService: a repeated good login skips the hash;
wrong passwords, changed passwords, deleted accounts and banned clients never profit."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import imaplib
import ssl
from collections.abc import Awaitable, Callable

import pytest
from passlib.hash import sha512_crypt

from postroom.accounts.authcache import AuthCache
from postroom.accounts.passwords import hash_password
from postroom.accounts.service import AccountService
from postroom.clock import ManualClock
from postroom.runtime import Runtime
from postroom.security.bans import AuthGuard, BanPolicy
from postroom.security.peer import CLIENT_ADDRESS
from tests.hardening.conftest import PASSWORD, USER, StartApp

pytestmark = pytest.mark.timeout(60)


def from_client(address: str, attempt: Callable[[], Awaitable[object]]) -> Awaitable[object]:
    """Run `attempt` as a connection from `address` would (app.py sets the variable)."""
    context = contextvars.copy_context()
    context.run(CLIENT_ADDRESS.set, address)
    return asyncio.get_running_loop().create_task(attempt(), context=context)


async def test_good_login_is_cached_and_wrong_ones_always_hash(
        runtime: Runtime, hash_checks: list[str]) -> None:
    accounts = AccountService(runtime.store, auth_cache=AuthCache(3600, 100, ManualClock()))
    await accounts.add_account(USER, PASSWORD)
    for _ in range(3):
        account = await accounts.authenticate(USER.upper(), PASSWORD)
        assert account is not None and account.address == USER
    assert hash_checks == [PASSWORD]  # only the first login paid argon2id
    for _ in range(3):
        assert await accounts.authenticate(USER, "wrong") is None
    assert hash_checks == [PASSWORD] + ["wrong"] * 3
    assert await accounts.authenticate(USER, PASSWORD) is not None  # still cached
    assert len(hash_checks) == 4


async def test_entry_expires_after_the_ttl(runtime: Runtime, hash_checks: list[str]) -> None:
    clock = ManualClock()
    accounts = AccountService(runtime.store, auth_cache=AuthCache(60, 100, clock))
    await accounts.add_account(USER, PASSWORD)
    assert await accounts.authenticate(USER, PASSWORD) is not None
    clock.advance(61)
    assert await accounts.authenticate(USER, PASSWORD) is not None
    assert len(hash_checks) == 2


async def test_password_change_elsewhere_ends_the_entry(runtime: Runtime,
                                                        hash_checks: list[str]) -> None:
    accounts = AccountService(runtime.store, auth_cache=AuthCache(3600, 100))
    await accounts.add_account(USER, PASSWORD)
    assert await accounts.authenticate(USER, PASSWORD) is not None
    # Another process (`postroom email update` while serve runs) writes a new hash.
    await runtime.store.set_password(USER, await asyncio.to_thread(hash_password, "new one"))
    assert await accounts.authenticate(USER, PASSWORD) is None
    assert await accounts.authenticate(USER, "new one") is not None
    assert hash_checks == [PASSWORD, PASSWORD, "new one"]


async def test_update_and_delete_through_the_service(runtime: Runtime,
                                                     hash_checks: list[str]) -> None:
    accounts = AccountService(runtime.store, auth_cache=AuthCache(3600, 100))
    await accounts.add_account(USER, PASSWORD)
    assert await accounts.authenticate(USER, PASSWORD) is not None
    await accounts.update_password(USER, "second")
    assert await accounts.authenticate(USER, PASSWORD) is None
    assert await accounts.authenticate(USER, "second") is not None
    await accounts.delete_account(USER)
    assert await accounts.authenticate(USER, "second") is None
    # Re-created with the very same password: a new salt, so a full verification again.
    await accounts.add_account(USER, "second")
    assert await accounts.authenticate(USER, "second") is not None
    assert hash_checks == [PASSWORD, PASSWORD, "second", "second"]


async def test_imported_hash_is_upgraded_then_cached(runtime: Runtime,
                                                     hash_checks: list[str]) -> None:
    accounts = AccountService(runtime.store, auth_cache=AuthCache(3600, 100))
    imported = "{SHA512-CRYPT}" + sha512_crypt.using(rounds=5000).hash(PASSWORD)
    await runtime.store.create_account(USER, imported)
    assert await accounts.authenticate(USER, PASSWORD) is not None
    stored = await runtime.store.get_account(USER)
    assert stored is not None and stored.password_hash.startswith("{ARGON2ID}")
    assert await accounts.authenticate(USER, PASSWORD) is not None  # against the new hash
    assert hash_checks == [PASSWORD]


async def test_a_banned_client_is_refused_even_with_a_cached_password(
        runtime: Runtime, hash_checks: list[str]) -> None:
    clock = ManualClock()
    guard = AuthGuard(runtime.store, BanPolicy(3, failure_delay=0), clock=clock)
    accounts = AccountService(runtime.store, guard, AuthCache(3600, 100, clock))
    await accounts.add_account(USER, PASSWORD)
    login = lambda: accounts.authenticate(USER, PASSWORD)  # noqa: E731
    assert await from_client("192.0.2.1", login) is not None
    assert await from_client("192.0.2.1", login) is not None  # cached
    await guard.ban("192.0.2.1", clock.now(), 3, "test")
    assert await from_client("192.0.2.1", login) is None
    assert await from_client("192.0.2.2", login) is not None  # another client: cached
    assert hash_checks == [PASSWORD]
    # Failures are never cached and still count towards a ban.
    for _ in range(3):
        assert await from_client("192.0.2.3", lambda: accounts.authenticate(USER, "x")) is None
    assert await guard.is_banned("192.0.2.3")
    assert await from_client("192.0.2.3", login) is None
    assert hash_checks == [PASSWORD, "x", "x", "x"]
    clock.advance(dt.timedelta(hours=2))  # both bans over, the entry too (TTL 1 h)
    assert await from_client("192.0.2.1", login) is not None
    assert len(hash_checks) == 5


def test_serve_caches_imap_logins(start_app: StartApp, client_tls: ssl.SSLContext,
                                  hash_checks: list[str]) -> None:
    with start_app() as app:
        for _ in range(3):
            imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                     timeout=10)
            imap.login(USER, PASSWORD)
            imap.logout()
        assert hash_checks == [PASSWORD]


def test_serve_without_cache_hashes_every_login(start_app: StartApp,
                                                client_tls: ssl.SSLContext,
                                                hash_checks: list[str]) -> None:
    with start_app(AUTH_CACHE_TTL=0) as app:
        for _ in range(2):
            imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                     timeout=10)
            imap.login(USER, PASSWORD)
            imap.logout()
        assert hash_checks == [PASSWORD, PASSWORD]
