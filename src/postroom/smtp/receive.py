"""Receiving: from a spooled DATA body to stored mail, before the 250 is sent.

Owns the step after `<CRLF>.<CRLF>`: one header scan (headerscan.py) → loop check →
message checks (the plug-in point for DKIM/DMARC and SPOOF_PROTECTION: they may add
`extra_headers`, retarget a recipient's mailbox, or refuse) → trace headers + spooled
body, minus Authentication-Results fields forged under our authserv-id (RFC 8601 §5),
written as one durable blob → `message_meta` off-loop →
local delivery to every resolved account (one blob shared) → remote targets handed to the
outbound queue → only then `250 2.0.0 Ok: queued as <id>`.

Invariants:
- The spool file (DATA_DIR/spool) is not fsynced: nothing has been acknowledged while it
  exists. A body under `Spool._FLUSH_AT` never gets one: it stays in memory
  (`ReceivedMessage.body`), which spares a file create and delete per message — on this
  machine's ext4 the inode allocator's scan past recently deleted inodes was a quarter of
  the CPU of a 4 KB delivery (issue 8). The blob is fsynced and renamed, and every
  store row committed, before the reply is returned (ARCHITECTURE.md rule 10).
- The blob starts with `Return-Path: <sender>` (RFC 5321 §4.4, written at final
  delivery). The outbound side strips a leading Return-Path before relaying.
- A failure after the blob was written releases it when no message references it.
- Thread hops, not bytes, dominate the cost of small messages. A body held in memory
  gives both the blob's bytes and its meta without reading a file; up to
  `_ON_LOOP_LIMIT` its header scans and MIME parse (≈0.1–0.3 ms) run on the loop,
  larger ones off it (ARCHITECTURE.md rule 9). Bodies up to `_IN_MEMORY_LIMIT`
  are read whole, once; larger ones are streamed, never held whole in memory here.
  Forged Authentication-Results fields are skipped by byte range. Every fsync stays
  off the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from postroom.delivery.local import INBOX, deliver_local
from postroom.delivery.recipients import LocalTarget
from postroom.mail.mimetree import message_meta
from postroom.mail.submission import missing_submission_headers
from postroom.mail.trace import TraceInfo, render_received, render_return_path
from postroom.runtime import Runtime
from postroom.smtp import replies
from postroom.smtp.headerscan import HeaderFacts, scan_header
from postroom.smtp.policy import MAX_RECEIVED_HEADERS
from postroom.smtp.replies import Reply
from postroom.smtp.wire import MailParams, RcptParams
from postroom.store.blobs import BlobWriter

if TYPE_CHECKING:
    from postroom.mailauth.spf import SpfResult

log = logging.getLogger("postroom.smtp")

_COPY_CHUNK = 256 * 1024
_IN_MEMORY_LIMIT = 1024 * 1024
_ON_LOOP_LIMIT = 128 * 1024


def new_queue_id() -> str:
    return secrets.token_hex(8).upper()


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    helo_name: str
    is_esmtp: bool
    tls_version: str = ""
    tls_cipher: str = ""
    tls_bits: int = 0
    auth_user: str = ""
    is_trusted: bool = False  # in TRUSTED_NETWORKS

    @property
    def protocol(self) -> str:
        """RFC 3848 `with` keyword."""
        if not self.is_esmtp:
            return "SMTP"
        return "ESMTP" + ("S" if self.tls_version else "") + ("A" if self.auth_user else "")


@dataclass(slots=True)
class AcceptedRecipient:
    """One accepted RCPT, resolved. `mailbox` is where local copies go; a later
    mail-authentication check may set it (e.g. "Junk")."""

    address: str
    params: RcptParams
    local: tuple[LocalTarget, ...] = ()
    remote: tuple[str, ...] = ()
    mailbox: str = INBOX


@dataclass(frozen=True, slots=True)
class OutboundRecipient:
    address: str
    notify: tuple[str, ...] = ()  # RFC 3461, from the RCPT that led here
    orcpt: str | None = None


@dataclass(slots=True)
class ReceivedMessage:
    queue_id: str
    client: ClientInfo
    sender: str  # "" for the null reverse-path
    mail_params: MailParams
    recipients: list[AcceptedRecipient]
    spool_path: Path  # holds the message only when `body` is None
    size: int
    received_at: dt.datetime
    body: bytes | None = None  # the message as received, when it stayed in memory
    # Extra header lines (CRLF-terminated bytes) placed above our Received header, e.g.
    # Authentication-Results (RFC 8601 §5) from the mail-authentication checks.
    extra_headers: list[bytes] = field(default_factory=list)
    spf: SpfResult | None = None  # evaluated at RCPT on port 25, when it was
    header: HeaderFacts = field(default_factory=HeaderFacts)  # set by Receiver.accept

    @property
    def is_small(self) -> bool:
        """Held in memory and small enough to scan or parse on the event loop."""
        return self.body is not None and len(self.body) <= _ON_LOOP_LIMIT

    def open_body(self) -> IO[bytes]:
        """The message as the client sent it. Reading a spool file blocks: unless
        `body` is set, read it off the event loop."""
        if self.body is not None:
            return io.BytesIO(self.body)
        return self.spool_path.open("rb")


class OutboundQueue(Protocol):
    """The outbound queue (issue 4); app.py passes the implementation."""

    async def enqueue_remote(self, message: ReceivedMessage,
                             recipients: Sequence[OutboundRecipient],
                             blob_id: str, size: int) -> None: ...


class MessageCheck(Protocol):
    """A check run after DATA, before storage: returns a refusal, or None to go on."""

    async def check(self, message: ReceivedMessage) -> Reply | None: ...


class Spool:
    """One DATA body on its way in: buffered in memory, and written to `path` (off-loop)
    only once it outgrows `_FLUSH_AT`. After `finish`, `body` holds a body that never
    did, and no file exists."""

    _FLUSH_AT = 256 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self.body: bytes | None = None
        self._file: IO[bytes] | None = None  # opened by the first drain, off-loop
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self._FLUSH_AT:
            await asyncio.to_thread(self._drain)

    def _drain(self) -> None:
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in finish/discard
        self._file.write(b"".join(self._pending))
        self._pending.clear()
        self._pending_size = 0

    async def finish(self) -> None:
        if self._file is None:  # all of it is still buffered: it stays in memory
            self.body = b"".join(self._pending)
            self._pending.clear()
            return
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._drain()
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self.path.unlink(missing_ok=True)


def _scan_header(message: ReceivedMessage, authserv_id: str) -> HeaderFacts:
    with message.open_body() as source:
        return scan_header(source, authserv_id)


def _read_whole(spool_path: Path, prefix: bytes, skipped: Sequence[tuple[int, int]]
                ) -> tuple[bytes, str]:
    """The blob's bytes (prefix + spool minus `skipped` ranges) and their meta."""
    return _assemble(spool_path.read_bytes(), prefix, skipped)


def _assemble(body: bytes, prefix: bytes, skipped: Sequence[tuple[int, int]]
              ) -> tuple[bytes, str]:
    kept, position = [prefix], 0
    for start, end in skipped:
        kept.append(body[position:start])
        position = end
    kept.append(body[position:])
    data = b"".join(kept)
    return data, message_meta(data)


async def _copy_until(spool: IO[bytes], writer: BlobWriter, stop: int | None) -> None:
    """Copy from the current position up to offset `stop` (None: end of file)."""
    while True:
        want = _COPY_CHUNK if stop is None else min(_COPY_CHUNK, stop - spool.tell())
        if want <= 0:
            return
        chunk = await asyncio.to_thread(spool.read, want)
        if not chunk:
            return
        await writer.write(chunk)


class Receiver:
    def __init__(self, runtime: Runtime, outbound: OutboundQueue | None = None,
                 checks: Sequence[MessageCheck] = ()) -> None:
        self._runtime = runtime
        self._outbound = outbound
        self._checks = tuple(checks)
        self.spool_dir = runtime.config.data_dir / "spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    @property
    def has_outbound(self) -> bool:
        return self._outbound is not None

    def open_spool(self, queue_id: str) -> Spool:
        return Spool(self.spool_dir / queue_id)

    async def accept(self, message: ReceivedMessage) -> Reply:
        """Store and hand on a spooled message; the reply to send for DATA. The spool
        file is removed in every case."""
        try:
            hostname = self._runtime.config.hostname
            if message.is_small:
                message.header = _scan_header(message, hostname)
            else:
                message.header = await asyncio.to_thread(_scan_header, message, hostname)
            if message.header.received_count > MAX_RECEIVED_HEADERS:
                return replies.MAIL_LOOP
            for check in self._checks:
                refusal = await check.check(message)
                if refusal is not None:
                    return refusal
            await self._store(message)
            return replies.queued(message.queue_id)
        finally:
            if message.body is None:
                message.spool_path.unlink(missing_ok=True)

    async def _store(self, message: ReceivedMessage) -> None:
        meta: str | None = None
        unwritten: bytes | None = None  # the blob's bytes, to be written with the first row
        if message.size <= _IN_MEMORY_LIMIT:
            data, meta = await self._assembled(message)
            size = len(data)
            if any(recipient.local for recipient in message.recipients):
                # The store writes the blob in the same trip as the first delivery's row.
                blob_id, unwritten = self._runtime.blobs.new_id(size), data
            else:
                blob_id = await self._runtime.blobs.put(data)
        else:
            blob_id, size = await self._write_blob(message)
        try:
            if meta is None:  # a large body, streamed to its blob: parsed from there
                whole = await self._runtime.blobs.read(blob_id)
                meta = await asyncio.to_thread(message_meta, whole)
            await self._deliver_local(message, blob_id, size, meta, unwritten)
            await self._hand_on_remote(message, blob_id, size)
        except BaseException:
            await self._runtime.store.release_blob_if_unused(blob_id)
            raise

    async def _assembled(self, message: ReceivedMessage) -> tuple[bytes, str]:
        """The blob's bytes and meta of a message small enough to hold whole."""
        prefix, skipped = self._prefix(message), message.header.forged_ranges
        if message.is_small:
            assert message.body is not None  # is_small says so
            return _assemble(message.body, prefix, skipped)
        if message.body is not None:
            return await asyncio.to_thread(_assemble, message.body, prefix, skipped)
        return await asyncio.to_thread(_read_whole, message.spool_path, prefix, skipped)

    async def _write_blob(self, message: ReceivedMessage) -> tuple[str, int]:
        writer = self._runtime.blobs.writer()
        try:
            await writer.write(self._prefix(message))
            await self._copy_spool(message, writer)
            size = writer.size
            return await writer.commit(), size
        except BaseException:
            await writer.abort()
            raise

    def _prefix(self, message: ReceivedMessage) -> bytes:
        """What the blob holds above the client's header: trace and added fields."""
        parts = [render_return_path(message.sender), *message.extra_headers,
                 render_received(self._trace_info(message))]
        if message.client.auth_user:
            # RFC 6409 §8.2/§8.3: submission completes what the client left out.
            parts.append(missing_submission_headers(
                message.header.field_names, hostname=self._runtime.config.hostname,
                now=message.received_at))
        return b"".join(parts)

    @staticmethod
    async def _copy_spool(message: ReceivedMessage, writer: BlobWriter) -> None:
        """The spooled message into the blob, skipping the forged ranges."""
        with message.spool_path.open("rb") as spool:
            for start, end in message.header.forged_ranges:
                await _copy_until(spool, writer, start)
                await asyncio.to_thread(spool.seek, end)
            await _copy_until(spool, writer, None)

    def _trace_info(self, message: ReceivedMessage) -> TraceInfo:
        client = message.client
        only = message.recipients[0].address if len(message.recipients) == 1 else ""
        return TraceInfo(
            client_name=client.helo_name, client_ip=client.ip,
            hostname=self._runtime.config.hostname, protocol=client.protocol,
            queue_id=message.queue_id, when=message.received_at,
            tls_version=client.tls_version, tls_cipher=client.tls_cipher,
            tls_bits=client.tls_bits, recipient=only)

    async def _deliver_local(self, message: ReceivedMessage, blob_id: str, size: int,
                             meta: str, unwritten: bytes | None) -> None:
        """`unwritten`: the blob's bytes when no one has written it yet; the first
        delivery's store call writes it, the others share it."""
        delivered: set[int] = set()  # one copy per account, however many RCPTs reach it
        for recipient in message.recipients:
            for target in recipient.local:
                if target.account_id in delivered:
                    continue
                delivered.add(target.account_id)
                await deliver_local(self._runtime.store, target.account_id, blob_id, size,
                                    meta, mailbox=recipient.mailbox,
                                    internal_date=message.received_at, body=unwritten)
                unwritten = None

    async def _hand_on_remote(self, message: ReceivedMessage, blob_id: str, size: int) -> None:
        remote: dict[str, OutboundRecipient] = {}
        for recipient in message.recipients:
            for address in recipient.remote:
                remote.setdefault(address, OutboundRecipient(
                    address, recipient.params.notify, recipient.params.orcpt))
        if not remote:
            return
        if self._outbound is None:
            # Only remote targets of aliases that also reach a local account get here
            # (policy refuses the rest at RCPT).
            log.warning("queue_id=%s no outbound queue: not forwarding to %s",
                        message.queue_id, ", ".join(remote))
            return
        await self._outbound.enqueue_remote(message, list(remote.values()), blob_id, size)
