"""COMPRESS=DEFLATE (RFC 4978): the sans-IO layer (imap/compress.py) and the session over
real sockets — imaplib with a zlib-wrapped socket, and a raw deflating client for what
imaplib cannot say (IDLE, bombs, limits on the inflated stream)."""

from __future__ import annotations

import imaplib
import ssl
import zlib

import pytest

from postroom.imap.compress import CompressionError, DeflateLayer
from tests.imap.conftest import PASSWORD, USER, ImapThread, RawClient, login_raw, simple_message

# -- the layer on its own --------------------------------------------------------------------


def _client_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)


def test_output_is_raw_deflate_readable_after_each_flush() -> None:
    layer = DeflateLayer()
    inflater = zlib.decompressobj(-15)
    wire = layer.compress(b"* OK one\r\n") + layer.flush()
    assert inflater.decompress(wire) == b"* OK one\r\n"
    wire = layer.compress(b"a OK two\r\n") + layer.flush()
    assert inflater.decompress(wire) == b"a OK two\r\n"


def test_flush_without_new_output_sends_nothing() -> None:
    layer = DeflateLayer()
    assert layer.flush() == b""
    layer.compress(b"x")
    assert layer.flush()
    assert layer.flush() == b""


def test_input_is_inflated_in_bounded_chunks() -> None:
    layer = DeflateLayer(chunk_size=4096, grace=1 << 30)
    layer.receive(_client_deflate(b"a" * 100_000))
    chunks = []
    while layer.has_pending:
        chunk = layer.inflate()
        assert len(chunk) <= 4096
        chunks.append(chunk)
    assert b"".join(chunks) == b"a" * 100_000
    assert layer.wire_bytes < 1000 and layer.inflated_bytes == 100_000


def test_a_chunk_ending_exactly_at_the_limit_still_reports_more() -> None:
    layer = DeflateLayer(chunk_size=1000, grace=1 << 30)
    layer.receive(_client_deflate(b"b" * 2000))
    assert layer.inflate() == b"b" * 1000
    assert layer.has_pending
    assert layer.inflate() == b"b" * 1000
    assert layer.inflate() == b""
    assert not layer.has_pending


def test_a_bomb_is_refused_past_the_ratio() -> None:
    layer = DeflateLayer(max_ratio=100, grace=10_000)
    layer.receive(_client_deflate(b"\0" * 5_000_000))
    with pytest.raises(CompressionError, match="expands"):
        while layer.has_pending:
            layer.inflate()
    assert layer.inflated_bytes <= 10_000 + 100 * layer.wire_bytes + layer.chunk_size


def test_ordinary_text_stays_under_the_ratio() -> None:
    layer = DeflateLayer(grace=0)
    text = b"".join(b"a%d UID FETCH %d (FLAGS BODY.PEEK[HEADER])\r\n" % (i, i)
                    for i in range(2000))  # fmt: skip
    layer.receive(_client_deflate(text))
    out = b""
    while layer.has_pending:
        out += layer.inflate()
    assert out == text


def test_garbage_and_an_ended_stream_are_errors() -> None:
    layer = DeflateLayer()
    layer.receive(b"\xff\xff\xff\xff not deflate")
    with pytest.raises(CompressionError):
        layer.inflate()
    ended = zlib.compressobj(6, zlib.DEFLATED, -15)
    layer = DeflateLayer()
    layer.receive(ended.compress(b"a NOOP\r\n") + ended.flush())  # Z_FINISH
    with pytest.raises(CompressionError, match="ended"):
        layer.inflate()


# -- over sockets ------------------------------------------------------------------------------


class DeflatingClient(RawClient):
    """RawClient that deflates both ways once `start_compression` is called."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        self.deflater: zlib._Compress | None = None
        self.inflater: zlib._Decompress | None = None
        super().__init__(port, tls=tls)

    def start_compression(self) -> None:
        assert not self.buffer, "nothing may follow the tagged OK uncompressed"
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)

    def send(self, data: bytes) -> None:
        if self.deflater is not None:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; buffered {self.buffer!r}")
        self.buffer += self.inflater.decompress(chunk) if self.inflater else chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _compressed_client(server: ImapThread, client_tls: ssl.SSLContext) -> DeflatingClient:
    client = DeflatingClient(server.tls_port, tls=client_tls)
    assert client.command(b"L", f'LOGIN "{USER}" "{PASSWORD}"'.encode())[-1].startswith(b"L OK")
    assert client.command(b"Z", b"COMPRESS DEFLATE") == [b"Z OK DEFLATE active"]
    client.start_compression()
    return client


def test_capability_and_state_rules(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = RawClient(imap_server.tls_port, tls=client_tls)
    assert b"COMPRESS=DEFLATE" not in client.command(b"c", b"CAPABILITY")[0]
    # RFC 4978 §3: after login only.
    assert client.command(b"z", b"COMPRESS DEFLATE")[-1].startswith(b"z BAD")
    client.close()
    client = login_raw(imap_server, client_tls)
    assert b" COMPRESS=DEFLATE" in client.command(b"c", b"CAPABILITY")[0]
    assert client.command(b"z", b"COMPRESS GZIP")[-1].startswith(b"z BAD")
    client.close()


def test_commands_and_answers_are_deflated(imap_server: ImapThread,
                                           client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("compressed"))
    client = _compressed_client(imap_server, client_tls)
    answer = client.command(b"s", b"SELECT INBOX")
    assert b"* 1 EXISTS" in answer and answer[-1].startswith(b"s OK")
    answer = client.command(b"f", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: compressed" in answer[0]
    # RFC 4978 §3: a second COMPRESS is refused while one is active.
    assert client.command(b"z", b"COMPRESS DEFLATE") == [
        b"z NO [COMPRESSIONACTIVE] DEFLATE is already active"]
    assert client.command(b"o", b"LOGOUT") == [b"* BYE postroom logging out",
                                               b"o OK LOGOUT completed"]  # fmt: skip
    client.close()


def test_pipelined_compressed_bytes_after_the_command(imap_server: ImapThread,
                                                      client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    pipelined = deflater.compress(b"n NOOP\r\n") + deflater.flush(zlib.Z_SYNC_FLUSH)
    client.send(b"Z COMPRESS DEFLATE\r\n" + pipelined)
    assert client.line() == b"Z OK DEFLATE active"
    inflater = zlib.decompressobj(-15)
    text = b""
    while b"n OK" not in text:
        text += inflater.decompress(client.sock.recv(65536))
    assert text == b"n OK NOOP completed\r\n"
    client.close()


def test_idle_wakes_with_compression(imap_server: ImapThread,
                                     client_tls: ssl.SSLContext) -> None:
    client = _compressed_client(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    client.send(b"i IDLE\r\n")
    assert client.line() == b"+ idling"
    imap_server.deliver(simple_message("during idle"))
    assert client.line() == b"* 1 EXISTS"
    client.send(b"DONE\r\n")
    assert client.until_tagged(b"i")[-1] == b"i OK IDLE terminated"
    client.close()


def test_line_limit_applies_to_the_inflated_stream(imap_server: ImapThread,
                                                   client_tls: ssl.SSLContext) -> None:
    client = _compressed_client(imap_server, client_tls)
    # 200 KiB of command line deflate to a few hundred bytes; the parser still refuses it.
    client.send(b"a NOOP " + b"x" * (200 * 1024) + b"\r\n")
    assert client.until_tagged(b"a")[-1] == b"a BAD command line too long"
    assert client.command(b"b", b"NOOP") == [b"b OK NOOP completed"]
    client.close()


def test_a_decompression_bomb_ends_the_session(imap_server: ImapThread,
                                               client_tls: ssl.SSLContext) -> None:
    client = _compressed_client(imap_server, client_tls)
    # 64 MiB of spaces after a tag: about 64 KiB on the wire, 1000x. The literal-free line
    # is refused by the line limit, then discarded; the ratio check closes the session.
    assert client.deflater is not None
    bomb = client.deflater.compress(b"a NOOP" + b" " * (64 << 20))
    client.sock.sendall(bomb + client.deflater.flush(zlib.Z_SYNC_FLUSH))
    lines = []
    with pytest.raises((ConnectionError, OSError)):
        while True:
            lines.append(client.line())
    assert lines[-1] == b"* BYE compressed input expands too much"
    client.close()


# imaplib only sends commands it knows the states of (RFC 4978 §3: after login).
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class CompressingImap(imaplib.IMAP4_SSL):
    """imaplib over a socket we deflate ourselves after `compress()`."""

    _deflater: zlib._Compress | None = None
    _inflater: zlib._Decompress | None = None
    _plain = b""

    def compress(self) -> None:
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        assert typ == "OK", data
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflater = zlib.decompressobj(-15)

    def send(self, data: bytes) -> None:
        if self._deflater is not None:
            data = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _more(self) -> None:
        assert self._inflater is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("closed")
        self._plain += self._inflater.decompress(chunk)

    def read(self, size: int) -> bytes:
        if self._inflater is None:
            return super().read(size)
        while len(self._plain) < size:
            self._more()
        data, self._plain = self._plain[:size], self._plain[size:]
        return data

    def readline(self) -> bytes:
        if self._inflater is None:
            return super().readline()
        while b"\n" not in self._plain:
            self._more()
        index = self._plain.index(b"\n") + 1
        data, self._plain = self._plain[:index], self._plain[index:]
        return data


def test_imaplib_over_deflate(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    for number in range(3):
        imap_server.deliver(simple_message(f"message {number}", body="line\r\n" * 500))
    client = CompressingImap("127.0.0.1", imap_server.tls_port, ssl_context=client_tls,
                             timeout=10)
    client.login(USER, PASSWORD)
    client.compress()
    assert client.select("INBOX") == ("OK", [b"3"])
    typ, data = client.uid("SEARCH", "ALL")
    assert typ == "OK" and data == [b"1 2 3"]
    typ, data = client.fetch("2", "(BODY.PEEK[])")
    assert typ == "OK" and b"Subject: message 1" in data[0][1]
    assert data[0][1].count(b"line\r\n") == 500
    typ, _ = client.append("INBOX", None, None, simple_message("appended"))
    assert typ == "OK"
    assert client.logout()[0] == "BYE"


def test_compress_after_starttls(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = DeflatingClient(imap_server.port)
    assert client.command(b"t", b"STARTTLS") == [b"t OK begin TLS negotiation now"]
    client.sock = client_tls.wrap_socket(client.sock, server_hostname="127.0.0.1")
    client.command(b"l", f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    assert client.command(b"z", b"COMPRESS DEFLATE") == [b"z OK DEFLATE active"]
    client.start_compression()  # TLS below, deflate above (RFC 4978 §4)
    assert client.command(b"s", b"STARTTLS")[-1].startswith(b"s BAD")
    assert client.command(b"n", b"NOOP") == [b"n OK NOOP completed"]
    client.close()


def test_notify_news_between_commands_is_flushed(imap_server: ImapThread,
                                                 client_tls: ssl.SSLContext) -> None:
    client = _compressed_client(imap_server, client_tls)
    client.command(b"c", b"CREATE Other")
    client.command(b"n", b"NOTIFY SET (mailboxes Other (MessageNew MessageExpunge))")
    imap_server.deliver(simple_message("news"), mailbox="Other")
    assert client.line().startswith(b'* STATUS "Other" (MESSAGES 1 ')  # no command sent
    client.close()
