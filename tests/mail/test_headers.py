from __future__ import annotations

from postroom.mail.headers import (
    decode_base64,
    decode_words,
    decoded_header,
    find_body_start,
    header_values,
    parse_header_fields,
    select_header_fields,
    split_message,
    unfold,
)
from tests.mail.messages import NON_ASCII, SIMPLE

FOLDED = (
    b"Subject: a long\r\n"
    b"  folded subject\r\n"
    b"X-Other: 1\r\n"
    b"subject: second\r\n"
    b"To: bob@example.net\r\n"
    b"\r\n"
    b"body\r\n"
)


def test_split_message_at_first_empty_line() -> None:
    header, body = split_message(SIMPLE)
    assert header.endswith(b"<1@example.com>\r\n\r\n")
    assert body == b"Hi Bob,\r\nhow are you?\r\n"


def test_split_tolerates_bare_lf_and_missing_body() -> None:
    assert split_message(b"A: 1\nB: 2\n\nbody\n") == (b"A: 1\nB: 2\n\n", b"body\n")
    assert split_message(b"A: 1\r\nB: 2") == (b"A: 1\r\nB: 2", b"")
    assert split_message(b"\r\nbody") == (b"\r\n", b"body")
    assert find_body_start(b"") == 0


def test_body_start_is_the_first_empty_line_of_either_kind() -> None:
    assert find_body_start(b"A: 1\n\nB: 2\r\n\r\nbody") == 6  # bare LF first
    assert find_body_start(b"A: 1\r\n\r\nbody\n\nmore") == 8  # CRLF first: later LFs are body
    assert find_body_start(b"A: 1\r\n\n\r\n") == 7
    assert find_body_start(b"A: 1\r\nB: 2\r\n\r\n", 6) == 14  # from an offset


def test_fields_keep_raw_bytes_and_folding() -> None:
    fields = parse_header_fields(FOLDED)
    assert [f.name for f in fields] == ["Subject", "X-Other", "subject", "To"]
    assert fields[0].raw == b"Subject: a long\r\n  folded subject\r\n"
    assert unfold(fields[0].value) == "a long  folded subject"


def test_lookup_is_case_insensitive_and_returns_every_occurrence() -> None:
    assert header_values(FOLDED, "SUBJECT") == ["a long  folded subject", "second"]
    assert header_values(FOLDED, "missing") == []


def test_decoded_header_utf8_and_latin1_encoded_words() -> None:
    assert decoded_header(NON_ASCII, "subject") == "Übergröße und Grüße"
    assert decoded_header(NON_ASCII, "From") == "Jörg Müller <joerg@example.de>"
    assert decoded_header(NON_ASCII, "to") == "André <andre@example.fr>"
    assert decoded_header(FOLDED, "subject") == "a long  folded subject\nsecond"


def test_decode_words_keeps_malformed_and_unknown_charsets_safe() -> None:
    assert decode_words("=?bogus-charset?q?abc?=") == "abc"
    assert decode_words("plain =?utf-8?x?nope?= text") == "plain =?utf-8?x?nope?= text"
    assert decode_words("=?utf-8?b?w6k?=") == "é"  # missing padding tolerated
    assert decode_words("a =?utf-8?q?x?= b") == "a x b"  # spaces next to plain text stay


def test_decode_base64_is_lenient() -> None:
    assert decode_base64(b"AAEC\r\nAwQF\r\n") == bytes(range(6))
    assert decode_base64(b"AA*EC!Aw") == bytes([0, 1, 2, 3])
    assert decode_base64(b"QQ==garbage") == b"A"
    assert decode_base64(b"Q") == b""


def test_header_fields_selection_keeps_order_bytes_and_blank_line() -> None:
    selected = select_header_fields(FOLDED, ["subject"], exclude=False)
    assert selected == b"Subject: a long\r\n  folded subject\r\nsubject: second\r\n\r\n"
    rest = select_header_fields(FOLDED, ["SUBJECT", "x-other"], exclude=True)
    assert rest == b"To: bob@example.net\r\n\r\n"


def test_header_fields_selection_of_nothing_is_the_blank_line() -> None:
    assert select_header_fields(FOLDED, ["absent"], exclude=False) == b"\r\n"


def test_junk_lines_survive_fields_not() -> None:
    header = b"From nobody Mon\r\nA: 1\r\n\r\n"
    assert select_header_fields(header, ["a"], exclude=True) == b"From nobody Mon\r\n\r\n"
    assert select_header_fields(header, ["from"], exclude=False) == b"\r\n"
