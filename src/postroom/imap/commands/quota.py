"""GETQUOTA, GETQUOTAROOT, SETQUOTA (RFC 9208, issue 17).

Owns the QUOTA extension's answers. Every mailbox of an account has the one quota root
"" (the account), with the resources STORAGE (in units of 1024 octets, RFC 9208 §5.1)
and MESSAGE (§5.2) whenever a limit applies: the account's own quota or the server's
(accounts/quota.py; with ENABLE_QUOTAS=0 only POSTFIX_MAILBOX_SIZE_LIMIT is left). An
account without any limit has no quota root at all (`* QUOTAROOT INBOX`, as Dovecot).
Quotas are set by the administrator with `postroom quota set`: SETQUOTA is refused (no
IMAP user is an administrator).

Invariant: what is reported is what the checks enforce, read in one query of the
trigger-kept counters, so usage is exact after every delivery, expunge, COPY or MOVE.
"""

from __future__ import annotations

from postroom.accounts.quota import QuotaPolicy, Room
from postroom.errors import Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.spec import AUTHENTICATED, CommandSpec
from postroom.imap.wire.commands.quota import GetQuota, GetQuotaRoot, SetQuota
from postroom.imap.wire.responses import Atom, Value, mailbox_value, render_untagged

ROOT = ""  # the account: one root for all its mailboxes (RFC 9208 §3.2)
CAPABILITIES = ("QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE")


def quota_resources(room: Room) -> list[Value]:
    """RFC 9208 §4.2.2 quota_list: `name usage limit` for each resource with a limit."""
    resources: list[Value] = []
    if room.storage_limit:
        # Usage rounds up, so a non-empty account never reads as 0 KiB; the limit rounds
        # down, so usage = limit reads as full.
        resources += [Atom("STORAGE"), -(-room.usage.size // 1024), room.storage_limit // 1024]
    if room.message_limit:
        resources += [Atom("MESSAGE"), room.usage.messages, room.message_limit]
    return resources


async def _account_room(ctx: Context) -> Room:
    usage = await ctx.runtime.store.account_quota(ctx.account_id)
    return Room(usage, QuotaPolicy.from_config(ctx.runtime.config))


async def handle_getquota(ctx: Context, command: GetQuota) -> Done:
    resources = quota_resources(await _account_room(ctx)) if command.root == ROOT else []
    if not resources:
        raise Refused(f"no quota root {command.root!r}", code="NONEXISTENT")
    await ctx.write(render_untagged(Atom("QUOTA"), ROOT, resources, is_utf8=ctx.is_utf8))
    return Done("GETQUOTA completed")


async def handle_getquotaroot(ctx: Context, command: GetQuotaRoot) -> Done:
    """RFC 9208 §4.1.2: the roots of the mailbox, then each root's QUOTA."""
    name = command.mailbox
    name = "INBOX" if name.isascii() and name.upper() == "INBOX" else name
    if await ctx.runtime.store.get_mailbox(ctx.account_id, name) is None:
        raise Refused(f"no mailbox {name}", code="NONEXISTENT")
    resources = quota_resources(await _account_room(ctx))
    roots: list[Value] = [ROOT] if resources else []
    shown = mailbox_value(command.mailbox, is_utf8=ctx.is_utf8)
    out = render_untagged(Atom("QUOTAROOT"), shown, *roots, is_utf8=ctx.is_utf8)
    if resources:
        out += render_untagged(Atom("QUOTA"), ROOT, resources, is_utf8=ctx.is_utf8)
    await ctx.write(out)
    return Done("GETQUOTAROOT completed")


async def handle_setquota(ctx: Context, command: SetQuota) -> Done:
    # RFC 9208 §4.1.3: setting limits is for administrators; quotas are set with
    # `postroom quota set`, and no IMAP user is an administrator.
    raise Refused("only the administrator sets quotas (postroom quota set)", code="NOPERM")


SPECS = (
    CommandSpec(GetQuota, ("GETQUOTA",), handle_getquota, AUTHENTICATED,
                needs_view_tables=False, capabilities=CAPABILITIES),
    CommandSpec(GetQuotaRoot, ("GETQUOTAROOT",), handle_getquotaroot, AUTHENTICATED,
                needs_view_tables=False),
    CommandSpec(SetQuota, ("SETQUOTA",), handle_setquota, AUTHENTICATED,
                needs_view_tables=False),
)  # fmt: skip
