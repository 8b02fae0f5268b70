"""Issue 20 (part C): our MTA-STS policy served over HTTPS (RFC 8461 §3.3) on
MTA_STS_PORT, each hosted domain by its own certificate (SNI), and that port shared with
ACME TLS-ALPN-01 (RFC 8737) — real sockets, curl and Python's TLS clients, pebble as CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from postroom.clock import ManualClock
from postroom.config import Config
from postroom.tls.acmemanager import renewal_time
from postroom.tls.certfiles import CHAIN_FILE, read_facts_file
from postroom.tls.clienthello import offered_alpn, record_length
from postroom.tls.contexts import TlsContexts
from postroom.tls.policyserver import PolicyServer
from postroom.tls.stspolicy import StsPolicy, policy_for, policy_id
from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.server import AppThread, ServeProcess, local_serve_env, write_env
from tests.tls_acme.conftest import HOSTED_DOMAIN, PebbleFactory, acme_dns, start_pebble
from tests.tls_acme.pebble import free_port, needs_pebble
from tests.tls_acme.test_acme_pebble import acme_config, run_app_until_issued, trusting

__all__ = ["acme_dns", "start_pebble"]  # the pebble fixtures, used by the last test
DOMAINS = ("example.org", "example.net")
POLICY_PATH = "/.well-known/mta-sts.txt"


def write_folder(ca: trustme.CA, root: Path, folder: str, *names: str) -> None:
    cert = ca.issue_cert(*names)
    target = root / folder
    target.mkdir(parents=True)
    cert.private_key_pem.write_to_path(target / "privkey.pem")
    (target / "fullchain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))


@pytest.fixture
def ca_file(tmp_path: Path, trustme_ca: trustme.CA) -> Path:
    path = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(path)
    return path


def serving_config(tmp_path: Path, server_cert: tuple[Path, Path], ca: trustme.CA,
                   **overrides: object) -> Config:
    """Two hosted domains, each with its own certificate for its policy host."""
    root = tmp_path / "domain-certs"
    for domain in DOMAINS:
        write_folder(ca, root, domain, f"mta-sts.{domain}")
    return make_config(tmp_path, server_cert, MTA_STS_PORT=free_port(),
                       SSL_DOMAIN_CERT_DIR=root, **overrides)


@pytest.fixture
def app(tmp_path: Path, server_cert: tuple[Path, Path], trustme_ca: trustme.CA
        ) -> Iterator[AppThread]:
    with AppThread(serving_config(tmp_path, server_cert, trustme_ca)) as running:
        for domain in DOMAINS:
            running.add_account(f"admin@{domain}", "secret-pass-1")
        yield running


def curl(port: int, host: str, ca_file: Path, path: str = POLICY_PATH,
         *extra: str) -> tuple[str, str]:
    """(response head, body) as curl gets them, resolving `host` to 127.0.0.1."""
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--cacert", str(ca_file), "--resolve",
         f"{host}:{port}:127.0.0.1", "-D", "-", *extra, f"https://{host}:{port}{path}"],
        capture_output=True, timeout=30, check=True)
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    return head, body


def fetch(port: int, host: str, trust: ssl.SSLContext, method: str = "GET",
          path: str = POLICY_PATH, host_field: str | None = None
          ) -> tuple[int, dict[str, str], bytes, set[str]]:
    """(status, headers, body, certificate names) with http.client, asking for `host`
    by SNI (and, unless `host_field`, in the Host field)."""
    connection = http.client.HTTPSConnection(host, port, timeout=20, context=trust)
    sock = trust.wrap_socket(socket.create_connection(("127.0.0.1", port), 20),
                             server_hostname=host)
    connection.sock = sock
    cert = sock.getpeercert()
    assert cert is not None
    names = {str(entry[1]) for entry in cert["subjectAltName"] if entry[0] == "DNS"}
    connection.request(method, path, headers={"Host": host_field} if host_field else {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body, names


def expected_policy(config: Config) -> str:
    return (f"version: STSv1\r\nmode: {config.mta_sts_mode}\r\nmx: {TEST_HOSTNAME}\r\n"
            f"max_age: {config.mta_sts_max_age}\r\n")


def test_each_hosted_domain_gets_its_policy_over_its_own_certificate(
        app: AppThread, ca_file: Path, client_tls: ssl.SSLContext) -> None:
    port = app.port("mta-sts")
    assert any(listener.name == "mta-sts" for listener in app.app.listeners)
    for domain in DOMAINS:
        head, body = curl(port, f"mta-sts.{domain}", ca_file)  # curl verifies the name
        assert head.startswith("HTTP/1.1 200 OK\r\n"), head
        assert "content-type: text/plain\r\n" in head.lower() + "\r\n"
        assert body == expected_policy(app.config)
        status, _headers, raw, names = fetch(port, f"mta-sts.{domain}", client_tls)
        assert status == 200 and raw.decode() == body
        assert names == {f"mta-sts.{domain}"}  # SNI chose the domain's own certificate


def test_other_hosts_paths_and_methods(app: AppThread, ca_file: Path,
                                       client_tls: ssl.SSLContext) -> None:
    port = app.port("mta-sts")
    host = "mta-sts.example.org"
    assert fetch(port, host, client_tls, path="/")[0] == 404
    assert fetch(port, host, client_tls, path="/.well-known/mta-sts.txt.bak")[0] == 404
    assert fetch(port, host, client_tls, path=POLICY_PATH + "?x=1")[0] == 200
    # SNI for a served name, the Host field of another: never the policy.
    for other in ("mta-sts.example.com", "example.org", "www.example.org", "mta-sts."):
        assert fetch(port, host, client_tls, host_field=other)[0] == 404, other
    status, headers, body, _ = fetch(port, host, client_tls, method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, body, _ = fetch(port, host, client_tls, method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(expected_policy(app.config))
    head, _ = curl(port, host, ca_file, POLICY_PATH, "-X", "DELETE")
    assert head.startswith("HTTP/1.1 405")


# -- hostile clients, against the listener's handler on a real socket ------------------------
async def start_policy_server(config: Config, deadline: float
                              ) -> tuple[asyncio.Server, PolicyServer]:
    async def domains() -> list[str]:
        return list(DOMAINS)

    assert config.ssl_domain_cert_dir is not None
    server = PolicyServer(TlsContexts(config.cert_path, config.key_path,
                                      cert_dirs=[config.ssl_domain_cert_dir]),
                          policy_for(config), domains, deadline=deadline)
    listening = await asyncio.start_server(server.handle_connection, "127.0.0.1", 0)
    return listening, server


async def get(port: int, trust: ssl.SSLContext, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=trust, server_hostname="mta-sts.example.org")
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


def policy_request(*fields: str) -> bytes:
    return ("\r\n".join([f"GET {POLICY_PATH} HTTP/1.1", "Host: mta-sts.example.org",
                         *fields]) + "\r\n\r\n").encode()


async def test_hostile_clients_are_cut_off_while_others_are_served(
        tmp_path: Path, server_cert: tuple[Path, Path], trustme_ca: trustme.CA,
        client_tls: ssl.SSLContext) -> None:
    config = serving_config(tmp_path, server_cert, trustme_ca)
    listening, _server = await start_policy_server(config, deadline=3.0)
    port = listening.sockets[0].getsockname()[1]
    try:
        # Slowloris: a ClientHello begun and never finished.
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"\x16\x03\x01")
        # Slow in HTTP: TLS done, then a request that never ends.
        lazy_reader, lazy_writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_tls, server_hostname="mta-sts.example.org")
        lazy_writer.write(b"GET / HTTP/1.1\r\nHost: mta-sts.exa")
        # Meanwhile another client is served.
        answer = await get(port, client_tls, policy_request())
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(expected_policy(config).encode())
        # The deadline closes both without an answer.
        assert await asyncio.wait_for(slow_reader.read(), 30) == b""
        assert await asyncio.wait_for(lazy_reader.read(), 30) == b""
        slow_writer.close()
        lazy_writer.close()
        # A huge header and too many fields: refused, not buffered.
        huge = await get(port, client_tls, policy_request("X-Big: " + "a" * 20000))
        assert huge.startswith(b"HTTP/1.1 431 ")
        many = await get(port, client_tls, policy_request(*[f"X-{n}: v" for n in range(60)]))
        assert many.startswith(b"HTTP/1.1 431 ")
        garbled = await get(port, client_tls, b"GET\x00 / HTTP/1.1\r\n\r\n")
        assert garbled.startswith(b"HTTP/1.1 400 ")
        # Not TLS at all, or a record too big to be one: closed, nothing sent.
        for first in (b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\xff\xff" + b"x" * 100):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(first)
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()
    finally:
        listening.close()
        await listening.wait_closed()


# -- the policy and its id -------------------------------------------------------------------
def test_the_id_follows_the_policy_text(tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    texts = {}
    for mode in ("testing", "enforce", "none"):
        policy = policy_for(make_config(tmp_path, server_cert, MTA_STS_MODE=mode))
        assert f"mode: {mode}\r\n" in policy.text  # none: the RFC 8461 §8.3 withdrawal
        assert policy.id == policy_id(policy.text) and policy.id.isalnum()
        texts[policy.id] = policy.text
    assert len(texts) == 3
    same = StsPolicy("testing", (TEST_HOSTNAME,), 604800)
    assert same.id == policy_for(make_config(tmp_path, server_cert)).id  # stable
    longer = StsPolicy("testing", (TEST_HOSTNAME,), 86400)
    assert longer.id != same.id


def test_client_hello_alpn_is_read_from_the_first_record() -> None:
    """What Python's own client sends, captured from a memory BIO."""
    def hello(protocols: list[str]) -> bytes:
        context = ssl.create_default_context()
        if protocols:
            context.set_alpn_protocols(protocols)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = context.wrap_bio(incoming, outgoing, server_hostname="mta-sts.example.org")
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        return outgoing.read()

    for protocols in (["acme-tls/1"], ["h2", "http/1.1"], []):
        record = hello(protocols)
        assert record_length(record[:5]) == len(record) - 5
        assert offered_alpn(record[5:]) == tuple(protocols)
        for cut in (10, 60, len(record) - 8):
            assert offered_alpn(record[5:cut]) == ()  # cut short: nothing, no error


# -- one port for the policy and ACME TLS-ALPN-01 (pebble validates over it) -----------------
def spki(certificate_pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@needs_pebble
@pytest.mark.timeout(240)
def test_acme_tls_alpn_and_the_policy_share_one_port_and_renewals_keep_the_key(
        tmp_path: Path, server_cert: tuple[Path, Path], start_pebble: PebbleFactory) -> None:
    pebble = start_pebble(validity_seconds=3600)
    config = acme_config(tmp_path, server_cert, pebble, "tls-alpn-01")
    config = config.model_copy(update={"mta_sts_port": pebble.tls_port})
    app = run_app_until_issued(config)
    try:
        manager = app.app.acme
        assert manager is not None and manager.alpn_shared and manager.last_error == {}
        assert [listener.port for listener in app.app.listeners
                if listener.name == "mta-sts"] == [pebble.tls_port]
        # pebble validated every name over acme-tls/1 on the policy listener's port (no
        # other listener could have bound it: the manager binds none when shared)
        assert manager.board.answered >= 3
        trust = trusting(pebble, tmp_path)
        status, headers, body, names = fetch(pebble.tls_port, "mta-sts.example.org", trust)
        assert status == 200 and body.decode() == expected_policy(config)
        assert headers["content-type"] == "text/plain"
        assert "mta-sts.example.org" in names  # the ACME certificate, by SNI

        # A renewal keeps the key: the TLSA 3 1 1 record stays true.
        chain = config.acme_dir / "certs" / HOSTED_DOMAIN / CHAIN_FILE
        first = read_facts_file(chain)
        first_key = spki(chain.read_bytes())
        clock = ManualClock(dt.datetime.now(dt.UTC))
        manager.clock = clock
        clock.set(renewal_time(first) + dt.timedelta(seconds=1))
        passes = manager.passes
        app.loop.call_soon_threadsafe(manager.kick)
        app.call(asyncio.wait_for(manager.wait_for_pass(passes + 1), 90), timeout=100)
        assert manager.last_error == {}
        renewed = read_facts_file(chain)
        assert renewed.serial != first.serial
        assert spki(chain.read_bytes()) == first_key
        status, _, body, _ = fetch(pebble.tls_port, "mta-sts.example.org", trust)
        assert status == 200
    finally:
        app.stop()


def test_serve_announces_the_listener_and_survives_a_taken_port(
        tmp_path: Path, server_cert: tuple[Path, Path], ca_file: Path) -> None:
    port = free_port()
    env = write_env(tmp_path / "postroom.env", local_serve_env(
        tmp_path / "data", server_cert, MTA_STS_PORT=port, LOG_LEVEL="info"))
    with ServeProcess(env) as process:
        assert process.ports["mta-sts"] == port
        # The policy host of no hosted domain: the listener answers, with a 404.
        assert curl(port, TEST_HOSTNAME, ca_file, "/")[0].startswith("HTTP/1.1 404 ")
        # A second serve finds the port taken: it says so and serves the rest.
        other = write_env(tmp_path / "other.env", local_serve_env(
            tmp_path / "other", server_cert, MTA_STS_PORT=port, LOG_LEVEL="info"))
        with ServeProcess(other) as second:
            assert "mta-sts" not in second.ports and "smtp" in second.ports
            assert any("MTA_STS_PORT=0" in line for line in second.output)
