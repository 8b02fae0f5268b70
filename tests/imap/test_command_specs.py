"""The command registry agrees with itself and with the RFCs: every wire name has exactly
one spec, and the tables the session derives from the specs (states, what loads the view's
tables, where EXPUNGE may not follow, CAPABILITY) are the ones RFC 9051 requires."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import pytest

from postroom.imap import commands as registry
from postroom.imap.commands import ALLOWED_STATES, CAPABILITIES, SPECS, is_allowed
from postroom.imap.commands.misc import ENABLEABLE
from postroom.imap.commands.spec import CommandSpec
from postroom.imap.wire import commands as wire_commands
from postroom.imap.wire.commands import PARSERS, Command, parse_command
from postroom.imap.wire.commands.append import Append
from postroom.imap.wire.commands.auth import Authenticate, Login, StartTls
from postroom.imap.wire.commands.copymove import Copy, Move
from postroom.imap.wire.commands.expunge import Expunge, UidExpunge
from postroom.imap.wire.commands.fetch import Fetch
from postroom.imap.wire.commands.mailboxes import List, Status
from postroom.imap.wire.commands.misc import Capability, Check, Enable, Id, Idle, Noop
from postroom.imap.wire.commands.search import Search
from postroom.imap.wire.commands.select import Close, Examine, Select, SelectBase, Unselect
from postroom.imap.wire.commands.sort import Sort
from postroom.imap.wire.commands.store import Store
from postroom.imap.wire.commands.thread import Thread
from postroom.imap.wire.connection import ConnectionState

NOT_AUTH, AUTH, SEL, LOGOUT = (
    ConnectionState.NOT_AUTHENTICATED, ConnectionState.AUTHENTICATED,
    ConnectionState.SELECTED, ConnectionState.LOGOUT,
)  # fmt: skip

# One example line per name as sent, and the state set RFC 9051 §6 gives the command.
ANY = {NOT_AUTH, AUTH, SEL}
RFC_TABLE: dict[str, tuple[bytes, set[ConnectionState]]] = {
    # §6.1 any state; RFC 2971 §3.1: ID too.
    "CAPABILITY": (b"a CAPABILITY", ANY),
    "NOOP": (b"a NOOP", ANY),
    "LOGOUT": (b"a LOGOUT", ANY),
    "ID": (b"a ID NIL", ANY),
    # §6.2 not authenticated
    "STARTTLS": (b"a STARTTLS", {NOT_AUTH}),
    "AUTHENTICATE": (b"a AUTHENTICATE PLAIN", {NOT_AUTH}),
    "LOGIN": (b"a LOGIN u p", {NOT_AUTH}),
    # §6.3 authenticated (so also selected); §6.3.1: ENABLE before any SELECT only.
    "ENABLE": (b"a ENABLE CONDSTORE", {AUTH}),
    "SELECT": (b"a SELECT INBOX", {AUTH, SEL}),
    "EXAMINE": (b"a EXAMINE INBOX", {AUTH, SEL}),
    "NAMESPACE": (b"a NAMESPACE", {AUTH, SEL}),
    "CREATE": (b"a CREATE x", {AUTH, SEL}),
    "DELETE": (b"a DELETE x", {AUTH, SEL}),
    "RENAME": (b"a RENAME x y", {AUTH, SEL}),
    "SUBSCRIBE": (b"a SUBSCRIBE x", {AUTH, SEL}),
    "UNSUBSCRIBE": (b"a UNSUBSCRIBE x", {AUTH, SEL}),
    "LIST": (b'a LIST "" *', {AUTH, SEL}),
    "LSUB": (b'a LSUB "" *', {AUTH, SEL}),  # RFC 3501 §6.3.9
    "STATUS": (b"a STATUS x (MESSAGES)", {AUTH, SEL}),
    "APPEND": (b"a APPEND x {1+}\r\nm", {AUTH, SEL}),
    "IDLE": (b"a IDLE", {AUTH, SEL}),
    # §6.4 selected; RFC 3501 §6.4.1: CHECK.
    "CHECK": (b"a CHECK", {SEL}),
    "CLOSE": (b"a CLOSE", {SEL}),
    "UNSELECT": (b"a UNSELECT", {SEL}),
    "EXPUNGE": (b"a EXPUNGE", {SEL}),
    "SEARCH": (b"a SEARCH ALL", {SEL}),
    "FETCH": (b"a FETCH 1 FLAGS", {SEL}),
    "STORE": (b"a STORE 1 +FLAGS (\\Seen)", {SEL}),
    "COPY": (b"a COPY 1 x", {SEL}),
    "MOVE": (b"a MOVE 1 x", {SEL}),
    "UID SEARCH": (b"a UID SEARCH ALL", {SEL}),
    "UID FETCH": (b"a UID FETCH 1 FLAGS", {SEL}),
    "UID STORE": (b"a UID STORE 1 FLAGS ()", {SEL}),
    "UID COPY": (b"a UID COPY 1 x", {SEL}),
    "UID MOVE": (b"a UID MOVE 1 x", {SEL}),
    "UID EXPUNGE": (b"a UID EXPUNGE 1", {SEL}),
    # RFC 5256 §3 SORT, RFC 5267 §4.2 CANCELUPDATE (issue 17).
    "SORT": (b"a SORT (DATE) UTF-8 ALL", {SEL}),
    "UID SORT": (b"a UID SORT (REVERSE SUBJECT) UTF-8 ALL", {SEL}),
    "CANCELUPDATE": (b'a CANCELUPDATE "t"', {SEL}),
    # RFC 5256 §4 THREAD (issue 17).
    "THREAD": (b"a THREAD REFERENCES UTF-8 ALL", {SEL}),
    "UID THREAD": (b"a UID THREAD ORDEREDSUBJECT UTF-8 ALL", {SEL}),
    # RFC 9208 §4.1: QUOTA, authenticated and selected.
    "GETQUOTA": (b'a GETQUOTA ""', {AUTH, SEL}),
    "GETQUOTAROOT": (b"a GETQUOTAROOT INBOX", {AUTH, SEL}),
    "SETQUOTA": (b'a SETQUOTA "" (STORAGE 512)', {AUTH, SEL}),
    # RFC 5464 §4: METADATA, authenticated and selected.
    "GETMETADATA": (b'a GETMETADATA "" /shared/comment', {AUTH, SEL}),
    "SETMETADATA": (b'a SETMETADATA INBOX (/private/comment "x")', {AUTH, SEL}),
    # RFC 4978 §3 COMPRESS, RFC 5465 §3 NOTIFY, RFC 8437 §2 UNAUTHENTICATE: after login.
    "COMPRESS": (b"a COMPRESS DEFLATE", {AUTH, SEL}),
    "NOTIFY": (b"a NOTIFY NONE", {AUTH, SEL}),
    "UNAUTHENTICATE": (b"a UNAUTHENTICATE", {AUTH, SEL}),
}


def _spec_of_name(name: str) -> CommandSpec:
    specs = [spec for spec in SPECS.values() if name in spec.names]
    assert len(specs) == 1, f"{name} has {len(specs)} specs"
    return specs[0]


def test_every_parsed_name_has_exactly_one_spec_pointing_at_its_parser() -> None:
    named = [name for spec in SPECS.values() for name in spec.names]
    assert len(named) == len(set(named))
    assert set(named) == set(PARSERS) == set(RFC_TABLE)
    for spec in SPECS.values():
        assert all(spec.parsers[name] is PARSERS[name] for name in spec.names)


def test_every_command_dataclass_has_a_spec() -> None:
    concrete = {
        value for family in wire_commands.FAMILIES for value in vars(family).values()
        if isinstance(value, type) and issubclass(value, Command)
        and value not in (Command, SelectBase)
    }  # fmt: skip
    assert concrete == set(SPECS)
    assert registry.FAMILIES and len(registry.FAMILIES) == len(wire_commands.FAMILIES)
    assert [f.__name__.rsplit(".", 1)[1] for f in registry.FAMILIES] == [
        f.__name__.rsplit(".", 1)[1] for f in wire_commands.FAMILIES
    ]  # same family names


@pytest.mark.parametrize("name", sorted(RFC_TABLE))
def test_states_follow_rfc_9051_section_6(name: str) -> None:
    line, states = RFC_TABLE[name]
    command = parse_command(line)
    spec = _spec_of_name(name)
    assert type(command) is spec.command
    assert spec.states == states == set(ALLOWED_STATES[spec.command])
    for state in ConnectionState:
        assert is_allowed(command, state) is (state in states)
    assert not is_allowed(command, LOGOUT)


def test_no_expunge_while_answering_fetch_store_search() -> None:
    # RFC 9051 §7.5.1: sequence numbers must stay valid while these are answered.
    assert {t for t, spec in SPECS.items() if not spec.allows_expunge} == {Fetch, Store, Search,
                                                                          Sort, Thread}


def test_which_commands_load_the_view_tables() -> None:
    # Per-message flags and MODSEQs: what the selected-state handlers that read or change
    # them need; everything else runs without (issue 8: SELECT then IDLE loads nothing).
    loading = {t for t, spec in SPECS.items() if spec.needs_view_tables}
    assert loading == {Close, Expunge, UidExpunge, Search, Fetch, Store, Sort, Thread}
    assert {Select, Examine, Unselect, Copy, Move, Append, Status, List, Noop, Check,
            Idle} <= set(SPECS) - loading  # fmt: skip


def test_only_starttls_and_idle_are_run_by_the_session() -> None:
    assert {t for t, spec in SPECS.items() if spec.handle is None} == {StartTls, Idle}


def test_capabilities_after_login() -> None:
    assert CAPABILITIES[0] == "IMAP4rev2"
    assert len(CAPABILITIES) == len(set(CAPABILITIES))
    assert set(CAPABILITIES) == {
        "IMAP4rev2", "IMAP4rev1", "LITERAL+", "SASL-IR", "ENABLE", "IDLE", "NAMESPACE",
        "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE",
        "LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "SEARCHRES", "ID", "BINARY", "UTF8=ACCEPT",
        "CONDSTORE", "QRESYNC", "WITHIN",
        "SORT", "SORT=DISPLAY", "ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT", "PARTIAL",  # issue 17
        "STATUS=SIZE",  # RFC 8438 (issue 17)
        "MULTIAPPEND", "CATENATE", "PREVIEW", "SAVEDATE", "METADATA", "METADATA-SERVER",
        "COMPRESS=DEFLATE", "NOTIFY", "UNAUTHENTICATE",  # RFC 4978, 5465, 8437 (issue 17)
        "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",  # RFC 9208 (issue 17)
        "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "OBJECTID",  # RFC 5256, 8474
    }  # fmt: skip
    for spec in SPECS.values():
        assert set(spec.capabilities) <= set(CAPABILITIES)
    assert {cap.upper() for cap in CAPABILITIES} >= ENABLEABLE
    # Commands with their own capability are advertised by it (RFC 9051 §7.2.2).
    owners = {cap: t for t, spec in SPECS.items() for cap in spec.capabilities}
    assert owners["IDLE"] is Idle and owners["MOVE"] is Move and owners["UIDPLUS"] is UidExpunge
    assert owners["UNSELECT"] is Unselect and owners["ENABLE"] is Enable
    assert owners["ID"] is Id and owners["SASL-IR"] is Authenticate
    assert "STARTTLS" not in CAPABILITIES  # not after login (RFC 9051 §6.2.1)
    assert {Capability, Login} & set(owners.values()) == set()


@dataclass(frozen=True, slots=True)
class _Frob(Command):
    pass


def _family(name: str, *specs: CommandSpec) -> ModuleType:
    module = ModuleType(name)
    module.SPECS = specs  # type: ignore[attr-defined]
    return module


def test_registry_refuses_duplicates_and_gaps() -> None:
    families = list(registry.FAMILIES)
    noop = SPECS[Noop]
    with pytest.raises(RuntimeError, match="two specs"):
        registry._collect([*families, _family("again", noop)])
    renamed = CommandSpec(_Frob, ("NOOP",), noop.handle, noop.states)
    with pytest.raises(RuntimeError, match="NOOP has two specs"):
        registry._collect([*families, _family("again", renamed)])
    without_misc = [f for f in families if not f.__name__.endswith(".misc")]
    with pytest.raises(RuntimeError, match="disagree"):
        registry._collect(without_misc)
