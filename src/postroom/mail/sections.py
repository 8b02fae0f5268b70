"""FETCH section extraction: BODY[section]<partial>, BINARY[part], BINARY.SIZE, and the
decoded text SEARCH BODY/TEXT looks at (RFC 9051 §6.4.5, RFC 3516).

Owns part-number resolution over a MessageMeta: part 1 of a non-multipart entity is its
body; numbers below a message/rfc822 part address the embedded message's parts; HEADER,
TEXT and HEADER.FIELDS[.NOT] after a part number address the embedded message of a
message/rfc822 part; MIME addresses the part's own MIME header.

Invariants: a section that does not exist yields b"" (RFC 9051 §6.4.5: an empty
string), never an exception; the only error raised is UnknownTransferEncoding (IMAP
answers NO [UNKNOWN-CTE], RFC 3516 §4.3) and only for BINARY. Sans-IO.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator

from postroom.errors import Refused
from postroom.mail.headers import (
    decode_base64,
    decode_charset,
    parse_header_fields,
    select_header_fields,
)
from postroom.mail.mimetree import MessageMeta, Part

SEARCH_TEXT_LIMIT = 1_000_000  # characters of decoded text SEARCH looks at per message
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
SPECIFIERS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "MIME", "TEXT"})
# RFC 2045 §6.7 rule 3: whitespace at the end of an encoded line is padding a gateway may
# have added; it is removed before decoding (possessive, so a long run costs linear time).
_QP_TRAILING_SPACE = re.compile(rb"(?<![ \t])[ \t]++(?=\r?\n|\Z)")


class UnknownTransferEncoding(Refused):
    """BINARY asked for a part whose Content-Transfer-Encoding we cannot decode."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unknown Content-Transfer-Encoding {encoding!r}", "UNKNOWN-CTE")
        self.encoding = encoding


def find_part(meta: MessageMeta, part: tuple[int, ...]) -> Part | None:
    """The Part that part number `part` names, or None when there is none.

    `()` names the whole message (the root entity).
    """
    node = meta.root
    candidates = _numbered_children(node, is_root=True)
    for number in part:
        if number < 1 or number > len(candidates):
            return None
        node = candidates[number - 1]
        candidates = _numbered_children(node, is_root=False)
    return node


def _numbered_children(node: Part, is_root: bool) -> tuple[Part, ...]:
    """What part numbers below `node` refer to (RFC 9051 §6.4.5)."""
    if node.is_multipart:
        return node.children
    if is_root:
        return (node,)  # part 1 of a single-part message is its body
    if node.is_embedded_message:
        embedded = node.children[0]
        return embedded.children if embedded.is_multipart else (embedded,)
    return ()


def extract_section(
    raw: bytes,
    meta: MessageMeta,
    part: tuple[int, ...],
    specifier: str | None,
    fields: tuple[str, ...] = (),
    partial: tuple[int, int | None] | None = None,
) -> bytes:
    """Content of BODY[part.specifier (fields)]<origin.length>.

    `specifier` is None (the part's content, or the whole message for part `()`),
    "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "MIME" or "TEXT" (any case).
    `partial` is (origin, length or None); RFC 9051 §6.4.5: an origin past the end
    yields an empty string.
    """
    content = _section_content(raw, meta, part, (specifier or "").upper(), fields)
    if partial is None:
        return content
    origin, length = partial
    return content[origin:] if length is None else content[origin : origin + length]


def _section_content(
    raw: bytes, meta: MessageMeta, part: tuple[int, ...], specifier: str, fields: tuple[str, ...]
) -> bytes:
    node = find_part(meta, part)
    if node is None:
        return b""
    if not specifier:
        return raw[node.header_start : node.end] if not part else raw[node.body_start : node.end]
    if specifier == "MIME":
        # RFC 9051 §6.4.5: MIME is only meaningful after a part number.
        return raw[node.header_start : node.body_start] if part else b""
    message = node if not part else _embedded(node)
    if message is None:
        return b""
    header = raw[message.header_start : message.body_start]
    if specifier == "HEADER":
        return header
    if specifier == "TEXT":
        return raw[message.body_start : message.end]
    if specifier in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return select_header_fields(header, fields, exclude=specifier.endswith(".NOT"))
    return b""


class ParsedHeader:
    """A header block split into fields once, for many HEADER.FIELDS[.NOT] selections
    (a FETCH naming 1,000 of them parses each message's header once, not 1,000 times;
    issue 25). `select` returns exactly what `select_header_fields` returns."""

    __slots__ = ("_fields", "_positions")

    def __init__(self, header: bytes) -> None:
        self._fields = [(one.name.lower(), one.name != "", _with_line_end(one.raw))
                        for one in parse_header_fields(header)]  # fmt: skip
        self._positions: dict[str, list[int]] = {}
        for index, (name, is_named, _) in enumerate(self._fields):
            if is_named:
                self._positions.setdefault(name, []).append(index)

    def select(self, wanted: frozenset[str], *, exclude: bool) -> bytes:
        """`wanted`: field names lower-cased (`field_names`). HEADER.FIELDS of a few
        names looks only at those fields, in header order."""
        if not exclude and len(wanted) < len(self._fields):
            found = sorted(index for name in wanted for index in self._positions.get(name, ()))
            kept = [self._fields[index][2] for index in found]
        else:
            kept = [raw for name, is_named, raw in self._fields
                    if (name in wanted and is_named) != exclude]  # fmt: skip
        return b"".join(kept) + b"\r\n"


def field_names(names: tuple[str, ...]) -> frozenset[str]:
    """The lower-cased set `ParsedHeader.select` takes (computed once per command)."""
    return frozenset(name.lower() for name in names)


def _with_line_end(raw: bytes) -> bytes:
    # The last field of a header with no empty line may lack its line ending.
    return raw if raw.endswith(b"\n") else raw + b"\r\n"


def _embedded(node: Part) -> Part | None:
    return node.children[0] if node.is_embedded_message else None


def decode_binary(raw: bytes, meta: MessageMeta, part: tuple[int, ...]) -> bytes:
    """BINARY[part]: the part's content with its transfer encoding removed (RFC 3516).

    `()` is the whole message, unchanged. Raises UnknownTransferEncoding.
    """
    node = find_part(meta, part)
    if node is None:
        return b""
    if not part:
        return raw[node.header_start : node.end]
    return decode_transfer(raw[node.body_start : node.end], node.encoding)


def binary_size(raw: bytes, meta: MessageMeta, part: tuple[int, ...]) -> int:
    """BINARY.SIZE[part] (RFC 3516 §4.2): the size of the decoded content."""
    node = find_part(meta, part)
    if node is not None and node.encoding in _IDENTITY_ENCODINGS:
        return node.end - (node.header_start if not part else node.body_start)
    return len(decode_binary(raw, meta, part))


def decode_transfer(body: bytes, encoding: str) -> bytes:
    """Remove a Content-Transfer-Encoding (RFC 2045 §6); lenient about bad input."""
    encoding = encoding.lower()
    if encoding in _IDENTITY_ENCODINGS:
        return body
    if encoding == "base64":
        return decode_base64(body)
    if encoding == "quoted-printable":
        return decode_quoted_printable(body)
    raise UnknownTransferEncoding(encoding)


def decode_quoted_printable(body: bytes) -> bytes:
    """RFC 2045 §6.7: trailing whitespace on a line is dropped, so `=` followed by
    whitespace then a line break is a soft line break like `=` CRLF; the rest (=XX
    octets, invalid `=` kept as they are) is binascii's."""
    return binascii.a2b_qp(_QP_TRAILING_SPACE.sub(b"", body))


def text_for_search(raw: bytes, meta: MessageMeta, limit: int = SEARCH_TEXT_LIMIT) -> str:
    """Decoded text of every text/* part (embedded messages included), joined by
    newlines and cut at `limit` characters, for SEARCH BODY / TEXT (RFC 9051 §6.4.4)."""
    pieces: list[str] = []
    remaining = limit
    for part in _text_parts(meta.root):
        if remaining <= 0:
            break
        # Decode at most about `remaining` characters' worth of bytes (4 for base64 slack).
        body = raw[part.body_start : min(part.end, part.body_start + remaining * 4)]
        try:
            payload = decode_transfer(body, part.encoding)
        except UnknownTransferEncoding:
            payload = body
        text = decode_charset(payload, part.params.get("charset"))[:remaining]
        pieces.append(text)
        remaining -= len(text) + 1
    return "\n".join(pieces)


def _text_parts(part: Part) -> Iterator[Part]:
    if part.children:
        for child in part.children:
            yield from _text_parts(child)
    elif part.type == "text":
        yield part
