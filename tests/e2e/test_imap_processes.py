"""IMAP_PROCESSES (issue 22, workers.py): `postroom serve` with IMAP sessions in worker
processes.

Clients connect until every process serves some of them (which process holds a
connection is read from /proc: the socket's inode among each process's descriptors).
Then a change made by a session in any process reaches the sessions in IDLE in every
other one at once: the main process relays workers' changes to the other workers on
SQLite, NOTIFY carries them on PostgreSQL. SIGTERM stops every worker."""

from __future__ import annotations

import imaplib
import os
import re
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.test_smtp_processes import (
    BOB,
    is_alive,
    make_env,
    send,
    workers_of,
)
from tests.support.server import ServeProcess

pytestmark = pytest.mark.timeout(120)

PROCESSES = 3
TRIES = 60  # connections until each process holds one (each has about even odds)


def _socket_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server's end of the loopback connection from `client_port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port:
            return int(fields[9])
    return None


def serving_pid(pids: list[int], server_port: int, client: imaplib.IMAP4) -> int | None:
    """Which of `pids` holds the server's end of `client`'s connection."""
    inode = _socket_inode(server_port, client.sock.getsockname()[1])
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in pids:
        with os.scandir(f"/proc/{pid}/fd") as entries:
            for entry in entries:
                try:
                    if os.readlink(entry.path) == wanted:
                        return pid
                except OSError:
                    continue
    return None


class Session:
    def __init__(self, port: int, tls: ssl.SSLContext) -> None:
        self.imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        self.imap.starttls(tls)
        self.imap.login(BOB, "pw-bob")
        self.imap.select("INBOX")

    def idle(self) -> None:
        self.imap.send(b"I1 IDLE\r\n")
        assert self.imap.readline().startswith(b"+")

    def wait_for(self, pattern: bytes) -> bytes:
        """The next untagged line matching `pattern` (the 10 s socket timeout fails)."""
        while True:
            line = self.imap.readline()
            assert line, "IMAP connection closed"
            if re.fullmatch(pattern, line.strip()):
                return line

    def done(self) -> None:
        self.imap.send(b"DONE\r\n")
        while not self.imap.readline().startswith(b"I1 OK"):
            pass

    def close(self) -> None:
        self.imap.logout()


def one_per_process(server: ServeProcess, tls: ssl.SSLContext) -> Iterator[tuple[int, Session]]:
    """A logged-in session in each process (the others are closed)."""
    assert server.process is not None
    pids = [server.process.pid, *workers_of(server)]
    found: dict[int, Session] = {}
    for _ in range(TRIES):
        session = Session(server.ports["imap"], tls)
        pid = serving_pid(pids, server.ports["imap"], session.imap)
        if pid is None or pid in found:
            session.close()
        else:
            found[pid] = session
        if len(found) == len(pids):
            break
    assert sorted(found) == sorted(pids), f"connections reached {sorted(found)} of {pids}"
    yield from found.items()


def test_idle_in_every_process_hears_changes_made_in_any_other(
        tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext) -> None:
    env_file = make_env(tmp_path, server_cert, processes=1, IMAP_PROCESSES=PROCESSES)
    with ServeProcess(env_file) as server:
        assert len(workers_of(server)) == PROCESSES - 1
        sessions = list(one_per_process(server, client_tls))
        for _pid, session in sessions:
            session.idle()
        send(server.ports["smtp"], BOB, "delivered by the main process")
        for _pid, session in sessions:  # main → each worker
            session.wait_for(rb"\* 1 EXISTS")
        for count, (actor_pid, actor) in enumerate(sessions, start=2):
            actor.done()
            actor.imap.append("INBOX", None, None, f"Subject: {count}\r\n\r\nhi\r\n".encode())
            for pid, session in sessions:
                if pid != actor_pid:  # worker → main → the other workers
                    session.wait_for(rb"\* %d EXISTS" % count)
            actor.idle()
        flagger_pid, flagger = sessions[-1]
        flagger.done()
        typ, _ = flagger.imap.store("1", "+FLAGS", r"(\Flagged)")
        assert typ == "OK"
        for pid, session in sessions:
            if pid != flagger_pid:  # a flag change too, in every other process
                session.wait_for(rb"\* 1 FETCH \(.*\\Flagged.*\)")
        for pid, session in sessions:
            if pid != flagger_pid:
                session.done()
            session.close()
        workers = workers_of(server)
        assert server.stop() == 0
    assert not [pid for pid in workers if is_alive(pid)]
    output = "".join(server.output)
    assert "Traceback" not in output
    assert "accepting imap/imaps connections" in output  # IMAP only: no SMTP worker


def test_uids_stay_unique_when_every_process_appends_at_once(
        tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext) -> None:
    """The store allocates UIDs inside each process's write transaction: sessions of
    three processes appending together never get the same UID, and each sees all."""
    env_file = make_env(tmp_path, server_cert, processes=1, IMAP_PROCESSES=PROCESSES)
    with ServeProcess(env_file) as server:
        sessions = [session for _pid, session in one_per_process(server, client_tls)]

        def append_ten(index: int) -> list[bytes]:
            given = []
            for round_ in range(10):
                typ, data = sessions[index].imap.append(
                    "INBOX", None, None, f"Subject: {round_}.{index}\r\n\r\nhi\r\n".encode())
                assert typ == "OK"
                found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                assert found, data
                given.append(found.group(1))
            return given

        with ThreadPoolExecutor(len(sessions)) as pool:
            uids = [uid for given in pool.map(append_ten, range(len(sessions)))
                    for uid in given]
        assert len(set(uids)) == len(uids) == 10 * len(sessions)
        for session in sessions:
            typ, data = session.imap.uid("SEARCH", "ALL")
            assert typ == "OK"
            assert sorted(data[0].split(), key=int) == sorted(uids, key=int)
            session.close()
        assert server.stop() == 0
