"""GETMETADATA and SETMETADATA (RFC 5464 METADATA and METADATA-SERVER).

Owns answering and changing annotations: a mailbox's entries, and the server's (mailbox
""), both under /private/ and /shared/. postroom has no shared mailboxes and no
administrator over IMAP, so each account has its own server entries, as Dovecot keeps
them with the user's INBOX; /private and /shared stay separate namespaces as the RFC
defines them (RFC 5464 §3.3).

Invariants:
- SETMETADATA changes every entry it names or none (one store transaction), after the
  limits are checked: a value above METADATA_MAX_SIZE is NO [METADATA MAXSIZE n] (n the
  largest allowed, RFC 5464 §4.3), more than METADATA_MAX_ENTRIES entries on one mailbox
  (or the server) or more than ACCOUNT_METADATA_BYTES of values on one account is
  NO [METADATA TOOMANY]. Private entries are always supported, so [METADATA NOPRIVATE]
  is never needed.
- GETMETADATA returns what the DEPTH names (the entry, its children, or its subtree);
  an entry asked for by name that does not exist is answered NIL (as Dovecot does);
  values larger than MAXSIZE are left out and the tagged OK says
  [METADATA LONGENTRIES n], n the size of the largest left out (RFC 5464 §4.2.1).
- A mailbox that does not exist is NO [NONEXISTENT]; a mailbox's entries go when it is
  deleted and follow it when it is renamed (the store keys them by mailbox id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from postroom.errors import Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.spec import AUTHENTICATED, CommandSpec
from postroom.imap.wire.commands.metadata import Depth, GetMetadata, SetMetadata
from postroom.imap.wire.responses import Atom, Value, mailbox_value, render_untagged
from postroom.store.errors import NotFound
from postroom.store.metadata_api import MetadataEntry

# Values of all entries of one account together: with METADATA_MAX_ENTRIES per mailbox
# and 1,000 mailboxes the per-mailbox limit alone would allow gigabytes.
ACCOUNT_METADATA_BYTES = 16 * 1024 * 1024


async def _scope(ctx: Context, mailbox: str) -> int | None:
    """The mailbox id the entries belong to; None for the server (RFC 5464 §4.2)."""
    if mailbox == "":
        return None
    found = await ctx.runtime.store.get_mailbox(ctx.account_id, mailbox)
    if found is None:
        raise Refused(f"no mailbox {mailbox}", code="NONEXISTENT")
    return found.id


def is_selected(name: str, requested: str, depth: Depth) -> bool:
    """Whether entry `name` is what `requested` at `depth` asks for (RFC 5464 §4.2.2)."""
    if name == requested:
        return True
    if depth is Depth.ZERO or not name.startswith(requested + "/"):
        return False
    return depth is Depth.INFINITY or "/" not in name[len(requested) + 1 :]


def select_entries(stored: Sequence[MetadataEntry], requested: Iterable[str], depth: Depth,
                   max_size: int | None) -> tuple[list[tuple[str, bytes | None]], int]:  # fmt: skip
    """The (entry, value) pairs to answer, in request order, and the size of the largest
    value left out for MAXSIZE (0 when none was)."""
    by_name = {entry.name: entry.value for entry in stored}
    answer: dict[str, bytes | None] = {}
    longest = 0
    for wanted in requested:
        if wanted not in by_name and wanted.count("/") > 1:
            answer.setdefault(wanted, None)  # asked for by name: NIL (not "/private" itself)
        for entry in stored:
            if entry.name in answer or not is_selected(entry.name, wanted, depth):
                continue
            if max_size is not None and len(entry.value) > max_size:
                longest = max(longest, len(entry.value))
                continue
            answer[entry.name] = entry.value
    return list(answer.items()), longest


def _value(value: bytes | None) -> Value:
    """Printable ASCII as a quoted string, anything else as a literal (literal8 when it
    holds NUL: RFC 5464 §5 value = nstring / literal8)."""
    if value is not None and all(0x20 <= byte < 0x7F for byte in value):
        return value.decode("ascii")
    return value


async def handle_getmetadata(ctx: Context, command: GetMetadata) -> Done:
    mailbox_id = await _scope(ctx, command.mailbox)
    stored = await ctx.runtime.store.list_metadata(ctx.account_id, mailbox_id)
    pairs, longest = select_entries(stored, command.entries, command.depth, command.max_size)
    if pairs:
        items: list[Value] = []
        for name, value in pairs:
            items += [Atom(name), _value(value)]
        mailbox = mailbox_value(command.mailbox, is_utf8=ctx.is_utf8)
        await ctx.write(render_untagged(Atom("METADATA"), mailbox, items,
                                        is_utf8=ctx.is_utf8))  # fmt: skip
    if longest:
        return Done("GETMETADATA completed", "METADATA", (Atom("LONGENTRIES"), longest))
    return Done("GETMETADATA completed")


async def handle_setmetadata(ctx: Context, command: SetMetadata) -> Done:
    config, store = ctx.runtime.config, ctx.runtime.store
    limit = config.metadata_max_size
    if any(value is not None and len(value) > limit for _, value in command.values):
        return Done(f"values are at most {limit} octets", "METADATA",
                    (Atom("MAXSIZE"), limit), status="NO")  # fmt: skip
    mailbox_id = await _scope(ctx, command.mailbox)
    stored = {entry.name: len(entry.value)
              for entry in await store.list_metadata(ctx.account_id, mailbox_id)}  # fmt: skip
    after = dict(stored)
    for name, value in command.values:
        if value is None:
            after.pop(name, None)
        else:
            after[name] = len(value)
    grows = len(after) > len(stored) or sum(after.values()) > sum(stored.values())
    if grows and len(after) > config.metadata_max_entries:
        return Done(f"at most {config.metadata_max_entries} entries", "METADATA",
                    (Atom("TOOMANY"),), status="NO")  # fmt: skip
    if grows:
        total = await store.metadata_bytes(ctx.account_id)
        if total - sum(stored.values()) + sum(after.values()) > ACCOUNT_METADATA_BYTES:
            return Done("the account's annotations are full", "METADATA",
                        (Atom("TOOMANY"),), status="NO")  # fmt: skip
    try:
        await store.set_metadata(ctx.account_id, mailbox_id, command.values)
    except NotFound:  # deleted meanwhile by another session
        raise Refused(f"no mailbox {command.mailbox}", code="NONEXISTENT") from None
    return Done("SETMETADATA completed")


SPECS = (
    CommandSpec(GetMetadata, ("GETMETADATA",), handle_getmetadata, AUTHENTICATED,
                needs_view_tables=False, capabilities=("METADATA", "METADATA-SERVER")),
    CommandSpec(SetMetadata, ("SETMETADATA",), handle_setmetadata, AUTHENTICATED,
                needs_view_tables=False),
)  # fmt: skip
