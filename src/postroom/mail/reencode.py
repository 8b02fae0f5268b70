"""Re-encoding binary MIME parts as base64 before a message is stored (RFC 3516 §4.3).

Owns `reencode_binary`: APPEND (and anything else that accepts `binary` content) gives it
the message as sent; it returns the bytes to store, in which every leaf part whose body
is declared `Content-Transfer-Encoding: binary`, or holds NUL octets, is base64 with its
header saying so, and every container declared `binary` says `8bit` (its content no
longer holds binary data). Dovecot does the same on APPEND.

Why: a later non-BINARY FETCH (BODY[], BODY[1], RFC822) must get a 7bit or 8bit form
and never a literal8 (RFC 3516 §4.3); BINARY[1] still decodes the base64 back to the
exact bytes that were sent, and BINARY.SIZE reports their length.

Invariants: a message with nothing to re-encode comes back unchanged (the same object);
the work is bounded by the MIME tree's limits (mail/mimetree.py MAX_DEPTH / MAX_PARTS:
containers past them are opaque leaves and left as they are, never given a base64
transfer encoding RFC 2046 forbids them); never raises for any bytes;
sans-IO (standard library only).
"""

from __future__ import annotations

import base64
import re

from postroom.mail.headers import parse_header_fields
from postroom.mail.mimetree import Part, parse_message

_BINARY_CTE = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[ \t\r\n]*binary")
_CONTAINER_TYPE = re.compile(rb"(?im)^content-type[ \t]*:[ \t\r\n]*(?:multipart|message)/")
_BASE64_LINE = 57  # input octets per 76-character base64 line (RFC 2045 §6.8)
Edit = tuple[int, int, bytes]  # replace raw[start:end] by the bytes


def needs_reencoding(raw: bytes) -> bool:
    """Cheap test first: only a message with NUL or a `binary` CTE is parsed."""
    return b"\x00" in raw or _BINARY_CTE.search(raw) is not None


def reencode_binary(raw: bytes) -> bytes:
    """The message with its binary parts re-encoded as base64 (see the module doc)."""
    if not needs_reencoding(raw):
        return raw
    edits: list[Edit] = []
    _collect(raw, parse_message(raw).root, edits)
    if not edits:
        return raw
    out: list[bytes] = []
    position = 0
    for start, end, replacement in sorted(edits):
        out += [raw[position:start], replacement]
        position = end
    out.append(raw[position:])
    return b"".join(out)


def _collect(raw: bytes, part: Part, edits: list[Edit]) -> None:
    if part.header_start == part.body_start:
        return  # a part with no header of its own (no usable boundary) cannot declare one
    if part.children:
        if part.encoding == "binary":  # RFC 2045 §6.4: containers are 7bit/8bit/binary
            edits.append(_header_edit(raw, part, b"8bit"))
        for child in part.children:
            _collect(raw, child, edits)
        return
    if _CONTAINER_TYPE.search(raw, part.header_start, part.body_start):
        return  # a container served as opaque (past the MIME limits): left as it is
    body = raw[part.body_start : part.end]
    if part.encoding == "binary" or (part.encoding in ("7bit", "8bit") and b"\x00" in body):
        edits.append(_header_edit(raw, part, b"base64"))
        edits.append((part.body_start, part.end, _base64_body(body, is_last=part.end == len(raw))))


def _header_edit(raw: bytes, part: Part, encoding: bytes) -> Edit:
    """The part's header with its Content-Transfer-Encoding fields replaced by one."""
    header = raw[part.header_start : part.body_start]
    fields = parse_header_fields(header)
    kept = [one.raw for one in fields if one.name.lower() != "content-transfer-encoding"]
    consumed = sum(len(one.raw) for one in fields)
    terminator = header[consumed:]
    if kept and not kept[-1].endswith(b"\n"):
        kept[-1] += b"\r\n"  # a last field with no line end: the new field needs its own line
    if not terminator.endswith(b"\n"):
        terminator = b"\r\n"  # no empty line: the body is empty, the header now needs one
    kept.append(b"Content-Transfer-Encoding: " + encoding + b"\r\n")
    return part.header_start, part.body_start, b"".join(kept) + terminator


def _base64_body(body: bytes, *, is_last: bool) -> bytes:
    lines = [base64.b64encode(body[offset : offset + _BASE64_LINE])
             for offset in range(0, len(body), _BASE64_LINE)]  # fmt: skip
    # Inside a multipart the line break before the next delimiter belongs to the delimiter
    # (RFC 2046 §5.1.1); at the end of the message the last line ends like any other.
    return b"\r\n".join(lines) + (b"\r\n" if is_last and lines else b"")
