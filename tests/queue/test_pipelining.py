"""outbound/client.py against a raw scripted server: PIPELINING (RFC 2920), one command at a
time without it, multi-line and malformed replies, dot-stuffing; outbound/replyparse.py alone.

The server records every read and every write in one timeline, so a test can say what
the client had sent before it saw any reply.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.outbound.client import ClientSettings, OutboundSession, SessionError
from postroom.outbound.replyparse import (
    MalformedReply,
    ParsedReply,
    ReplyParser,
    frame_data,
    parse_extensions,
)

pytestmark = pytest.mark.timeout(20)

MESSAGE = b"Subject: t\r\n\r\nbody\r\n"


@dataclass
class RawMx:
    """One-connection-at-a-time SMTP server speaking raw bytes from a script."""

    extensions: list[str] = field(default_factory=lambda: ["PIPELINING", "SIZE 100000"])
    greeting: bytes = b"220 raw.test ESMTP\r\n"
    ehlo_reply: bytes | None = None  # replaces the reply built from `extensions`
    mail_reply: bytes = b"250 2.1.0 ok\r\n"
    rcpt_replies: dict[str, bytes] = field(default_factory=dict)
    data_start_reply: bytes = b"354 go on\r\n"
    data_reply: bytes = b"250 2.0.0 queued as X1\r\n"
    hold_until: bytes | None = None  # answer nothing until a line starting with this
    drip: bool = False  # write replies one byte at a time
    tls_context: ssl.SSLContext | None = None  # offered through STARTTLS when set
    auth_reply: bytes = b"235 2.7.0 ok\r\n"
    auth_lines: list[bytes] = field(default_factory=list)  # what followed AUTH, decoded
    timeline: list[tuple[str, bytes]] = field(default_factory=list)  # ("read"|"write", …)
    bodies: list[bytes] = field(default_factory=list)  # raw DATA payloads, terminator kept
    port: int = 0
    _login_step: int = 0

    async def __aenter__(self) -> RawMx:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def reads(self) -> list[bytes]:
        return [data for kind, data in self.timeline if kind == "read"]

    @property
    def command_lines(self) -> list[bytes]:
        """Every line the client sent outside DATA payloads, in order."""
        lines = b"".join(self.reads)
        for body in self.bodies:
            lines = lines.replace(body, b"", 1)
        return lines.splitlines()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        try:
            await self._converse(reader, writer)
        except ConnectionError:
            pass  # the client aborted (after a malformed reply, say)
        finally:
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> None:
        await self._write(writer, self.greeting)
        buffer, held, body, in_data = b"", [], b"", False
        while chunk := await reader.read(65536):
            self.timeline.append(("read", chunk))
            buffer += chunk
            if in_data:
                body, buffer = body + buffer, b""
                if body == b".\r\n" or body.endswith(b"\r\n.\r\n"):
                    self.bodies.append(body)
                    body, in_data = b"", False
                    await self._write(writer, self.data_reply)
                continue
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                held.append(self._answer(line))
                in_data = line == b"DATA" and self.data_start_reply.startswith(b"354")
                if self.hold_until is not None and line.startswith(self.hold_until):
                    self.hold_until = None
                if self.hold_until is None:
                    await self._write(writer, b"".join(held))
                    held = []
                if line == b"QUIT":
                    return
                if line == b"STARTTLS" and self.tls_context is not None:
                    await writer.start_tls(self.tls_context)

    def _answer(self, line: bytes) -> bytes:
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"AUTH" or self._login_step:
            return self._answer_auth(line)
        if verb == b"STARTTLS":
            return b"220 2.0.0 go ahead\r\n" if self.tls_context else b"502 no\r\n"
        if verb == b"EHLO":
            return self.ehlo_reply or _multiline(250, ["raw.test", *self.extensions])
        if verb == b"RCPT":
            address = line.partition(b"<")[2].partition(b">")[0].decode()
            return self.rcpt_replies.get(address, b"250 2.1.5 ok\r\n")
        return {b"MAIL": self.mail_reply, b"DATA": self.data_start_reply,
                b"QUIT": b"221 bye\r\n"}.get(verb, b"250 ok\r\n")

    def _answer_auth(self, line: bytes) -> bytes:
        """AUTH PLAIN with an initial response, or AUTH LOGIN's two 334 prompts."""
        if line.upper() == b"AUTH LOGIN":
            self._login_step = 1
            return b"334 VXNlcm5hbWU6\r\n"
        if self._login_step:
            self.auth_lines.append(base64.b64decode(line))
            self._login_step = (self._login_step + 1) % 3
            return b"334 UGFzc3dvcmQ6\r\n" if self._login_step else self.auth_reply
        self.auth_lines.append(base64.b64decode(line.split()[-1]))
        return self.auth_reply

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        self.timeline.append(("write", data))
        pieces = [data[i:i + 1] for i in range(len(data))] if self.drip else [data]
        for piece in pieces:
            writer.write(piece)
            await writer.drain()


def _multiline(code: int, lines: list[str]) -> bytes:
    head = [f"{code}-{line}\r\n" for line in lines[:-1]]
    return "".join([*head, f"{code} {lines[-1]}\r\n"]).encode()


def client_settings(port: int, **extra: str) -> ClientSettings:
    return ClientSettings(helo_name="mail.example.test", port=port, connect_timeout=5,
                          command_timeout=5, data_timeout=5, **extra)  # type: ignore[arg-type]


async def send_one(mx: RawMx, recipients: list[str], message: bytes = MESSAGE
                   ) -> list[int]:
    session = await OutboundSession.open("127.0.0.1", "raw.test", client_settings(mx.port))
    try:
        replies = await session.send("a@example.test", recipients, message)
    finally:
        await session.close()
    return [reply.code for reply in replies]


# -- pipelining --------------------------------------------------------------------------

async def test_mail_and_every_rcpt_arrive_before_any_reply() -> None:
    recipients = ["a@r.test", "b@r.test", "c@r.test"]
    # A client that waited for the MAIL reply would wait forever (command timeout).
    async with RawMx(rcpt_replies={"b@r.test": b"550 5.1.1 no such user\r\n"}) as mx:
        session = await OutboundSession.open("127.0.0.1", "raw.test",
                                             client_settings(mx.port))
        mx.hold_until = b"RCPT TO:<c@r.test>"
        try:
            replies = await session.send("s@example.test", recipients, MESSAGE)
        finally:
            await session.close()
    assert [r.code for r in replies] == [250, 550, 250]
    assert str(replies[0]) == str(replies[2]) == "250 2.0.0 queued as X1"
    assert str(replies[1]) == "550 5.1.1 no such user"
    # The group sits between the EHLO reply and the first write answering it.
    first_answer = next(i for i, (kind, data) in enumerate(mx.timeline)
                        if kind == "write" and b"2.1.5" in data)
    before = b"".join(data for kind, data in mx.timeline[:first_answer] if kind == "read")
    assert before.endswith(b"MAIL FROM:<s@example.test> SIZE=%d\r\nRCPT TO:<a@r.test>\r\n"
                           b"RCPT TO:<b@r.test>\r\nRCPT TO:<c@r.test>\r\n" % len(MESSAGE))
    assert mx.bodies == [MESSAGE + b".\r\n"]


async def test_pipelined_mail_refusal_reads_every_reply_then_resets() -> None:
    async with RawMx(mail_reply=b"550 5.7.1 not from you\r\n",
                     rcpt_replies={"x@r.test": b"503 5.5.1 need MAIL\r\n",
                                   "y@r.test": b"503 5.5.1 need MAIL\r\n"}) as mx:
        session = await OutboundSession.open("127.0.0.1", "raw.test",
                                             client_settings(mx.port))
        try:
            refused = await session.send("a@e.test", ["x@r.test", "y@r.test"], MESSAGE)
            assert [str(r) for r in refused] == ["550 5.7.1 not from you"] * 2
            # The session stayed in step: a second transaction gets its own replies.
            mx.mail_reply, mx.rcpt_replies = b"250 ok\r\n", {}
            assert [r.code for r in await session.send("a@e.test", ["z@r.test"], MESSAGE)
                    ] == [250]
        finally:
            await session.close()
    lines = mx.command_lines
    assert lines[lines.index(b"RCPT TO:<y@r.test>") + 1] == b"RSET"


async def test_all_recipients_refused_no_data() -> None:
    async with RawMx(rcpt_replies={"a@r.test": b"450 4.2.0 later\r\n",
                                   "b@r.test": b"550 5.1.1 no\r\n"}) as mx:
        assert await send_one(mx, ["a@r.test", "b@r.test"]) == [450, 550]
    assert b"DATA" not in mx.command_lines and b"RSET" in mx.command_lines


async def test_without_pipelining_one_command_at_a_time() -> None:
    async with RawMx(extensions=["8BITMIME"],
                     rcpt_replies={"b@r.test": b"550 5.1.1 no\r\n"}) as mx:
        assert await send_one(mx, ["a@r.test", "b@r.test", "c@r.test"]) == [250, 550, 250]
    command_reads = [data for data in mx.reads if data not in mx.bodies]
    assert all(data.count(b"\r\n") == 1 for data in command_reads), command_reads
    assert mx.command_lines == [
        b"EHLO mail.example.test", b"MAIL FROM:<a@example.test>", b"RCPT TO:<a@r.test>",
        b"RCPT TO:<b@r.test>", b"RCPT TO:<c@r.test>", b"DATA", b"QUIT"]


async def test_ehlo_refused_falls_back_to_helo() -> None:
    async with RawMx(ehlo_reply=b"502 5.5.2 what\r\n") as mx:
        assert await send_one(mx, ["a@r.test", "b@r.test"]) == [250, 250]
    assert mx.command_lines[:3] == [b"EHLO mail.example.test", b"HELO mail.example.test",
                                    b"MAIL FROM:<a@example.test>"]


async def test_data_refused_at_354_stage() -> None:
    async with RawMx() as mx:
        mx.data_start_reply = b"554 5.5.0 no data for you\r\n"
        session = await OutboundSession.open("127.0.0.1", "raw.test",
                                             client_settings(mx.port))
        try:
            replies = await session.send("a@e.test", ["a@r.test"], MESSAGE)
        finally:
            await session.close()
    assert str(replies[0]) == "554 5.5.0 no data for you"
    assert mx.command_lines[-2:] == [b"RSET", b"QUIT"]


async def test_large_recipient_lists_are_pipelined_in_groups() -> None:
    recipients = [f"r{i}@r.test" for i in range(250)]
    async with RawMx() as mx:
        assert await send_one(mx, recipients) == [250] * 250
    rcpts = [line for line in mx.command_lines if line.startswith(b"RCPT")]
    assert rcpts == [f"RCPT TO:<{r}>".encode() for r in recipients]


# -- TLS and AUTH ------------------------------------------------------------------------

def tls_server_context(server_cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*server_cert)
    return context


@pytest.mark.parametrize("mechanisms", ["LOGIN", "PLAIN LOGIN"])
async def test_auth_after_starttls(mechanisms: str, server_cert: tuple[Path, Path]) -> None:
    async with RawMx(extensions=["PIPELINING", "STARTTLS", f"AUTH {mechanisms}"],
                     tls_context=tls_server_context(server_cert)) as mx:
        session = await OutboundSession.open(
            "127.0.0.1", "relay.test", client_settings(mx.port, username="u@x.test",
                                                       password="pw"))
        try:
            assert session.is_tls
            replies = await session.send("a@e.test", ["b@r.test"], MESSAGE)
        finally:
            await session.close()
    assert replies[0].is_success
    if mechanisms == "LOGIN":
        assert mx.auth_lines == [b"u@x.test", b"pw"]
    else:
        assert mx.auth_lines == [b"\0u@x.test\0pw"]
    # EHLO is said again inside TLS, before AUTH (RFC 3207 §4.2).
    assert [line.split()[0] for line in mx.command_lines[:4]] == [
        b"EHLO", b"STARTTLS", b"EHLO", b"AUTH"]


async def test_refused_auth_is_a_session_error(server_cert: tuple[Path, Path]) -> None:
    async with RawMx(extensions=["STARTTLS", "AUTH PLAIN"],
                     tls_context=tls_server_context(server_cert),
                     auth_reply=b"535 5.7.8 bad credentials\r\n") as mx:
        with pytest.raises(SessionError) as caught:
            await OutboundSession.open("127.0.0.1", "relay.test",
                                       client_settings(mx.port, username="u", password="p"))
    assert caught.value.reply is not None and caught.value.reply.code == 535
    assert not caught.value.is_service_refusal


# -- replies -----------------------------------------------------------------------------

async def test_multiline_replies_split_across_reads() -> None:
    async with RawMx(greeting=b"220-raw.test first\r\n220-second\r\n220 ready\r\n",
                     drip=True,
                     rcpt_replies={"b@r.test": b"550-5.1.1 mailbox\r\n550 5.1.1 unknown\r\n"},
                     ) as mx:
        session = await OutboundSession.open("127.0.0.1", "raw.test",
                                             client_settings(mx.port))
        try:
            replies = await session.send("a@e.test", ["a@r.test", "b@r.test"], MESSAGE)
        finally:
            await session.close()
    assert str(replies[1]) == "550 5.1.1 mailbox 5.1.1 unknown"
    assert replies[0].code == 250


@pytest.mark.parametrize("greeting", [
    b"HELLO there\r\n", b"2x0 nope\r\n", b"220-one\r\n250 two\r\n", b"\x00\xff\r\n",
    b"220" + b"x" * 20000 + b"\r\n", b"199 too low\r\n",
])
async def test_garbage_greeting_is_a_session_error(greeting: bytes) -> None:
    async with RawMx(greeting=greeting) as mx:
        with pytest.raises(SessionError, match="malformed"):
            await OutboundSession.open("127.0.0.1", "raw.test", client_settings(mx.port))


async def test_garbage_rcpt_reply_is_a_session_error() -> None:
    async with RawMx(rcpt_replies={"b@r.test": b"OK whatever\r\n"}) as mx:
        session = await OutboundSession.open("127.0.0.1", "raw.test",
                                             client_settings(mx.port))
        try:
            with pytest.raises(SessionError, match="malformed"):
                await session.send("a@e.test", ["a@r.test", "b@r.test"], MESSAGE)
            assert not session.is_connected
        finally:
            await session.close()


async def test_421_mid_transaction_is_a_session_error() -> None:
    async with RawMx(rcpt_replies={"a@r.test": b"421 4.3.2 shutting down\r\n"}) as mx:
        session = await OutboundSession.open("127.0.0.1", "raw.test",
                                             client_settings(mx.port))
        try:
            with pytest.raises(SessionError) as caught:
                await session.send("a@e.test", ["a@r.test"], MESSAGE)
        finally:
            await session.close()
    assert caught.value.reply is not None and caught.value.reply.code == 421


# -- DATA framing ------------------------------------------------------------------------

async def test_dot_stuffing_and_line_ends_on_the_wire() -> None:
    message = b"Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nbare\nlf\n.x"
    async with RawMx() as mx:
        assert await send_one(mx, ["a@r.test"], message) == [250]
    assert mx.bodies == [b"Subject: dots\r\n\r\n..one\r\n...two\r\n..\r\nbare\r\nlf\r\n..x"
                         b"\r\n.\r\n"]


@pytest.mark.parametrize(("message", "framed"), [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),
])
def test_frame_data(message: bytes, framed: bytes) -> None:
    assert frame_data(message) == framed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_frame_data_unstuffs_to_the_normalised_message(message: bytes) -> None:
    framed = frame_data(message)
    assert framed.endswith(b".\r\n")
    lines = framed.split(b"\r\n")[:-2]  # drop the terminator and the empty tail
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    unstuffed = [line[1:] if line.startswith(b".") else line for line in lines]
    assert unstuffed == message.splitlines()


# -- the sans-IO parser ------------------------------------------------------------------

def test_parser_returns_every_reply_of_a_burst() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250 a\r\n550-b\r\n550 c\r\n25") == [
        ParsedReply(250, ("a",)), ParsedReply(550, ("b", "c"))]
    assert parser.has_pending_bytes
    assert parser.feed(b"0\r\n") == [ParsedReply(250, ("",))]
    assert not parser.has_pending_bytes


def test_parse_extensions() -> None:
    reply = ReplyParser().feed(b"250-mx.test hi\r\n250-pipelining\r\n250-SIZE 1000\r\n"
                               b"250-AUTH PLAIN login\r\n250-AUTH=CRAM-MD5\r\n"
                               b"250 STARTTLS\r\n")[0]
    extensions = parse_extensions(reply)
    assert extensions.has("PIPELINING") and extensions.has("starttls")
    assert extensions.size_limit == 1000
    assert extensions.auth_mechanisms == {"PLAIN", "LOGIN", "CRAM-MD5"}
    assert not extensions.has("mx.test")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_parser_never_crashes(chunks: list[bytes]) -> None:
    parser = ReplyParser()
    try:
        for chunk in chunks:
            for reply in parser.feed(chunk):
                assert 200 <= reply.code < 600
    except MalformedReply:
        pass
