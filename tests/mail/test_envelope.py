from __future__ import annotations

from postroom.mail.envelope import MISSING_DOMAIN, parse_address_list, render_envelope
from postroom.mail.headers import split_message
from tests.mail.messages import NON_ASCII, SIMPLE, crlf

ALICE = ["Alice Example", None, "alice", "example.com"]


def envelope_of(raw: bytes) -> list[object]:
    return render_envelope(split_message(raw)[0])


def test_simple_envelope_defaults_sender_and_reply_to_to_from() -> None:
    assert envelope_of(SIMPLE) == [
        "Mon, 7 Feb 1994 21:52:25 -0800",
        "Hello",
        [ALICE],
        [ALICE],
        [ALICE],
        [[None, None, "bob", "example.net"]],
        None,
        None,
        None,
        "<1@example.com>",
    ]


def test_explicit_sender_reply_to_and_in_reply_to() -> None:
    raw = crlf(
        "From: a@example.com\nSender: s@example.com\nReply-To: r@example.com\n"
        "Cc: c@example.com\nBcc: b@example.com\nIn-Reply-To: <0@example.com>\n\n"
    )
    envelope = envelope_of(raw)
    assert envelope[3] == [[None, None, "s", "example.com"]]
    assert envelope[4] == [[None, None, "r", "example.com"]]
    assert envelope[6] == [[None, None, "c", "example.com"]]
    assert envelope[7] == [[None, None, "b", "example.com"]]
    assert envelope[8] == "<0@example.com>"
    assert envelope[0] is None and envelope[1] is None


def test_encoded_words_stay_raw_and_folding_is_removed() -> None:
    envelope = envelope_of(NON_ASCII)
    assert envelope[1] == "=?utf-8?B?w5xiZXJncsO2w59l?= =?iso-8859-1?q?_und_Gr=FC=DFe?="
    assert envelope[2] == [["=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=", None, "joerg", "example.de"]]


def test_group_syntax_renders_start_and_end_markers() -> None:
    raw = crlf(
        'From: a@example.com\nTo: Friends: x@example.com, "Y Z" <y@example.com>;, w@e.com\n\n'
    )
    assert envelope_of(raw)[5] == [
        [None, None, "Friends", None],
        [None, None, "x", "example.com"],
        ["Y Z", None, "y", "example.com"],
        [None, None, None, None],
        [None, None, "w", "e.com"],
    ]


def test_empty_group() -> None:
    assert parse_address_list("undisclosed-recipients:;") == [
        [None, None, "undisclosed-recipients", None],
        [None, None, None, None],
    ]


def test_unterminated_group_is_closed() -> None:
    assert parse_address_list("G: a@b.c") == [
        [None, None, "G", None],
        [None, None, "a", "b.c"],
        [None, None, None, None],
    ]


def test_quoted_names_comments_routes_and_missing_domains() -> None:
    assert parse_address_list('"Doe, John" <john@example.com> (work)') == [
        ["Doe, John", None, "john", "example.com"]
    ]
    assert parse_address_list('"a \\"q\\"" <a@b.c>') == [['a "q"', None, "a", "b.c"]]
    assert parse_address_list("<@r1.example,@r2.example:u@example.com>") == [
        [None, "@r1.example,@r2.example", "u", "example.com"]
    ]
    assert parse_address_list("nobody") == [[None, None, "nobody", MISSING_DOMAIN]]
    assert parse_address_list("John Q. Public <jqp@[192.0.2.1]>") == [
        ["John Q. Public", None, "jqp", "[192.0.2.1]"]
    ]


def test_empty_address_headers_are_nil() -> None:
    raw = crlf("From: \nTo: ,\nSubject:\n\n")
    envelope = envelope_of(raw)
    assert envelope[2] is None and envelope[5] is None and envelope[1] is None
