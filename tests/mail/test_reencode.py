"""Sans-IO: binary parts re-encoded as base64 (mail/reencode.py), quoted-printable
decoding (mail/sections.py) and PREVIEW text (mail/preview.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mail.mimetree import MAX_DEPTH, parse_message
from postroom.mail.preview import PREVIEW_LENGTH, html_text, message_preview
from postroom.mail.reencode import needs_reencoding, reencode_binary
from postroom.mail.sections import decode_binary, decode_quoted_printable, extract_section


def _multipart(payload: bytes, encoding: bytes = b"binary") -> bytes:
    return (b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + payload
            + b"\r\n--b--\r\n")


def test_plain_messages_are_returned_untouched() -> None:
    message = b"Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    assert not needs_reencoding(message)
    assert reencode_binary(message) is message


def test_binary_part_becomes_base64_and_decodes_back() -> None:
    payload = bytes(range(256))
    stored = reencode_binary(_multipart(payload))
    assert b"\x00" not in stored and b"binary" not in stored
    meta = parse_message(stored)
    assert meta.root.children[1].encoding == "base64"
    assert decode_binary(stored, meta, (2,)) == payload
    assert decode_binary(stored, meta, (1,)) == b"hi"  # the other part is unchanged
    assert max(len(line) for line in stored.split(b"\r\n")) <= 76


def test_nul_in_a_7bit_part_and_binary_containers() -> None:
    message = (b"Subject: x\r\nContent-Transfer-Encoding: BINARY\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: text/plain\r\n\r\na\x00b\r\n--b--\r\n")
    stored = reencode_binary(message)
    meta = parse_message(stored)
    assert meta.root.encoding == "8bit" and meta.root.children[0].encoding == "base64"
    assert decode_binary(stored, meta, (1,)) == b"a\x00b"
    header = extract_section(stored, meta, (), "HEADER")
    assert header.count(b"Content-Transfer-Encoding") == 1


def test_single_part_without_trailing_line_break() -> None:
    message = b"Content-Type: image/png\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01"
    stored = reencode_binary(message)
    assert stored.endswith(b"\r\n\r\nAAE=\r\n")
    assert decode_binary(stored, parse_message(stored), (1,)) == b"\x00\x01"


def test_nesting_past_the_mime_limit_is_left_alone() -> None:
    deep = b"x\x00y"
    for level in range(MAX_DEPTH + 5):
        deep = (b"Content-Type: multipart/mixed; boundary=l%d\r\n\r\n--l%d\r\n%b\r\n--l%d--\r\n"
                % (level, level, deep, level))
    stored = reencode_binary(deep)  # bounded: the parts below the limit are opaque
    assert stored == deep


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), garbage=st.binary(max_size=200))
def test_reencoding_never_raises_and_keeps_binary_content(payload: bytes, garbage: bytes) -> None:
    stored = reencode_binary(_multipart(payload))
    assert decode_binary(stored, parse_message(stored), (2,)) == payload
    reencode_binary(garbage + b"\r\nContent-Transfer-Encoding: binary\r\n\r\n" + garbage)


# -- quoted-printable (RFC 2045 §6.7) ---------------------------------------------------------
def test_quoted_printable_rules() -> None:
    assert decode_quoted_printable(b"a  \r\nb\t\r\n") == b"a\r\nb\r\n"  # rule 3
    assert decode_quoted_printable(b"soft= \t\r\nbreak") == b"softbreak"  # "=" + space + CRLF
    assert decode_quoted_printable(b"soft=\nbreak=3d=3D") == b"softbreak=="
    assert decode_quoted_printable(b"keep =ZZ and a=") == b"keep =ZZ and a"
    assert decode_quoted_printable(b" " * 100_000 + b"x") == b" " * 100_000 + b"x"


# -- PREVIEW (RFC 8970) -----------------------------------------------------------------------
def test_preview_prefers_the_first_text_part() -> None:
    message = (b"Content-Type: multipart/alternative; boundary=a\r\n\r\n"
               b"--a\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSAgIQ==\r\n"
               b"--a\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--a--\r\n")
    assert message_preview(message, parse_message(message)) == "Grüße !"
    long = b"Subject: x\r\n\r\n" + b"word " * 100
    assert len(message_preview(long, parse_message(long))) == PREVIEW_LENGTH


def test_html_text() -> None:
    assert html_text("<html><head><title>t</title><style>x{}</style></head>"
                     "<body><p>a&amp;b</p><script>no</script>c</body>") == " a&bc"
    assert html_text("<head><body>shown") == "shown"  # an unclosed head does not hide it
