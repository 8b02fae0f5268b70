from __future__ import annotations

import pytest

from postroom.imap.wire.fetch import (
    BinarySection,
    BinarySize,
    BodySection,
    FetchAttribute,
    Partial,
    Section,
    SimpleAttribute,
    parse_fetch_attributes,
)
from postroom.imap.wire.lexer import Lexer, ParseError


def parse(text: bytes) -> tuple[FetchAttribute, ...]:
    lx = Lexer(text)
    value = parse_fetch_attributes(lx)
    lx.expect_end()
    return value


@pytest.mark.parametrize(
    "name",
    [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "UID",
        "MODSEQ",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
    ],
)
def test_simple(name: str) -> None:
    assert parse(name.lower().encode()) == (SimpleAttribute(name),)
    assert SimpleAttribute(name).response_name() == name


def test_macros() -> None:
    names = lambda text: [a.response_name() for a in parse(text)]  # noqa: E731
    assert names(b"FAST") == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    assert names(b"all") == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
    assert names(b"FULL") == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]


CASES: list[tuple[bytes, FetchAttribute, str, bool]] = [
    (b"BODY[]", BodySection(Section()), "BODY[]", True),
    (b"BODY.PEEK[]", BodySection(Section(), is_peek=True), "BODY[]", False),
    (b"BODY[TEXT]", BodySection(Section((), "TEXT")), "BODY[TEXT]", True),
    (b"BODY[HEADER]", BodySection(Section((), "HEADER")), "BODY[HEADER]", True),
    (b"BODY[1.2.3]", BodySection(Section((1, 2, 3))), "BODY[1.2.3]", True),
    (b"BODY[1.2.MIME]", BodySection(Section((1, 2), "MIME")), "BODY[1.2.MIME]", True),
    (b"BODY[3.HEADER]", BodySection(Section((3,), "HEADER")), "BODY[3.HEADER]", True),
    (
        b"BODY[4.TEXT]<10.20>",
        BodySection(Section((4,), "TEXT"), Partial(10, 20)),
        "BODY[4.TEXT]<10>",
        True,
    ),
    (
        b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.1024>",
        BodySection(Section((), "HEADER.FIELDS", ("SUBJECT",)), Partial(0, 1024), True),
        "BODY[HEADER.FIELDS (SUBJECT)]<0>",
        False,
    ),
    (
        b'BODY[HEADER.FIELDS.NOT (Date "X-Odd Name")]',
        BodySection(Section((), "HEADER.FIELDS.NOT", ("Date", "X-Odd Name"))),
        'BODY[HEADER.FIELDS.NOT (Date "X-Odd Name")]',
        True,
    ),
    (b"BINARY[1]", BinarySection((1,)), "BINARY[1]", True),
    (b"BINARY.PEEK[1.2]<0.5>", BinarySection((1, 2), Partial(0, 5), True), "BINARY[1.2]<0>", False),
    (b"BINARY[]", BinarySection(()), "BINARY[]", True),
    (b"BINARY.SIZE[2]", BinarySize((2,)), "BINARY.SIZE[2]", False),
]


@pytest.mark.parametrize(
    ("text", "expected", "name", "sets_seen"), CASES, ids=lambda v: str(v)[:40]
)
def test_sections(text: bytes, expected: FetchAttribute, name: str, sets_seen: bool) -> None:
    assert parse(text) == (expected,)
    assert expected.response_name() == name
    assert expected.sets_seen is sets_seen


def test_list_and_seen_rules() -> None:
    attrs = parse(b"(UID RFC822.SIZE BODY.PEEK[1] RFC822.TEXT)")
    assert [a.response_name() for a in attrs] == ["UID", "RFC822.SIZE", "BODY[1]", "RFC822.TEXT"]
    assert [a.sets_seen for a in attrs] == [False, False, False, True]


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"()",
        b"BOGUS",
        b"BODY[MIME]",
        b"BODY[1.]",
        b"BODY[0]",
        b"BODY[HEADER.FIELDS]",
        b"BODY[HEADER.FIELDS ()]",
        b"BODY[1]<5>",
        b"BODY[]<1.0>",
        b"BINARY[TEXT]",
        b"FLAGS[]",
        b"BODY[TEXT",
        b"(FLAGS",
        b"BINARY.SIZE",
    ],
)
def test_rejects(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse(bad)
