"""Sans-IO table tests for pop3/wire.py: framing, per-state parsing, rendering,
dot-stuffing with CRLF normalisation, TOP, and fuzzing of the parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.pop3 import wire
from postroom.pop3.wire import (
    MAX_COMMAND_LINE,
    DotStuffer,
    Malformed,
    NeedData,
    Pop3Connection,
    Pop3State,
    parse_command,
)

AUTH = Pop3State.AUTHORIZATION
TRANS = Pop3State.TRANSACTION


@pytest.mark.parametrize(("line", "state", "expected"), [
    ("USER alice@example.test", AUTH, wire.User("alice@example.test")),
    ("user alice", AUTH, wire.User("alice")),
    ("PASS secret with spaces", AUTH, wire.Pass("secret with spaces")),
    ("CAPA", AUTH, wire.Capa()),
    ("CAPA", TRANS, wire.Capa()),
    ("STLS", AUTH, wire.Stls()),
    ("AUTH", AUTH, wire.Auth(None)),
    ("AUTH plain", AUTH, wire.Auth("PLAIN")),
    ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", AUTH, wire.Auth("PLAIN", "AGFsaWNlAHNlY3JldA==")),
    ("AUTH PLAIN =", AUTH, wire.Auth("PLAIN", "=")),
    ("QUIT", AUTH, wire.Quit()),
    ("QUIT", TRANS, wire.Quit()),
    ("STAT", TRANS, wire.Stat()),
    ("LIST", TRANS, wire.List(None)),
    ("LIST 2", TRANS, wire.List(2)),
    ("UIDL", TRANS, wire.Uidl(None)),
    ("uidl 7", TRANS, wire.Uidl(7)),
    ("RETR 1", TRANS, wire.Retr(1)),
    ("DELE 3", TRANS, wire.Dele(3)),
    ("NOOP", TRANS, wire.Noop()),
    ("RSET", TRANS, wire.Rset()),
    ("TOP 1 0", TRANS, wire.Top(1, 0)),
    ("TOP 4 10", TRANS, wire.Top(4, 10)),
])
def test_parse_valid_commands(line: str, state: Pop3State, expected: object) -> None:
    assert parse_command(line, state) == expected


@pytest.mark.parametrize(("line", "state", "reason"), [
    ("FROB", AUTH, "unknown command"),
    ("", AUTH, "unknown command"),
    ("APOP alice 0123", AUTH, "unknown command"),
    ("STAT", AUTH, "STAT is not valid in this state"),
    ("RETR 1", AUTH, "RETR is not valid in this state"),
    ("NOOP", AUTH, "NOOP is not valid in this state"),
    ("USER alice", TRANS, "USER is not valid in this state"),
    ("PASS x", TRANS, "PASS is not valid in this state"),
    ("STLS", TRANS, "STLS is not valid in this state"),
    ("AUTH PLAIN", TRANS, "AUTH is not valid in this state"),
    ("PASS", AUTH, "PASS needs a password"),
    ("USER", AUTH, "USER needs exactly one name"),
    ("USER a b", AUTH, "USER needs exactly one name"),
    ("STAT 1", TRANS, "this command takes no arguments"),
    ("RETR", TRANS, "RETR needs one message number"),
    ("RETR 0", TRANS, "invalid number '0'"),
    ("RETR -1", TRANS, "invalid number '-1'"),
    ("RETR +1", TRANS, "invalid number '+1'"),
    ("RETR x", TRANS, "invalid number 'x'"),
    ("RETR ١", TRANS, "invalid number '١'"),  # Arabic-Indic digit: isdigit, not ASCII
    ("RETR 99999999999", TRANS, "invalid number '99999999999'"),
    ("LIST 1 2", TRANS, "LIST takes at most one message number"),
    ("TOP 1", TRANS, "TOP needs a message number and a line count"),
    ("TOP 1 -1", TRANS, "invalid number '-1'"),
    ("AUTH PLAIN a b", AUTH, "AUTH takes a mechanism and an optional initial response"),
])
def test_parse_rejects(line: str, state: Pop3State, reason: str) -> None:
    assert parse_command(line, state) == Malformed(reason)


def feed(conn: Pop3Connection, data: bytes) -> list[object]:
    conn.receive_data(data)
    events: list[object] = []
    while not isinstance(event := conn.next_event(), NeedData):
        events.append(event)
    return events


def test_framing_pipelined_and_split_lines() -> None:
    conn = Pop3Connection(TRANS)
    assert feed(conn, b"STAT\r\nLIST 1\r\nRE") == [wire.Stat(), wire.List(1)]
    assert feed(conn, b"TR 2") == []
    assert feed(conn, b"\r") == []
    assert feed(conn, b"\nNOOP\n") == [wire.Retr(2), wire.Noop()]  # bare LF accepted


def test_state_change_applies_to_buffered_lines() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"STAT\r\n")
    assert conn.next_event() == Malformed("STAT is not valid in this state")
    conn.receive_data(b"STAT\r\n")
    conn.enter(TRANS)
    assert conn.next_event() == wire.Stat()


def test_long_lines_lenient_then_fatal() -> None:
    conn = Pop3Connection()
    long_user = "u" * (MAX_COMMAND_LINE - 5)
    assert feed(conn, f"USER {long_user}\r\n".encode()) == [wire.User(long_user)]
    conn = Pop3Connection()
    assert feed(conn, b"x" * (MAX_COMMAND_LINE + 1) + b"\r\n") == [
        Malformed("line too long", is_fatal=True)]
    conn = Pop3Connection()
    # No line end at all: still fatal once the buffer passes the limit.
    assert feed(conn, b"y" * (MAX_COMMAND_LINE + 10)) == [
        Malformed("line too long", is_fatal=True)]


def test_sasl_response_mode_and_longer_limit() -> None:
    conn = Pop3Connection()
    conn.expect_sasl_response()
    response = "A" * 2000
    assert feed(conn, f"{response}\r\nCAPA\r\n".encode()) == [
        wire.SaslResponse(response), wire.Capa()]


def test_invalid_utf8_is_not_fatal() -> None:
    conn = Pop3Connection()
    assert feed(conn, b"USER \xff\xfe\r\nCAPA\r\n") == [
        Malformed("line is not valid UTF-8"), wire.Capa()]


def test_discard_buffer() -> None:
    conn = Pop3Connection()
    conn.receive_data(b"STLS\r\nUSER evil\r\nPASS x\r\n")
    assert conn.next_event() == wire.Stls()
    assert conn.discard_buffer() == len(b"USER evil\r\nPASS x\r\n")
    assert isinstance(conn.next_event(), NeedData)


@pytest.mark.parametrize(("response", "rendered"), [
    (wire.Ok(), b"+OK\r\n"),
    (wire.Ok("2 320"), b"+OK 2 320\r\n"),
    (wire.Err("no such message"), b"-ERR no such message\r\n"),
    (wire.Err("Authentication failed", "AUTH"), b"-ERR [AUTH] Authentication failed\r\n"),
    (wire.Err("busy", "IN-USE"), b"-ERR [IN-USE] busy\r\n"),
    (wire.Err("gone", "NONEXISTENT"), b"-ERR gone\r\n"),  # not a POP3 code: left out
    (wire.Err("a\r\nb"), b"-ERR a  b\r\n"),
    (wire.Continuation(), b"+ \r\n"),
    (wire.Continuation("VXNlcm5hbWU6"), b"+ VXNlcm5hbWU6\r\n"),
    (wire.MultiLine("list", wire.lines_body(["1 10", "2 20"])),
     b"+OK list\r\n1 10\r\n2 20\r\n.\r\n"),
    (wire.MultiLine("empty", b""), b"+OK empty\r\n.\r\n"),
])
def test_render(response: wire.Response, rendered: bytes) -> None:
    assert wire.render(response) == rendered


@pytest.mark.parametrize(("body", "encoded"), [
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b".hidden\r\n..two\r\n.\r\n", b"..hidden\r\n...two\r\n..\r\n.\r\n"),
    (b"no final newline", b"no final newline\r\n.\r\n"),
    (b"lf\nonly\n.dot\n", b"lf\r\nonly\r\n..dot\r\n.\r\n"),
    (b"bare\rcr\r", b"bare\r\ncr\r\n.\r\n"),
    (b"mixed\r\n\n\r.x", b"mixed\r\n\r\n\r\n..x\r\n.\r\n"),
    (b"", b".\r\n"),
])
def test_dot_stuffer(body: bytes, encoded: bytes) -> None:
    stuffer = DotStuffer()
    assert stuffer.feed(body) + stuffer.finish() == encoded


def unstuff(encoded: bytes) -> bytes:
    """What a client recovers (RFC 1939 §3), as an independent check of the encoder."""
    assert encoded.endswith(b".\r\n")
    lines = encoded[:-3].split(b"\r\n")
    assert lines[-1] == b""
    out = [line[1:] if line.startswith(b".") else line for line in lines[:-1]]
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines[:-1])
    return b"".join(line + b"\r\n" for line in out)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300).map(lambda b: b.replace(b"x", b".").replace(b"y", b"\r")
                                   .replace(b"z", b"\n")),
       st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_dot_stuffer_chunking_is_transparent(body: bytes, cuts: list[int]) -> None:
    whole = DotStuffer()
    expected = whole.feed(body) + whole.finish()
    chunked = DotStuffer()
    points = sorted({min(cut, len(body)) for cut in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert b"".join(chunked.feed(piece) for piece in pieces) + chunked.finish() == expected
    assert b"\r" not in expected.replace(b"\r\n", b"")
    assert b"\n" not in expected.replace(b"\r\n", b"")
    normalised = wire.normalise_line_endings(body)
    if normalised and not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    assert unstuff(expected) == normalised


@pytest.mark.parametrize(("raw", "lines", "expected"), [
    (b"Subject: x\r\nFrom: a\r\n\r\nl1\r\nl2\r\nl3\r\n", 0,
     b"Subject: x\r\nFrom: a\r\n\r\n"),
    (b"Subject: x\r\n\r\nl1\r\nl2\r\nl3\r\n", 2, b"Subject: x\r\n\r\nl1\r\nl2\r\n"),
    (b"Subject: x\r\n\r\nl1\r\nl2", 10, b"Subject: x\r\n\r\nl1\r\nl2"),
    (b"Subject: x\n\nl1\nl2\n", 1, b"Subject: x\r\n\r\nl1\r\n"),
    (b"Subject: only header\r\n", 3, b"Subject: only header\r\n"),
    (b"\r\nbody first\r\nsecond\r\n", 1, b"\r\nbody first\r\n"),
])
def test_top_of_message(raw: bytes, lines: int, expected: bytes) -> None:
    assert wire.top_of_message(raw, lines) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8),
       st.sampled_from(list(Pop3State)), st.booleans())
def test_connection_never_crashes(chunks: list[bytes], state: Pop3State, sasl: bool) -> None:
    conn = Pop3Connection(state)
    if sasl:
        conn.expect_sasl_response()
    for chunk in chunks:
        for event in feed(conn, chunk):
            assert isinstance(event, (*wire.Command.__args__, wire.SaslResponse, Malformed))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80).filter(lambda s: "\n" not in s and "\r" not in s),
       st.sampled_from(list(Pop3State)))
def test_parse_command_total(line: str, state: Pop3State) -> None:
    result = parse_command(line, state)
    assert isinstance(result, (*wire.Command.__args__, Malformed))
