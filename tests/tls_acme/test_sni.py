"""SNI (RFC 6066 §3): each hosted domain's own certificate, chosen by the name the client
asks for, on implicit-TLS listeners (465, 993) and STARTTLS (587); the default
certificate for any other name; folders added or renewed while running."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from pathlib import Path

import pytest
import trustme

from postroom.tls.contexts import TlsContexts, name_matches
from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.server import AppThread

DOMAINS = {"example.org": "mail.example.org", "example.net": "mail.example.net"}


def write_folder(ca: trustme.CA, root: Path, folder: str, *names: str) -> Path:
    cert = ca.issue_cert(*names)
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    cert.private_key_pem.write_to_path(target / "privkey.pem")
    (target / "fullchain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    return target


def peer_names(sock: ssl.SSLSocket) -> set[str]:
    cert = sock.getpeercert()
    assert cert is not None
    return {str(entry[1]) for entry in cert["subjectAltName"] if entry[0] == "DNS"}


def names_served(port: int, server_name: str, trust: ssl.SSLContext) -> set[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            trust.wrap_socket(raw, server_hostname=server_name) as tls:
        return peer_names(tls)


def names_after_starttls(port: int, server_name: str, trust: ssl.SSLContext) -> set[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        raw.sendall(b"EHLO client.example\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert reader.readline().startswith(b"220")
        with trust.wrap_socket(raw, server_hostname=server_name) as tls:
            return peer_names(tls)


@pytest.fixture
def cert_dir(tmp_path: Path, trustme_ca: trustme.CA) -> Path:
    root = tmp_path / "certs"
    for domain, host in DOMAINS.items():
        write_folder(trustme_ca, root, domain, host)
    return root


def test_each_domain_gets_its_own_certificate_by_sni(
        tmp_path: Path, server_cert: tuple[Path, Path], cert_dir: Path,
        client_tls: ssl.SSLContext) -> None:
    config = make_config(tmp_path, server_cert, SSL_DOMAIN_CERT_DIR=cert_dir)
    with AppThread(config) as app:
        for listener in ("submissions", "imaps"):
            port = app.port(listener)
            for host in DOMAINS.values():
                assert names_served(port, host, client_tls) == {host}
            # Names without a certificate of their own get the default one.
            assert TEST_HOSTNAME in names_served(port, TEST_HOSTNAME, client_tls)
        assert names_after_starttls(app.port("submission"), "mail.example.net",
                                    client_tls) == {"mail.example.net"}


def test_a_client_without_sni_gets_the_default_certificate(
        tmp_path: Path, server_cert: tuple[Path, Path], cert_dir: Path) -> None:
    config = make_config(tmp_path, server_cert, SSL_DOMAIN_CERT_DIR=cert_dir)
    with AppThread(config) as app, \
            socket.create_connection(("127.0.0.1", app.port("imaps")), timeout=10) as raw:
        bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        bare.check_hostname = False
        bare.verify_mode = ssl.CERT_NONE
        with bare.wrap_socket(raw) as tls:  # no server_hostname: no SNI extension
            der = tls.getpeercert(binary_form=True)
    assert der == ssl.PEM_cert_to_DER_cert(
        server_cert[0].read_text().split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n")


async def handshake_names(listener: ssl.SSLContext, server_name: str,
                          trust: ssl.SSLContext) -> set[str]:
    names: set[str] = set()

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=listener)
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1], ssl=trust,
            server_hostname=server_name)
        ssl_object = writer.get_extra_info("ssl_object")
        names = {value for kind, value in ssl_object.getpeercert()["subjectAltName"]
                 if kind == "DNS"}
        writer.close()
    finally:
        server.close()
    return names


async def test_folders_added_and_renewed_while_running_are_served(
        tmp_path: Path, server_cert: tuple[Path, Path], trustme_ca: trustme.CA,
        client_tls: ssl.SSLContext) -> None:
    root = tmp_path / "certs"
    root.mkdir()
    contexts = TlsContexts(*server_cert, check_interval=0, cert_dirs=[root])
    listener = contexts.listener_context()
    with pytest.raises(ssl.SSLCertVerificationError):  # the default: not for that name
        await handshake_names(listener, "mail.example.org", client_tls)
    folder = write_folder(trustme_ca, root, "example.org", "mail.example.org")
    assert await handshake_names(listener, "mail.example.org", client_tls) == {
        "mail.example.org"}
    # A renewal that adds a name is picked up by the same listener.
    write_folder(trustme_ca, root, "example.org", "mail.example.org", "*.example.org")
    for path in folder.iterdir():
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))
    assert await handshake_names(listener, "imap.example.org", client_tls) == {
        "mail.example.org", "*.example.org"}


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("mail.example.org", "mail.example.org", True),
    ("*.example.org", "mail.example.org", True),
    ("*.example.org", "example.org", False),
    ("*.example.org", "a.b.example.org", False),  # one label only (RFC 6125 §6.4.3)
    ("mail.example.org", "mail.example.net", False),
])
def test_name_matches(pattern: str, name: str, matches: bool) -> None:
    assert name_matches(pattern, name) is matches
