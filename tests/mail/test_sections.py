from __future__ import annotations

import pytest

from postroom.errors import Refused
from postroom.mail.mimetree import parse_message
from postroom.mail.sections import (
    UnknownTransferEncoding,
    binary_size,
    decode_binary,
    extract_section,
    find_part,
    text_for_search,
)
from tests.mail.messages import (
    ALTERNATIVE,
    EMBEDDED,
    MIXED_ATTACHMENT,
    NESTED,
    NON_ASCII,
    SIMPLE,
    crlf,
)


def section(
    raw: bytes,
    part: tuple[int, ...],
    specifier: str | None = None,
    fields: tuple[str, ...] = (),
    partial: tuple[int, int | None] | None = None,
) -> bytes:
    return extract_section(raw, parse_message(raw), part, specifier, fields, partial)


def test_whole_message_header_and_text() -> None:
    header, text = SIMPLE.split(b"\r\n\r\n", 1)
    assert section(SIMPLE, ()) == SIMPLE
    assert section(SIMPLE, (), "HEADER") == header + b"\r\n\r\n"
    assert section(SIMPLE, (), "TEXT") == text
    assert section(SIMPLE, (), "header") == header + b"\r\n\r\n"  # case-insensitive


def test_part_one_of_a_single_part_message_is_its_body() -> None:
    assert section(SIMPLE, (1,)) == b"Hi Bob,\r\nhow are you?\r\n"
    assert section(SIMPLE, (2,)) == b""
    assert section(SIMPLE, (1, 1)) == b""


def test_part_numbers_in_nested_multiparts() -> None:
    assert section(NESTED, (1, 1)) == b"plain"
    assert section(NESTED, (1, 2)) == b"<b>html</b>"
    assert section(NESTED, (2,)) == b"iVBORw0KGgo="
    assert section(NESTED, (2,), "MIME") == (
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    assert section(NESTED, (3,)) == b""
    assert section(NESTED, (0,)) == b""
    assert section(NESTED, (1, 1, 1)) == b""


def test_mime_is_only_for_parts() -> None:
    assert section(NESTED, (), "MIME") == b""
    assert section(SIMPLE, (1,), "MIME").startswith(b"From: Alice")


def test_header_and_text_of_an_embedded_message() -> None:
    header = section(EMBEDDED, (2,), "HEADER")
    assert header.startswith(b"From: Carol") and header.endswith(b"boundary=in\r\n\r\n")
    assert section(EMBEDDED, (2,), "TEXT").startswith(b"--in\r\nContent-Type: text/plain")
    assert section(EMBEDDED, (2,), "MIME") == (
        b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    )
    assert section(EMBEDDED, (2,)).startswith(b"From: Carol")
    assert section(EMBEDDED, (2, 1)) == b"inner plain"
    assert section(EMBEDDED, (2, 2), "MIME") == b"Content-Type: text/html\r\n\r\n"
    # HEADER/TEXT of a part that is not message/rfc822 do not exist
    assert section(EMBEDDED, (1,), "HEADER") == b""
    assert section(EMBEDDED, (1,), "TEXT") == b""


def test_single_part_embedded_message_numbering() -> None:
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=o\n\n--o\n"
        "Content-Type: message/rfc822\n\nSubject: in\n\nonly body\n--o--\n"
    )
    assert section(raw, (1, 1)) == b"only body"
    assert section(raw, (1,), "TEXT") == b"only body"


def test_header_fields_and_fields_not() -> None:
    fields = section(SIMPLE, (), "HEADER.FIELDS", fields=("subject", "TO"))
    assert fields == b"To: bob@example.net\r\nSubject: Hello\r\n\r\n"
    rest = section(SIMPLE, (), "HEADER.FIELDS.NOT", fields=("from", "date", "message-id"))
    assert rest == b"To: bob@example.net\r\nSubject: Hello\r\n\r\n"
    inner = section(EMBEDDED, (2,), "HEADER.FIELDS", fields=("subject",))
    assert inner == b"Subject: inner\r\n\r\n"


def test_partial_fetches() -> None:
    assert section(SIMPLE, (1,), partial=(0, 2)) == b"Hi"
    assert section(SIMPLE, (1,), partial=(3, 3)) == b"Bob"
    assert section(SIMPLE, (1,), partial=(10_000, 5)) == b""
    assert section(SIMPLE, (1,), partial=(20, None)) == b"?\r\n"
    assert section(SIMPLE, (), "HEADER", partial=(0, 4)) == b"From"


def test_binary_decodes_base64_and_quoted_printable() -> None:
    meta = parse_message(MIXED_ATTACHMENT)
    assert decode_binary(MIXED_ATTACHMENT, meta, (2,)) == bytes(range(10))
    assert binary_size(MIXED_ATTACHMENT, meta, (2,)) == 10
    assert decode_binary(MIXED_ATTACHMENT, meta, (1,)) == b"See attached."
    assert binary_size(MIXED_ATTACHMENT, meta, (1,)) == 13
    alt = parse_message(ALTERNATIVE)
    assert decode_binary(ALTERNATIVE, alt, (1,)) == "café au lait please".encode()
    assert decode_binary(ALTERNATIVE, alt, ()) == ALTERNATIVE
    assert binary_size(ALTERNATIVE, alt, ()) == len(ALTERNATIVE)
    assert decode_binary(ALTERNATIVE, alt, (9,)) == b""


def test_binary_refuses_unknown_transfer_encodings() -> None:
    raw = crlf("Content-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n")
    meta = parse_message(raw)
    with pytest.raises(UnknownTransferEncoding) as caught:
        decode_binary(raw, meta, (1,))
    assert isinstance(caught.value, Refused) and caught.value.code == "UNKNOWN-CTE"
    with pytest.raises(UnknownTransferEncoding):
        binary_size(raw, meta, (1,))
    assert extract_section(raw, meta, (1,), None) == b"begin 644 f\r\n"


def test_find_part() -> None:
    meta = parse_message(EMBEDDED)
    part = find_part(meta, (2, 2))
    assert part is not None and part.subtype == "html"
    assert find_part(meta, ()) is meta.root


def test_text_for_search_decodes_charsets_and_encodings() -> None:
    assert text_for_search(ALTERNATIVE, parse_message(ALTERNATIVE)) == (
        "café au lait please\n<p>café</p>"
    )
    assert "Grüße" in text_for_search(NON_ASCII, parse_message(NON_ASCII))
    assert "JVBERi0" not in text_for_search(NON_ASCII, parse_message(NON_ASCII))
    embedded = text_for_search(EMBEDDED, parse_message(EMBEDDED))
    assert embedded == "Forwarded below.\ninner plain\n<i>inner</i>"


def test_text_for_search_is_bounded() -> None:
    raw = b"Subject: big\r\n\r\n" + b"x" * 10_000
    assert len(text_for_search(raw, parse_message(raw), limit=100)) == 100
