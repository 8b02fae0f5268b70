"""Receiving: from a spooled DATA body to stored mail, before the 250 is sent.

Owns the step after `<CRLF>.<CRLF>`: one header scan (mailauth/headerscan.py) → loop
check → the inbound checks' MESSAGE stage (checks/: DKIM/DMARC, SPOOF_PROTECTION, header
limits; their merged verdict may refuse, add header fields, or file every local copy in
another mailbox, which is applied here) → trace headers + spooled body, minus
Authentication-Results fields forged under our authserv-id (RFC 8601 §5), written as one
durable blob → `message_meta` off-loop → local delivery to every resolved account (one
blob shared) → remote targets handed to the outbound queue →
only then `250 2.0.0 Ok: queued as <id>`.

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
  `transit.ON_LOOP_LIMIT` its header scans and MIME parse (≈0.1–0.3 ms) run on the loop,
  larger ones off it (ARCHITECTURE.md rule 9). Bodies up to `_IN_MEMORY_LIMIT`
  are read whole, once; larger ones are streamed, never held whole in memory here.
  Forged Authentication-Results fields are skipped by byte range. Every fsync stays
  off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from postroom.checks import Pipeline, Stage, Verdict
from postroom.clock import display_zone
from postroom.delivery.local import Full, append_delivered, delivery_mailbox, limit_reached
from postroom.delivery.recipients import LocalTarget
from postroom.delivery.transit import OutboundRecipient, ReceivedMessage
from postroom.errors import TryLater
from postroom.mail.mimetree import message_meta
from postroom.mail.submission import missing_submission_headers
from postroom.mail.trace import TraceInfo, render_received, render_return_path
from postroom.mailauth.headerscan import HeaderFacts, scan_header
from postroom.runtime import Runtime
from postroom.smtp import replies
from postroom.smtp.policy import MAX_RECEIVED_HEADERS
from postroom.smtp.replies import Reply
from postroom.store.api import Mailbox
from postroom.store.blobs import BlobWriter
from postroom.store.errors import (
    NotFound,
    StorageCorrupt,
    StorageFailure,
    StorageFull,
    storage_damage,
    storage_failure,
)

log = logging.getLogger("postroom.smtp")

_COPY_CHUNK = 256 * 1024
_IN_MEMORY_LIMIT = 1024 * 1024


def new_queue_id() -> str:
    return secrets.token_hex(8).upper()


class OutboundQueue(Protocol):
    """The outbound queue (issue 4); app.py passes the implementation."""

    async def enqueue_remote(self, message: ReceivedMessage,
                             recipients: Sequence[OutboundRecipient],
                             blob_id: str, size: int) -> None: ...


class Spool:
    """One DATA body on its way in: buffered in memory, and written to `path` (off-loop)
    only once it outgrows `_FLUSH_AT`. After `finish`, `body` holds a body that never
    did, and no file exists. A full disk (issue 25) does not end DATA early: the file is
    removed, the rest of the body is read and dropped, and `finish` raises the
    StorageFull, which the session answers with 452 4.3.1."""

    _FLUSH_AT = 256 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self.body: bytes | None = None
        self.failure: StorageFailure | None = None  # the disk failed: finish raises it
        self._file: IO[bytes] | None = None  # opened by the first drain, off-loop
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def write(self, data: bytes) -> None:
        if self.failure is not None:
            return  # nothing of this body can be kept: read to its end, then 452
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self._FLUSH_AT:
            try:
                await asyncio.to_thread(self._drain)
            except OSError as error:
                self._fail(error)

    def _drain(self) -> None:
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in finish/discard
        self._file.write(b"".join(self._pending))
        self._pending.clear()
        self._pending_size = 0

    def _fail(self, error: OSError) -> None:
        failure = storage_failure(error)
        if failure is None:
            raise error
        self.failure = failure
        self._pending.clear()
        self._pending_size = 0
        self.discard()

    async def finish(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self._file is None:  # all of it is still buffered: it stays in memory
            self.body = b"".join(self._pending)
            self._pending.clear()
            return
        try:
            await asyncio.to_thread(self._close)
        except OSError as error:
            self._fail(error)  # raises `error` itself unless it is a storage failure
            assert self.failure is not None
            raise self.failure from error

    def _close(self) -> None:
        self._drain()
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # closing flushes: fails on a full disk
                self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)


def storage_reply(failure: TryLater) -> Reply:
    """SMTP's words for a temporary failure; for the storage ones (store/errors.py),
    452 4.3.1 when full (RFC 3463 §3.5, Postfix's "Insufficient system storage")."""
    if isinstance(failure, StorageFull):
        return replies.INSUFFICIENT_STORAGE
    if isinstance(failure, StorageCorrupt):
        return replies.STORAGE_DAMAGED
    if isinstance(failure, StorageFailure):
        return replies.STORAGE_ERROR
    return replies.reply(451, "4.3.0", str(failure))


def verdict_reply(verdict: Verdict) -> Reply:
    """The SMTP reply a refusing check named."""
    assert verdict.reply is not None  # refuse() always names one
    return replies.reply(verdict.reply.code, verdict.reply.status, verdict.reply.text)


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


@dataclass(frozen=True, slots=True)
class _LocalTarget:
    mailbox: Mailbox
    full: Full | None  # the limit delivering there would break, None: room enough


def _nobody_has_room(message: ReceivedMessage, targets: dict[int, _LocalTarget]) -> bool:
    """Every account the message reaches is full and it goes nowhere else: 452."""
    has_remote = any(recipient.remote for recipient in message.recipients)
    return bool(targets) and not has_remote and all(t.full is not None for t in targets.values())


def _apply(verdict: Verdict, message: ReceivedMessage) -> None:
    """What an accepting verdict asks: fields to add, a folder for every local copy."""
    message.extra_headers.extend(verdict.headers)
    if verdict.folder:
        for recipient in message.recipients:
            recipient.mailbox = verdict.folder
    if verdict.score:
        log.info("queue_id=%s checks score=%g %s", message.queue_id, verdict.score,
                 verdict.reason)


class Receiver:
    def __init__(self, runtime: Runtime, outbound: OutboundQueue | None = None,
                 checks: Pipeline | None = None) -> None:
        self._runtime = runtime
        self._outbound = outbound
        self._checks = checks if checks is not None else Pipeline()
        self._has_message_checks = self._checks.has(Stage.MESSAGE)
        self.spool_dir = runtime.config.data_dir / "spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    @property
    def has_outbound(self) -> bool:
        return self._outbound is not None

    def storage_refusal(self) -> Reply | None:
        """The reply to MAIL once the store has found its data damaged: no transaction
        is begun that could end in a 250 for mail it may not keep (issue 25)."""
        if storage_damage(self._runtime.store) is not None:
            return replies.STORAGE_DAMAGED
        return None

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
            if self._has_message_checks:
                verdict = await self._checks.on_message(message)
                if verdict.is_refusal:
                    return verdict_reply(verdict)
                _apply(verdict, message)
            targets = await self._local_targets(message)
            if _nobody_has_room(message, targets):
                return replies.MAILBOX_FULL  # RFC 3463 X.2.2: the sender retries
            await self._store(message, targets)
            return replies.queued(message.queue_id)
        except StorageFailure as failure:  # logged once a minute by the store: no traceback
            return storage_reply(failure)
        finally:
            if message.body is None:
                message.spool_path.unlink(missing_ok=True)

    async def recipient_refusal(self, address: str, local: Sequence[LocalTarget],
                                remote: Sequence[str], size: int | None) -> Reply | None:
        """RCPT (issue 25): 452 4.2.2 when no account the address reaches has room in
        its INBOX for one more message (of the MAIL SIZE= declared, if any) and it
        reaches no remote address; the client retries that recipient, the others go on."""
        if not local or remote:
            return None
        config = self._runtime.config
        for target in local:
            inbox = await delivery_mailbox(self._runtime.store, target.account_id)
            if await limit_reached(self._runtime.store, config, inbox.id, messages=1,
                                   size=max(size or 0, 1)) is None:  # fmt: skip
                return None
        return replies.mailbox_full(address)

    async def _local_targets(self, message: ReceivedMessage) -> dict[int, _LocalTarget]:
        """One delivery per account (however many RCPTs reach it): its mailbox, and which
        limit this message would break there (issue 25)."""
        targets: dict[int, _LocalTarget] = {}
        store, config = self._runtime.store, self._runtime.config
        for recipient in message.recipients:
            for target in recipient.local:
                if target.account_id not in targets:
                    box = await delivery_mailbox(store, target.account_id, recipient.mailbox)
                    full = await limit_reached(store, config, box.id, messages=1,
                                               size=message.size)  # fmt: skip
                    targets[target.account_id] = _LocalTarget(box, full)
        return targets

    async def _store(self, message: ReceivedMessage,
                     targets: dict[int, _LocalTarget]) -> None:  # fmt: skip
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
            await self._deliver_local(message, targets, blob_id, size, meta, unwritten)
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
        zone = display_zone(self._runtime.config.timezone)  # TZ: dates people read
        parts = [render_return_path(message.sender), *message.extra_headers,
                 render_received(self._trace_info(message), zone=zone)]
        if message.client.auth_user:
            # RFC 6409 §8.2/§8.3: submission completes what the client left out.
            parts.append(missing_submission_headers(
                message.header.field_names, hostname=self._runtime.config.hostname,
                now=message.received_at, zone=zone))
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

    async def _deliver_local(self, message: ReceivedMessage, targets: dict[int, _LocalTarget],
                             blob_id: str, size: int, meta: str,
                             unwritten: bytes | None) -> None:  # fmt: skip
        """`unwritten`: the blob's bytes when no one has written it yet; the first
        delivery's store call writes it, the others share it. A mailbox without room
        still gets its copy when others in the transaction had room (one SMTP reply
        covers them all; RCPT already refused accounts full then): the limit is overshot
        by this message rather than the mail lost or duplicated by a retry."""
        for account_id, target in targets.items():
            if target.full is not None:
                log.warning("queue_id=%s account %d over its %s limit: delivered anyway with"
                            " the other recipients", message.queue_id, account_id,
                            target.full.name.lower())  # fmt: skip
            store, mailbox = self._runtime.store, target.mailbox
            try:
                await append_delivered(store, mailbox, blob_id, size, meta,
                                       internal_date=message.received_at, body=unwritten)
            except NotFound:  # deleted since it was chosen (a large blob takes a while)
                mailbox = await delivery_mailbox(store, account_id, mailbox.name)
                await append_delivered(store, mailbox, blob_id, size, meta,
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
