"""Nodes behind a TCP load balancer (issue 10): with PROXY_PROTOCOL_TRUSTED_NETWORKS set,
a connection from those networks starts with a PROXY header (HAProxy v1 or v2) and the
client it names is the client everywhere — Received header, limits, bans; implicit TLS
starts after the header, even when the ClientHello arrives in the same segment; a trusted
peer without a valid header is closed before any greeting. Without the key nothing
changes. Sockets only ever connect to 127.0.0.1: the 203.0.113.x clients exist only inside
the header bytes."""

from __future__ import annotations

import smtplib
import socket
import ssl
from typing import Any

import pytest

from postroom.security import proxy_listener
from tests.hardening.conftest import PASSWORD, USER, StartApp, connect, is_closed, read_line
from tests.support import proxy_header
from tests.support.server import AppThread

pytestmark = pytest.mark.timeout(60)

BALANCER = "127.0.0.1"
CLIENT, OTHER_CLIENT = "203.0.113.7", "203.0.113.8"


def claiming(address: str, port: int = 25, binary: bool = False) -> bytes:
    """The header a balancer sends for a client at `address`."""
    encode = proxy_header.v2 if binary else proxy_header.v1
    return encode(address, BALANCER, 40000, port)


class ProxiedSMTP(smtplib.SMTP):
    """smtplib behind a balancer: the header goes out right after connect."""

    def __init__(self, header: bytes, *args: Any, **kwargs: Any) -> None:
        self.header = header
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        sock.sendall(self.header)
        return sock


class BioTls:
    """A TLS client driven through memory BIOs, so the PROXY header and the ClientHello
    leave in one send, as a balancer forwarding a client's first segment does."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, prefix: bytes) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=BALANCER)
        self._buffer = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(prefix + self.outgoing.read())
                prefix = b""
                self._fill()
        self._flush()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.incoming.write(data)

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def close(self) -> None:
        self.sock.close()

    def read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            try:
                self._buffer += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line + b"\r\n"


def imaps(app: AppThread, client_tls: ssl.SSLContext, header: bytes) -> tuple[BioTls, bytes]:
    """A connection to the IMAPS port through the balancer, and its greeting."""
    conn = BioTls(connect(app.port("imaps")), client_tls, header)
    return conn, conn.read_line()


def imap_login(conn: BioTls, password: str) -> bytes:
    conn.send(f'a1 LOGIN "{USER}" "{password}"\r\n'.encode())
    while not (line := conn.read_line()).startswith(b"a1 "):
        pass
    return line


def received_header(message: bytes) -> bytes:
    header = message.split(b"\r\n\r\n", 1)[0]
    start = header.index(b"Received:")
    end = header.find(b"\r\n", start)
    while header[end + 2:end + 3] in (b" ", b"\t"):  # folded
        end = header.find(b"\r\n", end + 2)
    return header[start:end]


@pytest.mark.parametrize(("header", "shown"), [
    (claiming(CLIENT), CLIENT),
    (proxy_header.v2_local(), BALANCER),  # a health check: the TCP peer
    (b"PROXY UNKNOWN\r\n", BALANCER),
])
def test_smtp_received_header_names_the_proxied_client(start_app: StartApp, header: bytes,
                                                       shown: str) -> None:
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS=BALANCER) as app:
        with ProxiedSMTP(header, BALANCER, app.port("smtp"), timeout=10) as smtp:
            smtp.sendmail("someone@elsewhere.test", [USER],
                          b"Subject: via a balancer\r\n\r\nhello\r\n")
        [message] = app.inbox_messages(USER)
        assert f"([{shown}])".encode() in received_header(message)


def test_starttls_works_behind_the_balancer(start_app: StartApp,
                                            client_tls: ssl.SSLContext) -> None:
    """STARTTLS on a proxied plain listener still does a server-side handshake."""
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS=BALANCER) as app:
        with ProxiedSMTP(claiming(CLIENT, 587), BALANCER, app.port("submission"),
                         timeout=10) as smtp:
            smtp.starttls(context=client_tls)
            smtp.login(USER, PASSWORD)


@pytest.mark.parametrize("binary", [True, False])
def test_imaps_tls_starts_after_the_header(start_app: StartApp, client_tls: ssl.SSLContext,
                                          binary: bool) -> None:
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS=BALANCER) as app:
        conn, greeting = imaps(app, client_tls, claiming(CLIENT, 993, binary))
        assert greeting.startswith(b"* OK")
        assert imap_login(conn, PASSWORD).startswith(b"a1 OK")
        conn.close()


@pytest.mark.parametrize("listener", ["smtp", "imap", "pop3s", "imaps"])
def test_trusted_peer_without_a_header_gets_no_greeting(start_app: StartApp,
                                                        listener: str) -> None:
    first_bytes = {"smtp": b"EHLO client.example\r\n", "imap": b"a1 CAPABILITY\r\n",
                   "pop3s": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
                   "imaps": b"PROXY TCP4 203.0.113.7 127.0.0.1 1 993 extra\r\n"}
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS=BALANCER) as app:
        sock = connect(app.port(listener))
        sock.sendall(first_bytes[listener])
        assert is_closed(sock)  # nothing at all came back: no greeting, no TLS alert
        sock.close()


def test_silent_trusted_peer_is_closed_after_the_header_timeout(
        start_app: StartApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_listener, "HEADER_TIMEOUT", 0.3)
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS=BALANCER) as app:
        sock = connect(app.port("smtp"))  # an SMTP client waits for the greeting
        assert is_closed(sock)
        sock.close()


def test_untrusted_peers_are_served_directly(start_app: StartApp) -> None:
    """The key names another network: 127.0.0.1 is an ordinary client, no header."""
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS="192.0.2.0/24") as app:
        sock = connect(app.port("smtp"))
        assert read_line(sock).startswith(b"220 ")
        sock.sendall(claiming(CLIENT))
        assert read_line(sock).startswith(b"500 ")  # just an unknown command here
        sock.close()


def test_failed_logins_ban_the_claimed_address_only(start_app: StartApp,
                                                     client_tls: ssl.SSLContext) -> None:
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS=BALANCER, AUTH_BAN_MAX_FAILURES=2) as app:
        conn, _ = imaps(app, client_tls, claiming(CLIENT, 993))
        for _ in range(2):
            assert imap_login(conn, "wrong").startswith(b"a1 NO")
        conn.close()
        guard = app.app.guard
        assert guard is not None
        assert app.call(guard.is_banned(CLIENT))
        assert not app.call(guard.is_banned(BALANCER))
        conn, greeting = imaps(app, client_tls, claiming(CLIENT, 993, binary=True))
        assert greeting.startswith(b"* BYE [UNAVAILABLE] too many failed logins")
        conn.close()
        conn, greeting = imaps(app, client_tls, claiming(OTHER_CLIENT, 993))
        assert greeting.startswith(b"* OK")
        assert imap_login(conn, PASSWORD).startswith(b"a1 OK")
        conn.close()


def test_connection_limit_counts_the_claimed_address(start_app: StartApp) -> None:
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS=BALANCER, MAX_CONNECTIONS_PER_IP=1) as app:
        first = connect(app.port("smtp"))
        first.sendall(claiming(CLIENT))
        assert read_line(first).startswith(b"220 ")
        second = connect(app.port("smtp"))
        second.sendall(claiming(CLIENT))
        assert b"too many connections from your address" in read_line(second)
        other = connect(app.port("smtp"))
        other.sendall(claiming(OTHER_CLIENT))
        assert read_line(other).startswith(b"220 ")
        for sock in (first, second, other):
            sock.close()


def test_without_the_key_a_proxy_line_is_an_unknown_command(start_app: StartApp) -> None:
    with start_app() as app:
        sock = connect(app.port("smtp"))
        assert read_line(sock).startswith(b"220 ")
        sock.sendall(claiming(CLIENT))
        assert read_line(sock).startswith(b"500 ")
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock).startswith(b"221 ")
        sock.close()
