from __future__ import annotations

from postroom.mail.bodystructure import body_structure, render_params
from postroom.mail.mimetree import parse_message
from tests.mail.messages import EMBEDDED, MIXED_ATTACHMENT, NESTED, NON_ASCII, SIMPLE, crlf

PLAIN_ASCII = ["CHARSET", "us-ascii"]


def test_simple_text_message() -> None:
    meta = parse_message(SIMPLE)
    assert body_structure(meta, extensible=True) == [
        "TEXT", "PLAIN", PLAIN_ASCII, None, None, "7BIT", 23, 2, None, None, None, None
    ]  # fmt: skip
    assert body_structure(meta, extensible=False) == [
        "TEXT", "PLAIN", PLAIN_ASCII, None, None, "7BIT", 23, 2
    ]  # fmt: skip


def test_mixed_with_attachment() -> None:
    meta = parse_message(MIXED_ATTACHMENT)
    text = ["TEXT", "PLAIN", PLAIN_ASCII, None, None, "7BIT", 13, 1]
    attachment = [
        "APPLICATION", "OCTET-STREAM", ["NAME", "data.bin"], "<att1@example.com>",
        "some bytes", "BASE64", 16,
    ]  # fmt: skip
    assert body_structure(meta, extensible=True) == [
        [*text, None, None, None, None],
        [*attachment, None, ["attachment", ["FILENAME", "data.bin"]], None, None],
        "MIXED",
        ["BOUNDARY", "outer"],
        None,
        None,
        None,
    ]
    assert body_structure(meta, extensible=False) == [text, attachment, "MIXED"]


def test_nested_multipart_body() -> None:
    assert body_structure(parse_message(NESTED), extensible=False) == [
        [
            ["TEXT", "PLAIN", PLAIN_ASCII, None, None, "7BIT", 5, 1],
            ["TEXT", "HTML", PLAIN_ASCII, None, None, "7BIT", 11, 1],
            "ALTERNATIVE",
        ],
        ["IMAGE", "PNG", None, None, None, "BASE64", 12],
        "MIXED",
    ]


def test_message_rfc822_has_envelope_body_and_lines() -> None:
    inner = crlf(
        "From: Carol <carol@example.org>\n"
        "Subject: inner\n"
        "Content-Type: multipart/alternative; boundary=in\n"
        "\n"
        "--in\n"
        "Content-Type: text/plain\n"
        "\n"
        "inner plain\n"
        "--in\n"
        "Content-Type: text/html\n"
        "\n"
        "<i>inner</i>\n"
        "--in--"
    )
    assert inner in EMBEDDED
    carol = [["Carol", None, "carol", "example.org"]]
    envelope = [None, "inner", carol, carol, carol, None, None, None, None, None]
    forwarded = body_structure(parse_message(EMBEDDED), extensible=False)[1]
    assert forwarded == [
        "MESSAGE", "RFC822", None, None, "forwarded", "7BIT", len(inner), envelope,
        [
            ["TEXT", "PLAIN", PLAIN_ASCII, None, None, "7BIT", 11, 1],
            ["TEXT", "HTML", PLAIN_ASCII, None, None, "7BIT", 12, 1],
            "ALTERNATIVE",
        ],
        13,
    ]  # fmt: skip


def test_extension_data_language_location_md5() -> None:
    raw = crlf(
        "Content-Type: text/plain; charset=utf-8; format=flowed\n"
        "Content-Language: en, de\n"
        "Content-Location: http://example.com/x\n"
        "Content-MD5: abc=\n"
        "Content-Disposition: inline\n\nx"
    )
    assert body_structure(parse_message(raw), extensible=True) == [
        "TEXT", "PLAIN", ["CHARSET", "utf-8", "FORMAT", "flowed"], None, None, "7BIT", 1, 1,
        "abc=", ["inline", None], ["en", "de"], "http://example.com/x",
    ]  # fmt: skip
    single = crlf("Content-Type: text/plain\nContent-Language: fr\n\nx")
    assert body_structure(parse_message(single), extensible=True)[-2] == "fr"


def test_non_ascii_parameters_are_sent_as_rfc2231() -> None:
    pdf = body_structure(parse_message(NON_ASCII), extensible=True)[1]
    assert pdf[2] == ["NAME*", "utf-8''Rechnung%20M%C3%A4rz.pdf"]
    assert pdf[8] == ["attachment", ["FILENAME*", "utf-8''Rechnung%20M%C3%A4rz.pdf"]]
    assert render_params({}) is None


def test_message_without_boundaries_still_has_a_child() -> None:
    raw = crlf("Content-Type: multipart/mixed; boundary=zz\n\nno parts\n")
    assert body_structure(parse_message(raw), extensible=False) == [
        ["TEXT", "PLAIN", PLAIN_ASCII, None, None, "7BIT", 10, 1],
        "MIXED",
    ]


def test_rfc9051_example_shape() -> None:
    # RFC 9051 §7.5.2 FETCH example: two text parts, the second base64 with a name.
    first = b"x" * 48 + b"\r\n"
    text = first * 22 + b"y" * 50 + b"\r\n"  # 1152 octets, 23 lines
    encoded = (b"Q" * 60 + b"\r\n") * 72 + b"Q" * 88 + b"\r\n"  # 4554 octets, 73 lines
    raw = (
        b"Content-Type: MULTIPART/MIXED; BOUNDARY=b\r\n\r\n"
        b"--b\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n" + text + b"\r\n"
        b"--b\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n"
        b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        b"Content-Description: Compiler diff\r\n"
        b"Content-Transfer-Encoding: BASE64\r\n\r\n" + encoded + b"\r\n--b--\r\n"
    )
    assert body_structure(parse_message(raw), extensible=False) == [
        ["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 1152, 23],
        [
            "TEXT", "PLAIN", ["CHARSET", "US-ASCII", "NAME", "cc.diff"],
            "<960723163407.20117h@cac.washington.edu>", "Compiler diff", "BASE64", 4554, 73,
        ],
        "MIXED",
    ]  # fmt: skip
