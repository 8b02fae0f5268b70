"""One pass over a spooled message's header section, for every decision made after DATA.

Owns `scan_header` and the author addresses it yields: the number of `Received:` fields
(the loop check, RFC 5321 §6.3), the `From:` field values (DMARC's author domain,
RFC 7489 §6.6.1, and SPOOF_PROTECTION), and the byte ranges of `Authentication-Results:`
fields that claim our authserv-id (RFC 8601 §5: removed from the stored copy before ours
is added), so the body is never read and the stored copy is written by skipping ranges.

Invariants: the file is read in pieces of at most `_PIECE` bytes and only From and
Authentication-Results fields are kept, each up to `_FIELD_KEEP` bytes, so memory does
not grow with the header; a field's range runs from its first byte to the end of its
last continuation line (RFC 5322 §2.2.3), so dropping it leaves well-formed neighbours.
The header ends at the first empty line (RFC 5322 §2.1) or at end of file. Blocking file
I/O: call it through `asyncio.to_thread`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO

from postroom.errors import BadSyntax
from postroom.mail.address import normalize_domain
from postroom.mail.envelope import MISSING_DOMAIN, parse_address_list
from postroom.mail.headers import unfold
from postroom.mailauth.authresults import strip_forged_authresults

_PIECE = 64 * 1024
# The authserv-id is at the start of the value and From values are short; a longer
# field is junk whose tail decides nothing.
_FIELD_KEEP = 64 * 1024
_KEPT = frozenset({b"from", b"authentication-results"})


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    received_count: int = 0
    from_values: tuple[str, ...] = ()  # unfolded, one per From field (RFC 5322 wants one)
    forged_ranges: tuple[tuple[int, int], ...] = ()  # [start, end) byte offsets
    field_names: frozenset[str] = frozenset()  # lower-cased, e.g. to see a missing Date


@dataclass(frozen=True, slots=True)
class Author:
    """One mailbox of a From field; `domain` is "" when missing or not a host name."""

    local: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


@dataclass(slots=True)
class _Field:
    start: int
    name: bytes
    kept: bytearray = field(default_factory=bytearray)


class _Scanner:
    def __init__(self, authserv_id: str) -> None:
        self.authserv_id = authserv_id
        self.current: _Field | None = None
        self.received = 0
        self.from_values: list[str] = []
        self.forged: list[tuple[int, int]] = []
        self.field_names: set[str] = set()

    def feed(self, offset: int, piece: bytes, is_line_start: bool) -> None:
        if is_line_start and piece[:1] not in (b" ", b"\t"):
            self.finish(offset)
            name = piece.partition(b":")[0].strip().lower()
            self.current = _Field(offset, name)
            self.field_names.add(name.decode("ascii", "replace"))
        current = self.current
        if current is not None and current.name in _KEPT and len(current.kept) < _FIELD_KEEP:
            current.kept += piece[:_FIELD_KEEP - len(current.kept)]

    def finish(self, end: int) -> None:
        current, self.current = self.current, None
        if current is None:
            return
        if current.name == b"received":
            self.received += 1
        elif current.name == b"from":
            self.from_values.append(unfold(bytes(current.kept).partition(b":")[2]))
        elif current.name == b"authentication-results" and _claims_authserv_id(
                bytes(current.kept), self.authserv_id):
            self.forged.append((current.start, end))

    def facts(self) -> HeaderFacts:
        return HeaderFacts(self.received, tuple(self.from_values), tuple(self.forged),
                           frozenset(self.field_names))


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


def parse_authors(from_values: tuple[str, ...]) -> list[Author]:
    """Every mailbox of every From field (RFC 5322 §3.6.2 mailbox-list; RFC 6854 groups
    contribute their members). Domains in canonical A-label form (RFC 7489 §6.6.1)."""
    authors = []
    for value in from_values:
        for _name, _adl, mailbox, host in parse_address_list(value):
            if host is None:
                continue  # a group start or end marker
            authors.append(Author((mailbox or "").lower(), _domain(host)))
    return authors


def _domain(host: str | None) -> str:
    if not host or host == MISSING_DOMAIN:
        return ""
    try:
        return normalize_domain(host)
    except BadSyntax:
        return ""  # an address literal or junk: no DNS domain to evaluate
