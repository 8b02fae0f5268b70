"""The FETCH fast path: items answered from the selected view and its rows alone
(RFC 9051 §6.4.5, §7.5.2; RFC 7162 §3.1.4.1 MODSEQ; RFC 8474 EMAILID, THREADID;
RFC 8514 SAVEDATE) — `UID FETCH 1:* (FLAGS)` on a 100,000-message mailbox (issue 22).

Owns rendering those items, in bulk: each item is a function of the UID giving its
finished `NAME value` bytes, a FETCH line is one %-format, and FLAGS of a message is
looked up by its flag set (few distinct sets in a mailbox) in a per-command cache of
rendered lists. The sync FETCH itself (`[UID] FLAGS`, no \\Recent to show) is one
%-format per message, with no call per item (`_sync_lines`).

Invariants:
- Byte-identical to the general path (`render_fetch` over `row_item` values): every
  cached or formatted value is produced by `render_value` the first time, or has its
  exact `render_value` spelling (integers, the MODSEQ list).
- Sequence numbers: a contiguous run of the view's UIDs (every plain range, `1:*`)
  numbers its lines by counting; anything else asks `view.seq_of` per message.
- The loop yields after SLICE messages, and each slice is one write: a 100,000-message
  answer takes the loop away from other sessions for about a millisecond at a time.
- No store query beyond `view.load_rows` (only for items outside fetchplan.VIEW_ONLY).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Sequence

from postroom.imap.commands.context import Context
from postroom.imap.commands.fetchplan import FetchPlan
from postroom.imap.commands.objectid import email_id
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.fetch import FetchAttribute, SimpleAttribute
from postroom.imap.wire.responses import Atom, Value, render_value

SLICE = 2000  # messages rendered (and written in one piece) between two yields

ItemBytes = Callable[[int], bytes]  # UID -> b"NAME value"


def row_item(ctx: Context, view: SelectedMailbox, uid: int, name: str) -> Value:
    """The items answered from the view alone (see fetchplan.ROW_ONLY); those outside
    fetchplan.VIEW_ONLY need `view.rows[uid]` loaded."""
    if name == "UID":
        return uid
    if name == "FLAGS":
        return [Atom(flag) for flag in view.flags_of(uid, is_rev1=not ctx.is_rev2)]
    if name == "MODSEQ":
        return [view.modseqs[uid]]  # RFC 7162 §3.1.4.1
    row = view.rows[uid]
    if name == "INTERNALDATE":
        return row.internal_date
    if name == "RFC822.SIZE":
        return row.size
    if name == "EMAILID":  # RFC 8474 §5.1
        return [Atom(email_id(row.blob_id))]
    if name == "THREADID":  # RFC 8474 §5.2: no thread ids are kept, so NIL
        return None
    return row.saved_date  # SAVEDATE (RFC 8514)


def _rendered(name: str, value: Value) -> bytes:
    out = [name.encode("ascii"), b" "]
    render_value(value, out)
    return b"".join(out)


def _flags_item(ctx: Context, view: SelectedMailbox) -> ItemBytes:
    """FLAGS by flag set: rendered once per distinct (set, \\Recent shown) per command."""
    flags, recent, is_rev1 = view.flags, view.recent, not ctx.is_rev2
    plain: dict[frozenset[str] | None, bytes] = {}
    with_recent: dict[frozenset[str] | None, bytes] = {}

    def item(uid: int) -> bytes:
        known = flags.get(uid)
        cache = with_recent if is_rev1 and uid in recent else plain
        found = cache.get(known)
        if found is None:
            found = cache[known] = _rendered("FLAGS", row_item(ctx, view, uid, "FLAGS"))
        return found

    return item


def _item_bytes(ctx: Context, view: SelectedMailbox, name: str) -> ItemBytes:
    if name == "UID":
        return lambda uid: b"UID %d" % uid
    if name == "FLAGS":
        return _flags_item(ctx, view)
    if name == "MODSEQ":
        modseqs = view.modseqs
        return lambda uid: b"MODSEQ (%d)" % modseqs[uid]
    return lambda uid: _rendered(name, row_item(ctx, view, uid, name))


def _line_renderer(items: list[ItemBytes]) -> Callable[[int, int], bytes]:
    """(sequence number, UID) -> the whole `* n FETCH (...)` line."""
    if len(items) == 1:
        (only,) = items
        return lambda seq, uid: b"* %d FETCH (%b)\r\n" % (seq, only(uid))
    if len(items) == 2:
        first, second = items
        return lambda seq, uid: b"* %d FETCH (%b %b)\r\n" % (seq, first(uid), second(uid))
    return lambda seq, uid: b"* %d FETCH (%b)\r\n" % (seq, b" ".join([i(uid) for i in items]))


def _sync_lines(ctx: Context, view: SelectedMailbox, names: list[str]
                ) -> Callable[[Iterable[int], list[int]], list[bytes]] | None:  # fmt: skip
    """The sync FETCH, `[UID] FLAGS` with no \\Recent to show: each line one %-format,
    each distinct flag set rendered once. None for anything else (the general lines)."""
    if names not in (["FLAGS"], ["UID", "FLAGS"]) or (view.recent and not ctx.is_rev2):
        return None
    flags_get, rendered = view.flags.get, dict[frozenset[str] | None, bytes]()

    def render(known: frozenset[str] | None) -> bytes:
        out: list[bytes] = []
        render_value([Atom(flag) for flag in sorted(known or ())], out)
        return b"".join(out)

    def lines(seqs: Iterable[int], uids: list[int]) -> list[bytes]:
        sets = list(map(flags_get, uids))
        for known in set(sets).difference(rendered):
            rendered[known] = render(known)
        if len(names) == 1:
            return [b"* %d FETCH (FLAGS %b)\r\n" % (seq, rendered[known])
                    for seq, known in zip(seqs, sets, strict=True)]  # fmt: skip
        return [b"* %d FETCH (UID %d FLAGS %b)\r\n" % (seq, uid, rendered[known])
                for seq, uid, known in zip(seqs, uids, sets, strict=True)]  # fmt: skip

    return lines


def _sequence_start(view: SelectedMailbox, uids: Sequence[int]) -> int:
    """The sequence number of uids[0] when `uids` is a contiguous run of the view's UIDs,
    else 0 (number each message by `seq_of`)."""
    if not uids:
        return 0
    start = bisect.bisect_left(view.uids, uids[0])
    if view.uids[start : start + len(uids)] == list(uids):
        return start + 1
    return 0


def _row_name(attribute: FetchAttribute) -> str:
    if not isinstance(attribute, SimpleAttribute):
        raise TypeError(f"not a row attribute: {attribute!r}")
    return attribute.name


async def fetch_rows(ctx: Context, view: SelectedMailbox, uids: list[int], plan: FetchPlan
                     ) -> None:  # fmt: skip
    """Every item from the view (and rows): rendered in bulk, SLICE messages a write."""
    if plan.needs_rows:
        await view.load_rows(ctx.runtime.store, uids)
        uids = [uid for uid in uids if uid in view.rows]  # expunged meanwhile: not reported
    names = [_row_name(attribute) for attribute in plan.attributes]
    render = _line_renderer([_item_bytes(ctx, view, name) for name in names])
    sync_lines = _sync_lines(ctx, view, names)
    first = _sequence_start(view, uids)
    for start in range(0, len(uids), SLICE):
        chunk = uids[start : start + SLICE]
        seqs = range(first + start, first + start + len(chunk)) if first else list(map(
            view.seq_of, chunk))
        if sync_lines is not None:
            lines = sync_lines(seqs, chunk)
        else:
            lines = [render(seq, uid) for seq, uid in zip(seqs, chunk, strict=True)]
        await ctx.write(b"".join(lines))
        if start + SLICE < len(uids):
            await asyncio.sleep(0)  # must not starve other sessions
