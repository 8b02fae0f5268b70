"""Table tests: one command line → the dataclass it parses to, or BAD."""

from __future__ import annotations

import datetime as dt

import pytest

from postroom.imap.wire import commands as c
from postroom.imap.wire.fetch import BodySection, Section, SimpleAttribute
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import ParseError
from postroom.imap.wire.search import AllKey, FlagKey, HeaderKey

S = SequenceSet
ONE_TO_STAR = S(((1, None),))

VALID: list[tuple[bytes, c.Command]] = [
    (b"a CAPABILITY", c.Capability("a")),
    (b"a noop", c.Noop("a")),
    (b"a LOGOUT", c.Logout("a")),
    (b"a STARTTLS", c.StartTls("a")),
    (b"a AUTHENTICATE plain", c.Authenticate("a", "PLAIN", None)),
    (b"a AUTHENTICATE PLAIN =", c.Authenticate("a", "PLAIN", b"")),
    (b"a AUTHENTICATE PLAIN AGJvYgBwdw==", c.Authenticate("a", "PLAIN", b"\x00bob\x00pw")),
    (b"a LOGIN bob secret", c.Login("a", "bob", "secret")),
    (b'a LOGIN "b\\"ob" {2}\r\npw', c.Login("a", 'b"ob', "pw")),
    (b"a LOGIN bob {2+}\r\npw", c.Login("a", "bob", "pw")),
    (b"a ENABLE IMAP4rev2 utf8=accept", c.Enable("a", ("IMAP4REV2", "UTF8=ACCEPT"))),
    (b"a SELECT inbox", c.Select("a", "INBOX")),
    (b"a EXAMINE Archive", c.Examine("a", "Archive")),
    (b"a SELECT INBOX (CONDSTORE)", c.Select("a", "INBOX", condstore=True)),
    (
        b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
        c.Select(
            "a",
            "INBOX",
            qresync=c.QResync(67890007, 90060115194045000, S(((41, 211), (214, 541)))),
        ),
    ),
    (
        b"a EXAMINE INBOX (QRESYNC (1 2 (1:4 10:40)))",
        c.Examine("a", "INBOX", qresync=c.QResync(1, 2, None, S(((1, 4),)), S(((10, 40),)))),
    ),
    (b"a CREATE Entw&APw-rfe", c.Create("a", "Entwürfe")),
    (b"a CREATE Sent (USE (\\Sent))", c.Create("a", "Sent", ("\\Sent",))),
    (b"a DELETE foo", c.Delete("a", "foo")),
    (b'a RENAME "a b" c', c.Rename("a", "a b", "c")),
    (b"a SUBSCRIBE foo", c.Subscribe("a", "foo")),
    (b"a UNSUBSCRIBE foo", c.Unsubscribe("a", "foo")),
    (b'a LIST "" *', c.List("a", "", ("*",))),
    (b"a LIST ~/Mail/ %", c.List("a", "~/Mail/", ("%",))),
    (b'a LIST "" INBOX.%]', c.List("a", "", ("INBOX.%]",))),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Foo/*") RETURN (CHILDREN)',
        c.List(
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
        c.List(
            "a", "", ("%",), frozenset(), frozenset({"SPECIAL-USE", "STATUS"}),
            ("MESSAGES", "UNSEEN"), True,
        ),
    ),
    (b'a LIST () "" %', c.List("a", "", ("%",), is_extended=True)),
    (b'a LSUB "" *', c.Lsub("a", "", "*")),
    (b"a NAMESPACE", c.Namespace("a")),
    (
        b"a STATUS INBOX (MESSAGES UIDNEXT uidvalidity UNSEEN DELETED SIZE HIGHESTMODSEQ)",
        c.Status(
            "a", "INBOX",
            ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ"),
        ),
    ),
    (b"a IDLE", c.Idle("a")),
    (b"a CLOSE", c.Close("a")),
    (b"a UNSELECT", c.Unselect("a")),
    (b"a EXPUNGE", c.Expunge("a")),
    (b"a UID EXPUNGE 3:5,9", c.UidExpunge("a", S(((3, 5), (9, 9))))),
    (b"a CHECK", c.Check("a")),
    (b"a SEARCH ALL", c.Search("a", AllKey())),
    (b"a UID SEARCH UNSEEN", c.Search("a", FlagKey("\\Seen", False), is_uid=True)),
    (
        b"a SEARCH CHARSET utf-8 FROM {3}\r\nbob",
        c.Search("a", HeaderKey("From", "bob"), charset="UTF-8"),
    ),
    (b"a SEARCH RETURN () ALL", c.Search("a", AllKey(), return_options=("ALL",))),
    (
        b"a SEARCH RETURN (MIN MAX COUNT SAVE) ALL",
        c.Search("a", AllKey(), return_options=("MIN", "MAX", "COUNT", "SAVE")),
    ),
    (b"a FETCH 1:* FLAGS", c.Fetch("a", ONE_TO_STAR, (SimpleAttribute("FLAGS"),))),
    (
        b"a UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        c.Fetch(
            "a", ONE_TO_STAR, (SimpleAttribute("UID"), SimpleAttribute("FLAGS")),
            changed_since=12345, is_vanished=True, is_uid=True,
        ),
    ),
    (
        b"a FETCH $ BODY[]",
        c.Fetch("a", S.saved(), (BodySection(Section()),)),
    ),
    (
        b"a STORE 1 FLAGS (\\Seen)",
        c.Store("a", S(((1, 1),)), c.StoreMode.REPLACE, ("\\Seen",)),
    ),
    (
        b"a STORE 2:4 -FLAGS.SILENT \\Deleted $Junk",
        c.Store("a", S(((2, 4),)), c.StoreMode.REMOVE, ("\\Deleted", "$Junk"), is_silent=True),
    ),
    (
        b"a UID STORE 7 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        c.Store(
            "a", S(((7, 7),)), c.StoreMode.ADD, ("\\Deleted",), True, 320162338, is_uid=True
        ),
    ),
    (b"a COPY 1:3 Trash", c.Copy("a", S(((1, 3),)), "Trash")),
    (b"a UID COPY 1:3 Trash", c.Copy("a", S(((1, 3),)), "Trash", is_uid=True)),
    (b"a MOVE 2 Archive", c.Move("a", S(((2, 2),)), "Archive")),
    (b"a UID MOVE 2 \"Sent Items\"", c.Move("a", S(((2, 2),)), "Sent Items", is_uid=True)),
    (b"a ID NIL", c.Id("a", None)),
    (
        b'a ID ("name" "sodr" "version" "19.34" "vendor" NIL)',
        c.Id("a", (("name", "sodr"), ("version", "19.34"), ("vendor", None))),
    ),
    (b"a ID ()", c.Id("a", ())),
]


@pytest.mark.parametrize(("line", "expected"), VALID, ids=lambda v: repr(v)[:60])
def test_parses(line: bytes, expected: c.Command) -> None:
    assert c.parse_command(line) == expected


def test_append_forms() -> None:
    one = c.parse_command(b"a APPEND saved-messages (\\Seen) {5}\r\nhello")
    assert one == c.Append("a", "saved-messages", (c.AppendMessage(("\\Seen",), None, b"hello"),))
    dated = c.parse_command(b'a APPEND INBOX "05-Jan-2021 10:00:00 +0000" {2+}\r\nhi')
    assert isinstance(dated, c.Append)
    assert dated.messages[0].internal_date == dt.datetime(2021, 1, 5, 10, tzinfo=dt.UTC)
    binary = c.parse_command(b"a APPEND INBOX ~{3}\r\na\x00b")
    assert isinstance(binary, c.Append)
    assert binary.messages[0].is_binary and binary.messages[0].data == b"a\x00b"
    utf8 = c.parse_command(b"a APPEND INBOX UTF8 (~{2}\r\nhi)")
    assert isinstance(utf8, c.Append)
    assert utf8.messages[0].is_utf8
    multi = c.parse_command(b"a APPEND INBOX {1}\r\nx (\\Draft) {1}\r\ny")
    assert isinstance(multi, c.Append)
    assert [m.data for m in multi.messages] == [b"x", b"y"]
    assert multi.messages[1].flags == ("\\Draft",)


def test_utf8_mailbox_names_when_enabled() -> None:
    line = 'a SELECT "Entwürfe"'.encode()
    assert c.parse_command(line, is_utf8=True) == c.Select("a", "Entwürfe")
    with pytest.raises(ParseError):
        c.parse_command(line, is_utf8=False)


def test_password_not_in_repr() -> None:
    assert "secret" not in repr(c.parse_command(b"a LOGIN bob secret"))


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
        c.parse_command(line)
    assert info.value.tag == tag
