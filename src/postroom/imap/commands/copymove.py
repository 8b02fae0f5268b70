"""COPY, MOVE and their UID forms (RFC 9051 §6.4.7-§6.4.8, RFC 4315 COPYUID,
RFC 6851 MOVE).

Owns copying/moving messages of the selected mailbox to another. The store does the
work atomically; this module answers COPYUID and, for MOVE, the EXPUNGEs.

Invariants: a missing target is NO [TRYCREATE] (RFC 9051 §6.4.7); COPYUID lists source
and target UIDs in the same (ascending) order; MOVE sends its COPYUID in an untagged OK
before the EXPUNGE responses (RFC 6851 §4.3). Issue 25, checked before the store
copies anything (imap/commands/limits.py): a target that would pass
MAX_MESSAGES_PER_MAILBOX or MAX_KEYWORDS_PER_MAILBOX is NO [LIMIT], an account that a
COPY would take past POSTFIX_MAILBOX_SIZE_LIMIT NO [OVERQUOTA] (a MOVE within the
account adds no bytes to it).
"""

from __future__ import annotations

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
    await _check_limits(ctx, view, uids, target, is_move=is_move)
    if is_move:
        result = await store.move_messages(view.mailbox_id, uids, target.id)
    else:
        result = await store.copy_messages(view.mailbox_id, uids, target.id)
    if not result.source_uids:
        return Done(f"{prefix}{verb} completed: no messages")
    code_args = (result.uidvalidity, SequenceSet.from_values(result.source_uids),
                 SequenceSet.from_values(result.target_uids))  # fmt: skip
    if not is_move:
        return Done(f"{prefix}COPY completed", "COPYUID", code_args)
    await ctx.write(render_untagged_status("OK", "moved", "COPYUID", code_args))
    view.note_expunged(result.source_uids)  # the session sends the EXPUNGEs next
    return Done(f"{prefix}MOVE completed")


async def _check_limits(ctx: Context, view: SelectedMailbox, uids: list[int], target: Mailbox,
                        *, is_move: bool) -> None:  # fmt: skip
    store, config = ctx.runtime.store, ctx.runtime.config
    if target.id == view.mailbox_id and is_move:
        return  # a MOVE onto itself adds nothing
    size = 0
    if not is_move and config.mailbox_size_limit:
        size = await _size_of(ctx, view, uids)
    await check_room(store, config, target, messages=len(uids), size=size,
                     adds_size=not is_move)  # fmt: skip
    await check_copied_keywords(store, config, view, uids, target)


async def _size_of(ctx: Context, view: SelectedMailbox, uids: list[int]) -> int:
    """The bytes of the messages `uids`: the whole source mailbox's, when that already
    fits (one counter read), else the sum over their rows."""
    store, limit = ctx.runtime.store, ctx.runtime.config.mailbox_size_limit
    usage = await store.mailbox_usage(view.mailbox_id)
    if usage.account_size + usage.mailbox_size <= limit:
        return usage.mailbox_size  # an upper bound that passes: no need to be exact
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
