"""SRS for this server: the domain and key every node uses to write and reverse SRS0
senders (mail/srs.py does the arithmetic).

Owns deriving the key from the install id (`DATA_DIR/install-id`, the same on every node
sharing a database, store/migrate.py), so a bounce reaching any node reverses what
another wrote; and the domain (`SRS_DOMAINNAME`, else `OVERRIDE_HOSTNAME`).
"""

from __future__ import annotations

import hashlib
import time

from postroom.config import Config
from postroom.mail.srs import forward, reverse

_KEYS: dict[str, bytes] = {}


def srs_domain(config: Config) -> str:
    return config.srs_domainname or config.hostname


def srs_key(config: Config) -> bytes:
    path = config.data_dir / "install-id"
    key = _KEYS.get(str(path))
    if key is None:
        try:
            seed = path.read_bytes().strip()
        except OSError:
            seed = b""
        if not seed:
            return hashlib.sha256(b"postroom srs\0" + config.hostname.encode()).digest()
        key = _KEYS[str(path)] = hashlib.sha256(b"postroom srs\0" + seed).digest()
    return key


def rewrite_sender(config: Config, sender: str) -> str:
    """The envelope sender for mail we forward: SRS0 when ENABLE_SRS (the default)."""
    if not config.enable_srs or not sender:
        return sender
    return forward(sender, srs_domain(config), srs_key(config), time.time())


def original_sender(config: Config, address: str) -> str | None:
    """The original sender behind an SRS0 address of ours that verifies, else None."""
    if not config.enable_srs:
        return None
    if address.rpartition("@")[2].lower() != srs_domain(config).lower():
        return None
    return reverse(address, srs_key(config), time.time())
