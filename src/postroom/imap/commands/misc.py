"""CAPABILITY NOOP CHECK LOGOUT ID ENABLE NAMESPACE IDLE COMPRESS (RFC 9051 §6.1, §6.3.1,
§6.3.10, §6.3.13, §6.4.1; RFC 2971 ID; RFC 5161 ENABLE; RFC 2342 NAMESPACE; RFC 2177 IDLE;
RFC 4978 COMPRESS).

Owns the commands that read or change session settings only, and their specs. NOOP and
CHECK exist to let pending mailbox updates through, which the session does after every
command anyway; they just force a re-read of the store first. IDLE's spec is here, but
the session driver runs it (it waits on the socket and the change feed at once).
COMPRESS is judged here; the session switches its transport after the tagged OK.
"""

from __future__ import annotations

from postroom import __version__
from postroom.errors import BadSyntax, Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.spec import (
    ANY_STATE,
    AUTHENTICATED,
    SELECTED,
    CommandSpec,
)
from postroom.imap.wire.commands.misc import (
    Capability,
    Check,
    Compress,
    Enable,
    Id,
    Idle,
    Logout,
    Namespace,
    Noop,
)
from postroom.imap.wire.connection import ConnectionState
from postroom.imap.wire.responses import (
    render_capability,
    render_enabled,
    render_id,
    render_namespace,
    render_untagged_status,
)

SEPARATOR = "/"
# RFC 5161 §3.1: the extensions ENABLE switches on (upper-case, as parsed).
ENABLEABLE = frozenset({"IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC"})


async def handle_capability(ctx: Context, command: Capability) -> Done:
    await ctx.write(render_capability(ctx.capabilities()))
    return Done("CAPABILITY completed")


async def handle_noop(ctx: Context, command: Noop | Check) -> Done:
    # RFC 9051 §6.1.2: NOOP is how clients poll; re-read the store whatever the feed says.
    if ctx.selected is not None:
        ctx.is_selected_stale = True
    return Done(f"{type(command).__name__.upper()} completed")


async def handle_logout(ctx: Context, command: Logout) -> Done:
    # RFC 9051 §6.1.3: BYE is the last untagged response; what is pending goes first.
    ctx.note_changes()
    await ctx.send_updates(may_expunge=True)
    await ctx.write(render_untagged_status("BYE", "postroom logging out"))
    ctx.state = ConnectionState.LOGOUT
    return Done("LOGOUT completed")


async def handle_id(ctx: Context, command: Id) -> Done:
    # RFC 2971 §3.2: the server's own identification, whatever the client sent.
    await ctx.write(render_id([("name", "postroom"), ("version", __version__)]))
    return Done("ID completed")


async def handle_enable(ctx: Context, command: Enable) -> Done:
    """RFC 5161 §3.1: unknown capabilities are ignored; ENABLED lists new ones only."""
    newly: list[str] = []
    names = list(command.capabilities)
    if "QRESYNC" in names and "CONDSTORE" not in names:
        names.append("CONDSTORE")  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
    for name in names:
        if name in ENABLEABLE and name not in ctx.enabled:
            ctx.enabled.add(name)
            newly.append("IMAP4rev2" if name == "IMAP4REV2" else name)
    if ctx.enabled & {"IMAP4REV2", "UTF8=ACCEPT"}:
        # RFC 9051 §5.1 / RFC 6855 §3: both make mailbox names UTF-8 on the wire.
        ctx.conn.enable_utf8()
    await ctx.write(render_enabled(newly))
    return Done("ENABLE completed")


async def handle_compress(ctx: Context, command: Compress) -> Done:
    """RFC 4978 §3: DEFLATE only, once per connection; the session starts deflating in
    both directions right after this OK."""
    if command.algorithm != "DEFLATE":
        raise BadSyntax(f"unknown compression algorithm {command.algorithm}")
    if ctx.is_compressed:
        raise Refused("DEFLATE is already active", code="COMPRESSIONACTIVE")
    return Done("DEFLATE active")


async def handle_namespace(ctx: Context, command: Namespace) -> Done:
    # One personal namespace, no prefix (RFC 9051 §6.3.10).
    await ctx.write(render_namespace([("", SEPARATOR)], is_utf8=ctx.is_utf8))
    return Done("NAMESPACE completed")


SPECS = (
    CommandSpec(Capability, ("CAPABILITY",), handle_capability, ANY_STATE,
                needs_view_tables=False),
    CommandSpec(Noop, ("NOOP",), handle_noop, ANY_STATE, needs_view_tables=False),
    CommandSpec(Logout, ("LOGOUT",), handle_logout, ANY_STATE, needs_view_tables=False),
    CommandSpec(Id, ("ID",), handle_id, ANY_STATE, needs_view_tables=False,
                capabilities=("ID",)),
    # RFC 9051 §6.3.1 / RFC 5161 §3.1: ENABLE only before a mailbox is selected.
    CommandSpec(Enable, ("ENABLE",), handle_enable,
                frozenset({ConnectionState.AUTHENTICATED}), needs_view_tables=False,
                capabilities=("ENABLE",)),
    CommandSpec(Namespace, ("NAMESPACE",), handle_namespace, AUTHENTICATED,
                needs_view_tables=False, capabilities=("NAMESPACE",)),
    # RFC 4978 §3: after login (and so after TLS, which login requires here).
    CommandSpec(Compress, ("COMPRESS",), handle_compress, AUTHENTICATED,
                needs_view_tables=False, capabilities=("COMPRESS=DEFLATE",)),
    CommandSpec(Check, ("CHECK",), handle_noop, SELECTED, needs_view_tables=False),
    # RFC 2177 / RFC 9051 §6.3.13: the session runs IDLE, waiting on the socket and the
    # change feed at once.
    CommandSpec(Idle, ("IDLE",), None, AUTHENTICATED, needs_view_tables=False,
                capabilities=("IDLE",)),
)  # fmt: skip
