"""SSL_TYPE=acme end to end against pebble: HTTP-01 and TLS-ALPN-01 validated for real on
loopback, the certificates served on 465 and 993 (by SNI for the hosted domain's names),
and a renewal replacing the served certificate without a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from postroom.accounts.service import AccountService
from postroom.clock import ManualClock
from postroom.config import Config
from postroom.store import open_store
from postroom.store.changes import ChangeFeed
from postroom.tls.acmemanager import RETRY_BASE, renewal_time
from postroom.tls.certfiles import CHAIN_FILE, KEY_FILE, read_facts_file
from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread, write_env
from tests.tls_acme.conftest import HOSTED_DOMAIN, PebbleFactory
from tests.tls_acme.pebble import Pebble, needs_pebble

pytestmark = [needs_pebble, pytest.mark.timeout(120)]


def acme_config(tmp_path: Path, server_cert: tuple[Path, Path], pebble: Pebble,
                challenge: str) -> Config:
    return make_config(tmp_path, server_cert, SSL_TYPE="acme",
                       ACME_DIRECTORY=pebble.directory, ACME_CA_BUNDLE=pebble.ca_bundle,
                       ACME_CHALLENGE=challenge, ACME_EMAIL="admin@example.org",
                       ACME_HTTP_PORT=pebble.http_port, ACME_TLS_PORT=pebble.tls_port)


async def add_hosted_domain(config: Config) -> None:
    """An account in example.org before `serve` starts: its names are in the first pass."""
    store, _blobs = await open_store(config, ChangeFeed())
    try:
        await AccountService(store).add_account(f"admin@{HOSTED_DOMAIN}", "secret-pass-1")
    finally:
        await store.close()


def served_certificate(port: int, server_name: str, trust: ssl.SSLContext) -> x509.Certificate:
    """The leaf a verifying TLS client gets on `port` asking for `server_name`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            trust.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def trusting(pebble: Pebble, tmp_path: Path) -> ssl.SSLContext:
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.root_pem())
    return ssl.create_default_context(cafile=str(root))


def run_app_until_issued(config: Config) -> AppThread:
    asyncio.run(add_hosted_domain(config))
    app = AppThread(config).__enter__()
    assert app.app.acme is not None
    app.call(asyncio.wait_for(app.app.acme.wait_for_pass(1), 90), timeout=100)
    return app


def check_issued_and_served(app: AppThread, config: Config, trust: ssl.SSLContext) -> None:
    certs = config.acme_dir / "certs"
    host = read_facts_file(certs / TEST_HOSTNAME / CHAIN_FILE)
    domain = read_facts_file(certs / HOSTED_DOMAIN / CHAIN_FILE)
    assert not host.is_self_signed and host.names == (TEST_HOSTNAME,)
    assert set(domain.names) == {"mta-sts.example.org", "autoconfig.example.org"}
    assert (certs / TEST_HOSTNAME / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (config.acme_dir / "account.key").stat().st_mode & 0o777 == 0o600
    for listener in ("submissions", "imaps"):
        port = app.port(listener)
        assert served_certificate(port, TEST_HOSTNAME, trust).serial_number == host.serial
        # SNI: the hosted domain's own certificate for its names
        assert served_certificate(port, "mta-sts.example.org", trust
                                  ).serial_number == domain.serial


def test_http01_certificates_are_issued_and_served(
        tmp_path: Path, server_cert: tuple[Path, Path], start_pebble: PebbleFactory) -> None:
    pebble = start_pebble()
    config = acme_config(tmp_path, server_cert, pebble, "http-01")
    app = run_app_until_issued(config)
    try:
        assert app.app.acme is not None and app.app.acme.last_error == {}
        trust = trusting(pebble, tmp_path)
        check_issued_and_served(app, config, trust)
        assert any("validate w/ HTTP" in line for line in pebble.output)  # really checked
        # `postroom tls status` as the administrator runs it, on the same files.
        env = write_env(tmp_path / "postroom.env", {
            "OVERRIDE_HOSTNAME": TEST_HOSTNAME, "DATA_DIR": config.data_dir,
            "SSL_TYPE": "acme"})
        status = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env),
                                 "tls", "status"], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        rows = [line.split("\t") for line in status.stdout.splitlines()]
        assert [(row[0], set(row[1].split())) for row in rows] == [
            ("default", {TEST_HOSTNAME}),
            ("acme", {"mta-sts.example.org", "autoconfig.example.org"})]
        assert all(row[2].startswith("Pebble Intermediate CA") for row in rows), rows
        # Verifying clients read each protocol's greeting over the ACME certificate.
        for listener, greeting in (("submissions", b"220 "), ("imaps", b"* OK")):
            with socket.create_connection(("127.0.0.1", app.port(listener)), timeout=10
                                          ) as raw, \
                    trust.wrap_socket(raw, server_hostname=TEST_HOSTNAME) as tls:
                assert tls.recv(200).startswith(greeting)
    finally:
        app.stop()


def test_tls_alpn01_certificates_are_issued_and_served(
        tmp_path: Path, server_cert: tuple[Path, Path], start_pebble: PebbleFactory) -> None:
    pebble = start_pebble()
    config = acme_config(tmp_path, server_cert, pebble, "tls-alpn-01")
    app = run_app_until_issued(config)
    try:
        assert app.app.acme is not None and app.app.acme.last_error == {}
        # pebble really connected: each of the 3 names validated over acme-tls/1
        # (pebble's validation runs from several perspectives, hence at least 3).
        assert app.app.acme.board.answered >= 3
        check_issued_and_served(app, config, trusting(pebble, tmp_path))
    finally:
        app.stop()


def test_renewal_replaces_the_served_certificate_without_restart(
        tmp_path: Path, server_cert: tuple[Path, Path], start_pebble: PebbleFactory) -> None:
    pebble = start_pebble(validity_seconds=3600)  # short-lived: renewal due at ~40 min
    config = acme_config(tmp_path, server_cert, pebble, "http-01")
    app = run_app_until_issued(config)
    try:
        manager = app.app.acme
        assert manager is not None
        trust = trusting(pebble, tmp_path)
        port = app.port("imaps")
        first = read_facts_file(config.acme_dir / "certs" / TEST_HOSTNAME / CHAIN_FILE)
        assert first.lifetime <= dt.timedelta(hours=1, seconds=1)
        assert served_certificate(port, TEST_HOSTNAME, trust).serial_number == first.serial

        clock = ManualClock(dt.datetime.now(dt.UTC))
        manager.clock = clock
        # Before 2/3 of the lifetime nothing is ordered.
        clock.set(renewal_time(first) - dt.timedelta(minutes=1))
        passes = manager.passes
        app.loop.call_soon_threadsafe(manager.kick)
        app.call(asyncio.wait_for(manager.wait_for_pass(passes + 1), 60), timeout=70)
        assert read_facts_file(config.acme_dir / "certs" / TEST_HOSTNAME / CHAIN_FILE
                               ).serial == first.serial
        # Past it, the certificate is renewed and served at once on the same listener.
        clock.set(renewal_time(first) + dt.timedelta(seconds=1))
        app.loop.call_soon_threadsafe(manager.kick)
        app.call(asyncio.wait_for(manager.wait_for_pass(passes + 2), 60), timeout=70)
        renewed = read_facts_file(config.acme_dir / "certs" / TEST_HOSTNAME / CHAIN_FILE)
        assert renewed.serial != first.serial
        assert served_certificate(port, TEST_HOSTNAME, trust).serial_number == renewed.serial
        assert served_certificate(app.port("submissions"), TEST_HOSTNAME, trust
                                  ).serial_number == renewed.serial
    finally:
        app.stop()


def test_failed_validation_is_retried_with_back_off(
        tmp_path: Path, server_cert: tuple[Path, Path], start_pebble: PebbleFactory,
        acme_dns: DnsTestServer) -> None:
    acme_dns.remove("mta-sts.example.org")  # the CA cannot reach us under that name
    pebble = start_pebble()
    config = acme_config(tmp_path, server_cert, pebble, "http-01")
    app = run_app_until_issued(config)
    try:
        manager = app.app.acme
        assert manager is not None
        certs = config.acme_dir / "certs"
        assert "mta-sts.example.org" in manager.last_error[HOSTED_DOMAIN]
        assert (certs / TEST_HOSTNAME / CHAIN_FILE).is_file()  # one failure blocks no other
        assert not (certs / HOSTED_DOMAIN).exists()

        acme_dns.add("mta-sts.example.org", "A", "127.0.0.1")
        clock = ManualClock(dt.datetime.now(dt.UTC))
        manager.clock = clock
        app.loop.call_soon_threadsafe(manager.kick)  # before the back-off: not retried
        app.call(asyncio.wait_for(manager.wait_for_pass(2), 60), timeout=70)
        assert not (certs / HOSTED_DOMAIN).exists()
        clock.advance(RETRY_BASE + dt.timedelta(seconds=1))
        app.loop.call_soon_threadsafe(manager.kick)
        app.call(asyncio.wait_for(manager.wait_for_pass(3), 60), timeout=70)
        assert manager.last_error == {}
        assert set(read_facts_file(certs / HOSTED_DOMAIN / CHAIN_FILE).names) == {
            "mta-sts.example.org", "autoconfig.example.org"}
    finally:
        app.stop()
