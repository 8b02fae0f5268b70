"""Header fixes a submission server makes to a message its user sent (RFC 6409 §8).

Owns: adding `Date` and `Message-ID` when the client left them out (RFC 6409 §8.2, §8.3;
RFC 5322 §3.6 makes Date mandatory and Message-ID a SHOULD). Nothing else is changed —
the message is signed afterwards, and DKIM covers what the recipient sees.

Pure: the caller passes the header field names, the time and, if it wants exact ids
in tests, the id token.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection
from email.utils import format_datetime


def render_message_id(hostname: str, token: str | None = None) -> str:
    """`<token@hostname>`: unique because the token is 128 random bits."""
    return f"<{token or secrets.token_hex(16)}@{hostname}>"


def missing_submission_headers(field_names: Collection[str], *, hostname: str,
                               now: dt.datetime, token: str | None = None,
                               zone: dt.tzinfo = dt.UTC) -> bytes:
    """Header lines (CRLF-terminated) to add so the message has Date and Message-ID.

    `field_names` are the lower-cased names of the message's header fields (the SMTP
    receiver collects them while scanning the header once). Returns b"" when both are
    present. Placement is free: RFC 5322 §3.6 sets no order for these fields. The Date
    is written in `zone` (TZ), with its offset (RFC 5322 §3.3).
    """
    lines = []
    if "date" not in field_names:
        lines.append(f"Date: {format_datetime(now.astimezone(zone))}\r\n")
    if "message-id" not in field_names:
        lines.append(f"Message-ID: {render_message_id(hostname, token)}\r\n")
    return "".join(lines).encode("ascii")
