"""libcurl's IMAP client (another independent implementation) against the server:
list mailboxes, fetch a message by UID, search, upload (APPEND)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trustme

from tests.imap.conftest import PASSWORD, USER, ImapThread, simple_message

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(server: ImapThread, ca: Path, path: str, *extra: str) -> str:
    assert CURL is not None
    result = subprocess.run(
        [CURL, "--silent", "--show-error", "--max-time", "30", "--cacert", str(ca),
         "--user", f"{USER}:{PASSWORD}", f"imaps://127.0.0.1:{server.tls_port}/{path}", *extra],
        capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def test_curl_list_fetch_search_append(imap_server: ImapThread, trustme_ca: trustme.CA,
                                       tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(str(ca))
    imap_server.deliver(simple_message("for curl", "fetched by libcurl\r\n"))
    listing = curl(imap_server, ca, "")
    assert '"/" "INBOX"' in listing and '"/" "Sent"' in listing
    assert "fetched by libcurl" in curl(imap_server, ca, "INBOX;UID=1")
    assert "* SEARCH 1" in curl(imap_server, ca, "INBOX?SUBJECT%20curl")
    upload = tmp_path / "upload.eml"
    upload.write_bytes(simple_message("uploaded by curl"))
    curl(imap_server, ca, "Drafts", "--upload-file", str(upload))
    assert len(imap_server.messages("Drafts")) == 1
