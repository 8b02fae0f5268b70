"""Header fixes a submission server makes to a message its user sent (RFC 6409 §8).

Owns: adding `Date` and `Message-ID` when the client left them out (RFC 6409 §8.2, §8.3;
RFC 5322 §3.6 makes Date mandatory and Message-ID a SHOULD). Nothing else is changed —
the message is signed afterwards, and DKIM covers what the recipient sees.

Pure: the caller passes the time and, if it wants exact ids in tests, the id token.
"""

from __future__ import annotations

import datetime as dt
import secrets
from email.utils import format_datetime

from postroom.mail.headers import find_body_start, parse_header_fields


def render_message_id(hostname: str, token: str | None = None) -> str:
    """`<token@hostname>`: unique because the token is 128 random bits."""
    return f"<{token or secrets.token_hex(16)}@{hostname}>"


def missing_submission_headers(raw: bytes, *, hostname: str, now: dt.datetime,
                               token: str | None = None) -> bytes:
    """Header lines (CRLF-terminated) to prepend so the message has Date and Message-ID.

    Returns b"" when both are present. Prepending is safe: RFC 5322 §3.6 sets no order
    for these fields, and trace fields added later go above them anyway.
    """
    header = raw[: find_body_start(raw)]
    names = {field.name.strip().lower() for field in parse_header_fields(header)}
    lines = []
    if "date" not in names:
        lines.append(f"Date: {format_datetime(now.astimezone(dt.UTC))}\r\n")
    if "message-id" not in names:
        lines.append(f"Message-ID: {render_message_id(hostname, token)}\r\n")
    return "".join(lines).encode("ascii")


def complete_submission(raw: bytes, *, hostname: str, now: dt.datetime,
                        token: str | None = None) -> bytes:
    """The message with any missing Date/Message-ID added (see above)."""
    return missing_submission_headers(raw, hostname=hostname, now=now, token=token) + raw
