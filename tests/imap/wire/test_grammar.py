from __future__ import annotations

import datetime as dt

import pytest

from postroom.imap.wire.grammar import (
    SequenceSet,
    decode_mailbox,
    parse_date,
    parse_date_time,
    parse_flag_list,
    parse_sequence_set,
)
from postroom.imap.wire.lexer import Lexer, ParseError


def seq(text: str) -> SequenceSet:
    lx = Lexer(text.encode())
    value = parse_sequence_set(lx)
    lx.expect_end()
    return value


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("1", ((1, 1),)),
        ("1:3", ((1, 3),)),
        ("3:1", ((3, 1),)),
        ("*", ((None, None),)),
        ("5:*", ((5, None),)),
        ("1,3:4,7:*", ((1, 1), (3, 4), (7, None))),
    ],
)
def test_sequence_set_parse_and_render(text: str, ranges: tuple[object, ...]) -> None:
    value = seq(text)
    assert value.ranges == ranges
    assert value.render() == text


def test_saved_result() -> None:
    value = seq("$")
    assert value.is_saved
    assert value.render() == "$"
    with pytest.raises(ValueError):
        value.resolve(10)


@pytest.mark.parametrize("bad", ["0", "1:0", "", ",1", "1,", "a", "1:", "$,1"])
def test_sequence_set_rejects(bad: str) -> None:
    with pytest.raises(ParseError):
        seq(bad)


def test_resolve_orders_merges_and_star() -> None:
    assert seq("4:2,3,9:*,20").resolve(12) == [(2, 4), (9, 12), (20, 20)]
    # RFC 9051 §6.4.8: 559:* includes the largest UID even when 559 is above it.
    assert seq("559:*").resolve(500) == [(500, 559)]
    assert seq("*").resolve(0) == []
    assert list(seq("1:3,5").values(10)) == [1, 2, 3, 5]
    assert seq("2:4").contains(3, 10)
    assert not seq("2:4").contains(5, 10)


def test_from_values_compresses() -> None:
    assert SequenceSet.from_values([5, 1, 2, 3, 3, 9, 10]).render() == "1:3,5,9:10"
    assert SequenceSet.from_values([]).render() == ""


def test_dates() -> None:
    assert parse_date(Lexer(b"1-Feb-1994")) == dt.date(1994, 2, 1)
    assert parse_date(Lexer(b'"21-dec-2020"')) == dt.date(2020, 12, 21)
    value = parse_date_time(Lexer(b'"01-Feb-1994 21:52:25 -0800"'))
    assert value == dt.datetime(1994, 2, 1, 21, 52, 25, tzinfo=dt.timezone(-dt.timedelta(hours=8)))
    assert parse_date_time(Lexer(b'" 1-Feb-1994 00:00:00 +0130"')).utcoffset() == dt.timedelta(
        hours=1, minutes=30
    )


@pytest.mark.parametrize(
    "bad",
    [b"31-Feb-1994", b"1-Foo-1994", b"1-Feb-94", b"x", b'"1-Feb-1994'],
)
def test_bad_dates(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse_date(Lexer(bad))


@pytest.mark.parametrize(
    "bad",
    [
        b'"01-Feb-1994 25:00:00 +0000"',
        b'"01-Feb-1994 21:52:25 0800"',
        b'"1-Feb-1994 21:52:25 +0800"',
        b"01-Feb-1994 21:52:25 +0800",
    ],
)
def test_bad_date_times(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse_date_time(Lexer(bad))


def test_flag_list_normalises_system_flags() -> None:
    assert parse_flag_list(Lexer(b"(\\seen \\ANSWERED $Junk \\X-Custom)")) == (
        "\\Seen",
        "\\Answered",
        "$Junk",
        "\\X-Custom",
    )
    assert parse_flag_list(Lexer(b"()")) == ()
    with pytest.raises(ParseError):
        parse_flag_list(Lexer(b"(\\Seen"))


def test_mailbox_decoding() -> None:
    assert decode_mailbox(b"inbox", is_utf8=False) == "INBOX"
    assert decode_mailbox(b"InBoX", is_utf8=True) == "INBOX"
    assert decode_mailbox(b"Entw&APw-rfe", is_utf8=False) == "Entwürfe"
    assert decode_mailbox("Entwürfe".encode(), is_utf8=True) == "Entwürfe"
    # In UTF-8 mode "&" is an ordinary character (RFC 6855 §3).
    assert decode_mailbox(b"A&B", is_utf8=True) == "A&B"
    assert decode_mailbox(b"INBOX/sub", is_utf8=False) == "INBOX/sub"
    for bad, is_utf8 in [(b"A&B", False), ("ü".encode(), False), (b"\xff", True)]:
        with pytest.raises(ParseError):
            decode_mailbox(bad, is_utf8=is_utf8)
