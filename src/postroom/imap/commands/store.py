"""STORE and UID STORE (RFC 9051 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE).

Owns applying flag changes to the selected mailbox and reporting them: an untagged FETCH
(FLAGS) per addressed message unless .SILENT, with UID for UID STORE.

Invariants: a keyword new to the mailbox is announced with `* FLAGS` and
`* OK [PERMANENTFLAGS]` before the FETCH that shows it (issue 17); \\Recent cannot be
stored (RFC 3501 §2.3.2) and is dropped from the list; a read-only mailbox refuses STORE;
messages whose EXPUNGE is still pending are skipped;
a keyword longer than MAX_KEYWORD_LENGTH, or one that would take the mailbox past
MAX_KEYWORDS_PER_MAILBOX distinct keywords, or more than MAX_KEYWORD_BYTES_PER_MESSAGE
of keywords on one message, is refused with NO [LIMIT] before anything changes (issue
25, imap/commands/limits.py).
"""

from __future__ import annotations

from postroom.errors import Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.limits import (
    check_flag_lengths,
    check_keywords,
    check_message_keywords,
    keywords,
)
from postroom.imap.commands.spec import SELECTED, CommandSpec
from postroom.imap.wire.commands.store import Store, StoreMode
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.responses import Atom, Value, render_fetch
from postroom.store.api import FlagMode

_MODES = {
    StoreMode.REPLACE: FlagMode.REPLACE,
    StoreMode.ADD: FlagMode.ADD,
    StoreMode.REMOVE: FlagMode.REMOVE,
}


async def handle_store(ctx: Context, command: Store) -> Done:
    view = ctx.require_selected()
    if view.is_read_only:
        raise Refused("the mailbox is read-only", code="READ-ONLY")
    uids = [uid for uid in view.resolve(command.sequence_set, is_uid=command.is_uid)
            if uid not in view.pending_expunge]  # fmt: skip
    flags = frozenset(flag for flag in command.flags if flag != "\\Recent")
    if command.mode is not StoreMode.REMOVE:  # issue 25: limits on what is added
        config = ctx.runtime.config
        check_flag_lengths(config, flags)
        if uids:
            adding = keywords(flags)
            held = ({view.flags.get(uid, frozenset()) for uid in uids}
                    if command.mode is StoreMode.ADD else {frozenset()})  # fmt: skip
            check_message_keywords(held, adding)
            await check_keywords(ctx.runtime.store, config, view.mailbox, adding)
    if command.unchanged_since is not None:
        ctx.enable_condstore()  # RFC 7162 §3.1
    changed = await ctx.runtime.store.store_flags(
        view.mailbox_id, uids, flags, _MODES[command.mode],
        unchanged_since=command.unchanged_since,
    )
    view.note_stored(changed)
    await ctx.announce_keywords()  # a keyword new to the mailbox: FLAGS before the FETCHes
    modified: list[int] = []
    if command.unchanged_since is not None:
        # RFC 7162 §3.1.3: messages changed after UNCHANGEDSINCE are reported MODIFIED.
        changed_uids = {row.uid for row in changed}
        modified = [uid for uid in uids if uid not in changed_uids
                    and view.modseqs[uid] > command.unchanged_since]  # fmt: skip
    if not command.is_silent:
        for uid in uids:
            if uid in modified:
                continue
            items: list[tuple[str, Value]] = []
            if command.is_uid:
                items.append(("UID", uid))
            flag_atoms = [Atom(flag) for flag in view.flags_of(uid, is_rev1=not ctx.is_rev2)]
            items.append(("FLAGS", flag_atoms))
            if ctx.is_condstore:  # RFC 7162 §3.1.3: STORE answers carry MODSEQ
                items.append(("MODSEQ", [view.modseqs[uid]]))
            await ctx.write(render_fetch(view.seq_of(uid), items))
    name = f"{'UID ' if command.is_uid else ''}STORE completed"
    if modified:
        numbers = modified if command.is_uid else [view.seq_of(uid) for uid in modified]
        return Done(name, "MODIFIED", (SequenceSet.from_values(numbers),))
    return Done(name)


SPECS = (
    CommandSpec(Store, ("STORE", "UID STORE"), handle_store, SELECTED, allows_expunge=False),
)
