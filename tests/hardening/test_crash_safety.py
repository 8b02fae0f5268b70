"""Crash safety (issue 7) against `postroom serve` in a subprocess: several clients send
mail, the server is SIGKILLed mid-stream and restarted, and every message that got its
`250` is there, whole. SIGTERM lets a transaction in flight finish before exiting."""

from __future__ import annotations

import poplib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.conftest import is_closed, read_line
from tests.support.server import NO_DNS_CHECKS, ServeProcess, local_serve_env, write_env

pytestmark = pytest.mark.timeout(180)

USER, PASSWORD = "user@example.test", "pw-user-1"
CLIENTS = 6
KILL_AFTER = 40  # acknowledged messages before the SIGKILL


@pytest.fixture
def env_file(tmp_path: Path, server_cert: tuple[Path, Path]) -> Path:
    env = write_env(tmp_path / "postroom.env", local_serve_env(
        tmp_path / "data", server_cert, LOG_LEVEL="info", **NO_DNS_CHECKS))
    added = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), "email",
                            "add", USER, PASSWORD], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    return env


@pytest.fixture
def serve(env_file: Path) -> Iterator[ServeProcess]:
    with ServeProcess(env_file) as process:
        yield process


def message(client: int, number: int) -> bytes:
    tag = f"c{client}-m{number}"
    # A body of a few KB, so a kill can land inside DATA; the last line proves it is whole.
    return (f"Subject: {tag}\r\n\r\n".encode() + b"filler line\r\n" * 400
            + f"END {tag}\r\n".encode())


class Senders:
    """CLIENTS threads sending mail until the server goes away; records each 250."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acknowledged: set[str] = set()
        self.enough = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True)
                        for n in range(CLIENTS)]

    def run(self, client: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as smtp:
                for number in range(10_000):
                    smtp.sendmail("a@remote.example", [USER], message(client, number))
                    self.acknowledge(f"c{client}-m{number}")
        except (smtplib.SMTPException, OSError):
            return  # the server was killed

    def acknowledge(self, tag: str) -> None:
        with self._lock:
            self.acknowledged.add(tag)
            if len(self.acknowledged) >= KILL_AFTER:
                self.enough.set()


def stored_tags(port: int, client_tls: ssl.SSLContext) -> dict[str, bytes]:
    pop = poplib.POP3_SSL("127.0.0.1", port, context=client_tls, timeout=30)
    pop.user(USER)
    pop.pass_(PASSWORD)
    tags = {}
    for number in range(1, pop.stat()[0] + 1):
        raw = b"\r\n".join(pop.retr(number)[1])
        match = re.search(rb"Subject: (c\d+-m\d+)", raw)
        assert match, raw[:200]
        tags[match.group(1).decode()] = raw
    pop.quit()
    return tags


def test_sigkill_mid_stream_loses_no_acknowledged_message(
        env_file: Path, serve: ServeProcess, client_tls: ssl.SSLContext) -> None:
    senders = Senders(serve.ports["smtp"])
    for thread in senders.threads:
        thread.start()
    assert senders.enough.wait(60), "clients did not get going"
    serve.kill()
    for thread in senders.threads:
        thread.join(30)
    acknowledged = set(senders.acknowledged)
    assert len(acknowledged) >= KILL_AFTER

    with ServeProcess(env_file) as again:
        stored = stored_tags(again.ports["pop3s"], client_tls)
    missing = acknowledged - set(stored)
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
    for tag, raw in stored.items():  # whatever was stored is whole, never a torn write
        assert raw.endswith(f"END {tag}".encode()), tag
    assert not list((env_file.parent / "data" / "spool").iterdir())  # leftovers cleared


def wait_for_output(process: ServeProcess, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not any(text in line for line in process.output):
        assert time.monotonic() < deadline, f"no {text!r} in output"
        pause.wait(0.02)


def test_sigterm_lets_the_transaction_in_flight_finish(
        env_file: Path, serve: ServeProcess, client_tls: ssl.SSLContext) -> None:
    sock = socket.create_connection(("127.0.0.1", serve.ports["smtp"]), timeout=20)
    assert read_line(sock).startswith(b"220 ")
    sock.sendall(b"HELO client.example\r\nMAIL FROM:<a@remote.example>\r\n"
                 b"RCPT TO:<user@example.test>\r\nDATA\r\n")
    assert [read_line(sock)[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
    sock.sendall(b"Subject: c0-m0\r\n\r\nfirst half\r\n")
    assert serve.process is not None
    serve.process.send_signal(signal.SIGTERM)
    wait_for_output(serve, "shutting down")
    sock.sendall(b"second half\r\nEND c0-m0\r\n.\r\n")
    assert read_line(sock).startswith(b"250 2.0.0 Ok: queued as ")
    sock.sendall(b"MAIL FROM:<a@remote.example>\r\n")
    assert read_line(sock).startswith(b"421 4.3.2 ")  # no new transaction while draining
    assert is_closed(sock)
    sock.close()
    assert serve.process.wait(30) == 0

    with ServeProcess(env_file) as again:
        stored = stored_tags(again.ports["pop3s"], client_tls)
    assert list(stored) == ["c0-m0"]
    assert b"first half\r\nsecond half\r\nEND c0-m0" in stored["c0-m0"]
