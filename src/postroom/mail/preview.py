"""The PREVIEW of a message (RFC 8970): a short plain-text snippet of its first text part.

Owns `message_preview(raw, meta)`: the first text/plain or text/html leaf that is not an
attachment (depth first, embedded messages not entered: their text is not this
message's), its transfer encoding and charset removed, HTML reduced to its text with the
standard library's parser (script and style dropped), whitespace collapsed, cut at
PREVIEW_LENGTH characters (RFC 8970 §3.1: at most 256; 200 as Dovecot and Gmail show).

Invariants: never raises for any stored message (an unknown transfer encoding reads the
body as it is); the work is bounded: at most PREVIEW_SOURCE_BYTES of the part are
decoded and parsed, and the tree walk is bounded by the MIME limits; no text gives "".
Sans-IO.
"""

from __future__ import annotations

import html.parser
import re
from collections.abc import Iterator

from postroom.mail.headers import decode_charset
from postroom.mail.mimetree import MessageMeta, Part
from postroom.mail.sections import UnknownTransferEncoding, decode_transfer

PREVIEW_LENGTH = 200
# Encoded bytes of the part read for a preview: enough for 200 characters behind a long
# HTML head and its styles, and no more whatever the part's size.
PREVIEW_SOURCE_BYTES = 64 * 1024
_WHITESPACE = re.compile(r"\s+")
_SKIPPED_ELEMENTS = frozenset({"script", "style", "head", "title"})


def preview_bytes_needed(meta: MessageMeta) -> int:
    """How much of the raw message `message_preview` reads (a prefix is enough)."""
    part = next(_text_leaves(meta.root), None)
    return 0 if part is None else min(part.end, part.body_start + PREVIEW_SOURCE_BYTES)


def message_preview(raw: bytes, meta: MessageMeta) -> str:
    """Up to PREVIEW_LENGTH characters of plain text ("" when the message has none).
    `raw` may be the message cut after `preview_bytes_needed(meta)` octets."""
    part = next(_text_leaves(meta.root), None)
    if part is None:
        return ""
    body = raw[part.body_start : min(part.end, part.body_start + PREVIEW_SOURCE_BYTES)]
    try:
        payload = decode_transfer(body, part.encoding)
    except UnknownTransferEncoding:
        payload = body
    text = decode_charset(payload, part.params.get("charset"))
    if part.subtype == "html":
        text = html_text(text)
    return _WHITESPACE.sub(" ", text).strip()[:PREVIEW_LENGTH]


def _text_leaves(part: Part) -> Iterator[Part]:
    if part.is_multipart:
        for child in part.children:
            yield from _text_leaves(child)
    elif (part.type == "text" and part.subtype in ("plain", "html")
          and (part.disposition or "").lower() != "attachment"):  # fmt: skip
        yield part


class _TextCollector(html.parser.HTMLParser):
    """The character data of an HTML document outside script/style/head."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping = 0  # whatever the head left unclosed, the body is shown
        elif tag in _SKIPPED_ELEMENTS:
            self._skipping += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.pieces.append(" ")  # a block boundary separates words

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.pieces.append(data)


def html_text(document: str) -> str:
    """The text an HTML document shows, tags and entities resolved (lenient)."""
    collector = _TextCollector()
    collector.feed(document)
    collector.close()
    return "".join(collector.pieces)
