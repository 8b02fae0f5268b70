"""Decision 0052: flag-only changes are committed without an fsync of their own (SQLite
WAL, synchronous=NORMAL), as Dovecot's `mail_fsync = optimized` does — they must still
survive a killed process. A real `postroom serve`, imaplib over TLS: every STORE answered
OK before a SIGKILL is there after the restart, alongside the appended messages."""

from __future__ import annotations

import imaplib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import NO_DNS_CHECKS, ServeProcess, local_serve_env, write_env

pytestmark = pytest.mark.timeout(180)

USER, PASSWORD = "user@example.test", "pw-user-1"
MESSAGES = 6


@pytest.fixture
def env_file(tmp_path: Path, server_cert: tuple[Path, Path]) -> Path:
    env = write_env(tmp_path / "postroom.env", local_serve_env(
        tmp_path / "data", server_cert, LOG_LEVEL="info", **NO_DNS_CHECKS))
    added = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), "email",
                            "add", USER, PASSWORD], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    return env


def login(port: int, client_tls: ssl.SSLContext) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_tls, timeout=30)
    client.login(USER, PASSWORD)
    return client


def flags_by_uid(client: imaplib.IMAP4_SSL) -> dict[int, set[str]]:
    status, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert status == "OK"
    found = {}
    for line in data:
        assert isinstance(line, bytes)
        uid = int(line.split(b"UID ")[1].split()[0].rstrip(b")"))
        found[uid] = set(imaplib.ParseFlags(line)) - {b"\\Recent"}
    return {uid: {flag.decode() for flag in flags} for uid, flags in found.items()}


def test_an_answered_store_survives_sigkill(env_file: Path,
                                            client_tls: ssl.SSLContext) -> None:
    expected: dict[int, set[str]] = {}
    with ServeProcess(env_file) as serve:
        client = login(serve.ports["imaps"], client_tls)
        client.select("INBOX")
        for number in range(MESSAGES):
            status, _ = client.append("INBOX", None, None,
                                      f"Subject: m{number}\r\n\r\nbody {number}\r\n".encode())
            assert status == "OK"
        # Flag changes of every kind, each answered before the next; the last one is
        # answered immediately before the kill, with no other write after it.
        stores = [(1, "+FLAGS", "(\\Seen)"), (2, "+FLAGS", "(\\Flagged $Work)"),
                  (3, "+FLAGS", "(\\Answered)"), (3, "-FLAGS", "(\\Answered)"),
                  (4, "FLAGS", "(\\Draft $Later)"), (5, "+FLAGS.SILENT", "(\\Deleted)"),
                  (6, "+FLAGS", "($Last)")]
        for uid, mode, flags in stores:
            status, _ = client.uid("STORE", str(uid), mode, flags)
            assert status == "OK", (uid, mode, flags)
        expected = flags_by_uid(client)
        assert expected[6] == {"$Last"} and expected[3] == set()
        serve.kill()  # SIGKILL: no drain, no checkpoint, no close
        assert serve.process is not None and serve.process.returncode == -9

    with ServeProcess(env_file) as again:
        client = login(again.ports["imaps"], client_tls)
        client.select("INBOX", readonly=True)
        assert flags_by_uid(client) == expected
        client.logout()
