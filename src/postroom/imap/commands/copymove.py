"""COPY, MOVE and their UID forms (RFC 9051 §6.4.7-§6.4.8, RFC 4315 COPYUID,
RFC 6851 MOVE).

Owns copying/moving messages of the selected mailbox to another. The store does the
work atomically; this module answers COPYUID and, for MOVE, the EXPUNGEs.

Invariants: a missing target is NO [TRYCREATE] (RFC 9051 §6.4.7); COPYUID lists source
and target UIDs in the same (ascending) order; MOVE sends its COPYUID in an untagged OK
before the EXPUNGE responses (RFC 6851 §4.3).
"""

from __future__ import annotations

from postroom.errors import Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.wire import commands as c
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.responses import render_untagged_status


async def handle_copy(ctx: Context, command: c.Copy | c.Move) -> Done:
    view = ctx.require_selected()
    is_move = isinstance(command, c.Move)
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
