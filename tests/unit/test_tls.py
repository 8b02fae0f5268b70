"""Certificates: self-signed fallback, hot reload, a broken renewal never breaks TLS."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest
import trustme

from postroom.tls.contexts import TlsContexts
from postroom.tls.selfsigned import ensure_self_signed


def issue(ca: trustme.CA, folder: Path, name: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(name, "127.0.0.1")
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert.private_key_pem.write_to_path(key_path)
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return cert_path, key_path


def bump_mtime(*paths: Path) -> None:
    for path in paths:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))


async def handshake(listener: ssl.SSLContext, client: ssl.SSLContext) -> None:
    """Completes a TLS handshake or raises (the client verifies against its CA only)."""

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=listener)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                  server_hostname="127.0.0.1")
        writer.close()
    finally:
        server.close()


def test_self_signed_is_made_once(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls/c.pem", tmp_path / "tls/k.pem"
    assert ensure_self_signed(cert, key, "mail.example.test")
    assert key.stat().st_mode & 0o777 == 0o600
    first = cert.read_bytes()
    assert not ensure_self_signed(cert, key, "mail.example.test")
    assert cert.read_bytes() == first
    TlsContexts(cert, key)  # loads


async def test_listener_context_follows_reloads(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(organization_unit_name="old"), trustme.CA(
        organization_unit_name="new")
    cert_path, key_path = issue(old_ca, tmp_path, "mail.example.test")
    contexts = TlsContexts(cert_path, key_path, check_interval=0)
    listener = contexts.listener_context()
    trust_old, trust_new = ssl.create_default_context(), ssl.create_default_context()
    old_ca.configure_trust(trust_old)
    new_ca.configure_trust(trust_new)
    await handshake(listener, trust_old)
    with pytest.raises(ssl.SSLError):
        await handshake(listener, trust_new)

    issue(new_ca, tmp_path, "mail.example.test")
    bump_mtime(cert_path, key_path)
    # The same listening context now hands out the renewed certificate.
    await handshake(listener, trust_new)


async def test_broken_renewal_keeps_serving_old_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert_path, key_path = issue(ca, tmp_path, "mail.example.test")
    contexts = TlsContexts(cert_path, key_path, check_interval=0)
    listener = contexts.listener_context()
    # A renewal caught half-way: the new certificate is there, its key is not yet.
    other = trustme.CA().issue_cert("mail.example.test")
    cert_path.write_bytes(b"".join(blob.bytes() for blob in other.cert_chain_pems))
    bump_mtime(cert_path)
    assert contexts.reload_if_changed() is False
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    await handshake(listener, trust)
    assert contexts.server_context.minimum_version == ssl.TLSVersion.TLSv1_2
