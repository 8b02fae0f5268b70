from __future__ import annotations

import datetime as dt

import pytest

from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import Lexer, ParseError
from postroom.imap.wire.search import (
    AllKey,
    AndKey,
    BodyKey,
    DateField,
    DateKey,
    DateOp,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SearchKey,
    SequenceKey,
    SizeKey,
    TextKey,
    UidKey,
    WithinKey,
    parse_search_criteria,
)

D = dt.date(1994, 2, 1)


def parse(text: bytes, charset: str | None = None) -> SearchKey:
    return parse_search_criteria(Lexer(text), charset=charset)


SINGLE: list[tuple[bytes, SearchKey]] = [
    (b"ALL", AllKey()),
    (b"ANSWERED", FlagKey("\\Answered")),
    (b"DELETED", FlagKey("\\Deleted")),
    (b"DRAFT", FlagKey("\\Draft")),
    (b"FLAGGED", FlagKey("\\Flagged")),
    (b"SEEN", FlagKey("\\Seen")),
    (b"RECENT", FlagKey("\\Recent")),
    (b"UNANSWERED", FlagKey("\\Answered", False)),
    (b"UNDELETED", FlagKey("\\Deleted", False)),
    (b"UNDRAFT", FlagKey("\\Draft", False)),
    (b"UNFLAGGED", FlagKey("\\Flagged", False)),
    (b"unseen", FlagKey("\\Seen", False)),
    (b"NEW", AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", False)))),
    (b"OLD", FlagKey("\\Recent", False)),
    (b"KEYWORD $Forwarded", FlagKey("$Forwarded")),
    (b"UNKEYWORD $Junk", FlagKey("$Junk", False)),
    (b"BCC x", HeaderKey("Bcc", "x", True)),
    (b"CC x", HeaderKey("Cc", "x", True)),
    (b'FROM "a b"', HeaderKey("From", "a b", True)),
    (b"SUBJECT {5}\r\nhello", HeaderKey("Subject", "hello")),
    (b"TO x", HeaderKey("To", "x", True)),
    (b'HEADER X-Spam ""', HeaderKey("X-Spam", "")),
    (b"BODY word", BodyKey("word")),
    (b"TEXT word", TextKey("word")),
    (b"BEFORE 1-Feb-1994", DateKey(DateField.INTERNAL, DateOp.BEFORE, D)),
    (b"ON 1-Feb-1994", DateKey(DateField.INTERNAL, DateOp.ON, D)),
    (b'SINCE "1-Feb-1994"', DateKey(DateField.INTERNAL, DateOp.SINCE, D)),
    (b"SENTBEFORE 1-Feb-1994", DateKey(DateField.SENT, DateOp.BEFORE, D)),
    (b"SENTON 1-Feb-1994", DateKey(DateField.SENT, DateOp.ON, D)),
    (b"SENTSINCE 1-Feb-1994", DateKey(DateField.SENT, DateOp.SINCE, D)),
    (b"LARGER 10000000000", SizeKey(True, 10_000_000_000)),
    (b"SMALLER 5", SizeKey(False, 5)),
    (b"UID 1:*", UidKey(SequenceSet(((1, None),)))),
    (b"UID $", UidKey(SequenceSet.saved())),
    (b"2,4:6", SequenceKey(SequenceSet(((2, 2), (4, 6))))),
    (b"$", SequenceKey(SequenceSet.saved())),
    (b"MODSEQ 620162338", ModSeqKey(620162338)),
    (
        b'MODSEQ "/flags/\\\\draft" all 620162338',
        ModSeqKey(620162338, "/flags/\\draft", "all"),
    ),
    (b"OLDER 3600", WithinKey(True, 3600)),
    (b"YOUNGER 60", WithinKey(False, 60)),
    (b"NOT SEEN", NotKey(FlagKey("\\Seen"))),
    (b"OR SEEN FLAGGED", OrKey(FlagKey("\\Seen"), FlagKey("\\Flagged"))),
    (b"(SEEN)", FlagKey("\\Seen")),
]


@pytest.mark.parametrize(("text", "expected"), SINGLE, ids=lambda v: repr(v)[:40])
def test_single_keys(text: bytes, expected: SearchKey) -> None:
    assert parse(text) == expected


def test_nesting_or_not_groups() -> None:
    tree = parse(b"OR (FROM bob NOT SEEN) (OR TO alice 1:5) UNDELETED")
    assert tree == AndKey(
        (
            OrKey(
                AndKey((HeaderKey("From", "bob", True), NotKey(FlagKey("\\Seen")))),
                OrKey(HeaderKey("To", "alice", True), SequenceKey(SequenceSet(((1, 5),)))),
            ),
            FlagKey("\\Deleted", False),
        )
    )


def test_charset_handling() -> None:
    assert parse("SUBJECT \"ü\"".encode(), "UTF-8") == HeaderKey("Subject", "ü")
    # Unknown charsets still parse; the handler answers NO [BADCHARSET].
    assert parse(b'SUBJECT "\xfc"', "ISO-8859-1") == HeaderKey("Subject", "ü")
    with pytest.raises(ParseError):
        parse(b'SUBJECT "\xfc"', "UTF-8")


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"BOGUS",
        b"FROM",
        b"OR SEEN",
        b"NOT",
        b"()",
        b"(SEEN",
        b"SINCE 32-Jan-2020",
        b"LARGER x",
        b"UID",
        b"MODSEQ \"/flags/x\" bogus 5",
        b"SEEN  UNSEEN",
        b"NOT " * 100 + b"SEEN",
        b"(" * 100 + b"SEEN" + b")" * 100,
    ],
)
def test_rejects(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse(bad)
