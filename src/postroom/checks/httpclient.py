"""HTTP/1.1 to a local scanner daemon (rspamd), over h11's sans-IO protocol machine;
also the `GET` over verified TLS that fetches MTA-STS policies (outbound/mtasts.py).

Owns one request per connection: `POST` with a known Content-Length, the body streamed
from an async iterator, or a bodiless `GET`, `Connection: close`; the response read
whole, bounded by `MAX_RESPONSE` (or the caller's smaller `max_size`). h11 (decision
0040) does the framing both ways — the request's header fields checked as it renders
them, the answer's Content-Length, chunked or close-delimited body — and this module
the I/O, the bounds and the error vocabulary.

Invariants: every read is bounded in size (the caller bounds it in time); header values
we send never carry CR, LF or NUL (h11 refuses them before anything is sent: ValueError);
anything unreadable raises `ScannerError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from postroom.checks.scanning import ScannerError

MAX_RESPONSE = 4 * 1024 * 1024
MAX_HEADER_SECTION = 64 * 1024  # h11's bound on an incomplete status line + fields
MAX_HEADER_FIELDS = 100
READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a daemon listens, parsed once from a URL (`http://host:port/prefix`)."""

    host: str
    port: int
    is_tls: bool
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: expected http://host:port")
        is_tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if is_tls else 80), is_tls,
                   parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]  # names lowercased
    body: bytes


def _request(endpoint: Endpoint, path: str, headers: Sequence[tuple[str, str]],
             length: int) -> h11.Request:
    fields = [("Host", endpoint.authority), ("Content-Length", str(length)),
              ("Connection", "close"), *headers]
    try:
        return h11.Request(method="POST", target=f"{endpoint.prefix}{path}", headers=fields)
    except h11.LocalProtocolError as error:  # a field h11 will not send (CR, LF, NUL…)
        raise ValueError(f"header field refused, a line break or bad name: {error}") from None


def render_request(endpoint: Endpoint, path: str, headers: Sequence[tuple[str, str]],
                   length: int) -> bytes:
    """The request line and header section (RFC 9112 §3, §5), as h11 writes them."""
    connection = h11.Connection(h11.CLIENT)
    return connection.send(_request(endpoint, path, headers, length)) or b""


async def post(endpoint: Endpoint, path: str, headers: Sequence[tuple[str, str]],
               body: AsyncGenerator[bytes, None], length: int, *,
               context: ssl.SSLContext | None = None) -> Response:
    """POST `length` bytes of `body` and read the whole response."""
    request = _request(endpoint, path, headers, length)
    if not endpoint.is_tls:  # `context`: what an https peer's certificate is checked
        context = None       # against (TLS-RPT: SMTP_TLS_CAFILE); default: the system's
    elif context is None:
        context = ssl.create_default_context()
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, ssl=context)
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SECTION)
    try:
        writer.write(connection.send(request) or b"")
        async with aclosing(body):  # a spool file is closed even when the send fails
            async for chunk in body:
                writer.write(connection.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
        writer.write(connection.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        return await read_response(reader, connection)
    except h11.LocalProtocolError as error:  # more or fewer bytes than Content-Length
        raise ScannerError(f"the request could not be sent: {error}") from error
    finally:
        writer.close()


async def get(host: str, port: int, path: str, *, address: str, context: ssl.SSLContext,
              max_size: int = MAX_RESPONSE) -> Response:
    """GET `path` from `https://host:port`, connecting to `address` (the caller resolved
    `host`), with `context` (it decides what certificate is accepted; SNI and the name
    checked are `host`), and read the whole response."""
    endpoint = Endpoint(host, port, True, "")
    try:
        request = h11.Request(method="GET", target=path, headers=[
            ("Host", endpoint.authority), ("Connection", "close")])
    except h11.LocalProtocolError as error:
        raise ValueError(f"request refused: {error}") from None
    reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                   server_hostname=host)
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SECTION)
    try:
        writer.write(connection.send(request) or b"")
        writer.write(connection.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        return await read_response(reader, connection, max_size)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader,
                        connection: h11.Connection | None = None,
                        max_size: int = MAX_RESPONSE) -> Response:
    """The whole answer to the request `connection` sent (a fresh one: to any POST)."""
    if connection is None:
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_SECTION)
        connection.send(h11.Request(method="POST", target="/", headers=[
            ("Host", "localhost"), ("Content-Length", "0")]))
        connection.send(h11.EndOfMessage())
    status, body = 0, bytearray()
    fields: tuple[tuple[str, str], ...] = ()
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as error:
            raise ScannerError(f"not an HTTP answer: {error}") from error
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.Response):
            status, fields = event.status_code, _fields(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_size:
                raise ScannerError("the answer is too large")
        elif isinstance(event, h11.EndOfMessage):
            return Response(status, fields, bytes(body))
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            raise ScannerError("the connection closed before a whole answer")


def _fields(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    if len(headers) > MAX_HEADER_FIELDS:
        raise ScannerError("too many header fields in the answer")
    return tuple((name.decode("ascii").lower(), value.decode("latin-1"))
                 for name, value in headers)  # fmt: skip
