"""Framing, literals, limits and raw-line mode of ImapConnection."""

from __future__ import annotations

from postroom.imap.wire.commands.append import Append, AppendMessage
from postroom.imap.wire.commands.auth import Authenticate, Login, StartTls
from postroom.imap.wire.commands.mailboxes import List
from postroom.imap.wire.commands.misc import Capability, Idle, Logout, Noop
from postroom.imap.wire.commands.select import Select
from postroom.imap.wire.connection import (
    Event,
    ImapConnection,
    LineTooLong,
    LiteralTooBig,
    NeedContinuation,
    NeedData,
    RawLine,
    SyntaxErrorEvent,
)


def drain(conn: ImapConnection) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not NeedData:
        events.append(event)
    return events


def feed(conn: ImapConnection, *chunks: bytes) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events.extend(drain(conn))
    return events


def test_need_data_until_crlf() -> None:
    conn = ImapConnection()
    assert feed(conn, b"a1 NO", b"OP") == []
    assert feed(conn, b"\r\n") == [Noop("a1")]


def test_bare_lf_accepted() -> None:
    assert feed(ImapConnection(), b"a1 NOOP\n") == [Noop("a1")]


def test_pipelined_commands_in_one_chunk() -> None:
    events = feed(ImapConnection(), b"a NOOP\r\nb CAPABILITY\r\nc LOGOUT\r\n")
    assert events == [Noop("a"), Capability("b"), Logout("c")]


def test_sync_literal_split_across_chunks() -> None:
    conn = ImapConnection()
    assert feed(conn, b"a LOGIN {3}\r\n") == [NeedContinuation(3)]
    assert feed(conn, b"b", b"o") == []
    assert feed(conn, b"b {2}\r\n") == [NeedContinuation(2)]
    assert feed(conn, b"p", b"w\r", b"\n") == [Login("a", "bob", "pw")]


def test_literal_byte_by_byte() -> None:
    conn = ImapConnection()
    data = b"a APPEND INBOX {12}\r\nhello\r\nworld\r\nb NOOP\r\n"
    events: list[Event] = []
    for byte in data:
        conn.receive_data(bytes([byte]))
        events.extend(drain(conn))
    assert events[0] == NeedContinuation(12)
    assert events[1] == Append("a", "INBOX", (AppendMessage((), None, b"hello\r\nworld"),))
    assert events[2] == Noop("b")


def test_literal_plus_needs_no_continuation() -> None:
    events = feed(ImapConnection(), b"a LOGIN {3+}\r\nbob {2+}\r\npw\r\n")
    assert events == [Login("a", "bob", "pw")]


def test_literal8_append_binary() -> None:
    events = feed(ImapConnection(), b"a APPEND INBOX ~{3}\r\n", b"x\x00y\r\n")
    assert events[0] == NeedContinuation(3)
    append = events[1]
    assert isinstance(append, Append)
    assert append.messages[0].data == b"x\x00y" and append.messages[0].is_binary


def test_literal_containing_crlf_and_command_text_is_data() -> None:
    payload = b"x NOOP\r\ny LOGOUT\r\n"
    events = feed(ImapConnection(), b"a APPEND INBOX {%d+}\r\n" % len(payload) + payload + b"\r\n")
    assert len(events) == 1
    assert isinstance(events[0], Append) and events[0].messages[0].data == payload


def test_sync_literal_over_limit_is_not_read() -> None:
    conn = ImapConnection(max_literal_size=10)
    events = feed(conn, b"a APPEND INBOX {11}\r\n")
    assert events == [LiteralTooBig("a", 11, True, "APPEND")]
    # The client got a tagged answer instead of "+", so what follows is a new command.
    assert feed(conn, b"b NOOP\r\n") == [Noop("b")]


def test_nonsync_literal_over_limit_is_skipped() -> None:
    conn = ImapConnection(max_literal_size=10)
    events = feed(conn, b"a APPEND INBOX {20+}\r\n", b"c LOGOUT\r\n0123456789", b" {4+}\r\n")
    assert events == [LiteralTooBig("a", 20, False, "APPEND")]
    # The second literal of the refused command is skipped too; then parsing resumes.
    assert feed(conn, b"d NO", b"OP\r\ne NOOP\r\n") == [Noop("e")]


def test_literal_minus_limits_nonsync_literals() -> None:
    conn = ImapConnection(is_literal_minus=True)
    big = 4097
    events = feed(conn, b"a APPEND INBOX {%d+}\r\n" % big, b"x" * big + b"\r\nb NOOP\r\n")
    assert events == [LiteralTooBig("a", big, False, "APPEND"), Noop("b")]
    ok = feed(conn, b"c LOGIN {4096+}\r\n" + b"u" * 4096 + b" pw\r\n")
    assert ok == [Login("c", "u" * 4096, "pw")]
    # Synchronizing literals are not bound by LITERAL-.
    assert feed(conn, b"d APPEND INBOX {5000}\r\n") == [NeedContinuation(5000)]


def test_literal_total_per_command_is_bounded() -> None:
    conn = ImapConnection(max_literal_size=10)
    events = feed(conn, b"a APPEND INBOX {6+}\r\n123456 {6}\r\n")
    assert events == [LiteralTooBig("a", 6, True, "APPEND")]
    assert feed(conn, b"b NOOP\r\n") == [Noop("b")]


def test_overlong_line_refused_and_next_command_parsed() -> None:
    conn = ImapConnection(max_line_length=100)
    events = feed(conn, b"a1 LOGIN " + b"x" * 200, b"y" * 50, b"\r\na2 NOOP\r\n")
    assert events == [LineTooLong("a1"), Noop("a2")]


def test_overlong_line_in_one_chunk() -> None:
    conn = ImapConnection(max_line_length=100)
    events = feed(conn, b"a1 LOGIN " + b"x" * 200 + b"\r\na2 NOOP\r\n")
    assert events == [LineTooLong("a1"), Noop("a2")]


def test_overlong_line_ending_in_nonsync_literal_skips_it() -> None:
    conn = ImapConnection(max_line_length=50)
    # The literal holds "b NOOP\r\n"; the line after it still belongs to the refused command.
    data = b"a1 APPEND " + b"x" * 60 + b" {8+}\r\nb NOOP\r\n rest\r\nc NOOP\r\n"
    assert feed(conn, data) == [LineTooLong("a1"), Noop("c")]


def test_line_limit_counts_text_across_literals() -> None:
    conn = ImapConnection(max_line_length=40)
    events = feed(conn, b"a LOGIN {3+}\r\nbob " + b"p" * 40 + b"\r\nb NOOP\r\n")
    assert events == [LineTooLong("a"), Noop("b")]


def test_syntax_errors_carry_tag() -> None:
    events = feed(ImapConnection(), b"a1 FROB\r\n\r\n* NOOP\r\na2 NOOP\r\n")
    assert isinstance(events[0], SyntaxErrorEvent) and events[0].tag == "a1"
    assert events[1] == SyntaxErrorEvent(None, "empty command line")
    assert isinstance(events[2], SyntaxErrorEvent) and events[2].tag is None
    assert events[3] == Noop("a2")


def test_authenticate_with_sasl_ir() -> None:
    events = feed(ImapConnection(), b"a AUTHENTICATE PLAIN AGJvYgBwdw==\r\n")
    assert events == [Authenticate("a", "PLAIN", b"\x00bob\x00pw")]
    assert feed(ImapConnection(), b"a AUTHENTICATE PLAIN =\r\n") == [
        Authenticate("a", "PLAIN", b"")
    ]


def test_authenticate_continuation_via_expect_line() -> None:
    conn = ImapConnection()
    conn.receive_data(b"a AUTHENTICATE PLAIN\r\nAGJvYgBwdw==\r\nb NOOP\r\n")
    assert conn.next_event() == Authenticate("a", "PLAIN", None)
    conn.expect_line()
    assert conn.next_event() == RawLine(b"AGJvYgBwdw==")
    assert conn.next_event() == Noop("b")


def test_idle_then_done() -> None:
    conn = ImapConnection()
    conn.receive_data(b"a IDLE\r\n")
    assert conn.next_event() == Idle("a")
    conn.expect_line()
    assert conn.next_event() is NeedData
    assert feed(conn, b"DO", b"NE\r\nb NOOP\r\n") == [RawLine(b"DONE"), Noop("b")]


def test_raw_line_too_long() -> None:
    conn = ImapConnection(max_line_length=10)
    conn.expect_line()
    assert feed(conn, b"x" * 20, b"yyy\r\nb NOOP\r\n") == [LineTooLong(None), Noop("b")]


def test_discard_buffered_after_starttls() -> None:
    conn = ImapConnection()
    conn.receive_data(b"a STARTTLS\r\nb LOGIN bob pw\r\n")
    assert conn.next_event() == StartTls("a")
    assert conn.discard_buffered() == len(b"b LOGIN bob pw\r\n")
    assert conn.next_event() is NeedData


def test_utf8_mode_switch() -> None:
    conn = ImapConnection()
    line = 'a SELECT "Entwürfe"\r\n'.encode()
    # Issue 17: legal syntax that names no mailbox until UTF8=ACCEPT (NO, not BAD).
    assert feed(conn, line) == [Select("a", "Entwürfe", is_name_usable=False)]
    conn.enable_utf8()
    assert feed(conn, line) == [Select("a", "Entwürfe")]


def test_continuation_bytes() -> None:
    assert ImapConnection.send_continuation() == b"+ Ready for literal data\r\n"


def test_large_literal_in_many_chunks_is_linear() -> None:
    conn = ImapConnection()
    size = 8 * 1024 * 1024
    conn.receive_data(b"a APPEND INBOX {%d}\r\n" % size)
    assert conn.next_event() == NeedContinuation(size)
    chunk = b"x" * 65536
    for _ in range(size // len(chunk)):
        conn.receive_data(chunk)
        assert conn.next_event() is NeedData
    conn.receive_data(b"\r\n")
    event = conn.next_event()
    assert isinstance(event, Append) and len(event.messages[0].data) == size
    assert conn.buffered_size == 0


def test_render_protocol_error() -> None:
    from postroom.imap.wire.connection import render_protocol_error

    assert render_protocol_error(SyntaxErrorEvent("a", "unknown command FROB")) == (
        b"a BAD unknown command FROB\r\n"
    )
    assert render_protocol_error(SyntaxErrorEvent(None, "junk")) == b"* BAD junk\r\n"
    assert render_protocol_error(LiteralTooBig("a", 9, True, "APPEND")) == (
        b"a NO [TOOBIG] literal of 9 octets is too big\r\n"
    )
    assert render_protocol_error(LiteralTooBig("a", 9, False, "LOGIN")).startswith(
        b"a BAD [TOOBIG]"
    )
    assert render_protocol_error(LineTooLong(None)) == (
        b"* BAD [TOOBIG] command line too long\r\n"
    )


def test_empty_literal_and_empty_list_pattern() -> None:
    conn = ImapConnection()
    assert feed(conn, b'a LIST "" {0}\r\n') == [NeedContinuation(0)]
    assert feed(conn, b"\r\n") == [List("a", "", ("",))]


def test_error_after_literal_keeps_tag_and_stream() -> None:
    events = feed(ImapConnection(), b"a LOGIN {3+}\r\nbob\r\nb NOOP\r\n")
    assert isinstance(events[0], SyntaxErrorEvent) and events[0].tag == "a"
    assert events[1] == Noop("b")
