"""Test messages and a tiny IMAP response-list parser to check structure, not just bytes."""

from __future__ import annotations

import base64
import re
from typing import Any

PDF = b"%PDF-1.4\x00\x01\x02binary\xff\xfe" * 3
PDF_B64 = base64.encodebytes(PDF).replace(b"\n", b"\r\n")

NESTED = (
    b"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jurgen@example.de>\r\n"
    b"To: Alice <alice@example.test>, bob@example.test\r\n"
    b'Cc: "Team, Core" <team@example.test>\r\n'
    b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
    b"Date: Tue, 05 Mar 2024 10:00:00 +0100\r\n"
    b"Message-ID: <nested@example.de>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"This is a preamble.\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=C3=BC=C3=9Fe, the numbers are in the report.\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Gruesse</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="report.pdf"\r\n'
    b'Content-Disposition: attachment; filename="report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + PDF_B64 +
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@example.org\r\n"
    b"Subject: forwarded\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--outer--\r\n"
)

_TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n|([^\s()"]+))')


def parse_list(data: bytes) -> Any:
    """Parse one parenthesised IMAP value (strings, literals, NIL, numbers, atoms)."""
    value, end = _parse(data, 0)
    assert not data[end:].strip(), data[end:]
    return value


def _parse(data: bytes, pos: int) -> tuple[Any, int]:
    match = _TOKEN.match(data, pos)
    assert match, data[pos:]
    pos = match.end()
    if match.group(1):
        items = []
        while True:
            close = re.compile(rb"\s*\)").match(data, pos)
            if close:
                return items, close.end()
            item, pos = _parse(data, pos)
            items.append(item)
    if match.group(3) is not None:
        return match.group(3).decode(), pos
    if match.group(4):
        size = int(match.group(4))
        return data[pos : pos + size], pos + size
    atom = match.group(5)
    if atom == b"NIL":
        return None, pos
    return (int(atom) if atom.isdigit() else atom.decode()), pos
