"""IMAP commands as frozen dataclasses, and `parse_command(frame)` (RFC 9051 §6, RFC 3501 §6).

Owns: one dataclass per command (all subclasses of `Command`, which carries `tag`) and the
parser registry that turns one framed command (see `lexer`) into one of them.

Invariants:
- `parse_command` returns a `Command` or raises `ParseError` whose `tag` is set whenever the
  tag was readable, so the caller can answer `tag BAD ...` (or `* BAD` when it is None).
- Mailbox names are decoded Unicode (`grammar.decode_mailbox`); `is_utf8` selects UTF-8
  (after ENABLE UTF8=ACCEPT / IMAP4rev2) or modified UTF-7.
- UID FETCH/STORE/COPY/MOVE/SEARCH are the plain dataclasses with `is_uid=True`;
  UID EXPUNGE is `UidExpunge` (RFC 9051 §6.4.9).
- Parsing never consults mailbox state: semantic checks (is `*` valid in an empty mailbox,
  is VANISHED allowed without ENABLE QRESYNC, is the charset supported, is a flag
  settable) are the handlers'.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from postroom.imap.wire.fetch import FetchAttribute, parse_fetch_attributes
from postroom.imap.wire.grammar import (
    SequenceSet,
    parse_date_time,
    parse_flag,
    parse_flag_list,
    parse_list_mailbox,
    parse_mailbox,
    parse_sequence_set,
    parse_tag,
)
from postroom.imap.wire.lexer import MAX_NUMBER64, Lexer, ParseError, decode_text
from postroom.imap.wire.search import SearchKey, parse_search_criteria

STATUS_ITEMS = frozenset(
    {
        "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
        "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID",
    }
)
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})


# -- dataclasses ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    tag: str


@dataclass(frozen=True, slots=True)
class Capability(Command):
    pass


@dataclass(frozen=True, slots=True)
class Noop(Command):
    pass


@dataclass(frozen=True, slots=True)
class Logout(Command):
    pass


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    pass


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """`initial_response` is the decoded SASL-IR (RFC 4959): b"" for "=", None if absent."""

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Login(Command):
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Enable(Command):
    capabilities: tuple[str, ...]  # upper-cased, e.g. ("IMAP4REV2", "UTF8=ACCEPT")


@dataclass(frozen=True, slots=True)
class QResync:
    """RFC 7162 §3.2.5: (uidvalidity modseq [known-uids [(seq-match-data)]])."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequence_numbers: SequenceSet | None = None
    known_sequence_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class SelectBase(Command):
    mailbox: str
    condstore: bool = False  # RFC 7162 §3.1.8 (CONDSTORE) select parameter
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Select(SelectBase):
    pass


@dataclass(frozen=True, slots=True)
class Examine(SelectBase):
    pass


@dataclass(frozen=True, slots=True)
class Create(Command):
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 §3 CREATE ... (USE (\Drafts))


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST incl. LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819).

    `selection` and `return_options` hold upper-case option names; `status_items` is the
    RETURN (STATUS (...)) list, or None. `is_extended` is True when any extended syntax
    (selection options, several patterns, RETURN) was used.
    """

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    status_items: tuple[str, ...] | None = None
    is_extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    pass


@dataclass(frozen=True, slots=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (several with MULTIAPPEND, RFC 3502)."""

    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    data: bytes = field(repr=False)
    is_binary: bool = False  # sent as literal8 ~{n} (RFC 3516 §4.4)
    is_utf8: bool = False  # sent as UTF8 (~{n}) (RFC 6855 §4)


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle(Command):
    pass


@dataclass(frozen=True, slots=True)
class Close(Command):
    pass


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    pass


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    pass


@dataclass(frozen=True, slots=True)
class UidExpunge(Command):
    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class Check(Command):
    pass


@dataclass(frozen=True, slots=True)
class Search(Command):
    """`return_options` is None without RETURN (rev1 SEARCH answer); RETURN () is
    normalised to ("ALL",) (RFC 4731 §3.1)."""

    criteria: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    is_uid: bool = False


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """For UID FETCH the handler must add UID to the answer (RFC 9051 §6.4.9)."""

    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    changed_since: int | None = None  # RFC 7162 §3.1.4.1 CHANGEDSINCE
    is_vanished: bool = False  # RFC 7162 §3.2.6 VANISHED (UID FETCH only)
    is_uid: bool = False


class StoreMode(Enum):
    REPLACE = "FLAGS"
    ADD = "+FLAGS"
    REMOVE = "-FLAGS"


@dataclass(frozen=True, slots=True)
class Store(Command):
    sequence_set: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    is_silent: bool = False
    unchanged_since: int | None = None  # RFC 7162 §3.1.3 UNCHANGEDSINCE
    is_uid: bool = False


@dataclass(frozen=True, slots=True)
class Copy(Command):
    sequence_set: SequenceSet
    mailbox: str
    is_uid: bool = False


@dataclass(frozen=True, slots=True)
class Move(Command):
    sequence_set: SequenceSet
    mailbox: str
    is_uid: bool = False


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971: None for `ID NIL`, else (field, value-or-None) pairs."""

    parameters: tuple[tuple[str, str | None], ...] | None


# -- parsers --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Ctx:
    lx: Lexer
    tag: str
    is_utf8: bool

    def mailbox(self) -> str:
        self.lx.expect_sp()
        return parse_mailbox(self.lx, is_utf8=self.is_utf8)

    def sequence_set(self) -> SequenceSet:
        self.lx.expect_sp()
        return parse_sequence_set(self.lx)


Parser = Callable[[_Ctx], Command]


def _no_args(cls: Callable[[str], Command]) -> Parser:
    return lambda ctx: cls(ctx.tag)


def parse_authenticate(ctx: _Ctx) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    mechanism = lx.read_atom().upper()
    initial: bytes | None = None
    if lx.skip(b" "):
        raw = lx.read_atom()
        if raw == "=":  # RFC 4959 §3: "=" is an empty initial response
            initial = b""
        else:
            try:
                initial = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ParseError("initial response is not base64") from exc
    return Authenticate(ctx.tag, mechanism, initial)


def parse_login(ctx: _Ctx) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    username = lx.read_astring_text()
    lx.expect_sp()
    return Login(ctx.tag, username, lx.read_astring_text())


def parse_enable(ctx: _Ctx) -> Command:
    names: list[str] = []
    while not ctx.lx.at_end():
        ctx.lx.expect_sp()
        names.append(ctx.lx.read_atom().upper())
    if not names:
        raise ParseError("ENABLE needs a capability")
    return Enable(ctx.tag, tuple(names))


def _parse_qresync(lx: Lexer) -> QResync:
    def read() -> QResync:
        uidvalidity = lx.read_nz_number()
        lx.expect_sp()
        modseq = lx.read_number(MAX_NUMBER64)
        known = seq = seq_uids = None
        if lx.skip(b" "):
            if lx.peek() != 0x28:
                known = parse_sequence_set(lx)
                if not lx.skip(b" "):
                    return QResync(uidvalidity, modseq, known)
            lx.expect(b"(")
            seq = parse_sequence_set(lx)
            lx.expect_sp()
            seq_uids = parse_sequence_set(lx)
            lx.expect(b")")
        return QResync(uidvalidity, modseq, known, seq, seq_uids)

    lx.expect(b"(")
    value = read()
    lx.expect(b")")
    return value


def _parse_select(cls: type[SelectBase]) -> Parser:
    def parse(ctx: _Ctx) -> Command:
        mailbox = ctx.mailbox()
        condstore, qresync = False, None
        if ctx.lx.skip(b" "):
            known = {"CONDSTORE": None, "QRESYNC": _parse_qresync}
            for name, value in _parse_params(ctx.lx, known):
                condstore = condstore or name == "CONDSTORE"
                if isinstance(value, QResync):
                    qresync = value
        return cls(ctx.tag, mailbox, condstore, qresync)

    return parse


def _parse_params(
    lx: Lexer, known: Mapping[str, Callable[[Lexer], object] | None]
) -> list[tuple[str, object]]:
    """RFC 4466 §2.1: "(" name [SP value] *(SP name [SP value]) ")" for known names only."""

    def item() -> tuple[str, object]:
        name = lx.read_atom().upper()
        if name not in known:
            raise ParseError(f"unknown parameter {name}")
        reader = known[name]
        if reader is None:
            return name, None
        lx.expect_sp()
        return name, reader(lx)

    return lx.read_list(item, allow_empty=False)


def parse_create(ctx: _Ctx) -> Command:
    mailbox = ctx.mailbox()
    uses: tuple[str, ...] = ()
    if ctx.lx.skip(b" "):
        params = _parse_params(ctx.lx, {"USE": parse_flag_list})
        uses = tuple(flag for _, value in params if isinstance(value, tuple) for flag in value)
    return Create(ctx.tag, mailbox, uses)


def _mailbox_only(cls: Callable[[str, str], Command]) -> Parser:
    return lambda ctx: cls(ctx.tag, ctx.mailbox())


def parse_rename(ctx: _Ctx) -> Command:
    return Rename(ctx.tag, ctx.mailbox(), ctx.mailbox())


def _read_upper_atom_list(lx: Lexer) -> list[str]:
    return lx.read_list(lambda: lx.read_atom().upper())


def _parse_list_return(lx: Lexer) -> tuple[frozenset[str], tuple[str, ...] | None]:
    options: set[str] = set()
    status: tuple[str, ...] | None = None

    def item() -> None:
        nonlocal status
        name = lx.read_atom().upper()
        if name not in LIST_RETURN_OPTIONS:
            raise ParseError(f"unknown LIST return option {name}")
        if name == "STATUS":  # RFC 5819 §2
            lx.expect_sp()
            status = _parse_status_items(lx)
        options.add(name)

    lx.read_list(item)
    return frozenset(options), status


def parse_list(ctx: _Ctx) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    selection: frozenset[str] = frozenset()
    is_extended = False
    if lx.peek() == 0x28:  # RFC 5258 §3: list-select-opts
        selection = frozenset(_read_upper_atom_list(lx))
        if selection - LIST_SELECT_OPTIONS:
            raise ParseError("unknown LIST selection option")
        if selection == {"RECURSIVEMATCH"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3
        lx.expect_sp()
        is_extended = True
    reference = parse_mailbox(lx, is_utf8=ctx.is_utf8)
    lx.expect_sp()
    is_extended = is_extended or lx.peek() == 0x28
    patterns = lx.read_one_or_list(lambda: parse_list_mailbox(lx, is_utf8=ctx.is_utf8))
    options: frozenset[str] = frozenset()
    status = None
    if lx.skip(b" "):
        if not lx.skip_word(b"RETURN"):
            raise ParseError("expected RETURN")
        lx.expect_sp()
        options, status = _parse_list_return(lx)
        is_extended = True
    return List(ctx.tag, reference, tuple(patterns), selection, options, status, is_extended)


def parse_lsub(ctx: _Ctx) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    reference = parse_mailbox(lx, is_utf8=ctx.is_utf8)
    lx.expect_sp()
    return Lsub(ctx.tag, reference, parse_list_mailbox(lx, is_utf8=ctx.is_utf8))


def _parse_status_items(lx: Lexer) -> tuple[str, ...]:
    items = lx.read_list(lambda: lx.read_atom().upper(), allow_empty=False)
    unknown = set(items) - STATUS_ITEMS
    if unknown:
        raise ParseError(f"unknown STATUS item {sorted(unknown)[0]}")
    return tuple(items)


def parse_status(ctx: _Ctx) -> Command:
    mailbox = ctx.mailbox()
    ctx.lx.expect_sp()
    return Status(ctx.tag, mailbox, _parse_status_items(ctx.lx))


def _parse_append_message(lx: Lexer) -> AppendMessage:
    flags: tuple[str, ...] = ()
    date: dt.datetime | None = None
    if lx.peek() == 0x28:
        flags = parse_flag_list(lx)
        lx.expect_sp()
    if lx.peek() == 0x22:
        date = parse_date_time(lx)
        lx.expect_sp()
    if lx.skip_word(b"UTF8"):  # RFC 6855 §4: "UTF8" SP "(" literal8 ")"
        lx.expect(b" (")
        data, _ = lx.read_literal(allow_literal8=True)
        lx.expect(b")")
        return AppendMessage(flags, date, data, is_utf8=True)
    if lx.peek() not in (0x7B, 0x7E):
        raise ParseError("APPEND data must be a literal")
    data, is_binary = lx.read_literal(allow_literal8=True)
    return AppendMessage(flags, date, data, is_binary=is_binary)


def parse_append(ctx: _Ctx) -> Command:
    mailbox = ctx.mailbox()
    messages = []
    while not ctx.lx.at_end():  # RFC 3502 MULTIAPPEND: 1*append-message
        ctx.lx.expect_sp()
        messages.append(_parse_append_message(ctx.lx))
    if not messages:
        raise ParseError("APPEND needs a message")
    return Append(ctx.tag, mailbox, tuple(messages))


def _parse_search_return(lx: Lexer) -> tuple[str, ...]:
    options = _read_upper_atom_list(lx)
    if set(options) - SEARCH_RETURN_OPTIONS:
        raise ParseError("unknown SEARCH return option")
    return tuple(options) or ("ALL",)  # RFC 4731 §3.1: RETURN () means RETURN (ALL)


def _parse_search(ctx: _Ctx, is_uid: bool) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    returns = None
    if lx.skip_word(b"RETURN"):  # RFC 4731 §3 / RFC 9051 §6.4.4
        lx.expect_sp()
        returns = _parse_search_return(lx)
        lx.expect_sp()
    charset = None
    if lx.skip_word(b"CHARSET"):
        lx.expect_sp()
        charset = decode_text(lx.read_astring()).upper()
        lx.expect_sp()
    criteria = parse_search_criteria(lx, charset=charset)
    return Search(ctx.tag, criteria, charset, returns, is_uid)


def _parse_fetch(ctx: _Ctx, is_uid: bool) -> Command:
    sequence_set = ctx.sequence_set()
    ctx.lx.expect_sp()
    attributes = parse_fetch_attributes(ctx.lx)
    changed_since, is_vanished = None, False
    if ctx.lx.skip(b" "):  # RFC 7162 §3.1.4.1 / §3.2.6 fetch-modifiers
        readers = {"CHANGEDSINCE": lambda lx: lx.read_number(MAX_NUMBER64), "VANISHED": None}
        for name, value in _parse_params(ctx.lx, readers):
            if isinstance(value, int):
                changed_since = value
            is_vanished = is_vanished or name == "VANISHED"
    if is_vanished and (not is_uid or changed_since is None):
        raise ParseError("VANISHED needs UID FETCH with CHANGEDSINCE")  # RFC 7162 §3.2.6
    return Fetch(ctx.tag, sequence_set, attributes, changed_since, is_vanished, is_uid)


def _parse_store(ctx: _Ctx, is_uid: bool) -> Command:
    lx = ctx.lx
    sequence_set = ctx.sequence_set()
    lx.expect_sp()
    unchanged_since = None
    if lx.peek() == 0x28:  # RFC 7162 §3.1.3 store-modifier
        params = _parse_params(lx, {"UNCHANGEDSINCE": lambda lx: lx.read_number(MAX_NUMBER64)})
        unchanged_since = next(v for _, v in params if isinstance(v, int))
        lx.expect_sp()
    prefix = "+" if lx.skip(b"+") else "-" if lx.skip(b"-") else ""
    if not lx.skip(b"FLAGS"):
        raise ParseError("expected FLAGS, +FLAGS or -FLAGS")
    is_silent = lx.skip(b".SILENT")
    lx.expect_sp()
    if lx.peek() == 0x28:
        flags = parse_flag_list(lx)
    else:  # RFC 9051 §9 store-att-flags: flag *(SP flag) without parentheses
        flags_list = [parse_flag(lx)]
        while lx.skip(b" "):
            flags_list.append(parse_flag(lx))
        flags = tuple(flags_list)
    mode = StoreMode(prefix + "FLAGS")
    return Store(ctx.tag, sequence_set, mode, flags, is_silent, unchanged_since, is_uid)


def _parse_transfer(cls: type[Copy] | type[Move], is_uid: bool) -> Parser:
    def parse(ctx: _Ctx) -> Command:
        sequence_set = ctx.sequence_set()
        return cls(ctx.tag, sequence_set, ctx.mailbox(), is_uid)

    return parse


def parse_uid_expunge(ctx: _Ctx) -> Command:
    return UidExpunge(ctx.tag, ctx.sequence_set())


def parse_id(ctx: _Ctx) -> Command:
    lx = ctx.lx
    lx.expect_sp()
    if lx.skip_word(b"NIL"):
        return Id(ctx.tag, None)
    values: list[str | None] = []

    def item() -> None:
        raw = lx.read_nstring()
        values.append(None if raw is None else decode_text(raw))

    lx.read_list(item)
    if len(values) % 2 or any(key is None for key in values[::2]):
        raise ParseError("ID needs field/value pairs")
    pairs = tuple((str(values[i]), values[i + 1]) for i in range(0, len(values), 2))
    return Id(ctx.tag, pairs)


_PARSERS: dict[str, Parser] = {
    "CAPABILITY": _no_args(Capability),
    "NOOP": _no_args(Noop),
    "LOGOUT": _no_args(Logout),
    "STARTTLS": _no_args(StartTls),
    "AUTHENTICATE": parse_authenticate,
    "LOGIN": parse_login,
    "ENABLE": parse_enable,
    "SELECT": _parse_select(Select),
    "EXAMINE": _parse_select(Examine),
    "CREATE": parse_create,
    "DELETE": _mailbox_only(Delete),
    "RENAME": parse_rename,
    "SUBSCRIBE": _mailbox_only(Subscribe),
    "UNSUBSCRIBE": _mailbox_only(Unsubscribe),
    "LIST": parse_list,
    "LSUB": parse_lsub,
    "NAMESPACE": _no_args(Namespace),
    "STATUS": parse_status,
    "APPEND": parse_append,
    "IDLE": _no_args(Idle),
    "CLOSE": _no_args(Close),
    "UNSELECT": _no_args(Unselect),
    "EXPUNGE": _no_args(Expunge),
    "CHECK": _no_args(Check),
    "SEARCH": lambda ctx: _parse_search(ctx, False),
    "FETCH": lambda ctx: _parse_fetch(ctx, False),
    "STORE": lambda ctx: _parse_store(ctx, False),
    "COPY": _parse_transfer(Copy, False),
    "MOVE": _parse_transfer(Move, False),
    "ID": parse_id,
}
_UID_PARSERS: dict[str, Parser] = {
    "SEARCH": lambda ctx: _parse_search(ctx, True),
    "FETCH": lambda ctx: _parse_fetch(ctx, True),
    "STORE": lambda ctx: _parse_store(ctx, True),
    "COPY": _parse_transfer(Copy, True),
    "MOVE": _parse_transfer(Move, True),
    "EXPUNGE": parse_uid_expunge,
}


def read_command_name(lx: Lexer) -> str:
    """Command name, with "UID " folded in ("UID FETCH")."""
    name = lx.read_atom().upper()
    if name == "UID":
        lx.expect_sp()
        name = "UID " + lx.read_atom().upper()
    return name


def parse_command(frame: bytes, *, is_utf8: bool = False) -> Command:
    """Parse one framed command (no trailing CRLF). Raises `ParseError` with `.tag` set."""
    lx = Lexer(frame)
    try:
        tag = parse_tag(lx)
        lx.expect_sp()
    except ParseError as exc:
        raise ParseError("missing or invalid tag") from exc
    try:
        name = read_command_name(lx)
        parser = _UID_PARSERS.get(name[4:]) if name.startswith("UID ") else _PARSERS.get(name)
        if parser is None:
            raise ParseError(f"unknown command {name}")
        command = parser(_Ctx(lx, tag, is_utf8))
        lx.expect_end()
    except ParseError as exc:
        raise ParseError(exc.message, tag) from exc
    return command
