"""Server TLS contexts with hot reload.

Owns the `ssl.SSLContext` every listener uses (TLS 1.2+). Certificates are re-read when the
files change (the seed's users point SSL_CERT_PATH at files Caddy or Certbot renew), checked
at most every `check_interval` seconds when a handshake asks for the context. A new pair is
loaded into a scratch context first: a half-written renewal (certificate and key not
matching) must never break the live context, so on failure the old one stays and the error
is logged.
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path

log = logging.getLogger(__name__)


def build_server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """Raises ssl.SSLError/OSError when the pair cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert_path, key_path)
    return context


class TlsContexts:
    def __init__(self, cert_path: Path, key_path: Path, check_interval: float = 5.0) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._check_interval = check_interval
        self._stamp = self._file_stamp()
        self._context = build_server_context(cert_path, key_path)
        self._checked_at = time.monotonic()

    def _file_stamp(self) -> tuple[float, float, int, int]:
        cert, key = self.cert_path.stat(), self.key_path.stat()
        return (cert.st_mtime, key.st_mtime, cert.st_size, key.st_size)

    @property
    def server_context(self) -> ssl.SSLContext:
        """The current context; reloads first when the files changed."""
        now = time.monotonic()
        if now - self._checked_at >= self._check_interval:
            self._checked_at = now
            self.reload_if_changed()
        return self._context

    def listener_context(self) -> ssl.SSLContext:
        """A context for implicit-TLS listeners (465, 993, 995).

        asyncio binds one context to a listening socket for its lifetime, so this one only
        hands each new connection over to the current context during the handshake
        (the SNI callback runs for every ClientHello, with or without SNI).
        """
        context = build_server_context(self.cert_path, self.key_path)

        def use_current(ssl_object: ssl.SSLObject, _name: str | None,
                        _context: ssl.SSLContext) -> None:
            ssl_object.context = self.server_context

        context.sni_callback = use_current  # type: ignore[assignment]
        return context

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._file_stamp()
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
        self._context, self._stamp = context, stamp
        log.info("TLS certificate reloaded from %s", self.cert_path)
        return True
