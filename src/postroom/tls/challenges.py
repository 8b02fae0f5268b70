"""The ACME challenge responders: HTTP-01 (RFC 8555 §8.3) and TLS-ALPN-01 (RFC 8737).

Owns the board of challenges currently published (filled by the ACME client, which runs
in a worker thread, and read by the listeners on the event loop), the two listeners, and
the RFC 8737 validation certificate and the context answering with it
(`ChallengeBoard.alpn_listener_context`), which the MTA-STS listener also uses when it
shares ACME_TLS_PORT (tls/policyserver.py: then no listener of this module binds it).

Invariants: the HTTP listener answers exactly `GET`/`HEAD
/.well-known/acme-challenge/TOKEN` for a published token and 404 for everything else; a
request is read within `REQUEST_TIMEOUT` and `MAX_REQUEST` bytes or the connection is
closed. The TLS listener negotiates only ALPN "acme-tls/1", serves a validation
certificate only for a name with a published challenge, and closes every connection
after the handshake (RFC 8737 §3: no application data is exchanged). Neither serves
anything when nothing is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import ssl
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postroom.loops import within

log = logging.getLogger(__name__)

ACME_TLS_ALPN = "acme-tls/1"  # RFC 8737 §6.2
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
CHALLENGE_PATH = "/.well-known/acme-challenge/"  # RFC 8555 §8.3
MAX_REQUEST = 8192  # bytes of request line and header fields
REQUEST_TIMEOUT = 10.0  # seconds for the whole request (and for a TLS handshake)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # base64url, RFC 8555 §8.1


def make_alpn_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): self-signed for `name`, carrying the critical
    acmeIdentifier extension whose value is the SHA-256 of the key authorization as a
    DER OCTET STRING (RFC 8737 §3)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        # extnValue = OCTET STRING (SIZE (32)): tag 0x04, length 0x20, the digest.
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID,
                                                  b"\x04\x20" + digest), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _alpn_context(cert_pem: bytes, key_pem: bytes, scratch: Path) -> ssl.SSLContext:
    """A server context answering only acme-tls/1 (load_cert_chain needs files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_ALPN])
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


class ChallengeBoard:
    """What the listeners answer right now. Written from the ACME client's thread."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch  # where throwaway key files live for an instant
        self._lock = threading.Lock()
        self._tokens: dict[str, bytes] = {}
        self._alpn: dict[str, ssl.SSLContext] = {}
        self._listener_context: ssl.SSLContext | None = None
        self.answered = 0  # validation requests answered (logs, tests)

    def publish_http(self, token: str, key_authorization: str) -> None:
        with self._lock:
            self._tokens[token] = key_authorization.encode("ascii")

    def publish_alpn(self, name: str, key_authorization: str) -> None:
        context = _alpn_context(*make_alpn_certificate(name, key_authorization),
                                self.scratch)
        with self._lock:
            self._alpn[name.lower()] = context

    def withdraw_all(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._alpn.clear()

    def http_answer(self, token: str) -> bytes | None:
        with self._lock:
            answer = self._tokens.get(token)
            self.answered += answer is not None
            return answer

    def note_alpn_answered(self) -> None:
        with self._lock:
            self.answered += 1

    def alpn_context(self, name: str) -> ssl.SSLContext | None:
        with self._lock:
            return self._alpn.get(name.lower().rstrip("."))

    @property
    def is_answering_alpn(self) -> bool:
        """A TLS-ALPN-01 challenge is published (an order is validating)."""
        with self._lock:
            return bool(self._alpn)

    def alpn_listener_context(self) -> ssl.SSLContext:
        """The context a TLS-ALPN-01 responder wraps connections in: made once (it
        blocks: a key and a file load), it answers only acme-tls/1 and hands each
        ClientHello to the validation certificate of the name it asks for, or refuses
        the handshake. Used by `ChallengeListeners` and by a listener sharing its port
        (tls/policyserver.py)."""
        with self._lock:
            context = self._listener_context
        if context is None:
            context = _alpn_context(*make_alpn_certificate("acme.invalid", "none"),
                                    self.scratch)
            context.sni_callback = self._choose_alpn  # type: ignore[assignment]
            with self._lock:
                self._listener_context = self._listener_context or context
                context = self._listener_context
        return context

    def _choose_alpn(self, ssl_object: ssl.SSLObject, server_name: str | None,
                     _context: ssl.SSLContext) -> int | None:
        context = self.alpn_context(server_name) if server_name else None
        if context is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # RFC 6066 §3
        ssl_object.context = context
        return None

    def note_handshake(self, ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> None:
        """Count a completed validation handshake (logs, tests)."""
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == ACME_TLS_ALPN:
            self.note_alpn_answered()


def parse_challenge_request(head: bytes) -> str | None:
    """The token a `GET`/`HEAD` request line asks for, None for any other request."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] not in {"GET", "HEAD"} or not parts[2].startswith("HTTP/"):
        return None
    target = parts[1]
    if target.startswith(("http://", "https://")):  # absolute-form, RFC 9112 §3.2.2
        target = "/" + target.split("/", 3)[-1] if target.count("/") >= 3 else "/"
    if not target.startswith(CHALLENGE_PATH):
        return None
    token = target[len(CHALLENGE_PATH):]
    return token if _TOKEN.fullmatch(token) else None


def render_http_response(status: str, body: bytes, *, is_head: bool) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii")
    return head if is_head else head + body


class ChallengeListeners:
    """The listener of one challenge type, bound only while an order needs it."""

    def __init__(self, board: ChallengeBoard, hosts: Sequence[str]) -> None:
        self.board = board
        self.hosts = tuple(hosts)
        self._servers: list[asyncio.Server] = []

    async def start_http(self, port: int) -> None:
        for host in self.hosts:
            self._servers.append(await asyncio.start_server(
                self._handle_http, host, port, reuse_address=True, limit=MAX_REQUEST))

    async def start_alpn(self, port: int) -> None:
        default = await asyncio.to_thread(self.board.alpn_listener_context)
        for host in self.hosts:
            self._servers.append(await asyncio.start_server(
                self._handle_alpn, host, port, reuse_address=True, ssl=default,
                ssl_handshake_timeout=REQUEST_TIMEOUT))

    @property
    def ports(self) -> list[int]:
        return [server.sockets[0].getsockname()[1] for server in self._servers]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await within(REQUEST_TIMEOUT, server.wait_closed())
        self._servers.clear()

    async def _handle_alpn(self, _reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        self.board.note_handshake(writer.get_extra_info("ssl_object"))
        writer.close()  # the handshake was the answer (RFC 8737 §3)
        with contextlib.suppress(Exception):
            await within(REQUEST_TIMEOUT, writer.wait_closed())

    async def _handle_http(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                token = parse_challenge_request(head)
                answer = self.board.http_answer(token) if token else None
                is_head = head.startswith(b"HEAD ")
                if answer is None:
                    writer.write(render_http_response("404 Not Found", b"not found\n",
                                                      is_head=is_head))
                else:
                    log.info("acme: answered the http-01 challenge for token %s", token)
                    writer.write(render_http_response("200 OK", answer, is_head=is_head))
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass  # too slow, too big or gone: closed without an answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await within(REQUEST_TIMEOUT, writer.wait_closed())
