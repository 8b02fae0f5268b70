"""What SORT compares about one message (RFC 5256 §3, RFC 5957), from its stored ENVELOPE.

Owns `SortFacts` and `sort_facts(envelope)`: the facts a message's header gives every
header-based sort key, computed once per message (the caller caches them by blob id:
a blob never changes, so neither do they), and `casemap` (i;ascii-casemap, RFC 4790 §9.2).

Invariants:
- Address keys use the first mailbox of the field as `originators.py` read it at
  delivery (the stored ENVELOPE): FROM/TO/CC its addr-mailbox (local part, RFC 5256 §3),
  DISPLAYFROM/DISPLAYTO its display name, RFC 2047-decoded, or else its addr-spec
  (RFC 5957 §3). A field absent or without a mailbox sorts as the empty string.
- SUBJECT is the base subject (mail/basesubject.py) of the RFC 2047-decoded subject.
- The sent date is the Date field in UTC as a POSIX timestamp, None when it is missing
  or unreadable (SORT then uses the internal date, RFC 5256 §3 DATE).
- Every text key is already i;ascii-casemapped: UTF-8 bytes with a-z folded to A-Z,
  compared octet by octet. Sans-IO; never raises.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass
from typing import Any

from postroom.mail.basesubject import base_subject
from postroom.mail.envelope import MISSING_DOMAIN
from postroom.mail.headers import decode_words


@dataclass(frozen=True, slots=True)
class SortFacts:
    sent: float | None
    subject: bytes
    from_mailbox: bytes
    to_mailbox: bytes
    cc_mailbox: bytes
    display_from: bytes
    display_to: bytes


EMPTY_FACTS = SortFacts(None, b"", b"", b"", b"", b"", b"")
# ENVELOPE positions (RFC 9051 §7.5.2): date, subject, from, sender, reply-to, to, cc, ...
_DATE, _SUBJECT, _FROM, _TO, _CC = 0, 1, 2, 5, 6


def casemap(text: str) -> bytes:
    """i;ascii-casemap (RFC 4790 §9.2): only a-z fold; other octets compare as they are."""
    return text.encode("utf-8", "surrogatepass").upper()  # bytes.upper() maps ASCII only


def sort_facts(envelope: list[Any]) -> SortFacts:
    """The facts of a message whose ENVELOPE (mail/envelope.py shape) is `envelope`."""
    first_from = _first_mailbox(envelope[_FROM])
    first_to = _first_mailbox(envelope[_TO])
    first_cc = _first_mailbox(envelope[_CC])
    subject = envelope[_SUBJECT]
    return SortFacts(
        sent=_sent(envelope[_DATE]),
        subject=casemap(base_subject(_decoded(subject))) if subject else b"",
        from_mailbox=casemap(_local(first_from)),
        to_mailbox=casemap(_local(first_to)),
        cc_mailbox=casemap(_local(first_cc)),
        display_from=casemap(_display(first_from)),
        display_to=casemap(_display(first_to)),
    )


def _first_mailbox(addresses: Any) -> list[Any] | None:
    """The first real mailbox of an ENVELOPE address list (group markers skipped)."""
    for address in addresses or ():
        if address[3] is not None:  # a NIL host marks a group's start or end
            return list(address)
    return None


def _local(address: list[Any] | None) -> str:
    return (address[2] or "") if address else ""


def _display(address: list[Any] | None) -> str:
    """RFC 5957 §3: the display name, decoded; without one the addr-spec."""
    if not address:
        return ""
    name = _decoded(address[0]).strip() if address[0] else ""
    if name:
        return name
    local, host = address[2] or "", address[3] or ""
    return f"{local}@{host}" if host and host != MISSING_DOMAIN else local


def _decoded(text: str) -> str:
    """RFC 2047 words decoded; most text has none, and SORT reads 100,000 of them."""
    return decode_words(text) if "=?" in text else text


def _sent(value: str | None) -> float | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": the time is UTC (RFC 5322 §3.3)
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
