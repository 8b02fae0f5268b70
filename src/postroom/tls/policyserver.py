"""The MTA-STS policy listener (RFC 8461 §3.3), which also answers TLS-ALPN-01 (RFC 8737)
when it shares ACME_TLS_PORT.

Owns one HTTPS endpoint: `GET`/`HEAD /.well-known/mta-sts.txt` with `Host:
mta-sts.DOMAIN` for a hosted DOMAIN answers the policy of tls/stspolicy.py as
`text/plain`; any other host or path is 404, any other method on the policy 405. The
certificate is chosen by SNI from the TLS contexts every listener uses (TlsContexts:
SSL_TYPE=acme orders `mta-sts.DOMAIN` names, SSL_DOMAIN_CERT_DIR holds manual ones).

TLS is driven here over a memory BIO rather than by asyncio's transport, because the
first record (the ClientHello) is read before the handshake: a ClientHello offering ALPN
`acme-tls/1` while an order publishes a TLS-ALPN-01 challenge goes to the challenge
board's context (tls/challenges.py), every other one to HTTPS. HTTP/1.1 is h11's
(docs/decisions/0049-mta-sts-listener.md); this module only moves bytes.

Invariants: one request per connection (`Connection: close`); the whole connection —
ClientHello, handshake, request, answer — fits in `deadline` seconds or is closed; a
request head over `MAX_REQUEST` bytes is 431, over `MAX_HEADERS` fields 431, anything h11
cannot parse 400; the request body is never read; nothing here holds more than one TLS
record plus `MAX_REQUEST` bytes per connection; expected failures (timeouts, resets, bad
TLS) end the connection quietly, they never reach the caller as exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import h11

from postroom.closing import close_connection
from postroom.tls.challenges import ACME_TLS_ALPN, ChallengeBoard
from postroom.tls.clienthello import RECORD_HEADER, NotTls, offered_alpn, record_length
from postroom.tls.contexts import TlsContexts
from postroom.tls.stspolicy import WELL_KNOWN_PATH, StsPolicy, hosted_domain_of

log = logging.getLogger(__name__)

DEADLINE = 10.0  # seconds for a whole connection; a policy fetch is one small GET
MAX_REQUEST = 8192  # bytes of request line and header fields
MAX_HEADERS = 50  # header fields in one request
READ_CHUNK = 4096
ALLOWED_METHODS = ("GET", "HEAD")

Domains = Callable[[], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


NOT_FOUND = Answer(404, b"not found\n")


def answer_request(method: str, target: str, host: str, hosted: set[str],
                   policy: StsPolicy) -> Answer:
    """What a request gets (pure): the policy, 404 or 405."""
    domain = hosted_domain_of(host)
    if domain is None or domain not in hosted or target.split("?", 1)[0] != WELL_KNOWN_PATH:
        return NOT_FOUND
    if method not in ALLOWED_METHODS:
        return Answer(405, b"method not allowed\n", (("Allow", ", ".join(ALLOWED_METHODS)),))
    return Answer(200, policy.text.encode("ascii"))


class BioTls:
    """Server-side TLS over a memory BIO between an asyncio StreamReader and writer."""

    def __init__(self, context: ssl.SSLContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, first: bytes) -> None:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._incoming.write(first)
        self._reader, self._writer = reader, writer

    async def _run(self, step: Callable[[], bytes | int | None]) -> bytes | int | None:
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    raise ConnectionResetError("the client closed during TLS") from None
                self._incoming.write(data)
                continue
            except ssl.SSLError:
                await self._flush()  # the alert, so the client learns why
                raise
            await self._flush()
            return result

    async def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._writer.write(pending)
            await self._writer.drain()

    async def handshake(self) -> None:
        await self._run(self.ssl.do_handshake)

    async def recv(self) -> bytes:
        """Up to READ_CHUNK bytes; b"" when the client closed its side."""
        def step() -> bytes:
            try:
                return self.ssl.read(READ_CHUNK)
            except ssl.SSLZeroReturnError:
                return b""
        data = await self._run(step)
        assert isinstance(data, bytes)
        return data

    async def send(self, data: bytes) -> None:
        await self._run(lambda: self.ssl.write(data))

    async def close(self) -> None:
        """Our close_notify; the client's is not waited for (we close anyway)."""
        with contextlib.suppress(ssl.SSLError):  # SSLWantRead: the client's is pending
            self.ssl.unwrap()
        await self._flush()


class PolicyServer:
    """The connection handler of the MTA-STS listener (app.py's ListenerSpec)."""

    def __init__(self, tls: TlsContexts, policy: StsPolicy, domains: Domains, *,
                 board: ChallengeBoard | None = None, deadline: float = DEADLINE) -> None:
        self.policy = policy
        self.domains = domains
        self.board = board  # set when this listener answers TLS-ALPN-01 too
        self.deadline = deadline
        # asyncio does not own this TLS, so the hot-reloading SNI context is built once.
        self._https = tls.listener_context()

    async def handle_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                await self._serve(reader, writer)
        except TimeoutError:
            log.debug("mta-sts: connection closed at the %ss deadline", self.deadline)
        except (OSError, asyncio.IncompleteReadError, NotTls) as error:  # SSLError too
            log.debug("mta-sts: connection ended: %r", error)
        finally:
            await close_connection(reader, writer)  # idempotent: app.py's wrapper too

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(RECORD_HEADER)
        payload = await reader.readexactly(record_length(header))
        board = self.board
        if board is not None and board.is_answering_alpn and (
                ACME_TLS_ALPN in offered_alpn(payload)):
            context = await asyncio.to_thread(board.alpn_listener_context)
            tls = BioTls(context, reader, writer, header + payload)
            await tls.handshake()
            board.note_handshake(tls.ssl)  # the handshake was the answer (RFC 8737 §3)
            await tls.close()
            return
        tls = BioTls(self._https, reader, writer, header + payload)
        await tls.handshake()
        await self._answer_http(tls)
        await tls.close()

    async def _answer_http(self, tls: BioTls) -> None:
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        try:
            request = await self._read_request(http, tls)
        except h11.RemoteProtocolError as error:
            await self._send(http, tls, Answer(error.error_status_hint, b"bad request\n"),
                             is_head=False)
            return
        if request is None:
            return
        if len(request.headers) > MAX_HEADERS:
            await self._send(http, tls, Answer(431, b"too many header fields\n"),
                             is_head=False)
            return
        method = request.method.decode("ascii", "replace")
        host = next((value.decode("latin-1") for name, value in request.headers
                     if name == b"host"), "")
        hosted = {domain.lower() for domain in await self.domains()}
        answer = answer_request(method, request.target.decode("latin-1"), host, hosted,
                                self.policy)
        log.debug("mta-sts: %s %r for %r: %d", method, request.target, host, answer.status)
        await self._send(http, tls, answer, is_head=method == "HEAD")

    @staticmethod
    async def _read_request(http: h11.Connection, tls: BioTls) -> h11.Request | None:
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await tls.recv())
                continue
            return event if isinstance(event, h11.Request) else None

    @staticmethod
    async def _send(http: h11.Connection, tls: BioTls, answer: Answer, *,
                    is_head: bool) -> None:
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(answer.body))),
                   ("Connection", "close"), *answer.headers]
        try:
            data = http.send(h11.Response(status_code=answer.status, headers=headers,
                                          reason=HTTPStatus(answer.status).phrase)) or b""
            if not is_head:
                data += http.send(h11.Data(data=answer.body)) or b""
            data += http.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as error:  # a state h11 cannot answer from: close
            log.debug("mta-sts: no answer possible: %s", error)
            return
        await tls.send(data)
