"""Trace header rendering: `Received:` (RFC 5321 §4.4) and `Return-Path:` (§4.4, at
final delivery).

Owns the exact bytes of both headers. Invariants: output is CRLF-terminated, folded so
lines stay under 78 columns where a break is possible (RFC 5322 §2.1.1), and contains no
CR, LF or other control characters whatever the client sent as its EHLO name — client-
supplied text is reduced to a safe token before it reaches a header.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from email.utils import format_datetime

FOLD_AT = 78
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


@dataclass(frozen=True, slots=True)
class TraceInfo:
    client_name: str  # HELO/EHLO argument as sent
    client_ip: str
    hostname: str  # our host name
    protocol: str  # RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA
    queue_id: str
    when: dt.datetime  # timezone-aware
    tls_version: str = ""  # e.g. "TLSv1.3"
    tls_cipher: str = ""
    tls_bits: int = 0
    recipient: str = ""  # "for <…>" only when the message has exactly one recipient


def sanitize_token(text: str, limit: int = 255) -> str:
    """Client-supplied text reduced to characters safe in a header token."""
    cleaned = _UNSAFE.sub("", text)[:limit]
    return cleaned or "unknown"


def address_literal(ip: str) -> str:
    """RFC 5321 §4.1.3: `[192.0.2.1]`, `[IPv6:2001:db8::1]`."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "[" + sanitize_token(ip) + "]"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"[{address.ipv4_mapped}]"
        return f"[IPv6:{address.compressed}]"
    return f"[{address}]"


def fold(name: str, words: list[str]) -> bytes:
    """`Name: word word …`, breaking lines between words before FOLD_AT columns. A word
    longer than a line stays whole (RFC 5322 §2.2.3 folds only at whitespace)."""
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) < FOLD_AT:
            lines[-1] += " " + word
        else:
            lines.append("\t" + word)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def render_received(info: TraceInfo, *, zone: dt.tzinfo = dt.UTC) -> bytes:
    """The Received field; its date in `zone` (TZ: clock.display_zone), RFC 5322 §3.3."""
    clauses = [f"from {sanitize_token(info.client_name)} ({address_literal(info.client_ip)})"]
    if info.tls_version:
        bits = f" ({info.tls_bits} bits)" if info.tls_bits else ""
        clauses.append(f"(using {sanitize_token(info.tls_version)} with cipher "
                       f"{sanitize_token(info.tls_cipher)}{bits})")
    clauses.append(f"by {info.hostname} (postroom) with {info.protocol} id {info.queue_id}")
    if info.recipient:
        clauses.append(f"for <{_safe_address(info.recipient)}>;")
    else:
        clauses[-1] += ";"
    clauses.append(format_datetime(info.when.astimezone(zone)))
    return fold("Received", [word for clause in clauses for word in clause.split(" ")])


def render_return_path(sender: str) -> bytes:
    """`Return-Path: <sender>` (`<>` for the null sender), added at final delivery."""
    return f"Return-Path: <{_safe_address(sender)}>\r\n".encode()


def _safe_address(address: str) -> str:
    # Addresses come from the SMTP parser, which never lets CR/LF through; this is a
    # second line of defence against header injection, not the first.
    return "".join(char for char in address if char >= " " and char != "\x7f")
