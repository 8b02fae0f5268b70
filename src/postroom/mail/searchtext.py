"""The texts SEARCH TEXT/BODY match (RFC 9051 §6.4.4), in one place for the two readers:
IMAP's SEARCH reading a message, and the full-text indexer (issue 22) storing what SEARCH
would read, so the index answers exactly as reading the message would.

Owns `message_texts` (a stored message → its header bytes and decoded body text),
`header_text` (the header as TEXT matches it) and `index_texts` (the case-folded pair the
index stores, or None). Invariants: the body text is `sections.text_for_search` of the
message's MIME tree (the stored one when it is readable, else parsed again: the same
tree); the header text is each field as `Name: value`, unfolded and RFC 2047-decoded;
both are case-folded with `str.casefold`, as the search string is. Pure.
"""

from __future__ import annotations

from postroom.mail.headers import decode_words, parse_header_fields, unfold
from postroom.mail.mimetree import MessageMeta, parse_message
from postroom.mail.sections import text_for_search

INDEX_TEXT_LIMIT = 256 * 1024  # characters of body (or header) text an index row holds


def stored_meta(text: str | None) -> MessageMeta | None:
    """The MIME tree stored at delivery, or None when absent or of another version."""
    if not text:
        return None
    try:
        return MessageMeta.from_json(text)
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # another meta version (or damaged): parse instead


def message_texts(raw: bytes, meta_text: str | None) -> tuple[bytes, str]:
    """The header's bytes and the decoded text of the text parts."""
    # The stored tree was computed from these very bytes at delivery/APPEND: reading it
    # costs ~1/7 of parsing again (issue 8).
    meta = stored_meta(meta_text) or parse_message(raw)
    return raw[: meta.root.body_start], text_for_search(raw, meta)


def header_text(header: bytes) -> str:
    """The header as TEXT matches it: one `Name: decoded value` line per field."""
    return "\n".join(f"{one.name}: {decode_words(unfold(one.value))}"
                     for one in parse_header_fields(header))  # fmt: skip


def index_texts(raw: bytes, meta_text: str | None) -> tuple[str, str] | None:
    """The case-folded (header, body) texts an index row holds; None when the message is
    better searched the old way: more than INDEX_TEXT_LIMIT characters of either, or
    text a database cannot store as given (NUL, lone surrogates)."""
    header, body = message_texts(raw, meta_text)
    header_folded = header_text(header).casefold()
    if len(body) > INDEX_TEXT_LIMIT or len(header_folded) > INDEX_TEXT_LIMIT:
        return None
    body_folded = body.casefold()
    if not (_storable(header_folded) and _storable(body_folded)):
        return None
    return header_folded, body_folded


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
