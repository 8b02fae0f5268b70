"""Hypothesis fuzzing: parse_message, body_structure, JSON and section extraction never
raise on arbitrary bytes or on randomly assembled MIME, and offsets stay in bounds."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postroom.mail.bodystructure import body_structure
from postroom.mail.mimetree import EMBEDDED_MESSAGE_TYPES, MessageMeta, Part, parse_message
from postroom.mail.sections import (
    UnknownTransferEncoding,
    binary_size,
    decode_binary,
    extract_section,
    text_for_search,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes biased towards what MIME parsers trip over.
_FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b"--", b"--b", b"--b--", b"Content-Type: ", b"multipart/mixed",
    b"; boundary=b", b"message/rfc822", b"text/plain", b":", b" ", b"\t", b"=?utf-8?q?x?=",
    b"Content-Transfer-Encoding: base64", b"\xff\xfe", b"\x00", b"name*0*=utf-8''%E2",
    b'"', b"(", b"<", b"@", b";",
]  # fmt: skip
messy_bytes = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=8)), max_size=60
).map(b"".join)

LEAF_TYPES = [
    "text/plain", "text/html; charset=iso-8859-1", "application/octet-stream",
    "image/png; name*=utf-8''%C3%A9.png", "text/plain; charset=bogus", "garbage",
]  # fmt: skip
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-unknown", "binary"]


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    content_type = draw(st.sampled_from(LEAF_TYPES))
    encoding = draw(st.sampled_from(ENCODINGS))
    body = draw(st.one_of(messy_bytes, st.text(max_size=40).map(str.encode)))
    newline = draw(st.sampled_from([b"\r\n", b"\n"]))
    return (
        b"Content-Type: " + content_type.encode() + newline
        + b"Content-Transfer-Encoding: " + encoding.encode() + newline + newline + body
    )  # fmt: skip


def multipart(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        parts = draw(children)
        boundary = draw(st.sampled_from([b"b", b"bb", b"=_x", b"a b"]))
        subtype = draw(st.sampled_from([b"mixed", b"alternative", b"digest"]))
        close = draw(st.sampled_from([b"--\r\n", b"", b"--"]))
        preamble = draw(st.sampled_from([b"", b"preamble\r\n"]))
        body = preamble + b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
        header = b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n\r\n'
        return header + body + b"--" + boundary + close

    return build()


def message(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return inner.map(lambda body: b"Content-Type: message/rfc822\r\n\r\nSubject: x\r\n" + body)


mime = st.recursive(
    leaf(),
    lambda inner: st.one_of(multipart(st.lists(inner, min_size=1, max_size=4)), message(inner)),
    max_leaves=12,
)


def walk(part: Part) -> list[Part]:
    found = [part]
    for child in part.children:
        found += walk(child)
    return found


def paths(part: Part, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    result = [prefix]
    for number, child in enumerate(part.children, start=1):
        result += paths(child, (*prefix, number))
    return result


def check_everything(raw: bytes) -> None:
    meta = parse_message(raw)
    for part in walk(meta.root):
        assert 0 <= part.header_start <= part.body_start <= part.end <= len(raw)
        for child in part.children:
            assert part.body_start <= child.header_start and child.end <= part.end
        if part.is_multipart:
            assert part.children
        if (part.type, part.subtype) in EMBEDDED_MESSAGE_TYPES:
            assert len(part.children) == 1 and part.envelope is not None
    for extensible in (True, False):
        assert isinstance(body_structure(meta, extensible), list)
    assert MessageMeta.from_json(meta.to_json()) == meta
    text_for_search(raw, meta)
    for path in [*paths(meta.root), (1,), (1, 1), (2, 3)]:
        for specifier in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            data = extract_section(raw, meta, path, specifier, ("subject",), (1, 5))
            assert len(data) <= 5
        try:
            decode_binary(raw, meta, path)
            binary_size(raw, meta, path)
        except UnknownTransferEncoding:
            pass


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check_everything(raw)


@FUZZ
@given(messy_bytes)
def test_messy_mime_like_bytes_never_raise(raw: bytes) -> None:
    check_everything(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + raw)


@FUZZ
@given(mime, st.booleans())
def test_assembled_mime_structures(raw: bytes, bare_lf: bool) -> None:
    check_everything(raw.replace(b"\r\n", b"\n") if bare_lf else raw)
