"""Shared IMAP productions (RFC 9051 §9, RFC 3501 §9): tag, sequence sets, flags, dates,
date-times and mailbox names.

Owns: `SequenceSet` (the value object for sequence/UID sets, parsed and rendered here and
reused by responses for COPYUID/ESEARCH/VANISHED), and `parse_*` functions that each take a
`Lexer` positioned at the production and leave it just after it.

Invariants:
- Mailbox names come out as Unicode `str`: UTF-8 on the wire when the client ENABLEd
  UTF8=ACCEPT or IMAP4rev2 (RFC 9051 §5.1, RFC 6855 §3), modified UTF-7 otherwise
  (RFC 3501 §5.1.3). "INBOX" in any case comes out as "INBOX" (RFC 9051 §5.1).
- System flags come out in canonical case (`\\seen` → `\\Seen`); keywords as sent.
- Dates are `datetime.date`; date-times are timezone-aware `datetime.datetime`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from postroom.imap.wire.lexer import (
    ASTRING_CHARS,
    ATOM_CHARS,
    DIGITS,
    LIST_CHARS,
    Lexer,
    ParseError,
    decode_text,
)
from postroom.mail.utf7 import Utf7Error, decode_utf7

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name.upper(): index + 1 for index, name in enumerate(MONTHS)}
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
_SYSTEM_FLAG_CASE = {flag.upper(): flag for flag in SYSTEM_FLAGS}
_TAG_CHARS = ASTRING_CHARS - {ord("+")}  # RFC 9051 §9 tag


Range = tuple[int | None, int | None]  # None stands for "*"


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A sequence-set (RFC 9051 §9) or the saved search result `$` (RFC 5182 §2).

    `ranges` keeps the client's order; `None` is `*`. A single number n is (n, n).
    `resolve(largest)` gives sorted, merged, inclusive (low, high) pairs.
    """

    ranges: tuple[Range, ...] = ()
    is_saved: bool = False

    @classmethod
    def saved(cls) -> SequenceSet:
        return cls((), is_saved=True)

    @classmethod
    def from_values(cls, values: Iterable[int]) -> SequenceSet:
        """Compress numbers into ranges: [1, 2, 3, 5] → 1:3,5 (RFC 4731 §3.1 style)."""
        ranges: list[Range] = []
        for value in sorted(set(values)):
            if ranges and ranges[-1][1] == value - 1:
                ranges[-1] = (ranges[-1][0], value)
            else:
                ranges.append((value, value))
        return cls(tuple(ranges))

    @property
    def uses_star(self) -> bool:
        return any(low is None or high is None for low, high in self.ranges)

    def render(self) -> str:
        if self.is_saved:
            return "$"
        return ",".join(_render_range(low, high) for low, high in self.ranges)

    def __str__(self) -> str:
        return self.render()

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Replace `*` by `largest`, order each range, drop values below 1, merge.

        RFC 9051 §6.4.8: `559:*` includes the largest value even if 559 is above it.
        Raises ValueError for `$`: the caller substitutes its saved result first.
        """
        if self.is_saved:
            raise ValueError("the saved result $ must be substituted by the caller")
        spans: list[tuple[int, int]] = []
        for low, high in self.ranges:
            a = largest if low is None else low
            b = largest if high is None else high
            a, b = min(a, b), max(a, b)
            if b >= 1:
                spans.append((max(a, 1), b))
        return _merge(spans)

    def contains(self, value: int, largest: int) -> bool:
        return any(low <= value <= high for low, high in self.resolve(largest))

    def values(self, largest: int) -> Iterator[int]:
        for low, high in self.resolve(largest):
            yield from range(low, high + 1)


def _render_range(low: int | None, high: int | None) -> str:
    left = "*" if low is None else str(low)
    if low == high:
        return left
    return f"{left}:{'*' if high is None else high}"


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


# -- tag, sequence sets -----------------------------------------------------------------------
def parse_tag(lx: Lexer) -> str:
    return lx.read_atom(_TAG_CHARS)


def _parse_seq_number(lx: Lexer) -> int | None:
    if lx.skip(b"*"):
        return None
    return lx.read_nz_number()  # RFC 9051 §9 seq-number = nz-number / "*"


def parse_sequence_set(lx: Lexer) -> SequenceSet:
    """sequence-set = (seq-number / seq-range) ["," sequence-set]; or "$" (RFC 5182)."""
    if lx.skip(b"$"):
        return SequenceSet.saved()
    ranges: list[Range] = []
    while True:
        low = _parse_seq_number(lx)
        high = _parse_seq_number(lx) if lx.skip(b":") else low
        ranges.append((low, high))
        if not lx.skip(b","):
            return SequenceSet(tuple(ranges))


def looks_like_sequence_set(lx: Lexer) -> bool:
    byte = lx.peek()
    return byte is not None and (byte in DIGITS or byte in b"*$")


# -- flags ------------------------------------------------------------------------------------
def parse_flag(lx: Lexer) -> str:
    """flag = "\\" atom / atom (RFC 9051 §9 flag, flag-keyword, flag-extension)."""
    if lx.skip(b"\\"):
        name = "\\" + lx.read_atom()
        return _SYSTEM_FLAG_CASE.get(name.upper(), name)
    return lx.read_atom()


def parse_flag_list(lx: Lexer) -> tuple[str, ...]:
    """flag-list = "(" [flag *(SP flag)] ")"."""
    return tuple(lx.read_list(lambda: parse_flag(lx)))


# -- dates --------------------------------------------------------------------------------------
def _parse_month(lx: Lexer) -> int:
    raw = lx.buf[lx.pos : lx.pos + 3].decode("ascii", "replace").upper()
    if raw not in _MONTH_NUMBER:
        raise ParseError("bad month name")
    lx.pos += 3
    return _MONTH_NUMBER[raw]


def _fixed_digits(lx: Lexer, count: int) -> int:
    raw = lx.buf[lx.pos : lx.pos + count]
    if len(raw) != count or any(byte not in DIGITS for byte in raw):
        raise ParseError("expected digits")
    lx.pos += count
    return int(raw)


def _make_date(year: int, month: int, day: int) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise ParseError("no such date") from exc


def parse_date(lx: Lexer) -> dt.date:
    """date = date-text / DQUOTE date-text DQUOTE; date-text = 1*2DIGIT "-" Mon "-" 4DIGIT."""
    is_quoted = lx.skip(b'"')
    day = lx.read_number(99)
    lx.expect(b"-")
    month = _parse_month(lx)
    lx.expect(b"-")
    year = _fixed_digits(lx, 4)
    if is_quoted:
        lx.expect(b'"')
    return _make_date(year, month, day)


def parse_date_time(lx: Lexer) -> dt.datetime:
    """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE."""
    lx.expect(b'"')
    day = _fixed_digits(lx, 1) if lx.skip(b" ") else _fixed_digits(lx, 2)
    lx.expect(b"-")
    month = _parse_month(lx)
    lx.expect(b"-")
    year = _fixed_digits(lx, 4)
    lx.expect_sp()
    hour, minute, second = _fixed_digits(lx, 2), 0, 0
    lx.expect(b":")
    minute = _fixed_digits(lx, 2)
    lx.expect(b":")
    second = _fixed_digits(lx, 2)
    lx.expect_sp()
    sign = -1 if lx.skip(b"-") else 1
    if sign == 1:
        lx.expect(b"+")
    zone = _fixed_digits(lx, 4)
    lx.expect(b'"')
    if hour > 23 or minute > 59 or second > 60 or zone % 100 > 59:
        raise ParseError("bad time of day")
    offset = dt.timedelta(hours=zone // 100, minutes=zone % 100) * sign
    day_value = _make_date(year, month, day)
    return dt.datetime(
        day_value.year, day_value.month, day_value.day, hour, minute, min(second, 59),
        tzinfo=dt.timezone(offset),
    )


# -- mailbox names -----------------------------------------------------------------------------
def decode_mailbox(raw: bytes, *, is_utf8: bool) -> str:
    """Decode a mailbox name's wire bytes (see module invariants) and normalise INBOX."""
    if is_utf8:
        name = decode_text(raw)
    else:
        try:
            name = decode_utf7(raw.decode("ascii"))
        except (UnicodeDecodeError, Utf7Error) as exc:
            raise ParseError("mailbox name is not valid modified UTF-7") from exc
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise ParseError("control character in mailbox name")
    # ASCII case only: "ınbox".upper() is "INBOX" as well, but it is another name.
    return "INBOX" if name.isascii() and name.upper() == "INBOX" else name


def parse_mailbox(lx: Lexer, *, is_utf8: bool) -> str:
    """mailbox = "INBOX" / astring (RFC 9051 §9)."""
    return decode_mailbox(lx.read_astring(), is_utf8=is_utf8)


def parse_list_mailbox(lx: Lexer, *, is_utf8: bool) -> str:
    """list-mailbox = 1*list-char / string: a pattern that may hold % and * (§6.3.9)."""
    is_string = lx.peek() in (0x22, 0x7B)
    raw = lx.read_string() if is_string else lx.read_atom(LIST_CHARS).encode("ascii")
    # Patterns are decoded like names; "%" and "*" are printable ASCII so survive UTF-7.
    return decode_mailbox(raw, is_utf8=is_utf8)


def is_atom_text(text: str) -> bool:
    """True when `text` can be sent as an atom (used by the serializer)."""
    return bool(text) and all(ord(ch) < 0x80 and ord(ch) in ATOM_CHARS for ch in text)
