"""Greylisting (issue 18, postgrey semantics) over real SMTP: 451 4.7.1 with POSTGREY_TEXT
until POSTGREY_DELAY has passed, then accepted; the auto-whitelist after N successful
retries; authenticated and trusted clients never delayed; the store's role on both
backends; `postroom greylist list|del`."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom.cli import app as cli_app
from postroom.runtime import Runtime
from tests.conftest import make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import NO_DNS_CHECKS, AppThread

USER, OTHER = "user@example.test", "other@example.test"
DELAY = 1
MESSAGE = b"From: a@remote.example\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def app(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[AppThread]:
    config = make_config(tmp_path, server_cert, **NO_DNS_CHECKS, ENABLE_POSTGREY=1,
                         POSTGREY_DELAY=DELAY, POSTGREY_AUTO_WHITELIST_CLIENTS=2,
                         POSTGREY_TEXT="Greylisted, come back later", ENABLE_IMAP=0,
                         ENABLE_POP3=0)
    with AppThread(config) as server:
        server.add_account(USER, "pw")
        server.add_account(OTHER, "pw")
        yield server


def rcpt(server: AppThread, recipient: str, sender: str = "list-1234@remote.example"
         ) -> tuple[int, bytes]:
    """One transaction's RCPT reply; the message is sent when it is accepted."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as client:
        client.ehlo()
        client.mail(sender)
        code, text = client.rcpt(recipient)
        if code == 250:
            client.data(MESSAGE)
        return code, text


def wait_out_the_delay(started: float) -> None:
    """Waiting out POSTGREY_DELAY is what is tested, not a synchronisation."""
    time.sleep(max(0.0, started + DELAY + 0.05 - time.monotonic()))


def test_delay_then_accepted_then_auto_whitelisted(app: AppThread) -> None:
    started = time.monotonic()
    assert rcpt(app, USER) == (451, b"4.7.1 Greylisted, come back later")
    assert rcpt(app, USER, "list-5678@remote.example")[0] == 451  # same triplet (VERP)
    wait_out_the_delay(started)
    assert rcpt(app, USER)[0] == 250  # first successful retry
    assert rcpt(app, OTHER)[0] == 451  # a new triplet: its own delay
    assert rcpt(app, USER, "list-9@remote.example")[0] == 250  # second: whitelisted now
    assert rcpt(app, OTHER)[0] == 250  # the client passes at once, whatever the triplet
    assert rcpt(app, OTHER, "someone@else.example")[0] == 250
    assert len(app.inbox_messages(USER)) == 2 and len(app.inbox_messages(OTHER)) == 2


def test_authenticated_clients_are_not_delayed(app: AppThread,
                                               client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), context=client_tls,
                          timeout=20) as client:
        client.login(USER, "pw")
        client.sendmail(USER, [OTHER], b"From: user@example.test\r\nSubject: x\r\n\r\nx\r\n")
    assert len(app.inbox_messages(OTHER)) == 1


def test_trusted_networks_are_not_delayed(tmp_path: Path,
                                          server_cert: tuple[Path, Path]) -> None:
    config = make_config(tmp_path, server_cert, **NO_DNS_CHECKS, ENABLE_POSTGREY=1,
                         POSTGREY_DELAY=300, TRUSTED_NETWORKS="127.0.0.0/8", ENABLE_IMAP=0,
                         ENABLE_POP3=0)
    with AppThread(config) as server:
        server.add_account(USER, "pw")
        assert rcpt(server, USER)[0] == 250


async def test_store_role(runtime: Runtime) -> None:
    store = runtime.store
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    old = start - dt.timedelta(days=35)
    first = await store.greylist_seen("192.0.2", "a@x.example", USER, start, old)
    assert (first.first_seen, first.last_seen, first.passes) == (start, start, 0)
    later = start + dt.timedelta(minutes=10)
    again = await store.greylist_seen("192.0.2", "a@x.example", USER, later, old)
    assert (again.first_seen, again.last_seen) == (start, later)
    assert await store.greylist_passed("192.0.2", "a@x.example", USER, later) == 1
    assert await store.greylist_passed("192.0.2", "b@x.example", OTHER, later) == 2
    known = await store.greylist_client("192.0.2", old)
    assert known is not None and known.passes == 2
    assert await store.greylist_client("192.0.2", later + dt.timedelta(seconds=1)) is None
    # Stale: seen last before `fresh_after`, it starts over.
    much_later = start + dt.timedelta(days=40)
    restarted = await store.greylist_seen("192.0.2", "a@x.example", USER, much_later,
                                          much_later - dt.timedelta(days=35))
    assert (restarted.first_seen, restarted.passes) == (much_later, 0)
    assert [e.sender for e in await store.list_greylist()] == ["a@x.example"]
    assert await store.expire_greylist(much_later) == 1  # the client's row
    assert await store.list_greylist_clients() == []
    assert await store.delete_greylist("192.0.2") == 1
    assert await store.list_greylist() == []


async def test_threshold_storage(runtime: Runtime) -> None:
    from postroom.store.api import SpamThresholds

    await runtime.accounts.add_account(USER, "pw")
    account = await runtime.store.get_account(USER)
    assert account is not None
    assert await runtime.store.get_spam_thresholds(account.id) is None
    await runtime.store.set_spam_thresholds(account.id, SpamThresholds(None, 8.0, 12.5))
    assert await runtime.store.get_spam_thresholds(account.id) == SpamThresholds(None, 8.0, 12.5)
    assert await runtime.store.list_spam_thresholds() == [(USER, SpamThresholds(None, 8.0, 12.5))]
    await runtime.store.set_spam_thresholds(account.id, SpamThresholds())
    assert await runtime.store.get_spam_thresholds(account.id) is None
    await runtime.store.set_spam_thresholds(account.id, SpamThresholds(1.0))
    await runtime.accounts.delete_account(USER)  # the thresholds go with the account
    assert await runtime.store.list_spam_thresholds() == []


def postroom(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """In process (typer's runner), beside the running server, on the same store."""
    result = CliRunner().invoke(cli_app, ["--config", str(env_file), *args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def test_cli_list_and_del(app: AppThread, tmp_path: Path) -> None:
    assert rcpt(app, USER)[0] == 451
    config = app.runtime.config
    env = tmp_path / "cli.env"
    env.write_text(f"DATA_DIR={config.data_dir}\nOVERRIDE_HOSTNAME=mail.example.test\n"
                   + "".join(f"{key}={value}\n" for key, value in _storage_env(config)))
    listed = postroom(env, "greylist", "list")
    assert listed.returncode == 0, listed.stderr
    assert "127.0.0\tlist-#@remote.example\tuser@example.test\t" in listed.stdout
    removed = postroom(env, "greylist", "del", "127.0.0.9")
    assert removed.returncode == 0, removed.stderr
    assert "127.0.0: 1 entries removed" in removed.stdout
    assert postroom(env, "greylist", "del", "127.0.0.9").returncode == 1


def _storage_env(config: object) -> list[tuple[str, str]]:
    """The store settings of the running app (PostgreSQL when the suite runs on it)."""
    from postroom.config import Config

    assert isinstance(config, Config)
    if config.storage == "postgresql":
        return [("STORAGE", "postgresql"), ("DATABASE_URL", config.database_url)]
    return []


def test_clients_on_a_dnswl_are_not_delayed(tmp_path: Path,
                                            server_cert: tuple[Path, Path]) -> None:
    with DnsTestServer("2.0.0.127.wl.test. 60 IN A 127.0.2.3\n") as dns:
        config = make_config(tmp_path, server_cert, **NO_DNS_CHECKS, ENABLE_POSTGREY=1,
                             POSTGREY_DELAY=300, DNSWL_ZONES="wl.test", DNSBL_ZONES="",
                             DNSBL_DOMAIN_ZONES="", DNSBL_QUERY_PRIVATE=1,
                             DNS_NAMESERVERS=dns.address, ENABLE_IMAP=0, ENABLE_POP3=0)
        with AppThread(config) as server:
            server.add_account(USER, "pw")
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20,
                              source_address=("127.0.0.2", 0)) as client:
                client.sendmail("a@remote.example", [USER], MESSAGE)
            assert rcpt(server, USER)[0] == 451  # 127.0.0.1 is not on the list
            (stored,) = server.inbox_messages(USER)
    assert b"X-Spam" not in stored  # -1 is below SA_TAG
