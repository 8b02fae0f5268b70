"""The IMAP listeners app.py starts: 143 with STARTTLS and 993 with implicit TLS."""

from __future__ import annotations

import imaplib
import ssl
from pathlib import Path

from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.server import AppThread


def test_app_serves_imap_and_imaps(tmp_path: Path, server_cert: tuple[Path, Path],
                                   client_tls: ssl.SSLContext) -> None:
    with AppThread(make_config(tmp_path, server_cert)) as app:
        app.add_account("dave@example.test", "pass phrase 1")
        with imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"),
                               ssl_context=client_tls, timeout=10) as client:
            client.login("dave@example.test", "pass phrase 1")
            assert client.select("INBOX") == ("OK", [b"0"])
        with imaplib.IMAP4("127.0.0.1", app.port("imap"), timeout=10) as client:
            assert "LOGINDISABLED" in client.capabilities
            client._host = TEST_HOSTNAME  # type: ignore[attr-defined]
            client.starttls(ssl_context=client_tls)
            client.login("dave@example.test", "pass phrase 1")
            assert client.list()[0] == "OK"
