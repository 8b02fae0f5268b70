"""Sharing ACME state between the store and this node's DATA_DIR/acme/ (issue 20).

Owns the rule that makes several nodes on one PostgreSQL database serve the same
certificates while only one of them orders: the store holds every ordered certificate
and the account key; each node copies the newer of store and disk over the other (the
one whose leaf expires later wins), so a node that did not order picks the files up at
its next pass, and an installation moved from SQLite brings its certificates along.
On SQLite (one node) the copy in the store is what `migrate sqlite-to-postgresql` and a
restored backup carry.

Invariants: a self-signed stand-in is never uploaded; an unreadable certificate on either
side loses to a readable one; files are written with tls/certfiles.py (atomic, 0600 keys).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from postroom.store.tls_api import TlsStore
from postroom.tls.certfiles import (
    CHAIN_FILE,
    KEY_FILE,
    CertificateFacts,
    read_facts,
    write_atomically,
    write_pair,
)

log = logging.getLogger(__name__)


def _facts(chain_pem: bytes) -> CertificateFacts | None:
    try:
        facts = read_facts(chain_pem)
    except ValueError:
        return None
    return None if facts.is_self_signed else facts


def _is_newer(candidate: CertificateFacts | None, current: CertificateFacts | None) -> bool:
    return candidate is not None and (current is None or
                                      candidate.not_after > current.not_after)


def _read_local(folder: Path) -> tuple[bytes, bytes] | None:
    try:
        return (folder / CHAIN_FILE).read_bytes(), (folder / KEY_FILE).read_bytes()
    except OSError:
        return None


async def sync_certificates(store: TlsStore, certs_dir: Path, folders: list[str],
                            now: dt.datetime) -> bool:
    """Copy the newer side over the older for the stored certificates and `folders`;
    True when a local file changed (the TLS contexts should reload)."""
    stored = {row.name: row for row in await store.list_tls_certificates()}
    changed = False
    for name in sorted(set(stored) | set(folders)):
        local = await asyncio.to_thread(_read_local, certs_dir / name)
        local_facts = _facts(local[0]) if local else None
        row = stored.get(name)
        row_facts = _facts(row.chain_pem.encode("ascii")) if row else None
        if row is not None and _is_newer(row_facts, local_facts):
            await asyncio.to_thread(write_pair, certs_dir / name, row.chain_pem.encode("ascii"),
                                    row.key_pem.encode("ascii"))
            log.info("acme: certificate for %s taken from the store", name)
            changed = True
        elif local is not None and _is_newer(local_facts, row_facts):
            await store.put_tls_certificate(name, local[0].decode("ascii"),
                                            local[1].decode("ascii"), now)
    return changed


async def share_certificate(store: TlsStore, certs_dir: Path, name: str, chain_pem: bytes,
                            key_pem: bytes, now: dt.datetime) -> None:
    """A new certificate: into the store first (other nodes), then onto this disk."""
    await store.put_tls_certificate(name, chain_pem.decode("ascii"), key_pem.decode("ascii"),
                                    now)
    await asyncio.to_thread(write_pair, certs_dir / name, chain_pem, key_pem)


def _new_account_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


async def ensure_account_key(store: TlsStore, path: Path) -> None:
    """The installation's one account key at `path` (this node's, if it had one and the
    store none; else the store's)."""
    local = await asyncio.to_thread(lambda: path.read_text() if path.is_file() else None)
    shared = await store.acme_account_key(local or _new_account_key())
    if shared != local:
        await asyncio.to_thread(write_atomically, path, shared.encode("ascii"),
                                is_secret=True)
