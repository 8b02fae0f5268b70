"""CHUNKING/BDAT with BINARYMIME (RFC 3030): the sans-IO framing, the server over real
sockets (raw scripted client and swaks), and our outbound client and queue against our
own server and against one without CHUNKING."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.clock import ManualClock
from postroom.dns.fake import FakeResolver
from postroom.mail.esmtp import MailParams
from postroom.outbound.client import ClientSettings, OutboundSession
from postroom.outbound.model import TransactionOptions
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from postroom.smtp.paths import parse_mail_params, parse_params
from postroom.smtp.wire import (
    BadBdat,
    BareNewlinePolicy,
    Bdat,
    ChunkEnd,
    ConnectionClosed,
    DataChunk,
    Event,
    NeedData,
    Noop,
    Quit,
    SmtpConnection,
    parse_command,
)
from tests.conftest import make_config
from tests.queue.fakemx import FakeMx
from tests.queue.harness import NoJitter, inbox_messages, recipient_blocks
from tests.smtp.conftest import SIZE_LIMIT, RawClient, message, serve, stored_messages
from tests.support.runtime import open_runtime

# Octets DATA could not carry as they are: an end marker, a lone LF, a lone CR, NUL.
BINARY = (b"From: a@remote.example\r\nTo: user@example.test\r\nSubject: bin\r\n"
          b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
          b"\r\n\x00\x01\r\n.\r\nline\nlone\rcr\xff\xfe\r\n")


def reconfigure(runtime: Runtime, **values: object) -> None:
    runtime.config = runtime.config.model_copy(update=values)


# -- the sans-IO core -------------------------------------------------------------------


def events(conn: SmtpConnection) -> list[Event]:
    found: list[Event] = []
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData | ConnectionClosed):
            return found
        found.append(event)


@pytest.mark.parametrize(("line", "expected"), [
    (b"BDAT 10", Bdat(10, False)),
    (b"BDAT 0 LAST", Bdat(0, True)),
    (b"bdat 7 last", Bdat(7, True)),
    (b"BDAT 00012 LAST", Bdat(12, True)),
])
def test_parse_bdat(line: bytes, expected: Bdat) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize("line", [b"BDAT", b"BDAT x", b"BDAT -1", b"BDAT 1 FIRST",
                                  b"BDAT 1 LAST x", b"BDAT 1  LAST", b"BDAT " + b"9" * 21,
                                  b"BDAT \xff", b"BDAT " + b"1" * 600])
def test_malformed_bdat_is_bad_bdat(line: bytes) -> None:
    assert isinstance(parse_command(line), BadBdat)


def test_chunks_are_exact_octets_and_pipelined_commands_follow() -> None:
    conn = SmtpConnection(BareNewlinePolicy.REJECT)
    conn.receive_data(b"BDAT 5\r\n.\r\n\nxBDAT 3 LAST\r\n\x00\r\rNOOP\r\nBDAT 0 LAST\r\n")
    assert events(conn) == [Bdat(5, False), DataChunk(b".\r\n\nx"), ChunkEnd(5, False),
                            Bdat(3, True), DataChunk(b"\x00\r\r"), ChunkEnd(3, True), Noop(),
                            Bdat(0, True), ChunkEnd(0, True)]


def test_a_discarded_chunk_is_consumed_without_events() -> None:
    conn = SmtpConnection()
    conn.receive_data(b"BDAT 6 LAST\r\nQUIT\r\n")
    assert conn.next_event() == Bdat(6, True)
    conn.discard_chunk()
    assert conn.next_event() == ChunkEnd(6, True)  # "QUIT\r\n" was the chunk, not a command
    assert isinstance(conn.next_event(), NeedData)


def test_a_chunk_cut_short_by_eof() -> None:
    conn = SmtpConnection()
    conn.receive_data(b"BDAT 10\r\nabc")
    conn.receive_data(b"")
    assert events(conn) == [Bdat(10, False), DataChunk(b"abc")]
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_bdat_line_with_bare_lf_under_reject_is_bad_bdat() -> None:
    conn = SmtpConnection(BareNewlinePolicy.REJECT)
    conn.receive_data(b"BDAT 4\nQUIT")
    assert isinstance(conn.next_event(), BadBdat)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), min_size=1, max_size=5),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_split_of_the_stream_gives_the_same_chunks(chunks: list[bytes],
                                                        cuts: list[int]) -> None:
    stream = b"".join(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if i == len(chunks) - 1 else b"")
                      + chunk for i, chunk in enumerate(chunks)) + b"QUIT\r\n"
    conn = SmtpConnection()
    received: list[Event] = []
    previous = 0
    for cut in [*sorted(c for c in cuts if c < len(stream)), len(stream)]:
        conn.receive_data(stream[previous:cut])
        previous = max(previous, cut)
        received += events(conn)
    data = b"".join(e.data for e in received if isinstance(e, DataChunk))
    assert data == b"".join(chunks)
    assert [e for e in received if isinstance(e, ChunkEnd)] == [
        ChunkEnd(len(c), i == len(chunks) - 1) for i, c in enumerate(chunks)]
    assert isinstance(received[-1], Quit)


def test_mail_parameters_body_binarymime_and_requiretls() -> None:
    params = parse_mail_params(parse_params("BODY=binarymime REQUIRETLS"))
    assert params.is_binarymime and params.is_requiretls
    with pytest.raises(ValueError, match="REQUIRETLS"):
        parse_mail_params(parse_params("REQUIRETLS=yes"))


# -- the server ---------------------------------------------------------------------------


async def start_transaction(port: int, mail: str = "MAIL FROM:<a@remote.example>"
                            ) -> RawClient:
    client = await RawClient.connect(port)
    await client.reply()
    code, text = await client.command("EHLO client.example")
    assert code == 250 and "CHUNKING" in text.split("\n") and "BINARYMIME" in text.split("\n")
    assert (await client.command(mail))[0] == 250
    assert (await client.command("RCPT TO:<user@example.test>"))[0] == 250
    return client


def body_of(stored: bytes) -> bytes:
    """The message as the client sent it: what follows our trace fields (every message
    here starts with its From field)."""
    return stored[stored.index(b"\r\nFrom: ") + 2:]


async def test_pipelined_chunks_store_the_exact_octets(accounts: Runtime) -> None:
    reconfigure(accounts, smtpd_forbid_bare_newline="reject")  # not applied to BDAT octets
    async with serve(accounts) as (port, _):
        client = await start_transaction(port, "MAIL FROM:<a@remote.example> BODY=BINARYMIME")
        first, second = BINARY[:50], BINARY[50:]
        await client.send(b"BDAT %d\r\n" % len(first) + first
                          + b"BDAT %d\r\n" % len(second) + second + b"BDAT 0 LAST\r\n")
        assert await client.reply() == (250, f"2.0.0 Ok: {len(first)} octets received")
        assert await client.reply() == (250, f"2.0.0 Ok: {len(second)} octets received")
        code, text = await client.reply()
        assert code == 250 and text.startswith("2.0.0 Ok: queued as ")
        assert (await client.command("NOOP"))[0] == 250
        await client.close()
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert body_of(stored) == BINARY  # BINARYMIME is stored as received


async def test_bdat_without_a_transaction_is_refused_and_its_chunk_dropped(
        accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
        assert await client.reply() == (503, "5.5.1 Need MAIL command")
        assert await client.reply() == (250, "2.0.0 Ok")  # "QUIT\r\n" was chunk data
        assert (await client.command("MAIL FROM:<a@remote.example>"))[0] == 250
        await client.send(b"BDAT 2 LAST\r\nhi")
        assert await client.reply() == (554, "5.5.1 No valid recipients")
        # §2: the failed BDAT reset the transaction
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 503
        await client.close()


async def test_size_limit_counts_every_chunk_and_resets(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await start_transaction(port)
        part = message(body=b"x" * (SIZE_LIMIT // 2 + 10) + b"\r\n")
        await client.send(b"BDAT %d\r\n" % len(part) + part + b"BDAT %d\r\n" % len(part) + part
                          + b"BDAT 3 LAST\r\nend")
        assert (await client.reply())[0] == 250
        assert await client.reply() == (552, f"5.3.4 Message size exceeds fixed limit "
                                             f"({SIZE_LIMIT} bytes)")
        assert await client.reply() == (503, "5.5.1 Need MAIL command")  # rest dropped
        client2 = await start_transaction(port)
        small = message()
        await client2.send(b"BDAT %d LAST\r\n" % len(small) + small)
        assert (await client2.reply())[0] == 250
        await client.close()
        await client2.close()
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert body_of(stored) == message()
    assert list((accounts.config.data_dir / "spool").iterdir()) == []


async def test_data_after_bdat_and_data_for_binarymime_are_503(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await start_transaction(port)
        head = message()
        await client.send(b"BDAT %d\r\n" % len(head) + head)
        assert (await client.reply())[0] == 250
        assert await client.command("DATA") == (503, "5.5.1 DATA not allowed after BDAT")
        await client.send(b"BDAT 0 LAST\r\n")  # the transaction goes on
        assert (await client.reply())[0] == 250
        await client.close()
        client = await start_transaction(port, "MAIL FROM:<a@remote.example> BODY=BINARYMIME")
        assert await client.command("DATA") == (503, "5.5.1 BODY=BINARYMIME requires BDAT")
        await client.close()
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert body_of(stored) == message()


async def test_malformed_bdat_closes_the_connection(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        client = await start_transaction(port)
        await client.send(b"BDAT 12 FINAL\r\nMAIL FROM:<x@y.example>\r\n")
        assert await client.reply() == (501, "5.5.4 Syntax: BDAT chunk-size [LAST]; closing "
                                             "connection")
        assert await client.is_closed()
        await client.close()


async def test_the_whole_chunked_body_has_smtp_data_timeout(accounts: Runtime) -> None:
    async with serve(accounts, command_timeout=30.0, data_timeout=0.3) as (port, _):
        client = await start_transaction(port)
        await client.send(b"BDAT 10\r\nabc")  # and then nothing
        assert await client.reply() == (421, "4.4.2 Timeout exceeded, closing connection")
        await client.close()
    assert list((accounts.config.data_dir / "spool").iterdir()) == []


async def test_spool_failure_mid_chunk_answers_once(accounts: Runtime,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: object, data: bytes) -> None:
        raise OSError(5, "Input/output error")
    monkeypatch.setattr("postroom.smtp.receive.Spool.write", broken)
    async with serve(accounts) as (port, _):
        client = await start_transaction(port)
        await client.send(b"BDAT 4 LAST\r\nbodyNOOP\r\n")
        assert (await client.reply())[0] == 451
        assert await client.reply() == (250, "2.0.0 Ok")  # replies stay in step
        await client.close()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
async def test_swaks_sees_chunking_and_binarymime(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        result = await asyncio.to_thread(
            subprocess.run, ["swaks", "--server", "127.0.0.1", "--port", str(port),
                             "--quit-after", "EHLO", "--helo", "swaks.example"],
            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250-CHUNKING" in result.stdout and "<-  250 BINARYMIME" in result.stdout


# -- our client and queue -------------------------------------------------------------------


async def test_our_client_sends_binarymime_with_bdat(accounts: Runtime) -> None:
    big = BINARY + b"y" * 1_500_000  # more than one BDAT chunk
    reconfigure(accounts, message_size_limit=2_000_000)
    async with serve(accounts) as (port, _):
        session = await OutboundSession.open("127.0.0.1", "mail.example.test",
                                             ClientSettings("client.test", port))
        try:
            (reply,) = await session.send("a@remote.example", ["user@example.test"], big,
                                          TransactionOptions(body="BINARYMIME"))
        finally:
            await session.close()
    assert reply.code == 250 and "queued as" in reply.text
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert body_of(stored) == big


async def test_binarymime_to_a_server_without_chunking_is_refused_locally() -> None:
    async with FakeMx() as mx:  # aiosmtpd: no CHUNKING, no BINARYMIME
        session = await OutboundSession.open("127.0.0.1", "mx.fake.test",
                                             ClientSettings("client.test", mx.port))
        try:
            (reply,) = await session.send("a@remote.example", ["b@remote.test"], BINARY,
                                          TransactionOptions(body="BINARYMIME"))
            (plain,) = await session.send("a@remote.example", ["b@remote.test"], message())
        finally:
            await session.close()
    assert (reply.code, reply.is_local) == (554, True)
    assert reply.text.startswith("5.6.3 ")
    assert plain.code == 250 and mx.transactions[0].content.endswith(b"Hi there.\r\n")


@pytest.fixture
async def sender_runtime(tmp_path: Path, server_cert: tuple[Path, Path]
                         ) -> AsyncIterator[Runtime]:
    """The sending side: its own store, OUTBOUND_SMTP_PORT set per test."""
    config = make_config(tmp_path / "sender", server_cert, OVERRIDE_HOSTNAME="out.sender.test")
    async with open_runtime(config) as runtime:
        await runtime.store.create_account("alice@sender.test", "x")
        yield runtime


ZONE = {"example.test": {"MX": [(10, "mx.example.test")]},
        "mx.example.test": {"A": ["127.0.0.1"]}}


async def queue_binary(runtime: Runtime, port: int) -> QueueWorker:
    reconfigure(runtime, outbound_smtp_port=port)
    worker = QueueWorker(runtime, FakeResolver(ZONE), ManualClock(), rng=NoJitter())
    blob = await runtime.blobs.put(BINARY)
    await worker.enqueue("alice@sender.test", ["user@example.test"], blob, body="BINARYMIME")
    return worker


async def test_queue_relays_binarymime_to_a_chunking_server(accounts: Runtime,
                                                            sender_runtime: Runtime) -> None:
    async with serve(accounts) as (port, _):
        worker = await queue_binary(sender_runtime, port)
        report = await worker.run_once()
    assert len(report.delivered) == 1
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert body_of(stored) == BINARY


async def test_queue_bounces_binarymime_when_the_next_hop_lacks_it(
        sender_runtime: Runtime) -> None:
    async with FakeMx() as mx:
        worker = await queue_binary(sender_runtime, mx.port)
        report = await worker.run_once()
    assert len(report.bounced) == 1 and mx.transactions == []
    (dsn,) = await inbox_messages(sender_runtime, "alice@sender.test")
    (block,) = recipient_blocks(dsn)
    assert block["Action"] == "failed" and block["Status"] == "5.6.3"


def test_transit_params_know_binarymime() -> None:
    assert MailParams(body="BINARYMIME").is_binarymime
    assert not MailParams(body="8BITMIME").is_binarymime


class ScriptedServer:
    """A minimal SMTP server offering CHUNKING without PIPELINING, recording what the
    client sends; BDAT chunks are read by their size, and `bdat_replies` answer them."""

    def __init__(self, bdat_replies: list[bytes]) -> None:
        self.bdat_replies = bdat_replies
        self.commands: list[bytes] = []
        self.chunks: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted.test ESMTP\r\n")
        while line := await reader.readline():
            self.commands.append(line.rstrip(b"\r\n"))
            verb = line.split(b" ")[0].upper().strip()
            if verb == b"EHLO":
                writer.write(b"250-scripted.test\r\n250-CHUNKING\r\n250 BINARYMIME\r\n")
            elif verb == b"BDAT":
                self.chunks.append(await reader.readexactly(int(line.split()[1])))
                writer.write(self.bdat_replies.pop(0))
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()
        writer.close()


@pytest.mark.parametrize("fails", [False, True])
async def test_client_bdat_without_pipelining(fails: bool) -> None:
    big = b"z" * (2 * 1024 * 1024 + 5)  # three chunks
    answers = [b"250 2.0.0 Ok\r\n", b"250 2.0.0 Ok\r\n", b"250 2.0.0 Ok: queued\r\n"]
    if fails:
        answers[1] = b"552 5.3.4 too big\r\n"
    scripted = ScriptedServer(answers)
    listener = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        session = await OutboundSession.open("127.0.0.1", "scripted.test",
                                             ClientSettings("client.test", port))
        (reply,) = await session.send("a@remote.example", ["b@remote.test"], big)
        await session.close()
    finally:
        listener.close()
        await listener.wait_closed()
    bdats = [c for c in scripted.commands if c.startswith(b"BDAT")]
    if fails:
        assert reply.code == 552 and bdats == [b"BDAT 1048576", b"BDAT 1048576"]
        assert b"RSET" in scripted.commands  # the failed transaction is cleaned up
    else:
        assert reply.code == 250
        assert bdats == [b"BDAT 1048576", b"BDAT 1048576", b"BDAT 5 LAST"]
        assert b"".join(scripted.chunks) == big
