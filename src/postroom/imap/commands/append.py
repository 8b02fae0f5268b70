"""APPEND (RFC 9051 §6.3.12; RFC 4315 APPENDUID; RFC 7889 APPENDLIMIT; RFC 3516 literal8;
RFC 3502 MULTIAPPEND; RFC 4469 CATENATE).

Owns storing client-supplied messages: size check, binary parts re-encoded as base64
(mail/reencode.py, RFC 3516 §4.3), metadata computed once so FETCH never re-parses (on the
loop up to META_ON_LOOP_LIMIT, where the parse costs less than the thread hop, as for SMTP
in smtp/receive.py; off the loop above), the durable blobs, then the rows.

Invariants: a missing mailbox is NO [TRYCREATE]; a message above the size limit is
NO [TOOBIG] (the connection refuses a literal that big before reading it, this check
covers several messages adding up, and CATENATE's assembled size); the blobs are durable
before the rows are committed and released again if the rows cannot be written. The
messages of one command are stored in one transaction, all or none (RFC 3502 §6.3.11);
a CATENATE URL that names nothing of this user's is NO [BADURL url] and nothing is
stored (RFC 4469 §5). Issue 25, checked for all the messages of the command before any
is stored (imap/commands/limits.py): a flag longer than MAX_KEYWORD_LENGTH or keywords
past MAX_KEYWORDS_PER_MAILBOX are NO [LIMIT], more messages than
MAX_MESSAGES_PER_MAILBOX NO [LIMIT], an account past POSTFIX_MAILBOX_SIZE_LIMIT or its
quota NO [OVERQUOTA]; usage crossing 80 % / 95 % of the quota delivers the warning
(issue 17, accounts/quota.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse
from collections.abc import Sequence

from postroom.accounts.quota import Room, announce_crossing
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
from postroom.imap.wire.commands.append import (
    Append,
    AppendMessage,
    CatPart,
    CatText,
    ImapUrl,
    parse_imap_url,
)
from postroom.imap.wire.connection import DEFAULT_MAX_LITERAL_SIZE
from postroom.imap.wire.fetch import parse_section_spec
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import ParseError
from postroom.imap.wire.responses import Atom
from postroom.mail.mimetree import MessageMeta, message_meta
from postroom.mail.reencode import reencode_binary
from postroom.mail.sections import extract_section, find_part
from postroom.store.api import Mailbox, MessageRow, NewMessage
from postroom.store.errors import NotFound

META_ON_LOOP_LIMIT = 128 * 1024  # ≈0.1–0.3 ms of parsing at most
MAX_URL_ECHO = 1000  # characters of a bad URL echoed in [BADURL ...]
# Message bytes one CATENATE may read through its URL parts, in message size limits.
CATENATE_READ_FACTOR = 4


class BadUrl(Refused):
    """A CATENATE URL that does not resolve (RFC 4469 §5: NO [BADURL url])."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"bad URL: {why}", code="BADURL")
        self.url = url


def _prepare(data: bytes) -> tuple[bytes, str]:
    """The bytes to store (binary parts as base64) and their metadata."""
    stored = reencode_binary(data)
    return stored, message_meta(stored)


async def _prepared(ctx: Context, data: bytes) -> tuple[bytes, str]:
    limit = ctx.runtime.config.message_size_limit
    if limit and len(data) > limit:
        raise Refused(f"message larger than {limit} octets", code="TOOBIG")
    if not data:
        raise BadSyntax("empty message")
    if len(data) <= META_ON_LOOP_LIMIT:
        return _prepare(data)
    return await asyncio.to_thread(_prepare, data)


async def _store_all(ctx: Context, mailbox: Mailbox, messages: Sequence[AppendMessage],
                     prepared: Sequence[tuple[bytes, str]]) -> list[MessageRow]:  # fmt: skip
    """Every message in one transaction (RFC 3502: all or none)."""
    store, now = ctx.runtime.store, dt.datetime.now(dt.UTC)
    new = [NewMessage(ctx.runtime.blobs.new_id(len(data)), len(data),
                      message.internal_date or now,
                      frozenset(flag for flag in message.flags if flag != "\\Recent"), meta)
           for message, (data, meta) in zip(messages, prepared, strict=True)]  # fmt: skip
    bodies = [data for data, _ in prepared]
    try:
        if len(new) == 1:  # the delivery path: shares the group commit with other writers
            return [await store.append_message(mailbox.id, new[0], body=bodies[0])]
        return await store.append_messages(mailbox.id, new, bodies=bodies)
    except BaseException:
        for message in new:
            await store.release_blob_if_unused(message.blob_id)
        raise


# -- CATENATE (RFC 4469) ------------------------------------------------------------------
async def _catenated(ctx: Context, parts: Sequence[CatPart]) -> bytes:
    """The message the parts make, refused past the size limit as it grows."""
    limit = ctx.runtime.config.message_size_limit or DEFAULT_MAX_LITERAL_SIZE
    pieces: list[bytes] = []
    total = 0
    reads = [CATENATE_READ_FACTOR * limit]  # message bytes the URL parts may still read
    for part in parts:
        piece = part.data if isinstance(part, CatText) else await _url_data(ctx, part.url, reads)
        total += len(piece)
        if total > limit:  # RFC 4469 §5: TOOBIG
            raise Refused(f"catenated message larger than {limit} octets", code="TOOBIG")
        pieces.append(piece)
    return b"".join(pieces)


def _resolvable(ctx: Context, text: str) -> ImapUrl:
    url = parse_imap_url(text)
    if url is None:
        raise BadUrl(text, "not an IMAP message URL this server resolves")
    account = ctx.account
    if url.host is not None and url.host.lower() != ctx.runtime.config.hostname.lower():
        raise BadUrl(text, "another server")
    if url.user is not None and (account is None or url.user.lower() != account.address):
        raise BadUrl(text, "another user")  # RFC 4469 §5: only what this user may read
    return url


async def _url_data(ctx: Context, text: str, reads: list[int]) -> bytes:
    """What a URL part names: a message of this user's mailboxes or a section of it.
    `reads[0]`: what the command's URL parts may still read (whole messages are read,
    so a hundred one-octet PARTIALs of a large message are bounded too)."""
    url = _resolvable(ctx, text)
    store = ctx.runtime.store
    mailbox = await store.get_mailbox(ctx.account_id, url.mailbox)
    if mailbox is None or url.uidvalidity not in (None, mailbox.uidvalidity):
        raise BadUrl(text, "no such mailbox (or another UIDVALIDITY)")
    row = await store.get_message(mailbox.id, url.uid)
    if row is None:
        raise BadUrl(text, "no such message")
    reads[0] -= row.size
    if reads[0] < 0:
        raise Refused("CATENATE URL parts read too much", code="LIMIT")
    try:
        raw = await ctx.runtime.blobs.read(row.blob_id)
        data = raw if url.section is None else await _section(ctx, mailbox, url, raw, text)
    except (NotFound, FileNotFoundError):
        raise BadUrl(text, "no such message") from None
    if url.partial is not None:
        origin, length = url.partial
        data = data[origin:] if length is None else data[origin : origin + length]
    return data


async def _section(ctx: Context, mailbox: Mailbox, url: ImapUrl, raw: bytes,
                   text: str) -> bytes:  # fmt: skip
    try:
        section = parse_section_spec(url.section or "")
    except ParseError:
        raise BadUrl(text, "bad section") from None
    meta = MessageMeta.from_json(await ctx.runtime.store.get_meta(mailbox.id, url.uid))
    if find_part(meta, section.part) is None:
        raise BadUrl(text, "no such section")
    return extract_section(raw, meta, section.part, section.text, section.fields)


def _url_text(url: str) -> str:
    """The URL as resp-text-code text: no "]", spaces, controls or 8-bit (%-encoded)."""
    text = "".join(char if "!" <= char <= "~" and char != "]" else urllib.parse.quote(char)
                   for char in url[:MAX_URL_ECHO])  # fmt: skip
    return text or "%20"


# -- the command --------------------------------------------------------------------------
async def _check_limits(ctx: Context, mailbox: Mailbox, messages: Sequence[AppendMessage],
                        sizes: Sequence[int]) -> Room:  # fmt: skip
    config, store = ctx.runtime.config, ctx.runtime.store
    flags = frozenset(flag for message in messages for flag in message.flags)
    check_flag_lengths(config, flags)
    for message in messages:
        check_message_keywords([frozenset()], keywords(message.flags))
    await check_keywords(store, config, mailbox, keywords(flags))
    return await check_room(store, config, mailbox, messages=len(messages), size=sum(sizes))


async def _message_data(ctx: Context, message: AppendMessage) -> bytes:
    return await _catenated(ctx, message.catenate) if message.catenate else message.data


async def handle_append(ctx: Context, command: Append) -> Done:
    mailbox = await ctx.runtime.store.get_mailbox(ctx.account_id, command.mailbox)
    if mailbox is None:
        raise Refused(f"no mailbox {command.mailbox}", code="TRYCREATE")
    try:
        datas = [await _message_data(ctx, message) for message in command.messages]
    except BadUrl as error:  # RFC 4469 §5: the URL goes back in the response code
        return Done(str(error), "BADURL", (Atom(_url_text(error.url)),), status="NO")
    room = await _check_limits(ctx, mailbox, command.messages, [len(data) for data in datas])
    prepared = [await _prepared(ctx, data) for data in datas]
    rows = await _store_all(ctx, mailbox, command.messages, prepared)
    await announce_crossing(ctx.runtime.store, ctx.runtime.blobs, ctx.runtime.config, room,
                            size=sum(row.size for row in rows), messages=len(rows))  # issue 17
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
    CommandSpec(Append, ("APPEND",), handle_append, AUTHENTICATED, needs_view_tables=False,
                capabilities=("MULTIAPPEND", "CATENATE")),
)
