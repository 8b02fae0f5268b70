"""Exactly-once outbound delivery with a node SIGKILLed mid-delivery (issue 10).

Two `postroom serve` processes share one PostgreSQL database and send to a sink SMTP
server run by the test (the MX records come from the test DNS server). Node A sends from
127.0.0.2, node B from 127.0.0.3, so the sink tells their connections apart. The run:

1. 30 messages (3 recipients each, over two remote domains) are submitted, half on each
   node, while the sink answers 451 to every RCPT: all 90 queue rows end up deferred.
2. The sink now holds every transaction from A at the end of DATA, unanswered, and
   accepts B's. `postroom queue flush` against A makes the 90 rows due and wakes A,
   which claims them (its lease: QUEUE_LEASE_SECONDS) and is stuck mid-delivery.
3. A is SIGKILLed. A flush while A's leases are in force must flush nothing (it runs
   in the test process, as `queue flush` would, so its moment is known against the
   lease's end), then B is woken as `queue flush` wakes it (SIGUSR1) and must take every
   row over once the lease has run out — without a poll, since its sleep is bounded by
   the queue's earliest attempt.

The sink never answered 250 to A, so the at-least-once window (a message fully sent
whose 250 was never recorded) is closed by construction, and "each (message,
recipient) reached the sink exactly once" is a fair assertion.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import os
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.accounts.service import AccountService
from postroom.clock import ManualClock
from postroom.outbound.admin import flush_queue
from postroom.store.changes import ChangeFeed
from postroom.store.postgres import open_postgres
from tests.postgres.conftest import node_env
from tests.support.dnsserver import DnsTestServer
from tests.support.server import ServeProcess

pytestmark = pytest.mark.timeout(120)

A_IP, B_IP = "127.0.0.2", "127.0.0.3"
ALICE, PASSWORD = "alice@example.test", "pw-alice"
RECIPIENTS = ["one@d0.test", "two@d0.test", "three@d1.test"]  # d0: two per transaction
MESSAGES_PER_NODE = 15
LEASE_SECONDS = 6
_TOKEN = re.compile(rb"Subject: (kill-[ab]-\d+)")

Pair = tuple[str, str]  # (message token, recipient)


class _SinkHandler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.sink.is_deferring:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sink, peer = self.sink, session.peer[0]  # type: ignore[index]
        match = _TOKEN.search(envelope.content)  # type: ignore[arg-type]
        assert match is not None
        pairs = [(match.group(1).decode(), rcpt) for rcpt in envelope.rcpt_tos]
        if peer == A_IP:
            with sink.lock:
                sink.held.extend(pairs)
            await sink.release.wait()  # A dies before this: it never hears a reply
            return "421 4.3.0 closing"
        with sink.lock:
            sink.delivered.extend((peer, token, rcpt) for token, rcpt in pairs)
        return "250 2.0.0 accepted"


class Sink:
    """aiosmtpd on 127.0.0.1 (ephemeral port) on its own event loop in a thread, so the
    blocking test body can drive the nodes meanwhile."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.is_deferring = True
        self.held: list[Pair] = []
        self.delivered: list[tuple[str, str, str]] = []  # (client ip, token, recipient)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.release = asyncio.Event()

    def __enter__(self) -> Sink:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> int:
        self._server = await self._loop.create_server(
            lambda: SMTP(_SinkHandler(self), hostname="mx.sink.test"), "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def snapshot(self) -> tuple[list[Pair], list[tuple[str, str, str]]]:
        with self.lock:
            return list(self.held), list(self.delivered)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def cli(env_file: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file),
                             *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def queue_count(database_url: str, where: str = "TRUE") -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM queue WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def submit(port: int, tls: ssl.SSLContext, node: str) -> list[Pair]:
    sent: list[Pair] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.starttls(context=tls)
        smtp.login(ALICE, PASSWORD)
        for index in range(MESSAGES_PER_NODE):
            token = f"kill-{node}-{index}"
            smtp.sendmail(ALICE, RECIPIENTS, f"From: <{ALICE}>\r\nSubject: {token}\r\n\r\n"
                          f"{token}\r\n".encode())
            sent.extend((token, rcpt) for rcpt in RECIPIENTS)
    return sent


def lease_end(database_url: str) -> dt.datetime:
    """When the first of the leases in force runs out."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT min(leased_until) FROM queue").fetchone()
    assert row is not None and row[0] is not None
    return row[0]  # type: ignore[no-any-return]


async def flush_at_now(database_url: str, cache: Path) -> tuple[int, dt.datetime]:
    """`postroom queue flush` without its process start-up: (rows flushed, when)."""
    store, _ = await open_postgres(database_url, ChangeFeed(), cache)
    try:
        now = dt.datetime.now(dt.UTC)
        return await flush_queue(store, ManualClock(now)), now
    finally:
        await store.close()


async def add_account(database_url: str, cache: Path) -> None:
    store, _ = await open_postgres(database_url, ChangeFeed(), cache)
    try:
        await AccountService(store).add_account(ALICE, PASSWORD)
    finally:
        await store.close()


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        for domain in ("d0.test.", "d1.test."):
            server.add(domain, "MX", "10 mx.sink.test.")
        server.add("mx.sink.test.", "A", "127.0.0.1")
        yield server


def test_a_killed_node_s_claimed_mail_is_delivered_once_by_the_other(
    tmp_path: Path, server_cert: tuple[Path, Path], client_tls: ssl.SSLContext,
    database_url: str, dns: DnsTestServer,
) -> None:
    asyncio.run(add_account(database_url, tmp_path / "cache"))
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(Sink())

        def env(name: str, ip: str) -> Path:
            return node_env(tmp_path, server_cert, database_url, name,
                            DNS_NAMESERVERS=dns.address, OUTBOUND_SMTP_PORT=sink.port,
                            OUTBOUND_BIND_ADDRESS=ip, QUEUE_LEASE_SECONDS=LEASE_SECONDS)

        env_a, env_b = env("a", A_IP), env("b", B_IP)
        node_a = stack.enter_context(ServeProcess(env_a))
        node_b = stack.enter_context(ServeProcess(env_b))

        # 1. Everything queued and deferred (451 from the sink), nothing leased.
        expected = (submit(node_a.ports["submission"], client_tls, "a")
                    + submit(node_b.ports["submission"], client_tls, "b"))
        total = len(expected)
        wait_until(lambda: queue_count(database_url, "attempts >= 1 AND leased_until IS NULL")
                   == total, "every row is deferred")

        # 2. A claims everything and hangs at the end of DATA on both connections.
        sink.is_deferring = False
        assert cli(env_a, "queue", "flush").strip() == f"{total} recipient(s) due now"
        wait_until(lambda: {rcpt.split("@")[1] for _, rcpt in sink.snapshot()[0]}
                   == {"d0.test", "d1.test"}, "A is mid-delivery to both domains")
        wait_until(lambda: queue_count(database_url, "leased_until IS NULL"
                                       " OR leased_until <= now()") == 0,
                   "every row is claimed")
        leased_until = lease_end(database_url)

        # 3. A dies; a flush must not break A's leases; B takes over after them.
        node_a.kill()
        flushed, flushed_at = asyncio.run(flush_at_now(database_url, tmp_path / "cache"))
        assert flushed_at < leased_until, "machine too slow: the lease ran out first"
        assert flushed == 0
        assert node_b.process is not None
        os.kill(node_b.process.pid, signal.SIGUSR1)  # how `queue flush` wakes a server
        # Before B's next poll (30 s after this wake-up): B must wake when the lease ends.
        wait_until(lambda: queue_count(database_url) == 0, "B delivered everything",
                   timeout=LEASE_SECONDS + 18)

        held, delivered = sink.snapshot()
    counts = collections.Counter((token, rcpt) for _, token, rcpt in delivered)
    assert set(counts) == set(expected)
    assert [pair for pair, n in counts.items() if n != 1] == []  # exactly once each
    assert {ip for ip, _, _ in delivered} == {B_IP}  # A never completed a transaction
    assert set(held) <= set(counts)  # what A was sending when it died, B delivered
    assert node_b.output and not any("Traceback" in line for line in node_b.output)
