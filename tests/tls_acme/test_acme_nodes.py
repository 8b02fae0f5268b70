"""Several nodes on one store: the lease lets one order, the others take the certificates
from the store; the TlsStore role itself (run on SQLite, and on PostgreSQL under
POSTROOM_TEST_STORAGE=postgresql)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.clock import SystemClock
from postroom.store import open_store
from postroom.store.api import Store
from postroom.store.changes import ChangeFeed
from postroom.tls.acmeclient import AcmeSettings
from postroom.tls.acmemanager import LEASE_NAME, LEASE_WAIT, AcmeManager
from postroom.tls.certfiles import CHAIN_FILE, read_facts_file
from tests.conftest import TEST_HOSTNAME, make_config
from tests.tls_acme.conftest import HOSTED_DOMAIN, PebbleFactory
from tests.tls_acme.pebble import Pebble, needs_pebble

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def store(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Store]:
    opened, _blobs = await open_store(make_config(tmp_path, server_cert), ChangeFeed())
    try:
        yield opened
    finally:
        await opened.close()


async def test_lease_has_one_holder_until_it_expires(store: Store) -> None:
    later = NOW + dt.timedelta(minutes=10)
    assert await store.claim_tls_lease("acme", "a", NOW, later)
    assert not await store.claim_tls_lease("acme", "b", NOW + dt.timedelta(minutes=5), later)
    assert await store.claim_tls_lease("acme", "a", NOW + dt.timedelta(minutes=5),
                                       later + dt.timedelta(minutes=5))  # extended
    assert not await store.claim_tls_lease("acme", "b", later, later + dt.timedelta(minutes=9))
    assert await store.claim_tls_lease("acme", "b", later + dt.timedelta(minutes=5),
                                       later + dt.timedelta(minutes=15))  # expired: taken
    await store.release_tls_lease("acme", "a")  # not a's any more: nothing happens
    assert not await store.claim_tls_lease("acme", "a", later + dt.timedelta(minutes=6), later)
    await store.release_tls_lease("acme", "b")
    assert await store.claim_tls_lease("acme", "a", later + dt.timedelta(minutes=6), later)


async def test_account_key_first_stored_wins_and_certificates_replace(store: Store) -> None:
    assert await store.acme_account_key("KEY-1") == "KEY-1"
    assert await store.acme_account_key("KEY-2") == "KEY-1"
    await store.put_tls_certificate("example.org", "CHAIN-1", "PRIV-1", NOW)
    await store.put_tls_certificate("example.org", "CHAIN-2", "PRIV-2", NOW)
    await store.put_tls_certificate("example.net", "CHAIN-3", "PRIV-3", NOW)
    rows = await store.list_tls_certificates()
    assert [(r.name, r.chain_pem, r.key_pem) for r in rows] == [
        ("example.net", "CHAIN-3", "PRIV-3"), ("example.org", "CHAIN-2", "PRIV-2")]
    assert rows[0].updated == NOW


def node(pebble: Pebble, store: Store, data_dir: Path) -> AcmeManager:
    settings = AcmeSettings(pebble.directory, pebble.ca_bundle, "", "http-01")

    async def domains() -> list[str]:
        return [HOSTED_DOMAIN]

    return AcmeManager(settings, data_dir / "acme", TEST_HOSTNAME, ["mta-sts", "autoconfig"],
                       store, domains, SystemClock(), listen_hosts=["127.0.0.1"],
                       http_port=pebble.http_port, tls_port=pebble.tls_port)


def issued_count(pebble: Pebble) -> int:
    return sum("Issued certificate" in line for line in pebble.output)


@needs_pebble
@pytest.mark.timeout(120)
async def test_one_node_orders_and_the_others_take_the_files(
        tmp_path: Path, store: Store, start_pebble: PebbleFactory) -> None:
    pebble = start_pebble()
    first, second = node(pebble, store, tmp_path / "a"), node(pebble, store, tmp_path / "b")
    # While another node holds the lease, nothing is ordered; it looks again soon.
    assert await store.claim_tls_lease(LEASE_NAME, "elsewhere", NOW - dt.timedelta(days=1),
                                       dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    before = dt.datetime.now(dt.UTC)
    next_at = await second.run_pass()
    assert next_at <= dt.datetime.now(dt.UTC) + LEASE_WAIT and next_at >= before
    assert issued_count(pebble) == 0 and not (second.certs_dir / HOSTED_DOMAIN).exists()
    await store.release_tls_lease(LEASE_NAME, "elsewhere")

    await first.run_pass()
    assert issued_count(pebble) == 2
    await second.run_pass()  # takes both from the store, orders nothing
    assert issued_count(pebble) == 2
    for folder in (TEST_HOSTNAME, HOSTED_DOMAIN):
        mine = read_facts_file(second.certs_dir / folder / CHAIN_FILE)
        assert mine == read_facts_file(first.certs_dir / folder / CHAIN_FILE)
    assert (tmp_path / "a/acme/account.key").is_file()
    assert not (tmp_path / "b/acme/account.key").exists()  # it never needed the account
