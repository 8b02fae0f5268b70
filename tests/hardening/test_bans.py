"""Brute-force protection (issue 7): failed logins on SMTP AUTH, POP3 and IMAP are counted
per client address through the one AccountService; past the threshold the address is
refused — at connect, with each protocol's words — until the ban expires or
`postroom ban del` lifts it. Banned attempts cost no hashing; failures are answered late;
other addresses are not affected."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import imaplib
import ipaddress
import poplib
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from postroom.clock import ManualClock
from postroom.runtime import Runtime
from postroom.security.bans import AuthGuard, BanPolicy
from postroom.security.peer import CLIENT_ADDRESS
from postroom.store.api import Ban, Store
from postroom.store.blobs import FileBlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.sqlite import SqliteStore
from tests.conftest import TEST_HOSTNAME
from tests.hardening.conftest import PASSWORD, USER, StartApp, connect, is_closed, read_line
from tests.support.server import AppThread, write_env

pytestmark = pytest.mark.timeout(60)

LIFT = b" (admin: postroom ban del ADDRESS)\r\n"  # the refusal names the way out
BANNED_SMTP = (b"421 4.7.0 " + TEST_HOSTNAME.encode()
               + b" too many failed logins from your address; try later" + LIFT)
BANNED_POP3 = b"-ERR [SYS/TEMP] too many failed logins from your address; try later" + LIFT
BANNED_IMAP = (b"* BYE [UNAVAILABLE] too many failed logins from your address; "
               b"try later" + LIFT)


# -- the guard on its own -----------------------------------------------------------------


def in_context(address: str, attempt: Callable[[], Awaitable[object]]) -> Awaitable[object]:
    """Run `attempt` as a connection from `address` would (app.py sets the variable)."""
    context = contextvars.copy_context()
    context.run(CLIENT_ADDRESS.set, address)
    return asyncio.get_running_loop().create_task(attempt(), context=context)


class Verifier:
    def __init__(self, result: object = None) -> None:
        self.calls = 0
        self.result = result

    async def __call__(self) -> object:
        self.calls += 1
        return self.result


async def test_guard_bans_at_the_threshold_and_only_that_address(runtime: Runtime) -> None:
    clock = ManualClock()
    guard = AuthGuard(runtime.store, BanPolicy(3, failure_delay=0), clock=clock)
    wrong, right = Verifier(None), Verifier("account")
    for _ in range(3):
        assert await in_context("192.0.2.1", lambda: guard.guarded(wrong)) is None
    assert wrong.calls == 3
    assert await guard.is_banned("192.0.2.1")
    # Banned: even the right password is not checked (no hashing for the attacker).
    assert await in_context("192.0.2.1", lambda: guard.guarded(right)) is None
    assert right.calls == 0
    # Another address is not affected.
    assert not await guard.is_banned("192.0.2.2")
    assert await in_context("192.0.2.2", lambda: guard.guarded(right)) == "account"
    (ban,) = await runtime.store.list_bans(clock.now())
    assert (ban.address, ban.failures, ban.expires - ban.created) == (
        "192.0.2.1", 3, dt.timedelta(hours=1))
    clock.advance(dt.timedelta(hours=1, seconds=1))  # the ban expires by itself
    assert not await guard.is_banned("192.0.2.1")
    assert await runtime.store.list_bans(clock.now()) == []


async def test_failures_outside_the_window_are_forgotten(runtime: Runtime) -> None:
    clock = ManualClock()
    guard = AuthGuard(runtime.store, BanPolicy(3, find_time=dt.timedelta(minutes=10)),
                      clock=clock)
    for _ in range(2):
        assert not await guard.record_failure("192.0.2.9")
    clock.advance(dt.timedelta(minutes=11))
    assert not await guard.record_failure("192.0.2.9")
    assert await guard.failures_of("192.0.2.9") == 1
    clock.advance(dt.timedelta(minutes=1))
    assert not await guard.record_failure("192.0.2.9")
    assert await guard.record_failure("192.0.2.9")  # 3 within 10 minutes


async def test_success_resets_nothing(runtime: Runtime) -> None:
    guard = AuthGuard(runtime.store, BanPolicy(3, failure_delay=0))
    for result in (None, None, "ok", None):
        await in_context("192.0.2.3", lambda r=result: guard.guarded(Verifier(r)))
    assert await guard.is_banned("192.0.2.3")


async def test_trusted_networks_and_disabled_policy_never_ban(runtime: Runtime) -> None:
    trusted = AuthGuard(runtime.store, BanPolicy(1, failure_delay=0),
                        exempt=[ipaddress.ip_network("192.0.2.0/24")])
    assert not await trusted.record_failure("192.0.2.5")
    assert await trusted.record_failure("198.51.100.5")
    off = AuthGuard(runtime.store, BanPolicy(0))
    for _ in range(10):
        assert not await off.record_failure("203.0.113.1")
    assert await off.is_banned("198.51.100.5")  # a stored ban still holds (`ban add`)


async def test_attempts_from_one_address_run_one_at_a_time(runtime: Runtime) -> None:
    guard = AuthGuard(runtime.store, BanPolicy(100, failure_delay=0))
    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def verify(address: str) -> None:
        running[address] = running.get(address, 0) + 1
        peak[address] = max(peak.get(address, 0), running[address])
        await asyncio.sleep(0)  # let the others in, if the guard allowed it
        await asyncio.sleep(0)
        running[address] -= 1

    attempts = [in_context(address, lambda a=address: guard.guarded(lambda: verify(a)))
                for address in ["192.0.2.1"] * 5 + ["192.0.2.2"] * 5]
    await asyncio.gather(*attempts)
    assert peak == {"192.0.2.1": 1, "192.0.2.2": 1}
    assert await guard.failures_of("192.0.2.1") == 5


async def test_failure_answer_is_delayed_without_blocking_the_loop(runtime: Runtime) -> None:
    guard = AuthGuard(runtime.store, BanPolicy(100, failure_delay=0.3))
    started = time.monotonic()
    slow = in_context("192.0.2.1", lambda: guard.guarded(Verifier(None)))
    quick = in_context("192.0.2.2", lambda: guard.guarded(Verifier("ok")))
    assert await quick == "ok"
    assert time.monotonic() - started < 0.25  # the other client was not held up
    assert await slow is None
    assert time.monotonic() - started >= 0.3


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Bans on every backend (the store contract suite's two)."""
    feed, blobs = ChangeFeed(), FileBlobStore(tmp_path / "blobs")
    blobs.prepare()
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            store: Store = SqliteStore(tmp_path / "db.sqlite3", blobs, feed)
        else:
            from postroom.store.postgres import PostgresStore
            from tests.postgres.pgserver import new_database

            store = PostgresStore(stack.enter_context(new_database()), blobs, feed)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


async def test_store_bans_round_trip(any_store: Store) -> None:
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    store = any_store
    await store.add_ban(Ban("192.0.2.1", now, now + dt.timedelta(hours=1), 5, "test"))
    await store.add_ban(Ban("2001:db8::/64", now, now + dt.timedelta(minutes=5), 7, "test"))
    assert [b.address for b in await store.list_bans(now)] == ["2001:db8::/64", "192.0.2.1"]
    assert await store.get_ban("192.0.2.1", now + dt.timedelta(minutes=59)) is not None
    assert await store.get_ban("192.0.2.1", now + dt.timedelta(hours=2)) is None
    await store.add_ban(Ban("192.0.2.1", now, now + dt.timedelta(hours=3), 9, "again"))
    ban = await store.get_ban("192.0.2.1", now + dt.timedelta(hours=2))
    assert ban is not None and ban.failures == 9
    assert await store.delete_ban("192.0.2.1") == 1
    assert await store.delete_ban("192.0.2.1") == 0
    assert [b.address for b in await store.list_bans(now)] == ["2001:db8::/64"]


# -- through every protocol, against the whole App -------------------------------------------


def assert_refused_everywhere(app: AppThread) -> None:
    for name, line in (("smtp", BANNED_SMTP), ("submission", BANNED_SMTP),
                       ("pop3", BANNED_POP3), ("imap", BANNED_IMAP)):
        sock = connect(app.port(name))
        assert read_line(sock) == line, name
        assert is_closed(sock)
        sock.close()


def auth_plain(smtp: smtplib.SMTP, password: str) -> None:
    """One AUTH PLAIN (smtplib's login() would retry with LOGIN: two attempts)."""
    smtp.ehlo_or_helo_if_needed()
    smtp.user, smtp.password = USER, password
    smtp.auth("PLAIN", smtp.auth_plain)


def smtp_login(app: AppThread, tls: ssl.SSLContext, password: str) -> bool:
    with smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), context=tls,
                          timeout=10) as smtp:
        try:
            auth_plain(smtp, password)
        except smtplib.SMTPAuthenticationError:
            return False
        return True


def test_smtp_auth_failures_ban_the_address(start_app: StartApp, client_tls: ssl.SSLContext,
                                            hash_checks: list[str]) -> None:
    with start_app(AUTH_BAN_MAX_FAILURES=3) as app:
        assert smtp_login(app, client_tls, PASSWORD)  # a success counts for nothing
        with smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), context=client_tls,
                              timeout=10) as smtp:
            for _ in range(3):
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    auth_plain(smtp, "wrong")
            assert len(hash_checks) == 4  # the success and three failures
            # The same session, now banned: refused without hashing, right password or not.
            with pytest.raises(smtplib.SMTPAuthenticationError):
                auth_plain(smtp, PASSWORD)
            assert len(hash_checks) == 4
        assert_refused_everywhere(app)
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), context=client_tls,
                             timeout=10)
        assert refused.value.smtp_code == 421


def test_pop3_failures_ban_the_address(start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    with start_app(AUTH_BAN_MAX_FAILURES=4) as app:
        for _ in range(2):  # POP3 hangs up after 3 failures; the count carries on
            pop = poplib.POP3_SSL("127.0.0.1", app.port("pop3s"), context=client_tls,
                                  timeout=10)
            for _ in range(2):
                pop.user(USER)
                with pytest.raises(poplib.error_proto):
                    pop.pass_("wrong")
            pop.close()
        assert_refused_everywhere(app)


def test_imap_failures_ban_the_address(start_app: StartApp, client_tls: ssl.SSLContext,
                                       hash_checks: list[str]) -> None:
    with start_app(AUTH_BAN_MAX_FAILURES=3) as app:
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=10)
        for _ in range(3):
            with pytest.raises(imaplib.IMAP4.error):
                imap.login(USER, "wrong")
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(USER, PASSWORD)
        assert len(hash_checks) == 3
        imap.shutdown()
        assert_refused_everywhere(app)
        with pytest.raises(imaplib.IMAP4.error):  # BYE as the greeting
            imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                              timeout=10)


def test_failed_login_is_answered_late(start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    with start_app(AUTH_FAILURE_DELAY=0.4) as app:
        started = time.monotonic()
        assert not smtp_login(app, client_tls, "wrong")
        assert time.monotonic() - started >= 0.4
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=10)
        started = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(USER, "wrong")
        assert time.monotonic() - started >= 0.4
        imap.shutdown()


def test_other_addresses_keep_working_while_one_is_banned(start_app: StartApp,
                                                          client_tls: ssl.SSLContext) -> None:
    """Tests may only use 127.0.0.1, so the other client is the banned one here: a ban on
    another address (and a guard failure count for it) leaves 127.0.0.1 served."""
    with start_app(AUTH_BAN_MAX_FAILURES=2) as app:
        guard = app.app.guard
        assert guard is not None
        for _ in range(2):
            app.call(guard.record_failure("192.0.2.77"))
        assert app.call(guard.is_banned("192.0.2.77"))
        assert smtp_login(app, client_tls, PASSWORD)
        sock = connect(app.port("imap"))
        assert read_line(sock).startswith(b"* OK")
        sock.close()


# -- postroom ban list / del -----------------------------------------------------------------


def postroom_cli(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), *args],
                          capture_output=True, text=True, timeout=60)


def test_ban_list_and_del_while_serving(start_app: StartApp, client_tls: ssl.SSLContext,
                                        tmp_path: Path) -> None:
    env = write_env(tmp_path / "cli.env", {"DATA_DIR": tmp_path / "data",
                                           "OVERRIDE_HOSTNAME": TEST_HOSTNAME})
    with start_app(AUTH_BAN_MAX_FAILURES=2) as app:
        assert postroom_cli(env, "ban", "list").stdout == ""
        for _ in range(2):
            assert not smtp_login(app, client_tls, "wrong")
        listing = postroom_cli(env, "ban", "list")
        assert listing.returncode == 0, listing.stderr
        (row,) = [line.split("\t") for line in listing.stdout.splitlines()]
        assert row[0] == "127.0.0.1" and row[2] == "2"
        assert_refused_everywhere(app)

        missing = postroom_cli(env, "ban", "del", "192.0.2.1")
        assert missing.returncode == 1 and "no ban for 192.0.2.1" in missing.stderr
        assert postroom_cli(env, "ban", "del", "not-an-ip").returncode == 1
        lifted = postroom_cli(env, "ban", "del", "127.0.0.1")
        assert lifted.returncode == 0, lifted.stderr
        assert "unbanned 127.0.0.1" in lifted.stdout
        assert smtp_login(app, client_tls, PASSWORD)  # served again, immediately
        assert postroom_cli(env, "ban", "list").stdout == ""

        added = postroom_cli(env, "ban", "add", "127.0.0.1", "--time", "10m")
        assert added.returncode == 0, added.stderr
        assert_refused_everywhere(app)
