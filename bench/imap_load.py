"""IMAP section: our asyncio load generator, one realistic client mix against both servers.

Owns a minimal IMAP client over asyncio streams (implicit TLS, as postroom refuses
plaintext LOGIN and Dovecot would allow it on loopback; TLS on both keeps it fair), the
test messages, filling mailboxes, and the mix:

    connect+TLS, LOGIN, SELECT INBOX, FETCH 1:* (FLAGS), FETCH of 20 headers,
    3 × FETCH of a whole body, 2 × STORE +FLAGS, SEARCH (UNSEEN or TEXT),
    APPEND, STORE +FLAGS (\\Deleted) + EXPUNGE of what it appended, LOGOUT

repeated by every client for a fixed time. Each client has its own account (mailboxes
are per user in practice). Reported: operations (commands) per second over all clients,
and p50/p99 latency per command. Connect+TLS is timed but not counted as an operation.

Invariants: the client is strict about tags (a missing tagged OK is an error, never a
silent success), every read has a timeout, and only 127.0.0.1 is ever dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import ssl
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.harness import HOST, PASSWORD

READ_TIMEOUT = 120.0
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "report",
    "invoice", "meeting", "budget", "schedule", "travel", "review", "draft",
)
SENDERS = ("alice", "bob", "carol", "dave", "erin", "frank")


class ImapError(Exception):
    pass


@functools.cache
def client_tls_context() -> ssl.SSLContext:
    # Self-signed certificates on both servers, on loopback only: no verification.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def make_message(index: int, size: int, rng: random.Random) -> bytes:
    """A plain-text message of about `size` bytes with realistic headers."""
    sender = SENDERS[index % len(SENDERS)]
    subject = " ".join(rng.choice(WORDS) for _ in range(4))
    header = (f"From: {sender.title()} <{sender}@example.org>\r\n"
              f"To: Bench User <user@bench.test>\r\n"
              f"Subject: {subject} #{index}\r\n"
              f"Date: Mon, 2 Nov 2026 10:{index % 60:02d}:00 +0000\r\n"
              f"Message-ID: <{index}.{rng.getrandbits(48):x}@example.org>\r\n"
              f"MIME-Version: 1.0\r\n"
              f"Content-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    lines: list[bytes] = []
    total = len(header)
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(10)).encode() + b"\r\n"
        lines.append(line)
        total += len(line)
    return header + b"".join(lines)


@dataclass
class Response:
    status: str  # OK / NO / BAD
    untagged: list[bytes]
    text: bytes


@dataclass
class ImapClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    greeting: bytes = b""
    _tag: int = 0

    @classmethod
    async def connect(cls, port: int, tls: bool = True) -> ImapClient:
        context = client_tls_context() if tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, port, ssl=context, limit=64 * 1024 * 1024),
            READ_TIMEOUT)
        client = cls(reader, writer)
        client.greeting = await client._read_line()
        if not client.greeting.startswith(b"* OK"):
            raise ImapError(f"bad greeting {client.greeting[:100]!r}")
        return client

    async def _read_line(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), READ_TIMEOUT)
        return line

    async def _read_response_line(self) -> bytes:
        """One logical response line with its literals inlined."""
        parts = [await self._read_line()]
        while parts[-1].endswith(b"}\r\n") and (
                match := _LITERAL_AT_END.search(parts[-1])) is not None:
            size = int(match.group(1))
            parts.append(await asyncio.wait_for(self.reader.readexactly(size), READ_TIMEOUT))
            parts.append(await self._read_line())
        return b"".join(parts)

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"a%d" % self._tag

    async def command(self, text: str, literal: bytes | None = None) -> Response:
        """Send one command (with one synchronising literal at its end if given)."""
        tag = self._next_tag()
        if literal is None:
            self.writer.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.writer.write(tag + b" " + text.encode() + b" {%d}\r\n" % len(literal))
            await self._await_continuation(tag)
            self.writer.write(literal + b"\r\n")
        return await self._collect(tag)

    async def _await_continuation(self, tag: bytes) -> None:
        while True:
            line = await self._read_response_line()
            if line.startswith(b"+"):
                return
            if line.startswith(tag + b" "):
                raise ImapError(f"literal refused: {line[:200]!r}")

    async def _collect(self, tag: bytes) -> Response:
        untagged: list[bytes] = []
        prefix = tag + b" "
        while True:
            line = await self._read_response_line()
            if line.startswith(prefix):
                status, _, text = line[len(prefix):].partition(b" ")
                return Response(status.decode().upper(), untagged, text.rstrip())
            untagged.append(line)

    async def ok(self, text: str, literal: bytes | None = None) -> Response:
        response = await self.command(text, literal)
        if response.status != "OK":
            raise ImapError(f"{text[:60]!r}: {response.status} {response.text[:200]!r}")
        return response

    async def bulk(self, text: str) -> tuple[str, bytes]:
        """A command whose response has no literals (SELECT, FETCH FLAGS, SEARCH), read as
        one block: the client's own per-line parsing would otherwise add up to a second
        to a 100,000-line response and blur the server's time. Returns (status, data)."""
        tag = self._next_tag()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        buffer = bytearray(b"\r\n")  # so a tagged line first in the reply is found too
        marker = b"\r\n" + tag + b" "
        start = end = -1
        while end < 0:
            chunk = await asyncio.wait_for(self.reader.read(1 << 20), READ_TIMEOUT)
            if not chunk:
                raise ImapError(f"connection closed during {text[:60]!r}")
            buffer += chunk
            if start < 0:
                start = buffer.find(marker, max(0, len(buffer) - len(chunk) - len(marker)))
            if start >= 0:
                end = buffer.find(b"\r\n", start + len(marker))
        status_line = bytes(buffer[start + 2:end])
        status = status_line[len(tag) + 1:].split(b" ", 1)[0].decode().upper()
        if status != "OK":
            raise ImapError(f"{text[:60]!r}: {status_line[:200]!r}")
        return status, bytes(buffer[2:start + 2])

    async def append_pipelined(self, queue: asyncio.Queue[bytes], window: int) -> None:
        """Non-synchronising literals (RFC 7888): send up to `window` APPENDs, then read
        their tagged replies in order; every one must be OK."""
        while not queue.empty():
            tags: list[bytes] = []
            while len(tags) < window and not queue.empty():
                message = queue.get_nowait()
                tag = self._next_tag()
                self.writer.write(tag + b" APPEND INBOX {%d+}\r\n" % len(message)
                                  + message + b"\r\n")
                tags.append(tag)
            await self.writer.drain()
            for tag in tags:
                response = await self._collect(tag)
                if response.status != "OK":
                    raise ImapError(f"APPEND: {response.status} {response.text[:200]!r}")

    async def start_idle(self) -> None:
        tag = self._next_tag()
        self._idle_tag = tag
        self.writer.write(tag + b" IDLE\r\n")
        await self._await_continuation(tag)

    async def stop_idle(self) -> Response:
        self.writer.write(b"DONE\r\n")
        return await self._collect(self._idle_tag)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def exists_count(response: Response) -> int:
    for line in response.untagged:
        match = re.match(rb"\* (\d+) EXISTS", line)
        if match:
            return int(match.group(1))
    raise ImapError("no EXISTS in SELECT response")


def search_hits(response: Response) -> list[int]:
    for line in response.untagged:
        if line.startswith(b"* SEARCH"):
            return [int(n) for n in line[8:].split()]
    return []


# --- filling mailboxes --------------------------------------------------------------------


async def fill_mailbox(port: int, user: str, messages: Sequence[bytes],
                       connections: int = 4, window: int = 16) -> None:
    """APPEND every message to INBOX over a few connections (order does not matter).
    With LITERAL+ (RFC 7888) each connection keeps `window` APPENDs in flight."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)

    async def worker() -> None:
        client = await ImapClient.connect(port)
        try:
            response = await client.ok(f'LOGIN "{user}" "{PASSWORD}"')
            if b"LITERAL+" in response.text or b"LITERAL+" in client.greeting:
                await client.append_pipelined(queue, window)
            else:
                while not queue.empty():
                    await client.ok("APPEND INBOX", queue.get_nowait())
            await client.command("LOGOUT")
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


# --- the mix ------------------------------------------------------------------------------


@dataclass
class MixResult:
    server: str
    clients: int
    stays_logged_in: bool
    seconds: float
    operations: int
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ops_per_s(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0


class MixClient:
    """One simulated user running the mix in a loop until the deadline."""

    def __init__(self, port: int, user: str, seed: int, latencies: dict[str, list[float]]):
        self.port = port
        self.user = user
        self.rng = random.Random(seed)
        self.latencies = latencies
        self.operations = 0
        self.counter = 0

    async def timed(self, name: str, client: ImapClient, text: str,
                    literal: bytes | None = None) -> Response:
        started = time.perf_counter()
        response = await client.ok(text, literal)
        self.latencies[name].append(time.perf_counter() - started)
        self.operations += 1
        return response

    async def run_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            await self.session()

    async def run_logged_in(self, client: ImapClient, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                total = exists_count(await self.timed("SELECT", client, "SELECT INBOX"))
                await self.work(client, total)
            await self.timed("LOGOUT", client, "LOGOUT")
        finally:
            await client.close()

    async def open(self) -> ImapClient:
        started = time.perf_counter()
        client = await ImapClient.connect(self.port)
        self.latencies["connect+TLS"].append(time.perf_counter() - started)
        try:
            await self.timed("LOGIN", client, f'LOGIN "{self.user}" "{PASSWORD}"')
        except BaseException:
            await client.close()
            raise
        return client

    async def session(self) -> None:
        client = await self.open()
        try:
            total = exists_count(await self.timed("SELECT", client, "SELECT INBOX"))
            await self.work(client, total)
            await self.timed("LOGOUT", client, "LOGOUT")
        finally:
            await client.close()

    async def work(self, client: ImapClient, total: int) -> None:
        rng = self.rng
        await self.timed("FETCH FLAGS", client, "FETCH 1:* (FLAGS)")
        low = max(1, total - 19)
        await self.timed("FETCH HEADERS", client, f"FETCH {low}:{total} (BODY.PEEK[HEADER])")
        for _ in range(3):
            await self.timed("FETCH BODY", client, f"FETCH {rng.randint(1, total)} (BODY[])")
        for _ in range(2):
            flag = rng.choice(("\\Seen", "\\Flagged", "\\Answered"))
            await self.timed("STORE", client, f"STORE {rng.randint(1, total)} +FLAGS ({flag})")
        key = "UNSEEN" if self.counter % 2 == 0 else f'TEXT "{rng.choice(WORDS)}"'
        await self.timed("SEARCH", client, f"SEARCH {key}")
        self.counter += 1
        body = make_message(10_000 + self.counter, 4096, rng)
        appended = await self.timed("APPEND", client, "APPEND INBOX", body)
        # Remove what we appended so the mailbox keeps its size over the run. RFC 4315
        # APPENDUID names it; both servers implement UIDPLUS (IMAP4rev2 includes it).
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", appended.text)
        if match is None:
            raise ImapError(f"APPEND without APPENDUID: {appended.text[:120]!r}")
        uid = int(match.group(1))
        await self.timed("STORE", client, f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
        await self.timed("EXPUNGE", client, "EXPUNGE")


async def run_mix(server: str, port: int, users: Sequence[str], seconds: float,
                  stays_logged_in: bool = False) -> MixResult:
    """`stays_logged_in`: each client logs in once and repeats SELECT + the work until the
    deadline (a desktop client); otherwise every round is a whole session from connect to
    LOGOUT (a phone polling)."""
    latencies: dict[str, list[float]] = defaultdict(list)
    clients = [MixClient(port, user, seed, latencies) for seed, user in enumerate(users)]
    if stays_logged_in:
        # Log everyone in before the clock starts: this mode measures the work, and
        # the session mode already measures logins.
        connections = await asyncio.gather(*(c.open() for c in clients))
        for client in clients:
            client.operations = 0
        latencies.clear()
        started = time.monotonic()
        deadline = started + seconds
        runs = [c.run_logged_in(conn, deadline) for c, conn in zip(clients, connections,
                                                                    strict=True)]
    else:
        started = time.monotonic()
        deadline = started + seconds
        runs = [c.run_until(deadline) for c in clients]
    outcomes = await asyncio.gather(*runs, return_exceptions=True)
    elapsed = time.monotonic() - started
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    operations = sum(c.operations for c in clients)
    return MixResult(server, len(users), stays_logged_in, elapsed, operations,
                     dict(latencies), errors)


def mailbox_messages(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    sizes = (2048, 4096, 8192, 16384, 65536)
    return [make_message(index, sizes[index % len(sizes)], rng) for index in range(count)]
