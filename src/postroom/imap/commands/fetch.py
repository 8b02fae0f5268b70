"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2; RFC 3516 BINARY; RFC 7162 CHANGEDSINCE,
MODSEQ and VANISHED; RFC 8970 PREVIEW; RFC 8514 SAVEDATE).

Owns turning fetch attributes into FETCH responses, one message at a time, streamed. Which
of the three read paths a command takes (view and rows / top-level headers / metadata and
blobs) is decided once per command by `FetchPlan` (fetchplan.py); BODY and BODYSTRUCTURE
are rendered by `imap/wire/responses.render_body`.

Invariants (the 100,000-message rule):
- FLAGS, UID and MODSEQ come from the selected view (kept for every message: no store
  query); INTERNALDATE, RFC822.SIZE and SAVEDATE from the view's rows, read for the
  fetched UIDs in one `get_messages` query the first time and cached. No blob, no
  metadata.
- ENVELOPE, BODY and BODYSTRUCTURE come from the metadata stored at delivery/APPEND
  (`get_meta`); the blob is never parsed for them.
- The blob is read only for body sections, and only its header when every requested
  section lies in the header. When every attribute is answered from the row or from the
  top-level header (the "list the headers" FETCH clients send after SELECT), neither
  metadata nor whole blobs are read: the headers of up to HEADER_BATCH messages are read
  up to their empty line in one thread hop, and their responses are written together.
- BODY[...] and BINARY[...] without .PEEK (and rev1 RFC822, RFC822.TEXT) set \\Seen
  unless the mailbox is read-only; FLAGS is then added to the answer (RFC 9051 §6.4.5).
- A message expunged by someone else before we read its body is skipped, not an error.
- Work per command is items × messages, both client-chosen (issue 25): repeated items are
  answered once, each message's header is split into fields once however many
  HEADER.FIELDS items name it (their name lists lower-cased once per command), and the
  loop yields after about FETCH_SLICE_WORK items, not after a fixed number of messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import IO

from postroom.errors import BadSyntax
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.fetchplan import ROW_ONLY, FetchPlan, ReadPath, Wanted
from postroom.imap.commands.fetchrows import fetch_rows
from postroom.imap.commands.fetchrows import row_item as _row_item
from postroom.imap.commands.spec import SELECTED, CommandSpec
from postroom.imap.selected import SelectedMailbox, uids_within
from postroom.imap.wire.commands.fetch import Fetch
from postroom.imap.wire.fetch import (
    BinarySection,
    BinarySize,
    BodySection,
    FetchAttribute,
    SimpleAttribute,
)
from postroom.imap.wire.responses import (
    Value,
    render_body,
    render_fetch,
    render_vanished,
)
from postroom.mail.bodystructure import body_structure
from postroom.mail.headers import find_body_start
from postroom.mail.mimetree import MessageMeta, parse_message
from postroom.mail.preview import message_preview, preview_bytes_needed
from postroom.mail.sections import (
    ParsedHeader,
    binary_size,
    decode_binary,
    extract_section,
)
from postroom.store.api import FlagMode, MessageRow
from postroom.store.blobs import BlobOpener, BlobStore
from postroom.store.errors import NotFound

FetchItem = tuple[str | FetchAttribute, Value]
YIELD_EVERY = 500
HEADER_BATCH = 100  # messages whose headers one thread hop reads
HEADERS_ON_LOOP = 8  # small bodies in memory whose headers are cut on the loop (≤ 512 KiB)
_HEADER_CHUNK = 8192  # most headers fit; longer ones are read on, doubling
FETCH_SLICE_WORK = 2000  # items answered on the loop between two yields


# -- reading one message ----------------------------------------------------------------------
def read_header_block(handle: IO[bytes]) -> bytes:
    """The top-level header of a stored message, through its empty line: exactly
    raw[:root.body_start] of the parsed message (both use `find_body_start`)."""
    with handle:
        data = handle.read(_HEADER_CHUNK)
        while True:
            body_start = find_body_start(data)
            # Short of the end, the empty line was found and nothing read later can come
            # before it; at the end it may be cut off (or missing): read on.
            if body_start < len(data):
                return data[:body_start]
            more = handle.read(max(len(data), _HEADER_CHUNK))
            if not more:
                return data  # RFC 5322 §2.1: no empty line, the whole message is header
            data += more


def _read_header_blocks(open_blob: BlobOpener, blob_ids: list[str]) -> list[bytes | None]:
    """Headers of several messages in one thread hop; None for a blob that is gone
    (expunged by another session since the view was taken)."""
    headers: list[bytes | None] = []
    for blob_id in blob_ids:
        try:
            headers.append(read_header_block(open_blob(blob_id)))
        except FileNotFoundError:
            headers.append(None)
    return headers


async def _header_blocks(blobs: BlobStore, blob_ids: list[str]) -> list[bytes | None]:
    """The headers of these messages: on the loop when they are at most HEADERS_ON_LOOP
    small bodies already in memory (no thread hop), else in one thread hop."""
    open_blob = await blobs.opener(blob_ids)
    if len(blob_ids) <= HEADERS_ON_LOOP and all(map(blobs.in_memory, blob_ids)):
        return _read_header_blocks(open_blob, blob_ids)
    return await asyncio.to_thread(_read_header_blocks, open_blob, blob_ids)


def top_header_item(header: bytes | ParsedHeader, section_text: str, wanted: Wanted,
                    partial: tuple[int, int | None] | None) -> bytes:  # fmt: skip
    """BODY[HEADER], BODY[HEADER.FIELDS (…)], BODY[HEADER.FIELDS.NOT (…)] of the
    message, from its header block (RFC 9051 §6.4.5), with <origin.length> applied.
    HEADER.FIELDS[.NOT] takes the header parsed (`ParsedHeader`) and `wanted`."""
    if isinstance(header, ParsedHeader):
        content = header.select(wanted or frozenset(), exclude=section_text.endswith(".NOT"))
    else:
        content = header
    if partial is None:
        return content
    origin, length = partial
    return content[origin:] if length is None else content[origin : origin + length]


class _Message:
    """Lazily loaded metadata and bytes of one message."""

    def __init__(self, ctx: Context, view: SelectedMailbox, row: MessageRow) -> None:
        self.ctx, self.view, self.row = ctx, view, row
        self._meta: MessageMeta | None = None
        self._raw: bytes | None = None
        self._header: ParsedHeader | None = None

    async def parsed_header(self, header_only: bool) -> ParsedHeader:
        """The top-level header split into fields, once per message."""
        if self._header is None:
            meta = await self.meta()
            raw = await self.raw(header_only=header_only)
            self._header = ParsedHeader(raw[meta.root.header_start : meta.root.body_start])
        return self._header

    async def meta(self) -> MessageMeta:
        if self._meta is None:
            text = await self.ctx.runtime.store.get_meta(self.view.mailbox_id, self.row.uid)
            if text:
                self._meta = MessageMeta.from_json(text)
            else:  # stored without metadata (should not happen): parse once, off-loop
                self._meta = await asyncio.to_thread(parse_message, await self.raw())
        return self._meta

    async def raw_prefix(self, size: int) -> bytes:
        """The first `size` octets, without keeping them as the message (PREVIEW reads
        one text part, not the attachments after it)."""
        if self._raw is not None:
            return self._raw[:size]
        return await self.ctx.runtime.blobs.read(self.row.blob_id, limit=size) if size else b""

    async def raw(self, *, header_only: bool = False) -> bytes:
        if self._raw is None:
            limit = None
            if header_only:
                limit = (await self.meta()).root.body_start
            self._raw = await self.ctx.runtime.blobs.read(self.row.blob_id, limit=limit)
        return self._raw


async def _item(msg: _Message, attribute: FetchAttribute, wanted: Wanted, header_only: bool
                ) -> Value:  # fmt: skip
    if isinstance(attribute, SimpleAttribute):
        return await _simple_item(msg, attribute.name, header_only)
    if isinstance(attribute, BodySection):
        section = attribute.section
        partial = None
        if attribute.partial is not None:
            partial = (attribute.partial.offset, attribute.partial.length)
        if wanted is not None:  # top-level HEADER.FIELDS[.NOT]: the header parsed once
            parsed = await msg.parsed_header(header_only)
            return top_header_item(parsed, section.text or "", wanted, partial)
        if not section.part and section.text is None:  # BODY[]: no metadata needed
            whole = await msg.raw()
            return whole if partial is None else whole[partial[0] : partial[0] + partial[1]]
        return extract_section(await msg.raw(header_only=header_only), await msg.meta(),
                               section.part, section.text, section.fields, partial)  # fmt: skip
    if isinstance(attribute, BinarySection):
        data = decode_binary(await msg.raw(), await msg.meta(), attribute.part)
        if attribute.partial:
            start = attribute.partial.offset
            data = data[start : start + attribute.partial.length]
        return data
    if isinstance(attribute, BinarySize):
        return binary_size(await msg.raw(), await msg.meta(), attribute.part)
    raise TypeError(f"unhandled fetch attribute {attribute!r}")


async def _simple_item(msg: _Message, name: str, header_only: bool) -> Value:
    if name in ROW_ONLY:
        return _row_item(msg.ctx, msg.view, msg.row.uid, name)
    if name == "ENVELOPE":
        return (await msg.meta()).envelope
    if name in ("BODY", "BODYSTRUCTURE"):
        return render_body(body_structure(await msg.meta(), name == "BODYSTRUCTURE"),
                           is_utf8=msg.ctx.is_utf8)  # fmt: skip
    if name == "PREVIEW":  # RFC 8970: computed on demand from the first text part
        meta = await msg.meta()
        return message_preview(await msg.raw_prefix(preview_bytes_needed(meta)), meta)
    if name == "RFC822":
        return await msg.raw()
    if name in ("RFC822.HEADER", "RFC822.TEXT"):
        meta = await msg.meta()
        raw = await msg.raw(header_only=header_only)
        if name == "RFC822.HEADER":
            return raw[: meta.root.body_start]
        return raw[meta.root.body_start :]
    raise TypeError(f"unhandled fetch item {name}")


# -- the command --------------------------------------------------------------------------------
async def _mark_seen(ctx: Context, view: SelectedMailbox, uids: Sequence[int]) -> set[int]:
    unseen = [uid for uid in uids if "\\Seen" not in view.flags[uid]]
    if not unseen:
        return set()
    changed = await ctx.runtime.store.store_flags(
        view.mailbox_id, unseen, frozenset({"\\Seen"}), FlagMode.ADD)
    view.note_stored(changed)
    return {row.uid for row in changed}


async def handle_fetch(ctx: Context, command: Fetch) -> Done:
    view = ctx.require_selected()
    if command.is_vanished:
        await _report_vanished(ctx, view, command)
    uids = view.resolve(command.sequence_set, is_uid=command.is_uid)
    if command.changed_since is not None:
        uids = [uid for uid in uids if view.modseqs[uid] > command.changed_since]
    if command.partial is not None:
        # RFC 9394 §3.3: only these positions among the messages selected so far (after
        # CHANGEDSINCE, §3.4), counted from the lowest UID or, negative, the highest.
        uids = list(command.partial.pick(uids))
    plan = FetchPlan.of(command)
    if plan.is_condstore_enabling:
        ctx.enable_condstore()  # RFC 7162 §3.1: CONDSTORE-enabling
    newly_seen: set[int] = set()
    if not view.is_read_only and plan.sets_seen:
        newly_seen = await _mark_seen(ctx, view, uids)
    path = plan.read_path(marks_seen=bool(newly_seen))
    if path is ReadPath.VIEW_ROWS:
        await fetch_rows(ctx, view, uids, plan)
    else:
        await view.load_rows(ctx.runtime.store, uids)
        if path is ReadPath.TOP_HEADERS:
            await _fetch_headers(ctx, view, uids, plan, newly_seen)
        else:
            await _fetch_messages(ctx, view, uids, plan, newly_seen)
    return Done(f"{'UID ' if command.is_uid else ''}FETCH completed")


async def _fetch_messages(ctx: Context, view: SelectedMailbox, uids: list[int],
                          plan: FetchPlan, newly_seen: set[int]) -> None:  # fmt: skip
    """The general path: per message, its metadata and blob as the items need them."""
    per_slice = max(1, min(YIELD_EVERY, FETCH_SLICE_WORK // len(plan.attributes)))
    for index, uid in enumerate(uids):
        items = await _fetch_message(ctx, view, uid, plan)
        if items is None:
            continue
        if uid in newly_seen:
            items += _implicit_flag_items(ctx, view, uid, plan.names)
        await ctx.write(render_fetch(view.seq_of(uid), items, is_utf8=ctx.is_utf8))
        if index % per_slice == per_slice - 1:
            await asyncio.sleep(0)  # a 100,000-message FETCH must not starve other sessions


def _implicit_flag_items(ctx: Context, view: SelectedMailbox, uid: int,
                         names: frozenset[str]) -> list[FetchItem]:  # fmt: skip
    """RFC 9051 §6.4.5 / RFC 7162 §3.1.4: a FETCH that set \\Seen reports the change."""
    items: list[FetchItem] = []
    if "FLAGS" not in names:
        items.append(("FLAGS", _row_item(ctx, view, uid, "FLAGS")))
    if ctx.is_condstore and "MODSEQ" not in names:
        items.append(("MODSEQ", _row_item(ctx, view, uid, "MODSEQ")))
    return items


async def _fetch_headers(ctx: Context, view: SelectedMailbox, uids: list[int],
                         plan: FetchPlan, newly_seen: set[int]) -> None:  # fmt: skip
    """Every attribute comes from the row or the top-level header: read the headers of
    HEADER_BATCH messages per thread hop, no metadata, one write per batch."""
    per_batch = max(1, min(HEADER_BATCH, FETCH_SLICE_WORK // len(plan.attributes)))
    for start in range(0, len(uids), per_batch):
        chunk, blob_ids = [], []
        for uid in uids[start : start + per_batch]:
            row = view.rows.get(uid)
            if row is None:
                continue  # expunged before its row was read: nothing left to report
            blob_ids.append(row.blob_id)
            chunk.append(uid)
        headers: list[bytes | None] = [b""] * len(chunk)
        if not plan.is_row_only:  # else here only because it set \Seen
            headers = await _header_blocks(ctx.runtime.blobs, blob_ids)
        else:
            await asyncio.sleep(0)  # no thread hop yields for us
        out: list[bytes] = []
        for uid, header in zip(chunk, headers, strict=True):
            if header is None:
                continue
            parsed = ParsedHeader(header) if plan.needs_fields else None
            items = [(_label(a), _header_value(ctx, view, uid, a, header, parsed, names_of))
                     for a, names_of in zip(plan.attributes, plan.wanted, strict=True)
                     ]  # fmt: skip
            if uid in newly_seen:
                items += _implicit_flag_items(ctx, view, uid, plan.names)
            out.append(render_fetch(view.seq_of(uid), items, is_utf8=ctx.is_utf8))
        if out:
            await ctx.write(b"".join(out))


def _label(attribute: FetchAttribute) -> str | FetchAttribute:
    return attribute.name if isinstance(attribute, SimpleAttribute) else attribute


def _header_value(ctx: Context, view: SelectedMailbox, uid: int, attribute: FetchAttribute,
                  header: bytes, parsed: ParsedHeader | None, wanted: Wanted
                  ) -> Value:  # fmt: skip
    if isinstance(attribute, BodySection):
        partial = None
        if attribute.partial is not None:
            partial = (attribute.partial.offset, attribute.partial.length)
        source = parsed if wanted is not None and parsed is not None else header
        return top_header_item(source, attribute.section.text or "", wanted, partial)
    if isinstance(attribute, SimpleAttribute) and attribute.name == "RFC822.HEADER":
        return header
    if isinstance(attribute, SimpleAttribute):
        return _row_item(ctx, view, uid, attribute.name)
    raise TypeError(f"not a header attribute: {attribute!r}")


async def _report_vanished(ctx: Context, view: SelectedMailbox, command: Fetch) -> None:
    """UID FETCH ... (CHANGEDSINCE m VANISHED): expunged UIDs in the set (RFC 7162 §3.2.6)."""
    if not ctx.is_qresync:
        raise BadSyntax("VANISHED needs ENABLE QRESYNC")
    since = command.changed_since or 0
    expunged = await ctx.runtime.store.expunged_since(view.mailbox_id, since)
    largest = max(view.uidnext - 1, max(expunged, default=0))
    wanted = uids_within(expunged, command.sequence_set, largest)
    if wanted:
        await ctx.write(render_vanished(wanted, is_earlier=True))


async def _fetch_message(ctx: Context, view: SelectedMailbox, uid: int, plan: FetchPlan
                         ) -> list[FetchItem] | None:  # fmt: skip
    row = view.rows.get(uid)
    if row is None:
        return None  # expunged before its row was read: nothing left to report
    msg = _Message(ctx, view, row)
    items: list[FetchItem] = []
    try:
        for attribute, names_of in zip(plan.attributes, plan.wanted, strict=True):
            value = await _item(msg, attribute, names_of, plan.is_header_only)
            items.append((_label(attribute), value))
    except (NotFound, FileNotFoundError):
        # Expunged by another session after our view was taken (RFC 9051 §7.5.1 lets
        # us omit it until the EXPUNGE can be sent).
        return None
    return items

SPECS = (
    CommandSpec(Fetch, ("FETCH", "UID FETCH"), handle_fetch, SELECTED,
                allows_expunge=False,
                capabilities=("BINARY", "PREVIEW", "SAVEDATE", "OBJECTID")),
)  # fmt: skip
