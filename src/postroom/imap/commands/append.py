"""APPEND (RFC 9051 §6.3.12; RFC 4315 APPENDUID; RFC 7889 APPENDLIMIT; RFC 3516 literal8).

Owns storing client-supplied messages: size check, metadata computed once so FETCH never
re-parses (on the loop up to META_ON_LOOP_LIMIT, where the parse costs less than the thread
hop, as for SMTP in smtp/receive.py; off the loop above), the durable blob, then the row.

Invariants: a missing mailbox is NO [TRYCREATE]; a message above the size limit is
NO [TOOBIG] (the connection refuses a literal that big before reading it, this check
covers several messages adding up); the blob is durable before the row is committed and
released again if the row cannot be written. Issue 25, checked for all the messages of
the command before any is stored (imap/commands/limits.py): a flag longer than
MAX_KEYWORD_LENGTH or keywords past MAX_KEYWORDS_PER_MAILBOX are NO [LIMIT], more
messages than MAX_MESSAGES_PER_MAILBOX NO [LIMIT], an account past
POSTFIX_MAILBOX_SIZE_LIMIT NO [OVERQUOTA].
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

from postroom.errors import BadSyntax, Refused
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.limits import (
    check_flag_lengths,
    check_keywords,
    check_message_keywords,
    check_room,
    keywords,
)
from postroom.imap.commands.spec import AUTHENTICATED, CommandSpec
from postroom.imap.wire.commands.append import Append, AppendMessage
from postroom.imap.wire.grammar import SequenceSet
from postroom.mail.mimetree import message_meta
from postroom.store.api import Mailbox, MessageRow, NewMessage

META_ON_LOOP_LIMIT = 128 * 1024  # ≈0.1–0.3 ms of parsing at most


async def _append_one(ctx: Context, mailbox: Mailbox, message: AppendMessage) -> MessageRow:
    data = message.data
    limit = ctx.runtime.config.message_size_limit
    if limit and len(data) > limit:
        raise Refused(f"message larger than {limit} octets", code="TOOBIG")
    if not data:
        raise BadSyntax("empty message")
    if len(data) <= META_ON_LOOP_LIMIT:
        meta = message_meta(data)
    else:
        meta = await asyncio.to_thread(message_meta, data)
    blob_id = ctx.runtime.blobs.new_id(len(data))  # written by the store in the same trip
    flags = frozenset(flag for flag in message.flags if flag != "\\Recent")
    when = message.internal_date or dt.datetime.now(dt.UTC)
    try:
        row = await ctx.runtime.store.append_message(
            mailbox.id, NewMessage(blob_id, len(data), when, flags, meta), body=data)
    except BaseException:
        await ctx.runtime.store.release_blob_if_unused(blob_id)
        raise
    return row


async def _check_limits(ctx: Context, mailbox: Mailbox,
                        messages: Sequence[AppendMessage]) -> None:  # fmt: skip
    config, store = ctx.runtime.config, ctx.runtime.store
    flags = frozenset(flag for message in messages for flag in message.flags)
    check_flag_lengths(config, flags)
    for message in messages:
        check_message_keywords([frozenset()], keywords(message.flags))
    await check_keywords(store, config, mailbox, keywords(flags))
    await check_room(store, config, mailbox, messages=len(messages),
                     size=sum(len(message.data) for message in messages))  # fmt: skip


async def handle_append(ctx: Context, command: Append) -> Done:
    mailbox = await ctx.runtime.store.get_mailbox(ctx.account_id, command.mailbox)
    if mailbox is None:
        raise Refused(f"no mailbox {command.mailbox}", code="TRYCREATE")
    await _check_limits(ctx, mailbox, command.messages)
    rows = [await _append_one(ctx, mailbox, message) for message in command.messages]
    view = ctx.selected
    # Taken into the view directly when nothing else happened meanwhile (issue 8), else
    # re-read; either way the client hears EXISTS before the tagged OK.
    if view is not None and view.mailbox_id == mailbox.id and not all(
            [view.note_appended(row, ctx.runtime.store) for row in rows]):  # fmt: skip
        ctx.is_selected_stale = True
    return Done("APPEND completed", "APPENDUID",
                (mailbox.uidvalidity, SequenceSet.from_values([row.uid for row in rows])))


# APPENDLIMIT depends on the configuration: Context.capabilities adds it.
SPECS = (
    CommandSpec(Append, ("APPEND",), handle_append, AUTHENTICATED, needs_view_tables=False),
)
