"""SELECT, EXAMINE, CLOSE, UNSELECT (RFC 9051 §6.3.2-§6.3.3, §6.4.2; RFC 3691 UNSELECT;
RFC 7162 CONDSTORE/QRESYNC select parameters).

Owns entering and leaving the selected state and the SELECT response set: FLAGS,
PERMANENTFLAGS, EXISTS, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, the mailbox's LIST line for
IMAP4rev2 clients, RECENT / [UNSEEN n] for IMAP4rev1 clients (RFC 3501 §6.3.1), and the
QRESYNC answer (VANISHED (EARLIER) + FETCH of what changed since the client's MODSEQ).

Invariants: SELECT costs one select_summary query (plus the mailbox row): the UIDs, the
distinct flag sets and the first unseen UID, never per-message flags, which the view loads
when a later command needs them (imap/selected.py); a SELECT while
a mailbox is selected first deselects it, answering `* OK [CLOSED]` (RFC 9051 §7.1), so
a failed SELECT leaves the session in the authenticated state.
"""

from __future__ import annotations

from postroom.errors import BadSyntax, Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.expunge import deleted_uids
from postroom.imap.commands.mailboxes import SEPARATOR
from postroom.imap.commands.spec import AUTHENTICATED, SELECTED, CommandSpec
from postroom.imap.selected import (
    SelectedMailbox,
    mailbox_flags,
    read_summary,
    render_mailbox_flags,
    selected_from_summary,
    uids_within,
)
from postroom.imap.wire.commands.select import Close, Examine, QResync, Select, Unselect
from postroom.imap.wire.connection import ConnectionState
from postroom.imap.wire.responses import (
    Atom,
    render_exists,
    render_fetch,
    render_list,
    render_recent,
    render_untagged_status,
    render_vanished,
)
from postroom.store.api import SelectSummary


def _deselect(ctx: Context) -> None:
    ctx.selected = None
    ctx.is_selected_stale = False
    ctx.state = ConnectionState.AUTHENTICATED


async def handle_select(ctx: Context, command: Select | Examine) -> Done:
    is_read_only = isinstance(command, Examine)
    if command.qresync is not None and not ctx.is_qresync:
        raise BadSyntax("QRESYNC parameter without ENABLE QRESYNC")  # RFC 7162 §3.2.5
    if ctx.selected is not None:
        _deselect(ctx)
        await ctx.write(render_untagged_status("OK", "previous mailbox closed", "CLOSED"))
    if command.condstore:
        # RFC 7162 §3.1.8; after the deselect: SELECT reports HIGHESTMODSEQ itself, the
        # previous mailbox's is no longer of interest.
        ctx.enable_condstore()
    if ctx.subscription is not None:
        ctx.subscription.drain()  # everything before this point is in what we read now
    if not command.is_name_usable:  # legal syntax naming no mailbox (issue 17): NO
        raise Refused("no mailbox by that name", code="NONEXISTENT")
    mailbox = await ctx.runtime.store.get_mailbox(ctx.account_id, command.mailbox)
    if mailbox is None:
        raise Refused(f"no mailbox {command.mailbox}", code="NONEXISTENT")
    summary = await read_summary(ctx.runtime.store, mailbox.id)
    view = selected_from_summary(
        ctx.runtime.store, mailbox, summary, is_read_only=is_read_only,
        keyword_limit=ctx.runtime.config.max_keywords_per_mailbox)  # fmt: skip
    await ctx.write(_select_responses(ctx, view, summary))
    if command.qresync is not None and command.qresync.uidvalidity == view.uidvalidity:
        await view.load_tables(ctx.runtime.store)
        await _resync(ctx, view, command.qresync)
    ctx.selected = view
    ctx.state = ConnectionState.SELECTED
    code = "READ-ONLY" if is_read_only else "READ-WRITE"
    return Done(f"{'EXAMINE' if is_read_only else 'SELECT'} completed", code)


def _select_responses(ctx: Context, view: SelectedMailbox, summary: SelectSummary) -> bytes:
    # Few distinct flag sets, however many messages: the store groups them; the view
    # holds their keywords as shown, and announces a keyword it meets later (issue 17).
    flags = mailbox_flags(view.keywords_shown, is_read_only=view.is_read_only,
                          keyword_limit=view.keyword_limit)  # fmt: skip
    out = [render_mailbox_flags(flags), render_exists(view.count)]
    if not ctx.is_rev2:
        # RFC 3501 §6.3.2: EXAMINE reports the recent messages too, without claiming them.
        out.append(render_recent(len(view.recent)))
        # RFC 3501 §6.3.1: the sequence number of the first message without \Seen.
        first_unseen = view.seq_of(summary.first_unseen) if summary.first_unseen else 0
        if first_unseen:
            out.append(render_untagged_status("OK", "first unseen", "UNSEEN", (first_unseen,)))
    out += [
        render_untagged_status("OK", "UIDs valid", "UIDVALIDITY", (view.uidvalidity,)),
        render_untagged_status("OK", "predicted next UID", "UIDNEXT", (view.uidnext,)),
        # RFC 7162 §3.1.2.1: a CONDSTORE server reports HIGHESTMODSEQ on every SELECT.
        render_untagged_status("OK", "highest mod-sequence", "HIGHESTMODSEQ",
                               (view.baseline,)),
    ]
    if view.mailbox.object_id:  # RFC 8474 §4.2
        out.append(render_untagged_status("OK", "mailbox id", "MAILBOXID",
                                          ([Atom(view.mailbox.object_id)],)))
    if ctx.is_rev2:  # RFC 9051 §6.3.2: the LIST response for the mailbox is required
        out.append(render_list([], SEPARATOR, view.mailbox.name, is_utf8=ctx.is_utf8))
    return b"".join(out)


async def _resync(ctx: Context, view: SelectedMailbox, qresync: QResync) -> None:
    """RFC 7162 §3.2.5.1: what changed since the client's MODSEQ, in two answers."""
    expunged = await ctx.runtime.store.expunged_since(view.mailbox_id, qresync.modseq)
    known = qresync.known_uids
    if known is not None:
        largest = max(view.uidnext - 1, max(expunged, default=0))
        expunged = uids_within(expunged, known, largest)
    if expunged:
        await ctx.write(render_vanished(expunged, is_earlier=True))
    chunks = []
    for seq, uid in enumerate(view.uids, 1):
        modseq = view.modseqs[uid]
        if modseq > qresync.modseq:
            flags = [Atom(flag) for flag in view.flags_of(uid, is_rev1=not ctx.is_rev2)]
            chunks.append(render_fetch(seq, [("UID", uid), ("FLAGS", flags),
                                             ("MODSEQ", [modseq])]))  # fmt: skip
    await ctx.write(b"".join(chunks))


async def handle_close(ctx: Context, command: Close | Unselect) -> Done:
    view = ctx.require_selected()
    if isinstance(command, Close) and not view.is_read_only:
        # RFC 9051 §6.4.2: expunge silently, no EXPUNGE responses.
        uids = await deleted_uids(ctx, view)
        if uids:
            await ctx.runtime.store.expunge(view.mailbox_id, uids)
    _deselect(ctx)
    return Done(f"{type(command).__name__.upper()} completed")


SPECS = (
    # SELECT reads one summary; the per-message tables load when a later command needs them.
    CommandSpec(Select, ("SELECT",), handle_select, AUTHENTICATED, needs_view_tables=False,
                capabilities=("CONDSTORE", "QRESYNC")),
    CommandSpec(Examine, ("EXAMINE",), handle_select, AUTHENTICATED,
                needs_view_tables=False),
    CommandSpec(Close, ("CLOSE",), handle_close, SELECTED),  # expunges \Deleted: needs flags
    CommandSpec(Unselect, ("UNSELECT",), handle_close, SELECTED, needs_view_tables=False,
                capabilities=("UNSELECT",)),
)  # fmt: skip
