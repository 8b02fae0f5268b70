"""Receiving: from a spooled DATA or BDAT body to stored mail, before the 250 is sent.

Owns the step after `<CRLF>.<CRLF>` (or `BDAT … LAST`): one header scan
(mailauth/headerscan.py) → loop check → the inbound checks' MESSAGE stage (checks/:
DKIM/DMARC, SPOOF_PROTECTION, header limits; their merged verdict may refuse, add header
fields, or file every local copy in another mailbox, which is applied here) → trace headers
+ spooled body, minus Authentication-Results fields forged under our authserv-id (RFC 8601
§5), written as one durable blob → `message_meta` off-loop → local delivery to every
resolved account (one blob shared) → remote targets handed to the outbound queue → success
DSNs for local deliveries asked for with NOTIFY=SUCCESS handed to it too (RFC 3461) →
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
from functools import partial
from pathlib import Path
from typing import IO, Protocol

from postroom.accounts.quota import announce_crossing
from postroom.checks import Pipeline, Stage, Verdict
from postroom.clock import display_zone
from postroom.delivery.local import Full, Room, append_delivered, delivery_mailbox, room_in
from postroom.delivery.recipients import LocalTarget
from postroom.delivery.sieving import (
    Filing,
    SieveDecisions,
    SieveStage,
    StoredCopy,
    deliver_filings,
)
from postroom.delivery.spamfiling import (
    CopyLayout,
    FilingPlan,
    Marks,
    SpamFiling,
    chosen_mailbox,
    copy_layout,
    needs_header,
    read_header,
)
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
    StorageCorrupt,
    StorageFailure,
    StorageFull,
    storage_damage,
    storage_failure,
)

log = logging.getLogger("postroom.smtp")

_COPY_CHUNK = 256 * 1024
_IN_MEMORY_LIMIT = 1024 * 1024


# SA_KILL reached for every recipient (delivery/spamfiling.py): refused before storing.
SPAM_REFUSED = replies.reply(554, "5.7.1", "Message rejected as spam")


def new_queue_id() -> str:
    return secrets.token_hex(8).upper()


class OutboundQueue(Protocol):
    """The outbound queue (issue 4); app.py passes the implementation."""

    async def enqueue_remote(self, message: ReceivedMessage,
                             recipients: Sequence[OutboundRecipient],
                             blob_id: str, size: int) -> None: ...

    async def enqueue_message(self, sender: str, recipients: Sequence[str], raw: bytes, *,
                              sign_as: str = "", seal_as: str = "") -> object:
        """A message made here (a Sieve redirect or vacation reply): signed and queued;
        `seal_as`: a redirect's forwarding domain, to ARC-seal it."""

    async def report_delivered(self, message: ReceivedMessage) -> None:
        """RFC 3461 NOTIFY=SUCCESS: the success DSNs for the local deliveries just made
        (the queue sends them; outbound/worker.py)."""


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
    room: Room  # what the account held when that was decided (quota warnings, issue 17)
    marks: Marks  # the account's spam verdict's marks (delivery/spamfiling.py)
    flags: frozenset[str]  # MARK_SPAM_AS_READ


def _nobody_has_room(message: ReceivedMessage,
                     targets: dict[int, _LocalTarget]) -> Reply | None:  # fmt: skip
    """Every account the message reaches is full and it goes nowhere else: 552 5.2.2
    when only quotas stop it (the message does not fit, as Dovecot LMTP answers), else
    452 4.2.2 (issue 25's limits: the sender retries)."""
    has_remote = any(recipient.remote for recipient in message.recipients)
    fulls = {target.full for target in targets.values()}
    if not targets or has_remote or None in fulls:
        return None
    return replies.QUOTA_EXCEEDED if fulls == {Full.QUOTA} else replies.MAILBOX_FULL


def _wants_success_dsn(message: ReceivedMessage) -> bool:
    return any("SUCCESS" in recipient.params.notify for recipient in message.recipients)


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
        self._filing = SpamFiling(runtime.config, runtime.store, runtime.account_scorers)
        self._sieve = SieveStage(runtime.config, runtime.store)  # issue 19
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
            symbols = message.symbols
            if self._has_message_checks:
                verdict = await self._checks.on_message(message)
                if verdict.is_refusal:
                    return verdict_reply(verdict)
                _apply(verdict, message)
                symbols = verdict.symbols
            plan = await self._filing.plan(message, symbols)
            message.filter_decision = plan.describe()
            if plan.is_refused:  # SA_KILL for every recipient: before anything is stored
                return SPAM_REFUSED
            targets = await self._local_targets(message, plan)
            refusal = _nobody_has_room(message, targets)
            if refusal is not None:
                return refusal  # RFC 3463 X.2.2
            sieved = await self._sieve.decide(
                message, {i: Filing(t.mailbox.name, t.flags) for i, t in targets.items()},
                partial(self._sieve_input, message, targets))
            message.filter_decision = " ".join(filter(None, (message.filter_decision,
                                                             sieved.describe())))
            reason = sieved.refusal(targets, any(r.remote for r in message.recipients))
            if reason is not None:  # every recipient's Sieve rejects (RFC 5429 §2.1)
                return replies.reply(550, "5.7.1", reason[:400] or "Rejected")
            await self._store(message, targets, plan, sieved)
            await self._sieve.finish(message, sieved, is_refused=False,
                                     enqueue=self._enqueue if self._outbound else None,
                                     deliver_notice=self._deliver_notice)  # fmt: skip
            if targets and self._outbound is not None and _wants_success_dsn(message):
                await self._outbound.report_delivered(message)
            return replies.queued(message.queue_id)
        except StorageFailure as failure:  # logged once a minute by the store: no traceback
            return storage_reply(failure)
        finally:
            if message.body is None:
                message.spool_path.unlink(missing_ok=True)

    async def recipient_refusal(self, address: str, local: Sequence[LocalTarget],
                                remote: Sequence[str], size: int | None) -> Reply | None:
        """RCPT (issues 25, 17): when no account the address reaches has room in its
        INBOX for one more message and it reaches no remote address, 452 4.2.2 (the
        client retries that recipient, the others go on); 552 5.2.2 when only the
        account's quota has no room for the MAIL SIZE= declared (it would not fit)."""
        if not local or remote:
            return None
        refusal = None
        for target in local:
            inbox = await delivery_mailbox(self._runtime.store, target.account_id)
            room = await room_in(self._runtime.store, self._runtime.config, inbox.id)
            full = room.full_for(messages=1, size=max(size or 0, 1))
            if full is None:
                return None
            is_quota = full is Full.QUOTA and room.full_for(messages=1, size=1) is None
            if refusal is None or not is_quota:
                refusal = replies.quota_exceeded(address) if is_quota \
                    else replies.mailbox_full(address)
        return refusal

    async def _local_targets(self, message: ReceivedMessage,
                             plan: FilingPlan) -> dict[int, _LocalTarget]:  # fmt: skip
        """One delivery per account (however many RCPTs reach it): its mailbox (spam to
        Junk), flags and marks, and which limit this message would break there (issue 25)."""
        targets: dict[int, _LocalTarget] = {}
        store, config = self._runtime.store, self._runtime.config
        for recipient in message.recipients:
            for target in recipient.local:
                if target.account_id not in targets:
                    filing = plan.accounts.get(target.account_id, plan.shared)
                    box = await delivery_mailbox(store, target.account_id,
                                                 chosen_mailbox(filing, recipient.mailbox))
                    room = await room_in(store, config, box.id)
                    full = room.full_for(messages=1, size=message.size)
                    targets[target.account_id] = _LocalTarget(box, full, room, filing.marks,
                                                              filing.flags)
        return targets

    async def _store(self, message: ReceivedMessage, targets: dict[int, _LocalTarget],
                     plan: FilingPlan, sieved: SieveDecisions) -> None:  # fmt: skip
        """One stored copy per distinct spam marks (almost always one); remote recipients
        get the copy with the message's own verdict."""
        groups: dict[Marks, dict[int, _LocalTarget]] = {}
        for account_id, target in targets.items():
            groups.setdefault(target.marks, {})[account_id] = target
        has_remote = any(recipient.remote for recipient in message.recipients)
        if has_remote or not groups:
            groups.setdefault(plan.shared.marks, {})
        header = b""
        if any(needs_header(marks) for marks in groups):
            header = (read_header(message) if message.body is not None
                      else await asyncio.to_thread(read_header, message))
        for marks, group in groups.items():
            layout = copy_layout(header, message.header.forged_ranges, marks)
            await self._store_copy(message, group, layout,
                                   has_remote and marks == plan.shared.marks, sieved)

    async def _store_copy(self, message: ReceivedMessage, targets: dict[int, _LocalTarget],
                          layout: CopyLayout, with_remote: bool,
                          sieved: SieveDecisions) -> None:  # fmt: skip
        meta: str | None = None
        unwritten: bytes | None = None  # the blob's bytes, to be written with the first row
        if message.size <= _IN_MEMORY_LIMIT:
            data, meta = await self._assembled(message, layout)
            size = len(data)
            if targets:
                # The store writes the blob in the same trip as the first delivery's row.
                blob_id, unwritten = self._runtime.blobs.new_id(size), data
            else:
                blob_id = await self._runtime.blobs.put(data)
        else:
            blob_id, size = await self._write_blob(message, layout)
        try:
            if meta is None:  # a large body, streamed to its blob: parsed from there
                whole = await self._runtime.blobs.read(blob_id)
                meta = await asyncio.to_thread(message_meta, whole)
            await self._deliver_local(message, targets, blob_id, size, meta, unwritten, sieved)
            if targets and self._runtime.report_intake is not None:  # issue 20: reports
                self._runtime.report_intake.offer(
                    [r.address for r in message.recipients if r.local], blob_id, size)
            if with_remote:
                await self._hand_on_remote(message, blob_id, size)
        except BaseException:
            await self._runtime.store.release_blob_if_unused(blob_id)
            raise

    async def _assembled(self, message: ReceivedMessage,
                         layout: CopyLayout) -> tuple[bytes, str]:  # fmt: skip
        """The blob's bytes and meta of a message small enough to hold whole."""
        prefix, skipped = self._prefix(message, layout), layout.skipped
        if message.is_small:
            assert message.body is not None  # is_small says so
            return _assemble(message.body, prefix, skipped)
        if message.body is not None:
            return await asyncio.to_thread(_assemble, message.body, prefix, skipped)
        return await asyncio.to_thread(_read_whole, message.spool_path, prefix, skipped)

    async def _write_blob(self, message: ReceivedMessage,
                          layout: CopyLayout) -> tuple[str, int]:  # fmt: skip
        writer = self._runtime.blobs.writer()
        try:
            await writer.write(self._prefix(message, layout))
            await self._copy_spool(message, writer, layout.skipped)
            size = writer.size
            return await writer.commit(), size
        except BaseException:
            await writer.abort()
            raise

    def _prefix(self, message: ReceivedMessage, layout: CopyLayout) -> bytes:
        """What the blob holds above the client's header: trace and added fields (the
        spam verdict's above Received, a rewritten Subject below it)."""
        if message.rendered_trace is None:
            zone = display_zone(self._runtime.config.timezone)  # TZ: dates people read
            submission = b""
            if message.client.auth_user:
                # RFC 6409 §8.2/§8.3: submission completes what the client left out.
                submission = missing_submission_headers(
                    message.header.field_names, hostname=self._runtime.config.hostname,
                    now=message.received_at, zone=zone)
            message.rendered_trace = (render_return_path(message.sender),
                                      render_received(self._trace_info(message), zone=zone),
                                      submission)  # fmt: skip
        return_path, received, submission = message.rendered_trace
        return b"".join([return_path, *message.extra_headers, layout.above, received,
                         submission, layout.below])

    @staticmethod
    async def _copy_spool(message: ReceivedMessage, writer: BlobWriter,
                          skipped: Sequence[tuple[int, int]]) -> None:  # fmt: skip
        """The spooled message into the blob, skipping the forged and cut ranges."""
        with message.spool_path.open("rb") as spool:
            for start, end in skipped:
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
                             blob_id: str, size: int, meta: str, unwritten: bytes | None,
                             sieved: SieveDecisions) -> None:  # fmt: skip
        """`unwritten`: the blob's bytes when no one has written it yet; the first
        delivery's store call writes it, the others share it. A mailbox without room
        still gets its copy when others in the transaction had room (one SMTP reply
        covers them all; RCPT already refused accounts full then): the limit is overshot
        by this message rather than the mail lost or duplicated by a retry. An account's
        Sieve script may file it into several mailboxes, or none (issue 19)."""
        for account_id, target in targets.items():
            if target.full is not None:
                log.warning("queue_id=%s account %d over its %s limit: delivered anyway with"
                            " the other recipients", message.queue_id, account_id,
                            target.full.name.lower())  # fmt: skip
            filings = sieved.filings(account_id)
            if filings is None:
                filings = [Filing(target.mailbox.name, frozenset())]
            if await deliver_filings(self._runtime.store, self._runtime.blobs, account_id,
                                     target.mailbox, target.flags, filings,
                                     sieved.edited(account_id),
                                     StoredCopy(blob_id, size, meta, unwritten),
                                     message.received_at):  # fmt: skip
                unwritten = None
            if filings:
                await announce_crossing(self._runtime.store, self._runtime.blobs,
                                        self._runtime.config, target.room, size=size,
                                        messages=len(filings))  # issue 17: 80/95 %

    async def _sieve_input(self, message: ReceivedMessage, targets: dict[int, _LocalTarget],
                           account_id: int) -> bytes:  # fmt: skip
        """The message as the account would store it (spam verdict fields included), for
        its Sieve script."""
        marks = targets[account_id].marks
        header = b""
        if needs_header(marks):
            header = (read_header(message) if message.body is not None
                      else await asyncio.to_thread(read_header, message))
        layout = copy_layout(header, message.header.forged_ranges, marks)
        prefix, skipped = self._prefix(message, layout), layout.skipped
        body = message.body
        if body is None:
            body = await asyncio.to_thread(message.spool_path.read_bytes)
        kept, position = [prefix], 0
        for start, end in skipped:
            kept.append(body[position:start])
            position = end
        kept.append(body[position:])
        return b"".join(kept)

    async def _enqueue(self, sender: str, recipients: Sequence[str], raw: bytes, *,
                       sign_as: str = "", seal_as: str = "") -> object:
        """A message Sieve sends (a redirect, a vacation reply) into the outbound queue."""
        assert self._outbound is not None
        return await self._outbound.enqueue_message(sender, recipients, raw, sign_as=sign_as,
                                                    seal_as=seal_as)

    async def _deliver_notice(self, account_id: int, raw: bytes) -> None:
        """A message from us into the account's INBOX (a Sieve script's failure)."""
        data = render_return_path("") + raw
        blob_id = await self._runtime.blobs.put(data)
        try:
            meta = await asyncio.to_thread(message_meta, data)
            inbox = await delivery_mailbox(self._runtime.store, account_id)
            await append_delivered(self._runtime.store, inbox, blob_id, len(data), meta)
        finally:
            await self._runtime.store.release_blob_if_unused(blob_id)

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
