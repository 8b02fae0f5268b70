"""One pass over a spooled message's header section, for every decision made after DATA.

Owns `scan_header` and the author addresses it yields: the number of `Received:` fields
(the loop check, RFC 5321 §6.3), the From, Sender and Reply-To fields read by the one
address parser (mail/originators.py; DMARC's author domain, RFC 7489 §6.6.1, and
SPOOF_PROTECTION), and the byte ranges of `Authentication-Results:` fields that claim our
authserv-id (RFC 8601 §5: removed from the stored copy before ours is added), so the body
is never read and the stored copy is written by skipping ranges.

Invariants: the file is read in pieces of at most `_PIECE` bytes and only the fields
above are kept, so memory does not grow with the header: From/Sender/Reply-To each up to
`ORIGINATOR_FIELD_LIMIT` bytes (above the largest field checks/headers.py accepts, so
every accepted field is parsed whole) and `_ORIGINATOR_BUDGET` in all, A-R fields up to
`_AR_KEEP`. Nothing is decided on a prefix: an originator field cut short is `Unparsable`
(the checks refuse it), and a cut A-R field is removed, since its authserv-id cannot be
read for sure. A field's range runs from its first byte to the end of its last
continuation line (RFC 5322 §2.2.3), so dropping it leaves well-formed neighbours.
The header ends at the first empty line (RFC 5322 §2.1) or at end of file; lines
without a colon are kept as fields, as mail/headers.py (IMAP) reads them. Blocking file
I/O: call it through `asyncio.to_thread`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from postroom.errors import BadSyntax
from postroom.mail.address import normalize_domain
from postroom.mail.headers import unfold
from postroom.mail.originators import (
    AddressList,
    Mailbox,
    ParsedAddresses,
    Unparsable,
    parse_addresses,
)
from postroom.mailauth.authresults import strip_forged_authresults

_PIECE = 64 * 1024
# checks/headers.py refuses fields over 100 KiB; this is above it so that every field
# it lets through is read whole (that check stops at the first line without a colon,
# this scan does not: past such a line the limit below still holds).
ORIGINATOR_FIELD_LIMIT = 128 * 1024
_ORIGINATOR_BUDGET = 512 * 1024  # all From/Sender/Reply-To fields of one message
_AR_KEEP = 64 * 1024  # the authserv-id comes first; a real A-R field is far shorter
_ORIGINATORS = frozenset({b"from", b"sender", b"reply-to"})
_KEPT = _ORIGINATORS | {b"authentication-results"}


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    received_count: int = 0
    from_values: tuple[str, ...] = ()  # unfolded, one per From field (RFC 5322 wants one)
    forged_ranges: tuple[tuple[int, int], ...] = ()  # [start, end) byte offsets
    field_names: frozenset[str] = frozenset()  # lower-cased, e.g. to see a missing Date
    # One parse per field, in order; Unparsable when the field could not be read whole.
    from_fields: tuple[ParsedAddresses, ...] = ()
    sender_fields: tuple[ParsedAddresses, ...] = ()
    reply_to_fields: tuple[ParsedAddresses, ...] = ()


@dataclass(frozen=True, slots=True)
class Author:
    """One mailbox of an originator field; `domain` is "" when missing or not a host
    name (a domain literal, junk)."""

    local: str
    domain: str
    written: str = field(default="", compare=False)  # as in the field, for replies and logs

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


@dataclass(slots=True)
class _Field:
    start: int
    name: bytes
    kept: bytearray = field(default_factory=bytearray)
    is_cut: bool = False  # longer than what is kept of it


class _Scanner:
    def __init__(self, authserv_id: str) -> None:
        self.authserv_id = authserv_id
        self.current: _Field | None = None
        self.received = 0
        self.originator_budget = _ORIGINATOR_BUDGET
        self.from_values: list[str] = []
        self.parsed: dict[bytes, list[ParsedAddresses]] = {name: [] for name in _ORIGINATORS}
        self.forged: list[tuple[int, int]] = []
        self.field_names: set[str] = set()

    def feed(self, offset: int, piece: bytes, is_line_start: bool) -> None:
        if is_line_start and piece[:1] not in (b" ", b"\t"):
            self.finish(offset)
            name = piece.partition(b":")[0].strip().lower()
            self.current = _Field(offset, name)
            self.field_names.add(name.decode("ascii", "replace"))
        current = self.current
        if current is not None and current.name in _KEPT and not current.is_cut:
            self._keep(current, piece)

    def _keep(self, current: _Field, piece: bytes) -> None:
        if current.name in _ORIGINATORS:
            room = min(ORIGINATOR_FIELD_LIMIT - len(current.kept), self.originator_budget)
            self.originator_budget -= min(room, len(piece))
        else:
            room = _AR_KEEP - len(current.kept)
        current.kept += piece[:room]
        current.is_cut = len(piece) > room

    def finish(self, end: int) -> None:
        current, self.current = self.current, None
        if current is None:
            return
        if current.name == b"received":
            self.received += 1
        elif current.name in _ORIGINATORS:
            self.parsed[current.name].append(_parse_field(current))
            if current.name == b"from":
                self.from_values.append(unfold(bytes(current.kept).partition(b":")[2]))
        elif current.name == b"authentication-results" and (
                current.is_cut or _claims_authserv_id(bytes(current.kept), self.authserv_id)):
            self.forged.append((current.start, end))

    def facts(self) -> HeaderFacts:
        return HeaderFacts(self.received, tuple(self.from_values), tuple(self.forged),
                           frozenset(self.field_names), tuple(self.parsed[b"from"]),
                           tuple(self.parsed[b"sender"]), tuple(self.parsed[b"reply-to"]))


def _parse_field(kept: _Field) -> ParsedAddresses:
    name = kept.name.decode("ascii", "replace")
    if kept.is_cut:
        return Unparsable(f"{name} field longer than {ORIGINATOR_FIELD_LIMIT} bytes, or past "
                          f"{_ORIGINATOR_BUDGET} bytes of such fields: not read whole")
    return parse_addresses(unfold(bytes(kept.kept).partition(b":")[2]))


def _claims_authserv_id(header_field: bytes, authserv_id: str) -> bool:
    # strip_forged_authresults removes exactly the fields naming our authserv-id.
    return not strip_forged_authresults(header_field, authserv_id).strip()


def scan_header(source: IO[bytes], authserv_id: str) -> HeaderFacts:
    """The facts of the header section read from `source` (a message from its start)."""
    scanner = _Scanner(authserv_id)
    offset = 0
    is_line_start = True
    while piece := source.readline(_PIECE):
        if is_line_start and piece in (b"\r\n", b"\n"):
            break
        scanner.feed(offset, piece, is_line_start)
        offset += len(piece)
        is_line_start = piece.endswith(b"\n")
    scanner.finish(offset)
    return scanner.facts()


def authors_of(fields: Sequence[ParsedAddresses]) -> list[Author] | None:
    """Every mailbox of every field (RFC 5322 §3.6.2 mailbox-list; RFC 6854 groups
    contribute their members), domains in canonical A-label form (RFC 7489 §6.6.1);
    None when any field is Unparsable: a field read in part names nobody for sure."""
    authors: list[Author] = []
    for parsed in fields:
        if not isinstance(parsed, AddressList):
            return None
        authors.extend(_author(mailbox) for mailbox in parsed.mailboxes)
    return authors


def parse_authors(from_values: Sequence[str]) -> list[Author] | None:
    """`authors_of` the given unfolded From values."""
    return authors_of([parse_addresses(value) for value in from_values])


def _author(mailbox: Mailbox) -> Author:
    return Author(mailbox.local_part.lower(), _domain(mailbox.domain), mailbox.address)


def _domain(host: str | None) -> str:
    if not host:
        return ""
    try:
        return normalize_domain(host)
    except BadSyntax:
        return ""  # an address literal or junk: no DNS domain to evaluate
