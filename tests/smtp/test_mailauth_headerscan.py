"""The after-DATA header scan: Received count, From values, forged Authentication-Results
ranges (checked against mailauth.authresults.strip_forged_authresults), author parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mailauth.authresults import strip_forged_authresults
from postroom.mailauth.headerscan import Author, HeaderFacts, parse_authors, scan_header

OURS = "mx.example.test"


def without_ranges(raw: bytes, ranges: tuple[tuple[int, int], ...]) -> bytes:
    out, position = [], 0
    for start, end in ranges:
        out.append(raw[position:start])
        position = end
    out.append(raw[position:])
    return b"".join(out)


def scan(tmp_path: Path, raw: bytes) -> tuple[bytes, HeaderFacts]:
    path = tmp_path / "spool"
    path.write_bytes(raw)
    with path.open("rb") as source:
        facts = scan_header(source, OURS)
    return without_ranges(raw, facts.forged_ranges), facts


def test_counts_and_values(tmp_path: Path) -> None:
    raw = (b"Received: from a\r\nReceived: from b\r\n\tby c\r\n"
           b"From: Alice\r\n <alice@Example.COM>\r\nSubject: x\r\n\r\n"
           b"Received: not a header\r\nFrom: body@x.test\r\n")
    _, facts = scan(tmp_path, raw)
    assert facts.received_count == 2
    assert facts.from_values == ("Alice <alice@Example.COM>",)
    assert facts.forged_ranges == ()


def test_long_folded_forged_field_is_removed_whole(tmp_path: Path) -> None:
    """A field far longer than one read piece, folded, claiming our id behind a comment."""
    forged = (b"Authentication-Results: (x) " + OURS.upper().encode() + b";\r\n\tdkim=pass "
              + b"a" * 200_000 + b"\r\n " + b"b" * 70_000 + b"\r\n")
    raw = b"Subject: s\r\n" + forged + b"From: x@y.test\r\n\r\nbody\r\n"
    kept, facts = scan(tmp_path, raw)
    assert kept == b"Subject: s\r\nFrom: x@y.test\r\n\r\nbody\r\n"
    assert facts.from_values == ("x@y.test",)


def test_message_without_body_separator(tmp_path: Path) -> None:
    raw = b"Authentication-Results: " + OURS.encode() + b"; none\r\nSubject: s\r\n"
    kept, _ = scan(tmp_path, raw)
    assert kept == b"Subject: s\r\n"


_NAMES = st.sampled_from(["Authentication-Results", "authentication-results", "From",
                          "Received", "Subject", "X-Other"])
_IDS = st.sampled_from([OURS, OURS.upper(), "other.example", f'"{OURS}"', f"(c) {OURS}",
                        "mx.example.test.evil", ""])
_TAILS = st.text(alphabet="abc =;.@()\"", max_size=20)


@st.composite
def header_fields(draw: st.DrawFn) -> bytes:
    name = draw(_NAMES)
    value = f" {draw(_IDS)}; {draw(_TAILS)}"
    if draw(st.booleans()):
        value += f"\r\n\t{draw(_TAILS)}x"
    return f"{name}:{value}\r\n".encode()


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(header_fields(), max_size=8),
       body=st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
def test_ranges_agree_with_strip_forged_authresults(
        tmp_path_factory: pytest.TempPathFactory, fields: list[bytes], body: bytes) -> None:
    raw = b"".join(fields) + b"\r\n" + body + b"\r\n"
    folder = tmp_path_factory.mktemp("scan")
    kept, _ = scan(folder, raw)
    assert kept == strip_forged_authresults(raw, OURS)


def test_parse_authors() -> None:
    values = ('Alice <alice@Example.COM>, "Bob, Jr." <bob@b.test>',
              "undisclosed-recipients:;", "team: carol@c.test;", "nodomain",
              "x@[192.0.2.1]", "joe@bücher.example")
    assert parse_authors(values) == [
        Author("alice", "example.com"), Author("bob", "b.test"), Author("carol", "c.test"),
        Author("nodomain", ""), Author("x", ""), Author("joe", "xn--bcher-kva.example"),
    ]
