"""APPEND: command dataclasses and parser (RFC 9051 §6.3.12; RFC 3502 MULTIAPPEND;
RFC 3516 literal8; RFC 6855 §4 UTF8 data; RFC 4469 CATENATE).

Owns APPEND's syntax; its handler is `imap/commands/append.py`. A CATENATE message
carries its parts (`CatText`, `CatUrl`) and empty `data`: the handler resolves the URLs.
Invariant: a CATENATE list has at least one part and at most MAX_CATENATE_PARTS.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass, field

from postroom.imap.wire.commands.base import Command, ParseContext, Parser
from postroom.imap.wire.grammar import decode_mailbox, parse_date_time, parse_flag_list
from postroom.imap.wire.lexer import Lexer, ParseError

# RFC 4469 leaves the count to the server; each URL part costs a message read.
MAX_CATENATE_PARTS = 100


@dataclass(frozen=True, slots=True)
class CatText:
    """RFC 4469 §5: `TEXT literal` (literal8 allowed with BINARY, RFC 4469 §7)."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class CatUrl:
    """RFC 4469 §5: `URL astring`, an IMAP URL (RFC 5092) of a message or section."""

    url: str


CatPart = CatText | CatUrl

# RFC 5092 §6 imessagepart: enc-mailbox [uidvalidity] iuid [isection] [ipartial]
# (keys case-insensitive); URLAUTH and EXPIRE (RFC 4467) are not supported.
_IMAP_URL = re.compile(
    r"(?:imap://(?:(?P<user>[^@/;]*)(?:;[^@/]*)?@)?(?P<host>[^/]*))?"
    r"/(?P<mailbox>[^;/?#]*)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^/;?#]+))?"
    r"(?:/;PARTIAL=(?P<origin>[0-9]{1,19})(?:\.(?P<length>[1-9][0-9]{0,18}))?)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ImapUrl:
    """A message or section URL (RFC 5092), absolute or server-relative ("/mailbox…")."""

    mailbox: str
    uid: int
    uidvalidity: int | None = None
    section: str | None = None  # as in BODY[...], e.g. "1.2", "HEADER", "1.MIME"
    partial: tuple[int, int | None] | None = None  # origin and length (RFC 5092 §5)
    host: str | None = None  # absolute URLs only
    user: str | None = None


def parse_imap_url(text: str) -> ImapUrl | None:
    """The URL's parts, or None when it is not a message/section URL we can resolve."""
    match = _IMAP_URL.fullmatch(text)
    if match is None or not match.group("mailbox"):
        return None
    try:
        raw_mailbox = urllib.parse.unquote_to_bytes(match.group("mailbox"))
        mailbox = decode_mailbox(raw_mailbox, is_utf8=True)  # RFC 5092 §3.2: UTF-8
        section = urllib.parse.unquote(match.group("section") or "", errors="strict")
        user = urllib.parse.unquote(match.group("user") or "", errors="strict")
    except (ParseError, UnicodeDecodeError):
        return None
    partial = None
    if match.group("origin") is not None:
        length = match.group("length")
        partial = (int(match.group("origin")), int(length) if length else None)
    uidvalidity = match.group("uidvalidity")
    return ImapUrl(mailbox, int(match.group("uid")), int(uidvalidity) if uidvalidity else None,
                   section or None, partial, match.group("host"), user or None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (several with MULTIAPPEND, RFC 3502)."""

    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    data: bytes = field(repr=False)
    is_binary: bool = False  # sent as literal8 ~{n} (RFC 3516 §4.4)
    is_utf8: bool = False  # sent as UTF8 (~{n}) (RFC 6855 §4)
    catenate: tuple[CatPart, ...] = ()  # RFC 4469: the parts, when sent as CATENATE


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: str
    messages: tuple[AppendMessage, ...]


def _parse_append_message(lx: Lexer) -> AppendMessage:
    flags: tuple[str, ...] = ()
    date: dt.datetime | None = None
    if lx.peek() == 0x28:
        flags = parse_flag_list(lx)
        lx.expect_sp()
    if lx.peek() == 0x22:
        date = parse_date_time(lx)
        lx.expect_sp()
    if lx.skip_word(b"UTF8"):  # RFC 6855 §4: "UTF8" SP "(" literal8 ")"
        lx.expect(b" (")
        data, _ = lx.read_literal(allow_literal8=True)
        lx.expect(b")")
        return AppendMessage(flags, date, data, is_utf8=True)
    if lx.skip_word(b"CATENATE"):  # RFC 4469 §5: "CATENATE" SP "(" cat-part ... ")"
        lx.expect_sp()
        return AppendMessage(flags, date, b"", catenate=_parse_cat_parts(lx))
    if lx.peek() not in (0x7B, 0x7E):
        raise ParseError("APPEND data must be a literal")
    data, is_binary = lx.read_literal(allow_literal8=True)
    return AppendMessage(flags, date, data, is_binary=is_binary)


def _parse_cat_part(lx: Lexer) -> CatPart:
    if lx.skip_word(b"TEXT"):
        lx.expect_sp()
        if lx.peek() not in (0x7B, 0x7E):
            raise ParseError("CATENATE TEXT must be a literal")
        return CatText(lx.read_literal(allow_literal8=True)[0])
    if lx.skip_word(b"URL"):
        lx.expect_sp()
        return CatUrl(lx.read_astring().decode("utf-8", "replace"))
    raise ParseError("CATENATE part must be TEXT or URL")


def _parse_cat_parts(lx: Lexer) -> tuple[CatPart, ...]:
    parts = lx.read_list(lambda: _parse_cat_part(lx), allow_empty=False)
    if len(parts) > MAX_CATENATE_PARTS:
        raise ParseError(f"more than {MAX_CATENATE_PARTS} CATENATE parts")
    return tuple(parts)


def parse_append(ctx: ParseContext) -> Command:
    mailbox = ctx.mailbox()
    messages = []
    while not ctx.lx.at_end():  # RFC 3502 MULTIAPPEND: 1*append-message
        ctx.lx.expect_sp()
        messages.append(_parse_append_message(ctx.lx))
    if not messages:
        raise ParseError("APPEND needs a message")
    return Append(ctx.tag, mailbox, tuple(messages))


PARSERS: dict[str, Parser] = {"APPEND": parse_append}
