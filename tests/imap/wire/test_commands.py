"""Table tests: one command line → the dataclass it parses to, or BAD."""

from __future__ import annotations

import datetime as dt

import pytest

from postroom.imap.wire.commands import Command, parse_command
from postroom.imap.wire.commands.append import Append, AppendMessage
from postroom.imap.wire.commands.auth import Authenticate, Login, StartTls
from postroom.imap.wire.commands.copymove import Copy, Move
from postroom.imap.wire.commands.expunge import Expunge, UidExpunge
from postroom.imap.wire.commands.fetch import Fetch
from postroom.imap.wire.commands.mailboxes import (
    Create,
    Delete,
    List,
    Lsub,
    Rename,
    Status,
    Subscribe,
    Unsubscribe,
)
from postroom.imap.wire.commands.misc import (
    Capability,
    Check,
    Enable,
    Id,
    Idle,
    Logout,
    Namespace,
    Noop,
)
from postroom.imap.wire.commands.search import Search
from postroom.imap.wire.commands.select import Close, Examine, QResync, Select, Unselect
from postroom.imap.wire.commands.store import Store, StoreMode
from postroom.imap.wire.fetch import BodySection, Section, SimpleAttribute
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import ParseError
from postroom.imap.wire.search import AllKey, FlagKey, HeaderKey

S = SequenceSet
ONE_TO_STAR = S(((1, None),))

VALID: list[tuple[bytes, Command]] = [
    (b"a CAPABILITY", Capability("a")),
    (b"a noop", Noop("a")),
    (b"a LOGOUT", Logout("a")),
    (b"a STARTTLS", StartTls("a")),
    (b"a AUTHENTICATE plain", Authenticate("a", "PLAIN", None)),
    (b"a AUTHENTICATE PLAIN =", Authenticate("a", "PLAIN", b"")),
    (b"a AUTHENTICATE PLAIN AGJvYgBwdw==", Authenticate("a", "PLAIN", b"\x00bob\x00pw")),
    (b"a LOGIN bob secret", Login("a", "bob", "secret")),
    (b'a LOGIN "b\\"ob" {2}\r\npw', Login("a", 'b"ob', "pw")),
    (b"a LOGIN bob {2+}\r\npw", Login("a", "bob", "pw")),
    (b"a ENABLE IMAP4rev2 utf8=accept", Enable("a", ("IMAP4REV2", "UTF8=ACCEPT"))),
    (b"a SELECT inbox", Select("a", "INBOX")),
    (b"a EXAMINE Archive", Examine("a", "Archive")),
    (b"a SELECT INBOX (CONDSTORE)", Select("a", "INBOX", condstore=True)),
    (
        b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
        Select(
            "a",
            "INBOX",
            qresync=QResync(67890007, 90060115194045000, S(((41, 211), (214, 541)))),
        ),
    ),
    (
        b"a EXAMINE INBOX (QRESYNC (1 2 (1:4 10:40)))",
        Examine("a", "INBOX", qresync=QResync(1, 2, None, S(((1, 4),)), S(((10, 40),)))),
    ),
    (b"a CREATE Entw&APw-rfe", Create("a", "Entwürfe")),
    (b"a CREATE Sent (USE (\\Sent))", Create("a", "Sent", ("\\Sent",))),
    (b"a DELETE foo", Delete("a", "foo")),
    (b'a RENAME "a b" c', Rename("a", "a b", "c")),
    (b"a SUBSCRIBE foo", Subscribe("a", "foo")),
    (b"a UNSUBSCRIBE foo", Unsubscribe("a", "foo")),
    (b'a LIST "" *', List("a", "", ("*",))),
    (b"a LIST ~/Mail/ %", List("a", "~/Mail/", ("%",))),
    (b'a LIST "" INBOX.%]', List("a", "", ("INBOX.%]",))),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Foo/*") RETURN (CHILDREN)',
        List(
            "a",
            "",
            ("INBOX", "Foo/*"),
            frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
            frozenset({"CHILDREN"}),
            None,
            True,
        ),
    ),
    (
        b'a LIST "" % RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))',
        List(
            "a", "", ("%",), frozenset(), frozenset({"SPECIAL-USE", "STATUS"}),
            ("MESSAGES", "UNSEEN"), True,
        ),
    ),
    (b'a LIST () "" %', List("a", "", ("%",), is_extended=True)),
    (b'a LSUB "" *', Lsub("a", "", "*")),
    (b"a NAMESPACE", Namespace("a")),
    (
        b"a STATUS INBOX (MESSAGES UIDNEXT uidvalidity UNSEEN DELETED SIZE HIGHESTMODSEQ)",
        Status(
            "a", "INBOX",
            ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ"),
        ),
    ),
    (b"a IDLE", Idle("a")),
    (b"a CLOSE", Close("a")),
    (b"a UNSELECT", Unselect("a")),
    (b"a EXPUNGE", Expunge("a")),
    (b"a UID EXPUNGE 3:5,9", UidExpunge("a", S(((3, 5), (9, 9))))),
    (b"a CHECK", Check("a")),
    (b"a SEARCH ALL", Search("a", AllKey())),
    (b"a UID SEARCH UNSEEN", Search("a", FlagKey("\\Seen", False), is_uid=True)),
    (
        b"a SEARCH CHARSET utf-8 FROM {3}\r\nbob",
        Search("a", HeaderKey("From", "bob", True), charset="UTF-8"),
    ),
    (b"a SEARCH RETURN () ALL", Search("a", AllKey(), return_options=("ALL",))),
    (
        b"a SEARCH RETURN (MIN MAX COUNT SAVE) ALL",
        Search("a", AllKey(), return_options=("MIN", "MAX", "COUNT", "SAVE")),
    ),
    (b"a FETCH 1:* FLAGS", Fetch("a", ONE_TO_STAR, (SimpleAttribute("FLAGS"),))),
    (
        b"a UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        Fetch(
            "a", ONE_TO_STAR, (SimpleAttribute("UID"), SimpleAttribute("FLAGS")),
            changed_since=12345, is_vanished=True, is_uid=True,
        ),
    ),
    (
        b"a FETCH $ BODY[]",
        Fetch("a", S.saved(), (BodySection(Section()),)),
    ),
    (
        b"a STORE 1 FLAGS (\\Seen)",
        Store("a", S(((1, 1),)), StoreMode.REPLACE, ("\\Seen",)),
    ),
    (
        b"a STORE 2:4 -FLAGS.SILENT \\Deleted $Junk",
        Store("a", S(((2, 4),)), StoreMode.REMOVE, ("\\Deleted", "$Junk"), is_silent=True),
    ),
    (
        b"a UID STORE 7 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        Store(
            "a", S(((7, 7),)), StoreMode.ADD, ("\\Deleted",), True, 320162338, is_uid=True
        ),
    ),
    (b"a COPY 1:3 Trash", Copy("a", S(((1, 3),)), "Trash")),
    (b"a UID COPY 1:3 Trash", Copy("a", S(((1, 3),)), "Trash", is_uid=True)),
    (b"a MOVE 2 Archive", Move("a", S(((2, 2),)), "Archive")),
    (b"a UID MOVE 2 \"Sent Items\"", Move("a", S(((2, 2),)), "Sent Items", is_uid=True)),
    (b"a ID NIL", Id("a", None)),
    (
        b'a ID ("name" "sodr" "version" "19.34" "vendor" NIL)',
        Id("a", (("name", "sodr"), ("version", "19.34"), ("vendor", None))),
    ),
    (b"a ID ()", Id("a", ())),
]


@pytest.mark.parametrize(("line", "expected"), VALID, ids=lambda v: repr(v)[:60])
def test_parses(line: bytes, expected: Command) -> None:
    assert parse_command(line) == expected


def test_append_forms() -> None:
    one = parse_command(b"a APPEND saved-messages (\\Seen) {5}\r\nhello")
    assert one == Append("a", "saved-messages", (AppendMessage(("\\Seen",), None, b"hello"),))
    dated = parse_command(b'a APPEND INBOX "05-Jan-2021 10:00:00 +0000" {2+}\r\nhi')
    assert isinstance(dated, Append)
    assert dated.messages[0].internal_date == dt.datetime(2021, 1, 5, 10, tzinfo=dt.UTC)
    binary = parse_command(b"a APPEND INBOX ~{3}\r\na\x00b")
    assert isinstance(binary, Append)
    assert binary.messages[0].is_binary and binary.messages[0].data == b"a\x00b"
    utf8 = parse_command(b"a APPEND INBOX UTF8 (~{2}\r\nhi)")
    assert isinstance(utf8, Append)
    assert utf8.messages[0].is_utf8
    multi = parse_command(b"a APPEND INBOX {1}\r\nx (\\Draft) {1}\r\ny")
    assert isinstance(multi, Append)
    assert [m.data for m in multi.messages] == [b"x", b"y"]
    assert multi.messages[1].flags == ("\\Draft",)


def test_utf8_mailbox_names_when_enabled() -> None:
    line = 'a SELECT "Entwürfe"'.encode()
    assert parse_command(line, is_utf8=True) == Select("a", "Entwürfe")
    # Issue 17: without UTF8=ACCEPT the 8-bit name is legal syntax naming no mailbox
    # (answered NO [NONEXISTENT]), not a syntax error.
    assert parse_command(line, is_utf8=False) == Select("a", "Entwürfe", is_name_usable=False)


def test_password_not_in_repr() -> None:
    assert "secret" not in repr(parse_command(b"a LOGIN bob secret"))


BAD: list[tuple[bytes, str | None]] = [
    (b"a FROB", "a"),
    (b"a", None),
    (b"+a NOOP", None),
    (b"a NOOP extra", "a"),
    (b"a  NOOP", "a"),
    (b"a LOGIN bob", "a"),
    (b'a LOGIN bob "pw', "a"),
    (b"a LOGIN bob {5}\r\npw", "a"),
    (b"a LOGIN bob {2}\r\np\x00", "a"),
    (b"a AUTHENTICATE PLAIN !!!", "a"),
    (b"a ENABLE", "a"),
    (b"a SELECT", "a"),
    (b"a SELECT INBOX (FOO)", "a"),
    (b"a CREATE x (USE \\Sent)", "a"),
    (b'a LIST (RECURSIVEMATCH) "" *', "a"),
    (b'a LIST (BOGUS) "" *', "a"),
    (b'a LIST "" * RETURN (BOGUS)', "a"),
    (b"a STATUS INBOX (BOGUS)", "a"),
    (b"a STATUS INBOX ()", "a"),
    (b"a APPEND INBOX", "a"),
    (b'a APPEND INBOX "hello"', "a"),
    (b"a SEARCH", "a"),
    (b"a SEARCH RETURN (BOGUS) ALL", "a"),
    (b"a FETCH 1", "a"),
    (b"a FETCH 0 FLAGS", "a"),
    (b"a FETCH 1 (FLAGS) (VANISHED)", "a"),
    (b"a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "a"),
    (b"a STORE 1 FLAGS", "a"),
    (b"a STORE 1 XFLAGS (\\Seen)", "a"),
    (b"a COPY 1", "a"),
    (b"a UID FROB 1", "a"),
    (b"a UID", "a"),
    (b'a ID ("name")', "a"),
    (b"a ID (NIL NIL)", "a"),
]


@pytest.mark.parametrize(("line", "tag"), BAD, ids=lambda v: repr(v)[:60])
def test_rejects_with_tag(line: bytes, tag: str | None) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.tag == tag
