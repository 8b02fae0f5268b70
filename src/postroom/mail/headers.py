"""Header blocks of raw messages: splitting, field lookup, unfolding, RFC 2047 decoding.

Owns the byte-level view of an RFC 5322 header block that IMAP FETCH and SEARCH need:
where the header ends, each field's original bytes (folding included), case-insensitive
lookup, and HEADER.FIELDS / HEADER.FIELDS.NOT selection.

Invariants: nothing here raises on any bytes input; selection returns original bytes
unchanged; every text value handed out is a `str` that encodes to UTF-8 (undecodable
8-bit header bytes are read as UTF-8 when valid, else Latin-1, so no surrogates leak).
Sans-IO: imports only the standard library.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass

# RFC 2047 §2 encoded-word: =?charset?encoding?encoded-text?=
_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_BASE64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: `name` as written (not lower-cased), `raw` the whole field's
    original bytes including its line endings, `value` the bytes after the colon."""

    name: str
    raw: bytes
    value: bytes


def find_body_start(raw: bytes, start: int = 0, end: int | None = None) -> int:
    """Offset where the body begins: just past the first empty line in raw[start:end].

    RFC 5322 §2.1: the header ends at the first empty line; bare LF is tolerated. With no
    empty line the whole range is header and the body is empty (returns `end`).
    """
    stop = len(raw) if end is None else end
    if raw.startswith(b"\r\n", start) and start + 2 <= stop:
        return start + 2
    if raw.startswith(b"\n", start) and start + 1 <= stop:
        return start + 1
    crlf = raw.find(b"\n\r\n", start, stop)
    # A bare-LF end counts only before the CRLF one: look no further than that (a
    # CRLF message would otherwise be scanned to its end, 100 KB at every delivery).
    bare = raw.find(b"\n\n", start, stop if crlf < 0 else crlf + 2)
    candidates = [pos + 3 for pos in (crlf,) if pos >= 0] + [pos + 2 for pos in (bare,) if pos >= 0]
    return min(candidates) if candidates else stop


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including its terminating empty line, body)."""
    body_start = find_body_start(raw)
    return raw[:body_start], raw[body_start:]


def parse_header_fields(header: bytes) -> list[HeaderField]:
    """Fields of a header block in order; continuation lines stay with their field.

    A line without a colon (an mbox "From " line, junk) becomes a field with name "" so
    lookup never matches it but HEADER.FIELDS.NOT still returns it unchanged.
    """
    fields: list[HeaderField] = []
    lines = header.splitlines(keepends=True)
    current: list[bytes] = []
    for line in lines:
        if line in (b"\r\n", b"\n"):
            break  # the terminating empty line is not a field
        if current and line[:1] in (b" ", b"\t"):
            current.append(line)  # RFC 5322 §2.2.3 folding
            continue
        if current:
            fields.append(_make_field(b"".join(current)))
        current = [line]
    if current:
        fields.append(_make_field(b"".join(current)))
    return fields


def _make_field(raw: bytes) -> HeaderField:
    name, colon, value = raw.partition(b":")
    if not colon or not name.strip() or b" " in name.strip():
        return HeaderField("", raw, raw)
    return HeaderField(decode_text(name.strip()), raw, value)


def decode_text(data: bytes) -> str:
    """Header bytes as text: UTF-8 when valid (RFC 6532), else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def unfold(value: bytes) -> str:
    """RFC 5322 §2.2.3 unfolding: drop CRLF before WSP, strip the ends."""
    return decode_text(_FOLD.sub(b"", value)).strip()


def header_values(header: bytes, name: str) -> list[str]:
    """Unfolded values of every field called `name` (case-insensitive), in order."""
    wanted = name.lower()
    return [unfold(f.value) for f in parse_header_fields(header) if f.name.lower() == wanted]


def first_value(header: bytes, name: str) -> str | None:
    """Unfolded value of the first field called `name`, or None when absent."""
    values = header_values(header, name)
    return values[0] if values else None


def first_values(header: bytes, names: Iterable[str]) -> dict[str, str]:
    """Unfolded value of the first field for each of `names` present (keys lower-cased);
    one pass over the header, so many lookups cost no more than one."""
    wanted = {name.lower() for name in names}
    found: dict[str, str] = {}
    for header_field in parse_header_fields(header):
        key = header_field.name.lower()
        if key in wanted and key not in found:
            found[key] = unfold(header_field.value)
    return found


def decoded_header(raw_message: bytes, name: str) -> str:
    """RFC 2047-decoded text of every `name` field of a message, joined by newlines.

    For SEARCH HEADER/SUBJECT/FROM…: a match in any occurrence counts (RFC 9051 §6.4.4).
    """
    header = raw_message[: find_body_start(raw_message)]
    return "\n".join(decode_words(value) for value in header_values(header, name))


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded-words in unfolded header text; malformed ones stay as is.

    RFC 2047 §6.2: whitespace between two adjacent encoded-words is dropped.
    """
    data = text.encode("utf-8")
    out: list[str] = []
    pos = 0
    previous_was_word = False
    for match in _ENCODED_WORD.finditer(data):
        gap = data[pos : match.start()]
        if not (previous_was_word and not gap.strip()):
            out.append(gap.decode("utf-8"))
        out.append(_decode_word(match.group(1), match.group(2), match.group(3)))
        pos = match.end()
        previous_was_word = True
    out.append(data[pos:].decode("utf-8"))
    return "".join(out)


def _decode_word(charset: bytes, encoding: bytes, text: bytes) -> str:
    # RFC 2231 §5 allows charset*language in encoded-words; the language is dropped.
    name = charset.split(b"*", 1)[0].decode("ascii", "replace")
    if encoding in (b"b", b"B"):
        payload = decode_base64(text)
    else:
        payload = binascii.a2b_qp(text, header=True)
    return decode_charset(payload, name)


def decode_charset(payload: bytes, charset: str | None) -> str:
    """Bytes in a MIME charset as text; unknown charsets fall back to UTF-8 with
    replacement characters, so decoding never fails."""
    try:
        codec = codecs.lookup(charset or "us-ascii").name
    except (LookupError, ValueError):
        codec = "utf-8"
    if codec == "ascii":
        codec = "utf-8"  # 8-bit in "us-ascii" text is almost always UTF-8
    try:
        return payload.decode(codec, "replace")
    except (LookupError, ValueError):  # codecs that are not text encodings (e.g. "hex")
        return payload.decode("utf-8", "replace")


def decode_base64(data: bytes) -> bytes:
    """Lenient base64 (RFC 2045 §6.8): characters outside the alphabet are ignored, data
    after padding is ignored and missing padding is tolerated."""
    cleaned = _BASE64_ALPHABET.sub(b"", data.split(b"=", 1)[0])
    usable = len(cleaned) - len(cleaned) % 4
    tail = cleaned[usable:]
    if len(tail) >= 2:  # a final group of 2 or 3 characters still carries whole octets
        cleaned = cleaned[:usable] + tail + b"=" * (4 - len(tail))
    else:
        cleaned = cleaned[:usable]
    return binascii.a2b_base64(cleaned)


def select_header_fields(header: bytes, names: Iterable[str], exclude: bool) -> bytes:
    """HEADER.FIELDS (exclude=False) / HEADER.FIELDS.NOT (exclude=True) of a header block.

    RFC 9051 §6.4.5: field names match case-insensitively, the fields keep their original
    bytes and order, and the result ends with the empty line that ends a header.
    """
    wanted = {name.lower() for name in names}
    kept = [
        field.raw
        for field in parse_header_fields(header)
        if (field.name.lower() in wanted and field.name != "") != exclude
    ]
    return b"".join(_with_line_end(raw) for raw in kept) + b"\r\n"


def _with_line_end(raw: bytes) -> bytes:
    # The last field of a header with no empty line may lack its line ending.
    return raw if raw.endswith(b"\n") else raw + b"\r\n"
