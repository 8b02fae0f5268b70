"""Hypothesis fuzzing: arbitrary bytes give protocol events, never exceptions or hangs."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.wire.commands import Command, parse_command
from postroom.imap.wire.connection import (
    ImapConnection,
    LineTooLong,
    LiteralTooBig,
    NeedContinuation,
    NeedData,
    RawLine,
    SyntaxErrorEvent,
)
from postroom.imap.wire.lexer import ParseError

PROTOCOL_EVENTS = (Command, NeedContinuation, SyntaxErrorEvent, LiteralTooBig, LineTooLong, RawLine)

# Fragments that steer the fuzzer into interesting grammar.
FRAGMENTS = [
    b"a ",
    b"UID ",
    b"FETCH ",
    b"SEARCH ",
    b"APPEND ",
    b"LOGIN ",
    b"LIST ",
    b"SELECT ",
    b"STORE ",
    b"STATUS ",
    b"ID ",
    b"AUTHENTICATE ",
    b"IDLE",
    b"(",
    b")",
    b"[",
    b"]",
    b"<",
    b">",
    b"{3}\r\n",
    b"{2+}\r\n",
    b"~{1}\r\n",
    b"{99999999999}\r\n",
    b"\r\n",
    b"\n",
    b'"',
    b"\\",
    b"1:*",
    b"$",
    b"NIL",
    b"BODY.PEEK[HEADER.FIELDS (A)]",
    b"OR NOT ",
    b"&Jjo-",
    b"\x00",
    b"\xff",
    b" ",
]
wire_chunks = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(FRAGMENTS)), max_size=30)


def run(conn: ImapConnection, chunks: list[bytes], switch_to_lines: bool) -> None:
    for chunk in chunks:
        conn.receive_data(chunk)
        for _ in range(10_000):  # bounded: a hang shows up as a failure, not a stall
            event = conn.next_event()
            if event is NeedData:
                break
            assert isinstance(event, PROTOCOL_EVENTS)
            if switch_to_lines and isinstance(event, Command):
                conn.expect_line()
        else:
            raise AssertionError("next_event never returned NeedData")


@settings(max_examples=300, deadline=None)
@given(wire_chunks, st.booleans())
def test_connection_never_crashes(chunks: list[bytes], switch_to_lines: bool) -> None:
    run(ImapConnection(max_line_length=200, max_literal_size=100), chunks, switch_to_lines)


@settings(max_examples=200, deadline=None)
@given(wire_chunks)
def test_connection_literal_minus_never_crashes(chunks: list[bytes]) -> None:
    conn = ImapConnection(max_line_length=200, is_literal_minus=True)
    conn.enable_utf8()
    run(conn, chunks, False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.booleans())
def test_parse_command_only_raises_parse_error(parts: list[bytes], is_utf8: bool) -> None:
    with contextlib.suppress(ParseError):
        parse_command(b"".join(parts), is_utf8=is_utf8)
