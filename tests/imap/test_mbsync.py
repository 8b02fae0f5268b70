"""A real sync client: mbsync (Debian isync) two-way syncing with the server.

Server changes (new mail, flags) must arrive in the local Maildir; local changes (flags,
a new message, a deletion) must arrive on the server.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trustme

from tests.imap.conftest import PASSWORD, USER, ImapThread, simple_message

MBSYNC = shutil.which("mbsync")
pytestmark = pytest.mark.skipif(MBSYNC is None, reason="mbsync (isync) is not installed")


def write_rc(tmp_path: Path, server: ImapThread, ca: trustme.CA, *, starttls: bool) -> Path:
    # isync checks the host name only against DNS names and the CN (trustme certs have
    # no CN, and we dial 127.0.0.1); a certificate listed in CertificateFile itself is
    # trusted as is, so list the server's leaf next to the test CA.
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.cert_pem.bytes() + server.config.cert_path.read_bytes())
    local = tmp_path / "Mail"
    local.mkdir(exist_ok=True)
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""
IMAPAccount test
Host 127.0.0.1
Port {server.port if starttls else server.tls_port}
User {USER}
Pass "{PASSWORD}"
SSLType {"STARTTLS" if starttls else "IMAPS"}
CertificateFile {ca_path}
AuthMechs {"PLAIN" if starttls else "LOGIN"}
PipelineDepth 5

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Archive
Create Both
Expunge Both
SyncState *
""")
    return rc


def run_mbsync(rc: Path) -> None:
    assert MBSYNC is not None
    result = subprocess.run([MBSYNC, "-c", str(rc), "-a"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def maildir_files(folder: Path) -> list[Path]:
    return sorted([*(folder / "cur").iterdir(), *(folder / "new").iterdir()])


def server_flags(server: ImapThread, mailbox: str = "INBOX") -> dict[str, frozenset[str]]:
    """Subject → flags on the server."""
    found = {}
    for row in server.messages(mailbox):
        raw = server.call(server.rt.blobs.read(row.blob_id))
        subject = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
        found[subject[9:].decode()] = row.flags
    return found


@pytest.mark.parametrize("starttls", [False, True], ids=["imaps", "starttls"])
def test_mbsync_two_way(imap_server: ImapThread, trustme_ca: trustme.CA, tmp_path: Path,
                        starttls: bool) -> None:
    imap_server.deliver(simple_message("first"))
    imap_server.deliver(simple_message("second"), flags=frozenset({"\\Flagged"}))
    rc = write_rc(tmp_path, imap_server, trustme_ca, starttls=starttls)
    run_mbsync(rc)
    inbox = tmp_path / "Mail" / "INBOX"
    files = maildir_files(inbox)
    assert len(files) == 2
    flagged = [f for f in files if f.name.split(":2,")[-1] == "F"]
    assert len(flagged) == 1 and b"Subject: second" in flagged[0].read_bytes()

    # Local changes: mark "first" seen, add a message, create a folder with a message.
    first = next(f for f in files if b"Subject: first" in f.read_bytes())
    first.rename(inbox / "cur" / (first.name.split(":2,")[0] + ":2,S"))
    (inbox / "new" / "1700000000.local.host").write_bytes(simple_message("written locally"))
    archive = tmp_path / "Mail" / "Archive"
    for sub in ("cur", "new", "tmp"):
        (archive / sub).mkdir(parents=True)
    (archive / "cur" / "1700000001.local.host:2,S").write_bytes(simple_message("archived"))
    # Server changes at the same time: new mail and a flag.
    imap_server.deliver(simple_message("third"), flags=frozenset({"$Important"}))
    run_mbsync(rc)

    flags = server_flags(imap_server)
    assert flags["first"] == frozenset({"\\Seen"})
    assert flags["second"] == frozenset({"\\Flagged"})
    assert "written locally" in flags
    assert server_flags(imap_server, "Archive") == {"archived": frozenset({"\\Seen"})}
    files = maildir_files(inbox)
    assert len(files) == 4
    assert any(b"Subject: third" in f.read_bytes() for f in files)

    # A local deletion (trashed + expunged) removes the message on the server.
    second = next(f for f in files if b"Subject: second" in f.read_bytes())
    second.rename(second.parent / (second.name.split(":2,")[0] + ":2,FT"))
    run_mbsync(rc)
    assert "second" not in server_flags(imap_server)
    assert len(maildir_files(inbox)) == 3
    # And nothing changes when run again (the sync state is consistent).
    run_mbsync(rc)
    assert len(maildir_files(inbox)) == 3 and len(imap_server.messages()) == 3
