"""Server TLS contexts with hot reload and a certificate per name (SNI).

Owns the `ssl.SSLContext` every listener uses (TLS 1.2+). Certificates are re-read when the
files change (the seed's users point SSL_CERT_PATH at files Caddy or Certbot renew; ACME
renewals land in DATA_DIR/acme/), checked at most every `check_interval` seconds when a
handshake asks for the context. A new pair is loaded into a scratch context first: a
half-written renewal (certificate and key not matching) must never break the live context,
so on failure the old one stays and the error is logged.

SNI (RFC 6066 §3): besides the default pair, certificate folders (tls/certfiles.py layout,
one subfolder per certificate) are indexed by the DNS names of each certificate; a
ClientHello naming one of them gets that certificate, any other name (or none) the
default one. Every context this module hands out carries the same SNI callback, so
implicit-TLS listeners and STARTTLS/STLS upgrades choose alike.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

from postroom.tls.certfiles import CHAIN_FILE, KEY_FILE, certificate_folders, read_facts_file

log = logging.getLogger(__name__)

Stamp = tuple[float, float, int, int]


def build_server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """Raises ssl.SSLError/OSError when the pair cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert_path, key_path)
    return context


def _file_stamp(cert_path: Path, key_path: Path) -> Stamp:
    cert, key = cert_path.stat(), key_path.stat()
    return (cert.st_mtime, key.st_mtime, cert.st_size, key.st_size)


def _names_of(cert_path: Path) -> tuple[str, ...]:
    try:
        return read_facts_file(cert_path).names
    except (OSError, ValueError):  # loaded by OpenSSL, so only a race could get here
        return ()


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4.3, as browsers apply it: `*` stands for exactly one leftmost label."""
    if pattern == name:
        return True
    if pattern.startswith("*.") and "." in name:
        return name.split(".", 1)[1] == pattern[2:]
    return False


class ReloadingPair:
    """One certificate and key, reloaded (scratch load first) when their files change."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        self._stamp = _file_stamp(cert_path, key_path)
        self.context = build_server_context(cert_path, key_path)
        self.names = _names_of(cert_path)

    def reload_if_changed(self) -> bool:
        try:
            stamp = _file_stamp(self.cert_path, self.key_path)
        except OSError as error:
            log.error("TLS certificate files unreadable, keeping the current ones: %s", error)
            return False
        if stamp == self._stamp:
            return False
        try:
            context = build_server_context(self.cert_path, self.key_path)
        except (ssl.SSLError, OSError) as error:
            # Probably a renewal half-written; try again at the next check.
            log.error("new TLS certificate not usable yet, keeping the current one: %s", error)
            return False
        self.context, self._stamp = context, stamp
        self.names = _names_of(self.cert_path)
        log.info("TLS certificate reloaded from %s", self.cert_path)
        return True


class SniCertificates:
    """The certificates of some folders, by name. Folders appearing, changing or going
    away are noticed at the next `refresh`."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = tuple(roots)
        self._pairs: dict[Path, ReloadingPair] = {}
        self._names: list[tuple[str, ReloadingPair]] = []

    def refresh(self) -> None:
        found = [folder for root in self.roots for folder in certificate_folders(root)]
        pairs: dict[Path, ReloadingPair] = {}
        for folder in found:
            pair = self._pairs.get(folder)
            if pair is not None:
                pair.reload_if_changed()
            else:
                pair = self._load(folder)
            if pair is not None:
                pairs[folder] = pair
        self._pairs = pairs
        self._names = self._index(pairs)

    @staticmethod
    def _load(folder: Path) -> ReloadingPair | None:
        try:
            return ReloadingPair(folder / CHAIN_FILE, folder / KEY_FILE)
        except (ssl.SSLError, OSError) as error:
            log.error("certificate in %s not usable, not served by SNI: %s", folder, error)
            return None

    @staticmethod
    def _index(pairs: dict[Path, ReloadingPair]) -> list[tuple[str, ReloadingPair]]:
        """Exact names first, wildcards after them: an exact match always wins."""
        exact: list[tuple[str, ReloadingPair]] = []
        wildcards: list[tuple[str, ReloadingPair]] = []
        for pair in pairs.values():
            for name in pair.names:
                (wildcards if name.startswith("*.") else exact).append((name, pair))
        return exact + wildcards

    def context_for(self, server_name: str) -> ssl.SSLContext | None:
        name = server_name.lower().rstrip(".")
        for pattern, pair in self._names:
            if name_matches(pattern, name):
                return pair.context
        return None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._names]


class TlsContexts:
    def __init__(self, cert_path: Path, key_path: Path, check_interval: float = 5.0,
                 cert_dirs: Sequence[Path] = ()) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._check_interval = check_interval
        self._default = ReloadingPair(cert_path, key_path)
        self._default.context.sni_callback = self._choose  # type: ignore[assignment]
        self.sni = SniCertificates(cert_dirs)
        self.sni.refresh()
        self._checked_at = time.monotonic()

    @property
    def server_context(self) -> ssl.SSLContext:
        """The current default context; reloads first when files changed. Its SNI
        callback hands a ClientHello naming another certificate's name over to it."""
        now = time.monotonic()
        if now - self._checked_at >= self._check_interval:
            self._checked_at = now
            self.reload_if_changed()
        return self._default.context

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        """The context serving `server_name`: its own certificate, else the default."""
        default = self.server_context  # refreshes both when due
        if server_name:
            chosen = self.sni.context_for(server_name)
            if chosen is not None:
                return chosen
        return default

    def listener_context(self) -> ssl.SSLContext:
        """A context for implicit-TLS listeners (465, 993, 995).

        asyncio binds one context to a listening socket for its lifetime, so this one only
        hands each new connection over to the current context during the handshake
        (the SNI callback runs for every ClientHello, with or without SNI).
        """
        context = build_server_context(self.cert_path, self.key_path)
        context.sni_callback = self._choose  # type: ignore[assignment]
        return context

    def _choose(self, ssl_object: ssl.SSLObject, server_name: str | None,
                _context: ssl.SSLContext) -> None:
        ssl_object.context = self.context_for(server_name)

    def reload_if_changed(self) -> bool:
        """Re-read changed files (default pair and SNI folders); True if the default
        pair was replaced."""
        self.sni.refresh()
        if not self._default.reload_if_changed():
            return False
        self._default.context.sni_callback = self._choose  # type: ignore[assignment]
        return True
