"""EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, §6.4.9; RFC 4315 §2.1).

Owns permanently removing \\Deleted messages of the selected mailbox. The view is
re-read first so a \\Deleted flag another session removed a moment ago is honoured
(the store expunges the UIDs it is given, whatever their flags); the EXPUNGE responses
go out right after, from the selected view. When nothing else changed the mailbox since
that re-read, the view follows its own expunge without reading again (issue 8).
"""

from __future__ import annotations

from postroom.errors import Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.spec import SELECTED, CommandSpec
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.commands.expunge import Expunge, UidExpunge


async def deleted_uids(ctx: Context, view: SelectedMailbox) -> list[int]:
    await view.refresh(ctx.runtime.store)
    return [uid for uid in view.uids
            if uid not in view.pending_expunge and "\\Deleted" in view.flags[uid]]  # fmt: skip


async def handle_expunge(ctx: Context, command: Expunge | UidExpunge) -> Done:
    view = ctx.require_selected()
    if view.is_read_only:
        raise Refused("the mailbox is read-only", code="READ-ONLY")
    uids = await deleted_uids(ctx, view)
    name = "EXPUNGE"
    if isinstance(command, UidExpunge):
        wanted = set(view.resolve(command.sequence_set, is_uid=True))
        uids = [uid for uid in uids if uid in wanted]
        name = "UID EXPUNGE"
    if uids:
        view.note_own_expunge(await ctx.runtime.store.expunge(view.mailbox_id, uids))
    return Done(f"{name} completed")


SPECS = (
    CommandSpec(Expunge, ("EXPUNGE",), handle_expunge, SELECTED),
    CommandSpec(UidExpunge, ("UID EXPUNGE",), handle_expunge, SELECTED,
                capabilities=("UIDPLUS",)),
)  # fmt: skip
