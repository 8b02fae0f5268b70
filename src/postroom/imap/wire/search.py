"""SEARCH criteria grammar (RFC 9051 §6.4.4, RFC 3501 §6.4.4) → a tree of frozen dataclasses.

Owns: the `SearchKey` node types and `parse_search_criteria(lx, charset=...)`; the CHARSET
names it decodes (`charset_codec`); RFC 9394 partial ranges; and the ESEARCH lines SEARCH
and SORT answer with (`render_esearch_data`, `ordered_set`).

Also owns `count_keys` (what MAX_SEARCH_KEYS counts) and `normalise_criteria` (the
program with repeated keys gone, issue 25), both pure functions over any tree.

Invariants:
- The tree is pure data; evaluating it against messages is the command layer's job.
- Parsing is linear in the command's length; the framer bounds a command's text (64 KiB
  without its literals), so a program has at most ~32,000 keys and ~32,000 sequence
  ranges however it is written. How many keys are *evaluated* is the handler's limit.
- `normalise_criteria` never changes which messages match: it flattens nested ANDs and
  ORs, drops repeated operands, cancels NOT NOT and folds NOT into flag keys. Equality
  of nodes is dataclass equality, so it works on any leaf types (the command layer
  runs it again over its prepared leaves).
- A criteria list of several keys becomes `AndKey`; rev1 shorthands expand to the same
  nodes (NEW = RECENT UNSEEN, OLD = NOT RECENT, UNSEEN = FlagKey("\\Seen", False)).
- BCC/CC/FROM/SUBJECT/TO are `HeaderKey` with the canonical field name; BCC/CC/FROM/TO
  are marked `is_address` (matched against the parsed addresses, not the raw field).
- Strings decode as UTF-8 for charset UTF-8/US-ASCII (or none), else with the Python
  codec `charset_codec` finds for the name (ISO-8859-*, Windows-125*, KOI8-R, GBK, Big5,
  Shift_JIS, EUC-*, ...); bytes that do not decode in it are BAD. For a name no codec
  knows they decode as ISO-8859-1 so parsing never fails on them: the handler answers
  NO [BADCHARSET] (RFC 9051 §6.4.4) by asking `charset_codec` again.
- `PartialRange` is RFC 9394's partial-range (SEARCH/SORT RETURN (PARTIAL ..), UID FETCH
  (PARTIAL ..)); `pick` selects its part of an ordered result.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from postroom.imap.wire.grammar import (
    SequenceSet,
    looks_like_sequence_set,
    parse_date,
    parse_flag,
    parse_sequence_set,
)
from postroom.imap.wire.lexer import ATOM_CHARS, MAX_NUMBER, MAX_NUMBER64, Lexer, ParseError

UTF8_CHARSETS = frozenset({"UTF-8", "US-ASCII"})
MAX_CHARSET_NAME = 64  # longer names are no charset any codec knows: BADCHARSET unread
# Python codecs that are text encodings in name only: they decode escapes or IDNA, which
# no mail client means by a charset (RFC 2978 names are what CHARSET carries).
# (Names as `CodecInfo.name` spells them.)
_NOT_CHARSETS = frozenset({"undefined", "unicode-escape", "raw-unicode-escape", "idna",
                           "punycode", "mbcs", "oem"})  # fmt: skip
MAX_DEPTH = 64  # bound recursion on hostile nesting like "NOT NOT NOT ..." or "((((("


@dataclass(frozen=True, slots=True)
class SearchKey:
    """Base of every criteria node."""


@dataclass(frozen=True, slots=True)
class AllKey(SearchKey):
    pass


@dataclass(frozen=True, slots=True)
class FlagKey(SearchKey):
    """Message has (`is_set`) or lacks flag/keyword `flag` (\\Seen, $Forwarded, ...)."""

    flag: str
    is_set: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey(SearchKey):
    """Header `field` contains `value` (case-insensitive substring; "" matches presence).
    `is_address`: BCC/CC/FROM/TO, matched against the addresses as parsed (a comment
    inside an address is no part of it), not against the field as written."""

    field: str
    value: str
    is_address: bool = False


@dataclass(frozen=True, slots=True)
class BodyKey(SearchKey):
    text: str


@dataclass(frozen=True, slots=True)
class TextKey(SearchKey):
    """Header or body contains `text`."""

    text: str


class DateField(Enum):
    INTERNAL = "INTERNAL"  # BEFORE ON SINCE: internal date, timezone ignored
    SENT = "SENT"  # SENTBEFORE SENTON SENTSINCE: the Date: header
    SAVED = "SAVED"  # SAVEDBEFORE SAVEDON SAVEDSINCE: the save date (RFC 8514 §3)


class DateOp(Enum):
    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


@dataclass(frozen=True, slots=True)
class DateKey(SearchKey):
    field: DateField
    op: DateOp
    date: dt.date


@dataclass(frozen=True, slots=True)
class SizeKey(SearchKey):
    """RFC822.SIZE larger (`is_larger`) or smaller than `size`."""

    is_larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class SequenceKey(SearchKey):
    """Message sequence numbers; `sequence_set.is_saved` means `$` (RFC 5182)."""

    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class UidKey(SearchKey):
    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class ModSeqKey(SearchKey):
    """RFC 7162 §3.1.5: mod-sequence >= `modseq`; entry name/type are informational."""

    modseq: int
    entry_name: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectIdKey(SearchKey):
    """RFC 8474 §6: EMAILID or THREADID equal to `value` (an objectid)."""

    is_thread: bool
    value: str


@dataclass(frozen=True, slots=True)
class WithinKey(SearchKey):
    """RFC 5032: OLDER/YOUNGER n seconds relative to the internal date."""

    is_older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class AndKey(SearchKey):
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class OrKey(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class NotKey(SearchKey):
    key: SearchKey


_FLAG_WORDS = {
    "ANSWERED": FlagKey("\\Answered"),
    "DELETED": FlagKey("\\Deleted"),
    "DRAFT": FlagKey("\\Draft"),
    "FLAGGED": FlagKey("\\Flagged"),
    "SEEN": FlagKey("\\Seen"),
    "RECENT": FlagKey("\\Recent"),  # rev1 only, harmless to accept
    "UNANSWERED": FlagKey("\\Answered", False),
    "UNDELETED": FlagKey("\\Deleted", False),
    "UNDRAFT": FlagKey("\\Draft", False),
    "UNFLAGGED": FlagKey("\\Flagged", False),
    "UNSEEN": FlagKey("\\Seen", False),
    "ALL": AllKey(),
    # RFC 3501 §6.4.4: NEW = RECENT UNSEEN, OLD = NOT RECENT.
    "NEW": AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", False))),
    "OLD": FlagKey("\\Recent", False),
    # RFC 8514 §3: every message of a mailbox that keeps save dates; ours all do.
    "SAVEDATESUPPORTED": AllKey(),
}
_HEADER_WORDS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_WORDS = {
    "BEFORE": (DateField.INTERNAL, DateOp.BEFORE),
    "ON": (DateField.INTERNAL, DateOp.ON),
    "SINCE": (DateField.INTERNAL, DateOp.SINCE),
    "SENTBEFORE": (DateField.SENT, DateOp.BEFORE),
    "SENTON": (DateField.SENT, DateOp.ON),
    "SENTSINCE": (DateField.SENT, DateOp.SINCE),
    "SAVEDBEFORE": (DateField.SAVED, DateOp.BEFORE),
    "SAVEDON": (DateField.SAVED, DateOp.ON),
    "SAVEDSINCE": (DateField.SAVED, DateOp.SINCE),
}


class _SearchParser:
    __slots__ = ("codec", "lx")

    def __init__(self, lx: Lexer, charset: str | None) -> None:
        self.lx = lx
        # A name no codec knows: strings read as ISO-8859-1, the handler says BADCHARSET.
        self.codec = charset_codec(charset or "UTF-8") or "latin-1"

    def text(self) -> str:
        self.lx.expect_sp()
        raw = self.lx.read_astring()
        try:
            return raw.decode(self.codec)
        except UnicodeDecodeError as exc:
            raise ParseError(f"search string is not valid {self.codec}") from exc

    def key(self, depth: int) -> SearchKey:
        if depth > MAX_DEPTH:
            raise ParseError("search criteria nested too deeply")
        lx = self.lx
        if lx.peek() == 0x28:  # "(" search-key *(SP search-key) ")"
            keys = lx.read_list(lambda: self.key(depth + 1), allow_empty=False)
            return keys[0] if len(keys) == 1 else AndKey(tuple(keys))
        if looks_like_sequence_set(lx):
            return SequenceKey(parse_sequence_set(lx))
        word = lx.read_atom(ATOM_CHARS).upper()
        if word in _FLAG_WORDS:
            return _FLAG_WORDS[word]
        handler = self._handlers().get(word)
        if handler is None:
            raise ParseError(f"unknown search key {word}")
        return handler(depth)

    def _handlers(self) -> dict[str, Callable[[int], SearchKey]]:
        return {
            **{word: self._header_word(word) for word in _HEADER_WORDS},
            **{word: self._date_word(word) for word in _DATE_WORDS},
            "BODY": lambda _d: BodyKey(self.text()),
            "TEXT": lambda _d: TextKey(self.text()),
            "HEADER": lambda _d: self._header(),
            "KEYWORD": lambda _d: FlagKey(self._keyword()),
            "UNKEYWORD": lambda _d: FlagKey(self._keyword(), False),
            "LARGER": lambda _d: SizeKey(True, self._number()),
            "SMALLER": lambda _d: SizeKey(False, self._number()),
            "NOT": lambda d: NotKey(self._sp_key(d)),
            "OR": lambda d: OrKey(self._sp_key(d), self._sp_key(d)),
            "UID": lambda _d: UidKey(self._sequence_set()),
            "MODSEQ": lambda _d: self._modseq(),
            "OLDER": lambda _d: WithinKey(True, self._nz_number()),
            "YOUNGER": lambda _d: WithinKey(False, self._nz_number()),
            "EMAILID": lambda _d: ObjectIdKey(False, self._objectid()),
            "THREADID": lambda _d: ObjectIdKey(True, self._objectid()),
        }

    def _objectid(self) -> str:
        """RFC 8474 §3: objectid = 1*255(ALPHA / DIGIT / "_" / "-")."""
        self.lx.expect_sp()
        value = self.lx.read_atom()
        if not 1 <= len(value) <= 255 or not all(c.isalnum() or c in "_-" for c in value) \
                or not value.isascii():
            raise ParseError("an object id is 1 to 255 letters, digits, - or _")
        return value

    def _header_word(self, word: str) -> Callable[[int], SearchKey]:
        is_address = word != "SUBJECT"
        return lambda _d: HeaderKey(_HEADER_WORDS[word], self.text(), is_address)

    def _date_word(self, word: str) -> Callable[[int], SearchKey]:
        field, op = _DATE_WORDS[word]

        def parse(_depth: int) -> SearchKey:
            self.lx.expect_sp()
            return DateKey(field, op, parse_date(self.lx))

        return parse

    def _sp_key(self, depth: int) -> SearchKey:
        self.lx.expect_sp()
        return self.key(depth + 1)

    def _header(self) -> SearchKey:
        field = self.text()  # header-fld-name = astring
        return HeaderKey(field, self.text())

    def _keyword(self) -> str:
        self.lx.expect_sp()
        return parse_flag(self.lx)

    def _number(self) -> int:
        self.lx.expect_sp()
        return self.lx.read_number(MAX_NUMBER64)

    def _nz_number(self) -> int:
        self.lx.expect_sp()
        return self.lx.read_nz_number()

    def _sequence_set(self) -> SequenceSet:
        self.lx.expect_sp()
        return parse_sequence_set(self.lx)

    def _modseq(self) -> SearchKey:
        # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
        lx = self.lx
        lx.expect_sp()
        if lx.peek() == 0x22:
            name = lx.read_quoted().decode("utf-8", "replace")
            lx.expect_sp()
            entry_type = lx.read_atom().lower()
            if entry_type not in ("priv", "shared", "all"):
                raise ParseError("bad MODSEQ entry type")
            lx.expect_sp()
            return ModSeqKey(lx.read_number(MAX_NUMBER64), name, entry_type)
        return ModSeqKey(lx.read_number(MAX_NUMBER64))


def charset_codec(name: str) -> str | None:
    """The Python codec for a CHARSET name (RFC 9051 §6.4.4), or None when none fits:
    unknown names, over-long names, and codecs that are not text encodings."""
    if name.upper() in UTF8_CHARSETS:
        return "utf-8"
    if len(name) > MAX_CHARSET_NAME or not name.isascii():
        return None
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    # CodecInfo._is_text_encoding is how the codecs module itself tells text encodings
    # from bytes transforms such as base64 or zlib (str.encode refuses those the same way).
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def parse_search_criteria(lx: Lexer, *, charset: str | None = None) -> SearchKey:
    """Parse 1*(SP-separated search-key) up to the end of the command."""
    parser = _SearchParser(lx, charset)
    keys = [parser.key(0)]
    while not lx.at_end():
        lx.expect_sp()
        keys.append(parser.key(0))
    return keys[0] if len(keys) == 1 else AndKey(tuple(keys))


# -- size and normal form ---------------------------------------------------------------------
def count_keys(key: SearchKey) -> int:
    """Keys and operators in a program as parsed: every leaf, NOT, OR and parenthesised
    list counts one; the implicit conjunction of the top-level keys does not (so
    `SEARCH SEEN` is 1, `SEARCH SEEN SEEN` 2, `NEW` = (RECENT UNSEEN) 3)."""
    if isinstance(key, AndKey):
        return sum(_count(part) for part in key.keys)
    return _count(key)


def _count(key: SearchKey) -> int:
    if isinstance(key, AndKey):
        return 1 + sum(_count(part) for part in key.keys)
    if isinstance(key, OrKey):
        return 1 + _count(key.left) + _count(key.right)
    if isinstance(key, NotKey):
        return 1 + _count(key.key)
    return 1


def normalise_criteria(key: SearchKey) -> SearchKey:
    """The same program without repetition (see the module invariants): `SEEN SEEN …`
    becomes `SEEN`, `OR a OR a a` becomes `a`, `NOT NOT a` becomes `a`, and a long
    disjunction is rebuilt as a balanced tree (depth log2 n, not n)."""
    if isinstance(key, AndKey):
        parts: dict[SearchKey, None] = {}
        for part in key.keys:
            normal = normalise_criteria(part)
            for leaf in normal.keys if isinstance(normal, AndKey) else (normal,):
                parts[leaf] = None
        if len(parts) > 1:
            parts.pop(AllKey(), None)  # ALL is the identity of AND
        return _conjunction(tuple(parts))
    if isinstance(key, OrKey):
        options: dict[SearchKey, None] = {}
        _collect_or(key, options)
        if AllKey() in options:
            return AllKey()
        return _balanced_or(tuple(options))
    if isinstance(key, NotKey):
        inner = normalise_criteria(key.key)
        if isinstance(inner, NotKey):
            return inner.key
        if isinstance(inner, FlagKey):
            return FlagKey(inner.flag, not inner.is_set)
        return NotKey(inner)
    return key


def _conjunction(parts: tuple[SearchKey, ...]) -> SearchKey:
    return parts[0] if len(parts) == 1 else AndKey(parts)


def _collect_or(key: SearchKey, into: dict[SearchKey, None]) -> None:
    if isinstance(key, OrKey):
        _collect_or(key.left, into)
        _collect_or(key.right, into)
        return
    normal = normalise_criteria(key)
    if isinstance(normal, OrKey):  # e.g. NOT NOT (OR a b)
        _collect_or(normal, into)
    else:
        into[normal] = None


def _balanced_or(options: tuple[SearchKey, ...]) -> SearchKey:
    if len(options) == 1:
        return options[0]
    middle = len(options) // 2
    return OrKey(_balanced_or(options[:middle]), _balanced_or(options[middle:]))


# -- RFC 9394 partial ranges ----------------------------------------------------------------
_PARTIAL_RANGE = re.compile(r"(-?)([1-9][0-9]{0,9}):(-?)([1-9][0-9]{0,9})")


@dataclass(frozen=True, slots=True)
class PartialRange:
    """RFC 9394 §4 partial-range: positions `low`..`high` (1-based, low <= high) counted
    from the first result, or from the last one when `from_end` (`-1:-100`)."""

    low: int
    high: int
    from_end: bool = False

    def render(self) -> str:
        sign = "-" if self.from_end else ""
        return f"{sign}{self.low}:{sign}{self.high}"

    def pick(self, ordered: Sequence[int]) -> Sequence[int]:
        """The results at these positions, in their order in `ordered` (RFC 9394 §3.1:
        positions beyond the results give fewer, or none)."""
        if not self.from_end:
            return ordered[self.low - 1 : self.high]
        count = len(ordered)
        start = max(0, count - self.high)
        end = max(0, count - self.low + 1)
        return ordered[start:end]


def parse_partial_range(lx: Lexer) -> PartialRange:
    """partial-range-first = nz-number ":" nz-number / partial-range-last = MINUS nz-number
    ":" MINUS nz-number (RFC 9394 §4); `500:400` is `400:500`; no `*`, no mixed signs."""
    word = lx.read_atom()
    match = _PARTIAL_RANGE.fullmatch(word)
    if match is None or match.group(1) != match.group(3):
        raise ParseError("bad partial range")
    first, last = int(match.group(2)), int(match.group(4))
    if max(first, last) > MAX_NUMBER:
        raise ParseError("partial range out of range")
    return PartialRange(min(first, last), max(first, last), match.group(1) == "-")


# -- ESEARCH answers (RFC 4731 §3.1, RFC 5267 §3.2 and §4.3, RFC 9394 §3.1) ------------------
def ordered_set(values: Sequence[int]) -> str:
    """A sequence-set keeping the order of `values` (ESORT ALL, RFC 5267 §3.2): only
    ascending neighbours share a range, so `3 1 2` is `3,1:2`, never `1:3`."""
    parts: list[str] = []
    index = 0
    while index < len(values):
        end = index
        while end + 1 < len(values) and values[end + 1] == values[end] + 1:
            end += 1
        low, high = values[index], values[end]
        parts.append(str(low) if low == high else f"{low}:{high}")
        index = end + 1
    return ",".join(parts)


def render_esearch_data(tag: str | None, *, is_uid: bool, items: Sequence[tuple[str, str]]
                        ) -> bytes:  # fmt: skip
    """`* ESEARCH [(TAG "t")] [UID] name value ...`; `items` are rendered (name, value)
    pairs in the order given. Tags are ASTRING-CHARs without quotes or backslashes
    (RFC 9051 §9 tag), so quoting them needs no escapes."""
    out = ["* ESEARCH"]
    if tag is not None:
        out.append(f'(TAG "{tag}")')
    if is_uid:
        out.append("UID")
    out.extend(f"{name} {value}" for name, value in items)
    return " ".join(out).encode("ascii") + b"\r\n"
