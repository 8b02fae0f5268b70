"""SMTP_PROCESSES (issue 8, workers.py): `postroom serve` with SMTP worker processes.

Each test sends mail until some of it was taken by a worker (its log lines carry
`[smtp-N]`), then checks what that delivery must have caused in the main process: IMAP
IDLE hears of it at once, queued outbound mail leaves at once. A killed worker is
replaced; SIGTERM stops every worker; a worker whose main process dies stops too."""

from __future__ import annotations

import email.policy
import imaplib
import operator
import os
import shutil
import signal
import smtplib
import ssl
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from functools import partial
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from postroom.config import Config
from postroom.errors import PostroomError
from postroom.store.api import Change
from postroom.store.changes import ChangeFeed
from postroom.workers import QUEUED, READY, WorkerPool, parse_line, render_change
from tests.e2e.test_outbound import cli as outbound_cli
from tests.e2e.test_outbound import free_port_on, wait_for
from tests.support.server import NO_DNS_CHECKS, ServeProcess, local_serve_env, write_env

pytestmark = pytest.mark.timeout(120)

BOB = "bob@example.test"
TRIES = 60  # connections until one reached a worker (each has about even odds)


def cli(env_file: Path, *args: str) -> None:
    result = outbound_cli(env_file, *args)
    assert result.returncode == 0, result.stderr


def make_env(tmp_path: Path, server_cert: tuple[Path, Path], processes: int,
             **extra: object) -> Path:
    env_file = write_env(tmp_path / "postroom.env", local_serve_env(
        tmp_path / "data", server_cert, LOG_LEVEL="info", SMTP_PROCESSES=processes,
        **NO_DNS_CHECKS, **extra))
    cli(env_file, "email", "add", BOB, "pw-bob")
    return env_file


def send(port: int, recipient: str, subject: str) -> str:
    """One message over its own connection; the queue id from the 250 reply."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ann@remote.test", recipient, subject
    message.set_content("hello\n")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("ann@remote.test")
        assert smtp.rcpt(recipient)[0] == 250
        code, text = smtp.data(message.as_bytes(policy=email.policy.SMTP))
        assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


def handled_by_worker(server: ServeProcess, queue_id: str) -> bool:
    """Whether a worker process logged the transaction `queue_id` (waits for the line)."""
    lines: list[str] = []

    def logged() -> bool:
        lines[:] = [line for line in list(server.output) if f"queue_id={queue_id}" in line]
        return bool(lines)
    wait_for(logged)
    return "[smtp-" in lines[0]


def children(pid: int) -> list[int]:
    """Living (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def workers_of(server: ServeProcess) -> list[int]:
    assert server.process is not None
    return children(server.process.pid)


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Idle:
    """An IMAP session in IDLE on bob's INBOX (in the main process: IMAP is only there)."""

    def __init__(self, port: int, tls: ssl.SSLContext) -> None:
        self.imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        self.imap.starttls(tls)
        self.imap.login(BOB, "pw-bob")
        self.imap.select("INBOX")
        self.imap.send(b"I1 IDLE\r\n")
        assert self.imap.readline().startswith(b"+")

    def wait_exists(self, count: int) -> None:
        while True:
            line = self.imap.readline()  # the socket timeout (10 s) fails the test
            assert line, "IMAP connection closed"
            if line.strip() == f"* {count} EXISTS".encode():
                return

    def close(self) -> None:
        self.imap.send(b"DONE\r\n")
        while not self.imap.readline().startswith(b"I1 OK"):
            pass
        self.imap.logout()


def test_channel_lines_round_trip() -> None:
    change = Change(3, 7, frozenset({"append", "flags"}), 42)
    assert parse_line(render_change(change)) == change
    assert parse_line(render_change(Change(1, 2))) == Change(1, 2, frozenset(), 0)
    assert parse_line(b"ready\n") == READY
    assert parse_line(b"queue\n") == QUEUED
    for junk in (b"", b"change 1 2 append\n", b"change x 2 append 3\n", b"hello\n"):
        assert parse_line(junk) is None


def test_idle_in_the_main_process_hears_deliveries_made_by_workers(
        tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext) -> None:
    env_file = make_env(tmp_path, server_cert, processes=3)
    with ServeProcess(env_file) as server:
        assert len(workers_of(server)) == 2
        idle = Idle(server.ports["imap"], client_tls)
        by_worker = 0
        for number in range(1, TRIES + 1):
            queue_id = send(server.ports["smtp"], BOB, f"message {number}")
            by_worker += handled_by_worker(server, queue_id)
            idle.wait_exists(number)  # a worker's delivery too, without a later nudge
            if by_worker >= 2:
                break
        idle.close()
        assert by_worker >= 2, "no connection reached a worker"
        workers = workers_of(server)
        assert server.stop() == 0
    assert not [pid for pid in workers if is_alive(pid)]
    assert "Traceback" not in "".join(server.output)


class _Sink:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        content = envelope.content  # type: ignore[attr-defined]
        for line in content.splitlines():
            if line.startswith(b"Subject: "):
                self.subjects.append(line[9:].decode())
        return "250 OK"


@pytest.fixture
def relay_sink() -> Iterator[tuple[_Sink, int]]:
    sink = _Sink()
    port = free_port_on("127.0.0.1")
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def test_mail_a_worker_queues_is_sent_by_the_main_process_at_once(
        tmp_path: Path, server_cert: tuple[Path, Path],
        relay_sink: tuple[_Sink, int]) -> None:
    """The main queue worker polls only every 30 s: the worker's `queue` line wakes it."""
    sink, sink_port = relay_sink
    env_file = make_env(tmp_path, server_cert, processes=2,
                        TRUSTED_NETWORKS="127.0.0.0/8",
                        DEFAULT_RELAY_HOST=f"[127.0.0.1]:{sink_port}")
    with ServeProcess(env_file) as server:
        for number in range(1, TRIES + 1):
            subject = f"relayed {number}"
            queue_id = send(server.ports["smtp"], "carol@remote.test", subject)
            wait_for(partial(operator.contains, sink.subjects, subject), timeout=10)
            if handled_by_worker(server, queue_id):
                break
        else:
            pytest.fail("no connection reached a worker")


def test_a_killed_worker_is_replaced_and_workers_stop_with_the_main_process(
        tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    env_file = make_env(tmp_path, server_cert, processes=2)
    with ServeProcess(env_file) as server:
        (first,) = workers_of(server)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: [pid for pid in workers_of(server) if pid != first] != [])
        (second,) = workers_of(server)
        assert any("restarting it" in line for line in server.output)
        wait_for(lambda: sum(f"(pid {second}) accepting " in line
                             for line in list(server.output)) == 1)
        for _ in range(5):  # the new worker takes connections (concurrent ones spread)
            with ThreadPoolExecutor(10) as pool:
                queue_ids = list(pool.map(lambda n: send(server.ports["smtp"], BOB, f"m {n}"),
                                          range(20)))
            if any(handled_by_worker(server, queue_id) for queue_id in queue_ids):
                break
        else:
            pytest.fail("no connection reached the restarted worker")
        server.kill()  # SIGKILL: no chance to stop the worker itself
        wait_for(lambda: not is_alive(second))


async def test_a_worker_that_cannot_start_fails_the_start_with_one_line(
        config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    false = shutil.which("false")
    assert false is not None
    monkeypatch.setattr(sys, "executable", false)  # the "worker" exits at once, status 1
    pool = WorkerPool(config.model_copy(update={"smtp_processes": 2}), {},
                      ChangeFeed(), lambda: None)
    with pytest.raises(PostroomError, match="worker 1 exited with status 1"):
        await pool.start()
    await pool.stop(grace_seconds=5)
