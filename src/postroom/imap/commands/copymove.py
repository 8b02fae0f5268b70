"""COPY, MOVE and their UID forms (RFC 9051 §6.4.7-§6.4.8, RFC 4315 COPYUID,
RFC 6851 MOVE).

Owns copying/moving messages of the selected mailbox to another. The store does the
work atomically; this module answers COPYUID and, for MOVE, the EXPUNGEs.

Invariants: a missing target is NO [TRYCREATE] (RFC 9051 §6.4.7); COPYUID lists source
and target UIDs in the same (ascending) order; MOVE sends its COPYUID in an untagged OK
before the EXPUNGE responses (RFC 6851 §4.3). Issue 25, checked before the store
copies anything (imap/commands/limits.py): a target that would pass
MAX_MESSAGES_PER_MAILBOX or MAX_KEYWORDS_PER_MAILBOX is NO [LIMIT], an account that a
COPY would take past POSTFIX_MAILBOX_SIZE_LIMIT or its quota NO [OVERQUOTA] (a MOVE within
the account adds no bytes nor messages to it); a COPY whose bytes cross 80 % / 95 % of
the quota delivers the warning (issue 17).
"""

from __future__ import annotations

from postroom.accounts.quota import Room, announce_crossing
from postroom.delivery.local import room_in
from postroom.errors import Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.limits import check_copied_keywords, check_room
from postroom.imap.commands.spec import SELECTED, CommandSpec
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.commands.copymove import Copy, Move
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.responses import render_untagged_status
from postroom.store.api import Mailbox


async def handle_copy(ctx: Context, command: Copy | Move) -> Done:
    view = ctx.require_selected()
    is_move = isinstance(command, Move)
    prefix = "UID " if command.is_uid else ""
    verb = "MOVE" if is_move else "COPY"
    if is_move and view.is_read_only:
        raise Refused("the mailbox is read-only", code="READ-ONLY")
    store = ctx.runtime.store
    target = await store.get_mailbox(ctx.account_id, command.mailbox)
    if target is None:
        raise Refused(f"no mailbox {command.mailbox}", code="TRYCREATE")
    uids = [uid for uid in view.resolve(command.sequence_set, is_uid=command.is_uid)
            if uid not in view.pending_expunge]  # fmt: skip
    if not uids:
        return Done(f"{prefix}{verb} completed: no messages")
    added = await _check_limits(ctx, view, uids, target, is_move=is_move)
    if is_move:
        result = await store.move_messages(view.mailbox_id, uids, target.id)
    else:
        result = await store.copy_messages(view.mailbox_id, uids, target.id)
    if not result.source_uids:
        return Done(f"{prefix}{verb} completed: no messages")
    code_args = (result.uidvalidity, SequenceSet.from_values(result.source_uids),
                 SequenceSet.from_values(result.target_uids))  # fmt: skip
    if ctx.runtime.junk is not None:  # issue 18: into or out of Junk trains the filter
        await ctx.runtime.junk.on_filed(ctx.account_id, view.mailbox, target,
                                        result.target_uids)
    if not is_move:
        if added is not None:  # issue 17: the 80 % / 95 % warning (an upper bound of size)
            room, size = added
            await announce_crossing(store, ctx.runtime.blobs, ctx.runtime.config, room,
                                    size=size, messages=len(result.target_uids))  # fmt: skip
        return Done(f"{prefix}COPY completed", "COPYUID", code_args)
    await ctx.write(render_untagged_status("OK", "moved", "COPYUID", code_args))
    view.note_expunged(result.source_uids)  # the session sends the EXPUNGEs next
    return Done(f"{prefix}MOVE completed")


async def _check_limits(ctx: Context, view: SelectedMailbox, uids: list[int], target: Mailbox,
                        *, is_move: bool) -> tuple[Room, int] | None:  # fmt: skip
    """What a COPY adds to the account (the room before, its bytes), None for a MOVE."""
    store, config = ctx.runtime.store, ctx.runtime.config
    if target.id == view.mailbox_id and is_move:
        return None  # a MOVE onto itself adds nothing
    size = 0 if is_move else await _size_of(ctx, view, uids)
    room = await check_room(store, config, target, messages=len(uids), size=size,
                            adds_size=not is_move)  # fmt: skip
    await check_copied_keywords(store, config, view, uids, target)
    return None if is_move else (room, size)


async def _size_of(ctx: Context, view: SelectedMailbox, uids: list[int]) -> int:
    """The bytes of the messages `uids`: the whole source mailbox's when that fits the
    account's room anyway (no limit, or one counter read), else the sum over their rows."""
    store = ctx.runtime.store
    source = await room_in(store, ctx.runtime.config, view.mailbox_id)
    if source.full_for(messages=0, size=source.usage.mailbox_size) is None \
            and source.level_after(size=source.usage.mailbox_size) == source.level_after():
        return source.usage.mailbox_size  # an upper bound that changes nothing: enough
    total = 0
    for start in range(0, len(uids), 1000):
        rows = await store.get_messages(view.mailbox_id, uids[start : start + 1000])
        total += sum(row.size for row in rows)
    return total


SPECS = (
    CommandSpec(Copy, ("COPY", "UID COPY"), handle_copy, SELECTED, needs_view_tables=False),
    CommandSpec(Move, ("MOVE", "UID MOVE"), handle_copy, SELECTED, needs_view_tables=False,
                capabilities=("MOVE",)),
)  # fmt: skip
