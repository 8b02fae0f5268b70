"""Scale section: a very large mailbox, many IDLE connections, a large POP3 maildrop.

Owns the three scale measurements:
- big mailbox (100,000 messages with --full): latency of SELECT (first, cold, and warm),
  UID FETCH 1:* (FLAGS) and SEARCH TEXT, each on a fresh logged-in connection;
- IDLE: N connections logged in, SELECTed and in IDLE; postroom's RSS before and after,
  per connection, and the time until every connection sees the EXISTS of one new message;
- POP3: STAT and RETR on a maildrop of 10,000 messages (USER/PASS and STAT latency, then
  RETR of a sample of messages: per-RETR latency and messages/s).

Filling: postroom is filled through its own IMAP APPEND path (pipelined with LITERAL+ over
a few connections: the path a migration tool such as imapsync takes); Dovecot's Maildir
is written directly, so its first SELECT (index build) is reported separately as "cold".
"""

from __future__ import annotations

import asyncio
import gc
import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.harness import HOST, PASSWORD, percentile, tree_cpu_seconds, tree_rss_kib
from bench.imap_load import (
    ImapClient,
    ImapError,
    client_tls_context,
    fill_mailbox,
    make_message,
)

NEEDLE = "zanzibar"  # in 1 % of the big mailbox's bodies, in no header


def big_mailbox_messages(count: int, seed: int = 11) -> list[bytes]:
    """Small, varied messages (1–3 KB): size of the mailbox is count, not bytes."""
    rng = random.Random(seed)
    messages = []
    for index in range(count):
        body = make_message(index, rng.choice((1024, 2048, 3072)), rng)
        if index % 100 == 50:
            body += f"the word {NEEDLE} appears here\r\n".encode()
        messages.append(body)
    return messages


# --- big mailbox --------------------------------------------------------------------------


@dataclass
class BigMailboxResult:
    server: str
    messages: int
    fill_seconds: float | None
    first_select_s: float
    select_s: list[float] = field(default_factory=list)
    fetch_flags_s: list[float] = field(default_factory=list)
    search_text_s: list[float] = field(default_factory=list)
    search_hits: int = 0


async def _timed_ok(client: ImapClient, text: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    _, data = await client.bulk(text)
    return time.perf_counter() - started, data


async def _logged_in(port: int, user: str) -> ImapClient:
    client = await ImapClient.connect(port)
    await client.ok(f'LOGIN "{user}" "{PASSWORD}"')
    return client


async def measure_big_mailbox(server: str, port: int, user: str, expected: int,
                              repeats: int, fill_seconds: float | None) -> BigMailboxResult:
    client = await _logged_in(port, user)
    try:
        first, data = await _timed_ok(client, "SELECT INBOX")
        match = re.search(rb"\* (\d+) EXISTS\r\n", data)
        exists = int(match.group(1)) if match else -1
        if exists != expected:
            raise ImapError(f"{server}: SELECT says {exists} messages, expected {expected}")
    finally:
        await client.close()
    result = BigMailboxResult(server, expected, fill_seconds, first)
    for _ in range(repeats):
        client = await _logged_in(port, user)
        try:
            result.select_s.append((await _timed_ok(client, "SELECT INBOX"))[0])
            seconds, data = await _timed_ok(client, "UID FETCH 1:* (FLAGS)")
            if data.count(b" FETCH (") != expected:
                raise ImapError(f"{server}: UID FETCH 1:* did not return every message")
            result.fetch_flags_s.append(seconds)
            seconds, data = await _timed_ok(client, f'SEARCH TEXT "{NEEDLE}"')
            result.search_text_s.append(seconds)
            match = re.search(rb"\* SEARCH([ 0-9]*)\r\n", data)
            result.search_hits = len(match.group(1).split()) if match else 0
            await client.command("LOGOUT")
        finally:
            await client.close()
    return result


async def fill_postroom(port: int, user: str, messages: Sequence[bytes]) -> float:
    started = time.monotonic()
    await fill_mailbox(port, user, messages, connections=4, window=32)
    return time.monotonic() - started


# --- IDLE ---------------------------------------------------------------------------------


@dataclass
class IdleResult:
    connections: int
    rss_before_kib: int
    rss_idle_kib: int
    setup_seconds: float
    wakeup_seconds: float | None
    woken: int
    errors: list[str] = field(default_factory=list)
    server_cpu_wakeup: float | None = None  # CPU seconds of the server's processes meanwhile
    client_cpu_wakeup: float | None = None  # and of this process (it shares the cores)

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_idle_kib - self.rss_before_kib) / max(1, self.connections)


async def _open_idle(port: int, user: str, gate: asyncio.Semaphore) -> ImapClient:
    async with gate:
        client = await ImapClient.connect(port)
        try:
            await client.ok(f'LOGIN "{user}" "{PASSWORD}"')
            await client.ok("SELECT INBOX")
            await client.start_idle()
        except BaseException:
            await client.close()
            raise
        return client


async def _await_exists(client: ImapClient, timeout: float) -> float:
    async with asyncio.timeout(timeout):  # not wait_for: no task per line (client CPU)
        while True:
            line = await client.reader.readuntil(b"\r\n")
            if line.startswith(b"* ") and line.endswith(b"EXISTS\r\n"):
                return time.monotonic()


async def measure_idle(port: int, users: Sequence[str], connections: int, pid: int,
                       deliver: Callable[[str], None], batch: int = 100) -> IdleResult:
    """Open `connections` IDLE sessions spread over `users`, then deliver one message to
    each user and time how long until every connection has seen its EXISTS."""
    rss_before = tree_rss_kib(pid)  # IMAP workers included
    gate = asyncio.Semaphore(batch)  # at most `batch` handshakes+logins in flight
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(_open_idle(port, users[i % len(users)], gate) for i in range(connections)),
        return_exceptions=True)
    setup = time.monotonic() - started
    clients = [o for o in outcomes if isinstance(o, ImapClient)]
    errors = sorted({f"{type(o).__name__}: {o}" for o in outcomes
                     if isinstance(o, BaseException)})
    await asyncio.sleep(0)
    rss_idle = tree_rss_kib(pid)
    wakeup, woken, cpu, client_cpu = None, 0, None, None
    if clients:
        # This process holds as many objects as the server; a pass of its own garbage
        # collector over them (0.3 s here) must not count as the server's wake-up time.
        gc.freeze()
        gc.disable()
        try:
            cpu_before, client_before = tree_cpu_seconds(pid), time.process_time()
            sent = time.monotonic()
            waits = [asyncio.ensure_future(_await_exists(c, 120)) for c in clients]
            await asyncio.to_thread(deliver, "")
            done = await asyncio.gather(*waits, return_exceptions=True)
        finally:
            gc.enable()
            gc.unfreeze()
        times = [t for t in done if isinstance(t, float)]
        woken = len(times)
        wakeup = (max(times) - sent) if times else None
        cpu = tree_cpu_seconds(pid) - cpu_before
        client_cpu = time.process_time() - client_before
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return IdleResult(len(clients), rss_before, rss_idle, setup, wakeup, woken, errors[:5], cpu,
                      client_cpu)


# --- POP3 ---------------------------------------------------------------------------------


@dataclass
class Pop3Result:
    server: str
    messages: int
    login_s: list[float] = field(default_factory=list)
    stat_s: list[float] = field(default_factory=list)
    retr_s: list[float] = field(default_factory=list)
    retr_per_s: list[float] = field(default_factory=list)

    @property
    def retr_p50(self) -> float:
        return percentile(self.retr_s, 0.5)

    @property
    def retr_p99(self) -> float:
        return percentile(self.retr_s, 0.99)


class Pop3Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Pop3Client:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_tls_context(),
                                                       limit=64 * 1024 * 1024)
        client = cls(reader, writer)
        await client._status()
        return client

    async def _status(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 120)
        if not line.startswith(b"+OK"):
            raise ImapError(f"POP3: {line[:200]!r}")
        return line

    async def command(self, text: str) -> bytes:
        self.writer.write(text.encode() + b"\r\n")
        return await self._status()

    async def multiline(self, text: str) -> bytes:
        """A multi-line reply (RFC 1939 §3): up to the `.` line, undoing dot-stuffing."""
        await self.command(text)
        data = await asyncio.wait_for(self.reader.readuntil(b"\r\n.\r\n"), 120)
        return data

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, TimeoutError, ssl.SSLError):
            return


async def measure_pop3(server: str, port: int, user: str, expected: int, repeats: int,
                       sample: int) -> Pop3Result:
    result = Pop3Result(server, expected)
    rng = random.Random(5)
    for _ in range(repeats):
        started = time.perf_counter()
        client = await Pop3Client.connect(port)
        try:
            await client.command(f"USER {user}")
            await client.command(f"PASS {PASSWORD}")
            result.login_s.append(time.perf_counter() - started)
            began = time.perf_counter()
            stat = await client.command("STAT")
            result.stat_s.append(time.perf_counter() - began)
            count = int(stat.split()[1])
            if count != expected:
                raise ImapError(f"{server}: STAT says {count}, expected {expected}")
            picks = [rng.randint(1, count) for _ in range(sample)]
            began = time.perf_counter()
            for number in picks:
                one = time.perf_counter()
                await client.multiline(f"RETR {number}")
                result.retr_s.append(time.perf_counter() - one)
            result.retr_per_s.append(sample / (time.perf_counter() - began))
            # QUIT without DELE: nothing changes, the next round sees the same maildrop.
            await client.command("QUIT")
        finally:
            await client.close()
    return result

