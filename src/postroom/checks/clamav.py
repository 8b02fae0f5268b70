"""Viruses: the built-in EICAR test (always) and clamd (ENABLE_CLAMAV=1) after DATA.

Owns `VirusCheck`, `ClamdClient` and `parse_clamd_reply` (sans-IO). clamd's protocol
(clamd(8), "INSTREAM"): `zINSTREAM\\0`, then chunks each prefixed with its length as 4
bytes big-endian, then a zero length; the answer is one NUL-terminated line:
`stream: OK`, `stream: <signature> FOUND`, `INSTREAM size limit exceeded. ERROR` (the
stream passed clamd's StreamMaxLength) or `<text> ERROR`.

Decisions: an infected message is refused with `554 5.7.1` naming the signature, before
anything is stored (never a bounce after accepting). A message longer than clamd's
StreamMaxLength was not scanned: it is handled like a scanner failure (451, or accepted
with the `X-Postroom-Filter: unscanned` field under FILTER_FAIL_OPEN=1) — clamd closes its
end when the limit passes, so a broken pipe while sending is followed by reading its
answer. EICAR is recognised in-process (checks/eicar.py) before clamd is asked, so the
path can be tested without clamd or its signature database.

Invariants: one connection per message under FILTER_TIMEOUT; the body is sent as read,
one chunk at a time; an answer longer than `MAX_REPLY` is garbage.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from postroom.checks.api import ACCEPT, CheckReply, ReceivedMessage, Symbol, Verdict, refuse
from postroom.checks.eicar import SIGNATURE, SYMBOL, contains_eicar, may_contain_eicar
from postroom.checks.scanning import (
    ScannerError,
    body_chunks,
    scan_guarded,
    unscanned,
)
from postroom.config import Config

log = logging.getLogger("postroom.checks")

MAX_REPLY = 4096
CHUNK = 64 * 1024
SIZE_LIMIT_TEXT = "size limit exceeded"


@dataclass(frozen=True, slots=True)
class ClamdReply:
    is_clean: bool
    signature: str = ""  # the name clamd found, when not clean
    is_oversize: bool = False  # past StreamMaxLength: not scanned


def parse_clamd_reply(raw: bytes) -> ClamdReply:
    """One INSTREAM answer; `ScannerError` for an error or anything unexpected."""
    text = raw.rstrip(b"\0\r\n").decode("utf-8", "replace")
    if SIZE_LIMIT_TEXT in text:
        return ClamdReply(False, is_oversize=True)
    _, colon, verdict = text.partition(": ")
    if colon and verdict == "OK":
        return ClamdReply(True)
    if colon and verdict.endswith(" FOUND") and len(verdict) > len(" FOUND"):
        return ClamdReply(False, " ".join(verdict[: -len(" FOUND")].split())[:200])
    raise ScannerError(f"clamd answered {text[:100]!r}")


def infected(signature: str) -> CheckReply:
    return CheckReply(554, "5.7.1", f"Message rejected: virus found ({signature})")


@dataclass(frozen=True, slots=True)
class ClamdClient:
    """clamd at a unix socket path or `host:port`. Plain sockets on the loop rather than
    streams: when clamd stops reading at StreamMaxLength, a stream transport closes itself
    at the broken pipe and drops the answer clamd sent just before; a socket can still
    read it."""

    where: str

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        if self.where.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = self.where
        else:
            host, _, port = self.where.rpartition(":")
            if not (port.isascii() and port.isdigit()) or not host:
                raise ScannerError(f"CLAMD_SOCKET {self.where!r} is neither a path nor "
                                   "host:port")
            family, kind, proto, _, address = (await loop.getaddrinfo(
                host.strip("[]"), int(port), type=socket.SOCK_STREAM))[0]
            sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def scan(self, message: ReceivedMessage) -> ClamdReply:
        loop = asyncio.get_running_loop()
        with await self._connect() as sock:
            try:
                await loop.sock_sendall(sock, b"zINSTREAM\0")
                async with aclosing(body_chunks(message, CHUNK)) as chunks:
                    async for chunk in chunks:
                        await loop.sock_sendall(sock, struct.pack(">I", len(chunk)) + chunk)
                await loop.sock_sendall(sock, struct.pack(">I", 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # clamd stopped reading (StreamMaxLength): its answer says why
            return parse_clamd_reply(await _read_reply(loop, sock))


async def _read_reply(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    reply = b""
    while b"\0" not in reply:
        try:
            data = await loop.sock_recv(sock, MAX_REPLY)
        except ConnectionResetError:
            data = b""
        if not data:
            if reply:
                return reply  # some clamd versions close without the NUL
            raise ScannerError("clamd closed the connection without an answer")
        reply += data
        if len(reply) > MAX_REPLY:
            raise ScannerError("clamd's answer is too long")
    return reply


@dataclass(frozen=True, slots=True)
class VirusCheck:
    """Refuses EICAR always and, with ENABLE_CLAMAV=1, whatever clamd finds."""

    config: Config
    clamd: ClamdClient | None
    name: str = "virus"
    timeout: float | None = None  # FILTER_TIMEOUT, applied in `on_message` (scanning.py)
    fail_open: bool = False

    @classmethod
    def from_config(cls, config: Config) -> VirusCheck:
        return cls(config, ClamdClient(config.clamd_socket) if config.enable_clamav else None)

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        if await _has_eicar(message):
            log.info("queue_id=%s virus %s (built in): refused", message.queue_id, SIGNATURE)
            return _refused(SIGNATURE, Symbol(SYMBOL, 0.0, SIGNATURE))
        if self.clamd is None:
            return ACCEPT
        return await scan_guarded("clamd", self._scan(message), message,
                                  seconds=self.config.filter_timeout,
                                  fail_open=self.config.filter_fail_open)

    async def _scan(self, message: ReceivedMessage) -> Verdict:
        assert self.clamd is not None
        reply = await self.clamd.scan(message)
        if reply.is_clean:
            return ACCEPT
        if reply.is_oversize:
            return unscanned("clamd", "message longer than StreamMaxLength",
                             fail_open=self.config.filter_fail_open, queue_id=message.queue_id)
        log.info("queue_id=%s virus %s (clamd): refused", message.queue_id, reply.signature)
        return _refused(reply.signature, Symbol("CLAM_VIRUS", 0.0, reply.signature))


def _refused(signature: str, symbol: Symbol) -> Verdict:
    refusal = refuse(infected(signature), f"virus {signature}")
    return Verdict(refusal.action, refusal.reply, reason=refusal.reason, symbols=(symbol,))


async def _has_eicar(message: ReceivedMessage) -> bool:
    if message.is_small:
        assert message.body is not None
        return contains_eicar(message.body)
    return await asyncio.to_thread(_spooled_has_eicar, message)


def _spooled_has_eicar(message: ReceivedMessage) -> bool:
    """The cheap test chunk by chunk (with an overlap for a string across two), and the
    whole message parsed only when it hits."""
    with message.open_body() as source:
        tail = b""
        while chunk := source.read(CHUNK):
            if may_contain_eicar(tail + chunk):
                source.seek(0)
                return contains_eicar(source.read())
            tail = chunk[-64:]
    return False
