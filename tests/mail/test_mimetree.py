from __future__ import annotations

import json

import pytest

from postroom.mail.mimetree import (
    MAX_DEPTH,
    MAX_PARTS,
    MessageMeta,
    Part,
    message_meta,
    parse_message,
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

ALL_SAMPLES = [SIMPLE, ALTERNATIVE, MIXED_ATTACHMENT, NESTED, EMBEDDED, NON_ASCII]


def body(raw: bytes, part: Part) -> bytes:
    return raw[part.body_start : part.end]


def header(raw: bytes, part: Part) -> bytes:
    return raw[part.header_start : part.body_start]


def test_simple_text_message_defaults() -> None:
    root = parse_message(SIMPLE).root
    assert (root.type, root.subtype, root.params) == ("text", "plain", {"charset": "us-ascii"})
    assert root.encoding == "7bit"
    assert body(SIMPLE, root) == b"Hi Bob,\r\nhow are you?\r\n"
    assert root.size == 23
    assert root.lines == 2
    assert root.children == ()


def test_alternative_ignores_preamble_and_epilogue() -> None:
    root = parse_message(ALTERNATIVE).root
    assert (root.type, root.subtype) == ("multipart", "alternative")
    plain, html = root.children
    assert body(ALTERNATIVE, plain) == b"caf=C3=A9 au lait=\r\n please"
    assert plain.params == {"charset": "utf-8"}
    assert plain.encoding == "quoted-printable"
    assert plain.lines == 2
    assert header(ALTERNATIVE, html) == b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    assert body(ALTERNATIVE, html) == "<p>café</p>".encode()
    assert html.lines == 1
    assert root.end == len(ALTERNATIVE)


def test_mixed_with_base64_attachment() -> None:
    text, attachment = parse_message(MIXED_ATTACHMENT).root.children
    assert body(MIXED_ATTACHMENT, text) == b"See attached."
    assert (attachment.type, attachment.subtype) == ("application", "octet-stream")
    assert attachment.params == {"name": "data.bin"}
    assert attachment.encoding == "base64"
    assert attachment.disposition == "attachment"
    assert attachment.disposition_params == {"filename": "data.bin"}
    assert attachment.id == "<att1@example.com>"
    assert attachment.description == "some bytes"
    assert attachment.lines is None
    assert body(MIXED_ATTACHMENT, attachment) == b"AAECAwQFBgcICQ=="


def test_nested_multipart() -> None:
    root = parse_message(NESTED).root
    alternative, image = root.children
    assert (alternative.type, alternative.subtype) == ("multipart", "alternative")
    assert [body(NESTED, p) for p in alternative.children] == [b"plain", b"<b>html</b>"]
    assert body(NESTED, image) == b"iVBORw0KGgo="
    # the inner multipart's body runs to its close delimiter's line, not beyond
    assert body(NESTED, alternative).endswith(b"--inner--")


def test_embedded_message_with_multipart_body() -> None:
    root = parse_message(EMBEDDED).root
    forwarded = root.children[1]
    assert (forwarded.type, forwarded.subtype) == ("message", "rfc822")
    assert forwarded.description == "forwarded"
    (inner,) = forwarded.children
    assert inner.header_start == forwarded.body_start
    assert header(EMBEDDED, inner).startswith(b"From: Carol <carol@example.org>\r\n")
    assert [body(EMBEDDED, p) for p in inner.children] == [b"inner plain", b"<i>inner</i>"]
    assert forwarded.envelope is not None
    assert forwarded.envelope[1] == "inner"
    assert forwarded.lines == body(EMBEDDED, forwarded).count(b"\n") + 1


def test_rfc2231_continuations_and_charset_are_decoded() -> None:
    text, pdf = parse_message(NON_ASCII).root.children
    assert text.params == {"charset": "iso-8859-1"}
    assert pdf.params == {"name": "Rechnung März.pdf"}
    assert pdf.disposition_params == {"filename": "Rechnung März.pdf"}


def test_bare_lf_message_has_the_same_structure() -> None:
    bare = ALTERNATIVE.replace(b"\r\n", b"\n")
    root = parse_message(bare).root
    assert [body(bare, p) for p in root.children] == [
        b"caf=C3=A9 au lait=\n please",
        "<p>café</p>".encode(),
    ]
    assert root.children[0].lines == 2


def test_missing_final_boundary_runs_to_the_end() -> None:
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n")
    root = parse_message(raw).root
    assert [body(raw, p) for p in root.children] == [b"one", b"two\r\n"]
    assert root.children[-1].end == len(raw)


def test_wrong_boundary_gives_one_part_spanning_the_body() -> None:
    raw = crlf("Content-Type: multipart/mixed; boundary=nothere\n\n--other\n\ntext\n")
    root = parse_message(raw).root
    (only,) = root.children
    assert (only.type, only.subtype) == ("text", "plain")
    assert only.header_start == only.body_start == root.body_start
    assert body(raw, only) == b"--other\r\n\r\ntext\r\n"


def test_missing_boundary_parameter_is_treated_like_a_wrong_one() -> None:
    raw = crlf("Content-Type: multipart/mixed\n\nabc\n")
    assert len(parse_message(raw).root.children) == 1


def test_delimiter_needs_line_start_and_allows_transport_padding() -> None:
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b \t\nContent-Type: text/plain\n\nx --b not here\n--bb not a delimiter\n"
        "--b-- \n"
    )
    (part,) = parse_message(raw).root.children
    assert body(raw, part) == b"x --b not here\r\n--bb not a delimiter"


def test_empty_part_and_part_without_headers() -> None:
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\nbody\n--b--\n")
    empty, headerless = parse_message(raw).root.children
    assert empty.size == 0 and empty.lines == 0
    assert header(raw, headerless) == b"\r\n"
    assert body(raw, headerless) == b"body"


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = crlf(
        "Content-Type: multipart/digest; boundary=d\n\n"
        "--d\n\nFrom: x@example.com\nSubject: one\n\nfirst\n--d--\n"
    )
    (part,) = parse_message(raw).root.children
    assert (part.type, part.subtype) == ("message", "rfc822")
    assert part.envelope is not None and part.envelope[1] == "one"
    assert body(raw, part.children[0]) == b"first"


def test_invalid_content_type_defaults_to_text_plain() -> None:
    root = parse_message(b"Content-Type: garbage\r\n\r\nx").root
    assert (root.type, root.subtype, root.params) == ("text", "plain", {"charset": "us-ascii"})


def test_encoded_message_rfc822_becomes_an_opaque_leaf() -> None:
    raw = crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nQQ==\n")
    root = parse_message(raw).root
    assert root.children == () and root.envelope is None
    assert (root.type, root.subtype, root.encoding) == ("application", "octet-stream", "base64")


def test_other_content_fields() -> None:
    raw = crlf(
        "Content-Type: Text/HTML; Charset=UTF-8\n"
        "Content-Transfer-Encoding: BASE64\n"
        "Content-Language: en, de-CH\n"
        "Content-Location: http://example.com/\n a.html\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\n"
        "PGI+\n"
    )
    root = parse_message(raw).root
    assert (root.type, root.subtype, root.params) == ("text", "html", {"charset": "UTF-8"})
    assert root.encoding == "base64"
    assert root.language == ("en", "de-CH")
    assert root.location == "http://example.com/a.html"
    assert root.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="


def nested_multipart(levels: int) -> bytes:
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(levels)
    )
    tail = "".join(f"\n--b{i}--" for i in reversed(range(levels)))
    return crlf(head + "Content-Type: text/plain\n\ndeep" + tail + "\n")


def depth_of(part: Part) -> int:
    depth = 0
    while part.children:
        part, depth = part.children[0], depth + 1
    return depth


def test_deep_nesting_stops_at_the_limit_without_recursion_errors() -> None:
    raw = nested_multipart(200)
    meta = parse_message(raw)
    assert depth_of(meta.root) == MAX_DEPTH
    leaf = meta.root
    while leaf.children:
        leaf = leaf.children[0]
    assert (leaf.type, leaf.subtype) == ("application", "octet-stream")
    assert MessageMeta.from_json(meta.to_json()) == meta


def test_shallow_nesting_is_parsed_fully() -> None:
    meta = parse_message(nested_multipart(5))
    assert depth_of(meta.root) == 5
    leaf = meta.root
    while leaf.children:
        leaf = leaf.children[0]
    assert (leaf.type, leaf.subtype) == ("text", "plain")


def test_deeply_nested_message_rfc822_is_bounded() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 300 + b"end"
    meta = parse_message(raw)
    assert depth_of(meta.root) == MAX_DEPTH


def test_too_many_parts_become_one_opaque_leaf() -> None:
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        + "".join(f"--b\n\n{i}\n" for i in range(MAX_PARTS + 500))
        + "--b--\n"
    )
    root = parse_message(raw).root
    assert len(root.children) == MAX_PARTS - 1
    last = root.children[-1]
    assert (last.type, last.subtype) == ("application", "octet-stream")
    assert raw[last.header_start : last.end].endswith(f"{MAX_PARTS + 499}".encode())


@pytest.mark.parametrize("raw", ALL_SAMPLES)
def test_json_round_trip_is_exact(raw: bytes) -> None:
    meta = parse_message(raw)
    text = meta.to_json()
    assert MessageMeta.from_json(text) == meta
    assert message_meta(raw) == text


def test_json_is_compact() -> None:
    text = message_meta(SIMPLE)
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert len(text) < 2 * len(SIMPLE)


def test_json_with_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        MessageMeta.from_json('{"v":99,"e":[],"p":[0,0,0]}')
