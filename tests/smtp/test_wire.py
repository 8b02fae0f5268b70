"""Sans-IO table tests for smtp/wire.py: commands, paths, parameters, DATA framing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mail.esmtp import MailParams, RcptParams
from postroom.smtp import wire
from postroom.smtp.paths import Mailbox
from postroom.smtp.wire import (
    Auth,
    AuthResponse,
    BadCommand,
    BadKind,
    BareNewline,
    BareNewlinePolicy,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    Ehlo,
    LineTooLong,
    Mail,
    NeedData,
    Rcpt,
    SizeExceeded,
    SmtpConnection,
)


def events(conn: SmtpConnection) -> list[object]:
    out: list[object] = []
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData | ConnectionClosed):
            return out
        out.append(event)


def one(line: bytes) -> object:
    conn = SmtpConnection()
    conn.receive_data(line + b"\r\n")
    (event,) = events(conn)
    return event


@pytest.mark.parametrize(("line", "expected"), [
    (b"EHLO client.example", Ehlo("client.example")),
    (b"ehlo [192.0.2.1]", Ehlo("[192.0.2.1]")),
    (b"HELO x", wire.Helo("x")),
    (b"MAIL FROM:<>", Mail(None)),
    (b"MAIL FROM:<a@b.example>", Mail(Mailbox("a", "b.example"))),
    (b"mail from: <a@b.example>", Mail(Mailbox("a", "b.example"))),
    (b"MAIL FROM:a@b.example", Mail(Mailbox("a", "b.example"))),
    (b"MAIL FROM:<@r1.example,@r2.example:u@d.example>",
     Mail(Mailbox("u", "d.example", route=("r1.example", "r2.example")))),
    (b'MAIL FROM:<"john doe>"@d.example>', Mail(Mailbox("john doe>", "d.example", True))),
    (b"MAIL FROM:<u@[192.0.2.1]>", Mail(Mailbox("u", "[192.0.2.1]", is_domain_literal=True))),
    (b"MAIL FROM:<u@[IPv6:2001:db8::1]>",
     Mail(Mailbox("u", "[IPv6:2001:db8::1]", is_domain_literal=True))),
    (b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8bitmime SMTPUTF8",
     Mail(Mailbox("a", "b.example"), MailParams(size=1000, body="8BITMIME", is_smtputf8=True))),
    (b"MAIL FROM:<a@b.example> RET=hdrs ENVID=AbC+2Bx AUTH=<>",
     Mail(Mailbox("a", "b.example"), MailParams(ret="HDRS", envid="AbC+2Bx", auth=""))),
    (b"MAIL FROM:<a@b.example> AUTH=u+40x.example",
     Mail(Mailbox("a", "b.example"), MailParams(auth="u@x.example"))),
    ("MAIL FROM:<jøran@bø.example> SMTPUTF8".encode(),
     Mail(Mailbox("jøran", "bø.example"), MailParams(is_smtputf8=True))),
    (b"RCPT TO:<u@d.example>", Rcpt(Mailbox("u", "d.example"))),
    (b"RCPT TO:<Postmaster>", Rcpt(Mailbox("postmaster", ""))),
    (b"RCPT TO:<u@d.example> NOTIFY=success,failure ORCPT=rfc822;u+40d.example",
     Rcpt(Mailbox("u", "d.example"), RcptParams(("SUCCESS", "FAILURE"), "rfc822;u+40d.example"))),
    (b"RCPT TO:<u@d.example> NOTIFY=NEVER",
     Rcpt(Mailbox("u", "d.example"), RcptParams(("NEVER",)))),
    (b"DATA", wire.Data()),
    (b"RSET", wire.Rset()),
    (b"NOOP whatever", wire.Noop()),
    (b"QUIT", wire.Quit()),
    (b"STARTTLS", wire.StartTls()),
    (b"VRFY bob", wire.Vrfy("bob")),
    (b"AUTH plain", Auth("PLAIN", None)),
    (b"AUTH PLAIN AGJvYgBzZWNyZXQ=", Auth("PLAIN", "AGJvYgBzZWNyZXQ=")),
    (b"AUTH PLAIN =", Auth("PLAIN", "=")),
])
def test_commands(line: bytes, expected: object) -> None:
    assert one(line) == expected


@pytest.mark.parametrize(("line", "kind"), [
    (b"FOO bar", BadKind.UNRECOGNIZED),
    (b"EHLO", BadKind.SYNTAX),
    (b"MAIL TO:<a@b.example>", BadKind.SYNTAX),
    (b"MAIL FROM:<a@b.example", BadKind.SYNTAX),
    (b"MAIL FROM:<a@b.example>SIZE=1", BadKind.SYNTAX),
    (b"MAIL FROM:<a@b.example> SIZE=abc", BadKind.SYNTAX),
    (b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", BadKind.SYNTAX),
    (b"MAIL FROM:<a@b.example> BODY=BINARY", BadKind.SYNTAX),
    (b"MAIL FROM:<a@b.example> FOO=bar", BadKind.PARAMETER),
    (b"MAIL FROM:<a@-bad-.example>", BadKind.SYNTAX),
    (b"MAIL FROM:<a b@c.example>", BadKind.SYNTAX),
    (b"MAIL FROM:<@r1:>", BadKind.SYNTAX),
    (b"RCPT TO:<>", BadKind.SYNTAX),
    (b"RCPT TO:<u@d.example> NOTIFY=NEVER,SUCCESS", BadKind.SYNTAX),
    (b"RCPT TO:<u@d.example> SIZE=1", BadKind.PARAMETER),
    (b"DATA now", BadKind.SYNTAX),
    (b"AUTH", BadKind.SYNTAX),
    (b"NOOP \x00", BadKind.SYNTAX),
    (b"MAIL FROM:<\xff@x.example>", BadKind.SYNTAX),
])
def test_bad_commands(line: bytes, kind: BadKind) -> None:
    event = one(line)
    assert isinstance(event, BadCommand) and event.kind is kind


def test_mailbox_renders_quoted_local_part() -> None:
    assert str(Mailbox('john doe"x', "d.example", True)) == '"john doe\\"x"@d.example'
    assert str(Mailbox("john", "d.example", True)) == "john@d.example"  # RFC 5321 §4.1.2


def test_line_limits() -> None:
    assert isinstance(one(b"NOOP " + b"x" * 600), LineTooLong)  # RFC 5321 §4.5.3.1.4
    assert isinstance(one(b"NOOP " + b"x" * 506), LineTooLong)  # 513 with CRLF
    assert isinstance(one(b"NOOP " + b"x" * 505), wire.Noop)  # exactly 512
    long_envid = b"MAIL FROM:<a@b.example> ENVID=" + b"e" * 100 + b" AUTH=" + b"u" * 400
    assert isinstance(one(long_envid), Mail)  # RFC 3461/4954 raise the MAIL limit
    assert isinstance(one(b"AUTH PLAIN " + b"A" * 4000), Auth)  # RFC 4954 §4: 12288


def test_overlong_line_without_newline_is_skipped_to_its_end() -> None:
    conn = SmtpConnection()
    conn.receive_data(b"X" * 20000)
    assert events(conn) == [LineTooLong()]
    conn.receive_data(b"Y" * 20000)
    assert events(conn) == []
    conn.receive_data(b"ZZ\r\nNOOP\r\n")
    assert events(conn) == [wire.Noop()]


def test_bare_lf_command_line_refused_under_reject() -> None:
    conn = SmtpConnection(BareNewlinePolicy.REJECT)
    conn.receive_data(b"NOOP\nQUIT\r\n")
    first, second = events(conn)
    assert isinstance(first, BadCommand) and first.kind is BadKind.BARE_NEWLINE
    assert second == wire.Quit()


def test_bare_lf_command_line_normalized_by_default() -> None:
    """Postfix 3.9 smtpd_forbid_bare_newline=normalize: a command line may end in LF."""
    conn = SmtpConnection()
    conn.receive_data(b"NOOP\nMAIL FROM:<a@b.example>\nQUIT\r\n")
    assert events(conn) == [wire.Noop(), Mail(Mailbox("a", "b.example")), wire.Quit()]
    conn.receive_data(b"AUTH PLAIN\n")
    assert events(conn) == [Auth("PLAIN", None)]
    conn.expect_auth_response()
    conn.receive_data(b"AGEAYg==\n")
    assert events(conn) == [AuthResponse("AGEAYg==")]


def test_pipelined_commands_and_split_lines() -> None:
    conn = SmtpConnection()
    conn.receive_data(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDA")
    assert [type(e) for e in events(conn)] == [Mail, Rcpt]
    conn.receive_data(b"TA\r\n")
    assert events(conn) == [wire.Data()]


def test_eof() -> None:
    conn = SmtpConnection()
    conn.receive_data(b"NOOP\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == wire.Noop()
    assert conn.next_event() == ConnectionClosed()


def test_auth_response_mode() -> None:
    conn = SmtpConnection()
    conn.expect_auth_response()
    conn.receive_data(b"dXNlcg==\r\nNOOP\r\n")
    assert events(conn) == [AuthResponse("dXNlcg=="), wire.Noop()]


def test_discard_buffered() -> None:
    conn = SmtpConnection()
    conn.receive_data(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
    assert conn.next_event() == wire.StartTls()
    assert conn.discard_buffered() == len(b"MAIL FROM:<evil@x.example>\r\n")
    assert events(conn) == []


# -- DATA --------------------------------------------------------------------------


def run_data(pieces: list[bytes], limit: int = 0,
             bare_newline: BareNewlinePolicy = BareNewlinePolicy.REJECT,
             ) -> tuple[bytes, object, SmtpConnection]:
    conn = SmtpConnection(bare_newline)
    conn.begin_data(limit)
    body, final = b"", None
    for piece in pieces:
        conn.receive_data(piece)
        while final is None:
            event = conn.next_event()
            if isinstance(event, NeedData):
                break
            if isinstance(event, DataChunk):
                body += event.data
            else:
                final = event
    return body, final, conn


def test_data_dot_unstuffing_and_end() -> None:
    body, final, conn = run_data([b"Subject: x\r\n\r\n..leading\r\n.\r\nNOOP\r\n"])
    assert body == b"Subject: x\r\n\r\n.leading\r\n"
    assert final == DataEnd(len(body))
    assert events(conn) == [wire.Noop()]


def test_empty_message() -> None:
    body, final, _ = run_data([b".\r\n"])
    assert body == b"" and final == DataEnd(0)


@pytest.mark.parametrize("split", range(1, 12))
def test_end_marker_split_anywhere(split: int) -> None:
    data = b"a\r\n..b\r\n.\r\n"
    body, final, _ = run_data([data[:split], data[split:]])
    assert body == b"a\r\n.b\r\n"
    assert final == DataEnd(len(body))


@given(st.lists(st.sampled_from([b"line", b".", b"..", b"\r\n", b"x.y", b" "]), max_size=40),
       st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_data_roundtrip_any_chunking(parts: list[bytes], cuts: list[int]) -> None:
    """Dot-stuff a random CRLF text, feed it in random pieces: the body comes back."""
    text = b"".join(parts).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    text = text.replace(b"\r", b"").replace(b"\n", b"\r\n")
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    stuffed = b"".join(b"." + line if line.startswith(b".") else line
                       for line in text.splitlines(keepends=True)) + b".\r\n"
    pieces, position, index = [], 0, 0
    while position < len(stuffed):
        step = cuts[index % len(cuts)]
        pieces.append(stuffed[position:position + step])
        position, index = position + step, index + 1
    body, final, _ = run_data(pieces)
    assert body == text and final == DataEnd(len(text))


@pytest.mark.parametrize("smuggle", [
    b"hello\n.\nMAIL FROM:<evil@x.example>\r\n",
    b"hello\r\n.\nMAIL FROM:<evil@x.example>\r\n",
    b"hello\n.\r\nMAIL FROM:<evil@x.example>\r\n",
    b"hello\r.\rMAIL FROM:<evil@x.example>\r\n",
    b"hello\r\n.\rMAIL FROM:<evil@x.example>\r\n",
])
def test_smuggling_attempts_do_not_end_data(smuggle: bytes) -> None:
    """Under REJECT (the NORMALIZE cases are in test_bare_lf_normalized_*)."""
    _body, final, conn = run_data([smuggle])
    assert final is None  # still inside DATA: the fake end marker was not an end
    conn.receive_data(b"more\r\n.\r\nNOOP\r\n")
    final = conn.next_event()  # chunks of a tainted message are never handed out
    assert isinstance(final, BareNewline)
    assert events(conn) == [wire.Noop()]


def test_bare_lf_split_across_reads() -> None:
    _, final, _ = run_data([b"abc\r", b"x\r\n.\r\n"])
    assert final == BareNewline("CR")
    _, final, _ = run_data([b"abc", b"\nx\r\n.\r\n"])
    assert final == BareNewline("LF")


def test_size_exceeded_consumes_to_end() -> None:
    body, final, conn = run_data([b"x" * 50 + b"\r\n", b"y" * 100 + b"\r\n.\r\nNOOP\r\n"],
                                 limit=60)
    assert isinstance(final, SizeExceeded) and final.size > 60
    assert len(body) <= 60 + 2  # nothing past the limit was handed out
    assert events(conn) == [wire.Noop()]


def test_data_chunks_are_streamed() -> None:
    conn = SmtpConnection()
    conn.begin_data(0)
    total = 0
    for _ in range(100):
        conn.receive_data(b"z" * 9998 + b"\r\n")
        chunks = events(conn)
        assert all(isinstance(c, DataChunk) for c in chunks)
        total += sum(len(c.data) for c in chunks if isinstance(c, DataChunk))
        assert not conn.has_buffered_data
    conn.receive_data(b".\r\n")
    assert events(conn) == [DataEnd(total)]


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_fuzz_never_crashes(data: bytes) -> None:
    conn = SmtpConnection()
    conn.receive_data(data)
    for _ in range(1000):
        event = conn.next_event()
        if isinstance(event, NeedData | ConnectionClosed):
            break
        if isinstance(event, wire.Data):
            conn.begin_data(100)


def test_sans_io_imports() -> None:
    """ARCHITECTURE rule 1: wire.py and policy.py import no I/O or store modules."""
    for name in ("wire.py", "policy.py", "replies.py"):
        source = Path(wire.__file__).with_name(name).read_text()
        for node in ast.walk(ast.parse(source)):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for module in modules:
                assert module.split(".")[0] not in {"asyncio", "ssl", "socket"}, (name, module)
                assert not module.startswith("postroom.store"), (name, module)
