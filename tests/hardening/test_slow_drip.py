"""Slow drip (issue 25 §6): a client trickling one byte every PACE seconds must not hold a
connection past its deadline. Each test runs a whole App with every deadline key at
DEADLINE seconds and a raw client that never finishes what it is sending; the idle timer
these deadlines replaced was reset by every byte, so it never fired."""

from __future__ import annotations

import imaplib
import itertools
import poplib
import select
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from postroom.imap.session import MIN_UPLOAD_RATE
from postroom.security import proxy_listener
from tests.hardening.conftest import PASSWORD, USER, StartApp, connect, read_line

pytestmark = pytest.mark.timeout(90)

PACE = 0.3  # seconds between two bytes of the attack
DEADLINE = 2  # every deadline key under test, in seconds
MARGIN = 2.5  # scheduling slack on a loaded machine
GIVE_UP = DEADLINE + MARGIN + 1.5  # how long an attack goes on before the test fails

ALL_DEADLINES = {"SMTPD_TIMEOUT": DEADLINE, "SMTP_DATA_TIMEOUT": DEADLINE,
                 "IMAP_LOGIN_TIMEOUT": DEADLINE, "IMAP_IDLE_TIMEOUT": DEADLINE,
                 "POP3_TIMEOUT": DEADLINE}


def trickle(text: bytes = b"x") -> Iterator[bytes]:
    """One byte of `text` at a time, over and over (no line ever ends unless `text` ends
    lines)."""
    return (bytes([byte]) for byte in itertools.cycle(text))


def _readable(sock: socket.socket, seconds: float) -> bool:
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    return bool(select.select([sock], [], [], seconds)[0])


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except (ConnectionError, ssl.SSLError):
        return b""


def drip(sock: socket.socket, chunks: Iterator[bytes]) -> tuple[float, bytes]:
    """Send one chunk every PACE seconds until the server closes the connection: (seconds
    that took, what the server said meanwhile). Fails the test after GIVE_UP seconds."""
    start = time.monotonic()
    said = b""
    while time.monotonic() - start < GIVE_UP:
        if _readable(sock, PACE):
            chunk = _receive(sock)
            if not chunk:
                return time.monotonic() - start, said
            said += chunk
            continue
        try:
            sock.sendall(next(chunks))
        except (ConnectionError, ssl.SSLError):
            return time.monotonic() - start, said + _drain(sock)
    pytest.fail(f"still connected after {GIVE_UP}s of slow drip; server said {said!r}")


def _drain(sock: socket.socket) -> bytes:
    said = b""
    while _readable(sock, 1) and (chunk := _receive(sock)):
        said += chunk
    return said


def assert_cut_off_at_deadline(took: float, since: float = 0.0) -> None:
    """`took` seconds of dripping, begun `since` seconds after the deadline started."""
    assert DEADLINE - 0.2 <= took + since <= DEADLINE + MARGIN, took + since


def expect_line(sock: socket.socket, prefix: bytes) -> bytes:
    line = read_line(sock)
    assert line.startswith(prefix), line
    return line


def imap_until_tagged(sock: socket.socket, tag: bytes) -> bytes:
    while not (line := read_line(sock)).startswith(tag + b" "):
        assert line, "connection closed"
    return line


def imap_login(sock: socket.socket) -> None:
    expect_line(sock, b"* OK")
    sock.sendall(f'a LOGIN {USER} "{PASSWORD}"\r\n'.encode())
    assert imap_until_tagged(sock, b"a").startswith(b"a OK")


# -- SMTP ---------------------------------------------------------------------------------


def test_smtp_command_line(start_app: StartApp) -> None:
    with start_app(**ALL_DEADLINES) as app, connect(app.port("smtp")) as sock:
        expect_line(sock, b"220 ")
        took, said = drip(sock, itertools.chain([b"EHLO "], trickle()))
    assert said.startswith(b"421 4.4.2"), said
    assert_cut_off_at_deadline(took)


def test_smtp_data_body(start_app: StartApp) -> None:
    """SMTP_DATA_TIMEOUT bounds the whole body, lines or no lines; nothing is stored."""
    with start_app(**{**ALL_DEADLINES, "SMTPD_TIMEOUT": 30}) as app, \
            connect(app.port("smtp")) as sock:
        expect_line(sock, b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        while not expect_line(sock, b"250").startswith(b"250 "):
            pass
        sock.sendall(f"MAIL FROM:<a@sender.example>\r\nRCPT TO:<{USER}>\r\nDATA\r\n".encode())
        expect_line(sock, b"250 ")
        expect_line(sock, b"250 ")
        expect_line(sock, b"354 ")
        took, said = drip(sock, trickle(b"Subject: slow\r\n"))
        assert said.startswith(b"421 4.4.2"), said
        assert_cut_off_at_deadline(took)
        assert app.inbox_messages(USER) == []


def test_smtp_deadline_is_per_command(start_app: StartApp) -> None:
    """Each reply starts a new deadline: a session of prompt commands outlives one."""
    with start_app(**ALL_DEADLINES) as app, \
            smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        start = time.monotonic()
        pause = threading.Event()
        while time.monotonic() - start < DEADLINE + 1:
            assert smtp.noop()[0] == 250
            pause.wait(0.4)  # pacing a client, not synchronisation
        assert smtp.ehlo()[0] == 250


def test_smtp_auth_response(start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    with start_app(**ALL_DEADLINES) as app, connect(app.port("submissions"), client_tls) as sock:
        expect_line(sock, b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        while not expect_line(sock, b"250").startswith(b"250 "):
            pass
        sock.sendall(b"AUTH PLAIN\r\n")
        expect_line(sock, b"334")
        took, said = drip(sock, trickle(b"AGJvYg"))
    assert said.startswith(b"421 4.4.2"), said
    assert_cut_off_at_deadline(took)


# -- IMAP ---------------------------------------------------------------------------------


def test_imap_before_login(start_app: StartApp) -> None:
    with start_app(**ALL_DEADLINES) as app, connect(app.port("imap")) as sock:
        expect_line(sock, b"* OK")
        took, said = drip(sock, itertools.chain([b"a LOGIN "], trickle()))
    assert b"* BYE" in said, said
    assert_cut_off_at_deadline(took)


def test_imap_login_deadline_counts_whole_commands_too(start_app: StartApp) -> None:
    """IMAP_LOGIN_TIMEOUT runs from connect whatever is sent: busy is not logged in."""
    with start_app(**ALL_DEADLINES) as app, connect(app.port("imap")) as sock:
        expect_line(sock, b"* OK")
        took, said = drip(sock, (f"n{i} NOOP\r\n".encode() for i in itertools.count()))
    assert b"n0 OK" in said and b"* BYE" in said, said
    assert_cut_off_at_deadline(took)


def test_imap_authenticate_response(start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    with start_app(**ALL_DEADLINES) as app, connect(app.port("imaps"), client_tls) as sock:
        expect_line(sock, b"* OK")
        sock.sendall(b"a AUTHENTICATE PLAIN\r\n")
        expect_line(sock, b"+")
        took, said = drip(sock, trickle(b"AGJvYg"))
    assert b"* BYE" in said, said
    assert_cut_off_at_deadline(took)


def test_imap_after_login(start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    """The whole command line is due within IMAP_IDLE_TIMEOUT of the LOGIN's OK."""
    with start_app(**{**ALL_DEADLINES, "IMAP_LOGIN_TIMEOUT": 30}) as app, \
            connect(app.port("imaps"), client_tls) as sock:
        imap_login(sock)
        took, said = drip(sock, itertools.chain([b"b NOOP"], trickle(b" ")))
    assert b"* BYE" in said, said
    assert_cut_off_at_deadline(took)


@pytest.mark.parametrize("marker", [b"{100000}", b"{100000+}"])
def test_imap_append_literal(start_app: StartApp, client_tls: ssl.SSLContext,
                             marker: bytes) -> None:
    """A literal is part of its command: announcing 100 kB buys no time, only bytes that
    arrive do (MIN_UPLOAD_RATE), and a trickle earns next to nothing."""
    with start_app(**{**ALL_DEADLINES, "IMAP_LOGIN_TIMEOUT": 30}) as app, \
            connect(app.port("imaps"), client_tls) as sock:
        imap_login(sock)
        start = time.monotonic()
        sock.sendall(b"c APPEND INBOX " + marker + b"\r\n")
        if not marker.endswith(b"+}"):
            expect_line(sock, b"+")
        took, said = drip(sock, trickle(b"Subject: slow\r\n"))
        assert b"* BYE" in said, said
        assert_cut_off_at_deadline(time.monotonic() - start)
        assert took > 0
        assert app.inbox_messages(USER) == []


def test_imap_honest_slow_append_completes(start_app: StartApp,
                                           client_tls: ssl.SSLContext) -> None:
    """Bytes that arrive earn time (MIN_UPLOAD_RATE): an APPEND sent at twice that rate
    completes although it takes longer than IMAP_IDLE_TIMEOUT."""
    piece = b"x" * (MIN_UPLOAD_RATE // 2 - 2) + b"\r\n"
    pieces = (DEADLINE + 1) * 4  # four pieces a second: 2 × MIN_UPLOAD_RATE
    message = b"Subject: slow but steady\r\n\r\n" + piece * pieces
    with start_app(**{**ALL_DEADLINES, "IMAP_LOGIN_TIMEOUT": 30}) as app, \
            connect(app.port("imaps"), client_tls) as sock:
        imap_login(sock)
        start = time.monotonic()
        sock.sendall(b"c APPEND INBOX {%d}\r\n" % len(message))
        expect_line(sock, b"+")
        sock.sendall(message[:-len(piece) * pieces])
        for _ in range(pieces):
            assert not _readable(sock, 0.25), read_line(sock)  # the pacing
            sock.sendall(piece)
        sock.sendall(b"\r\n")
        assert imap_until_tagged(sock, b"c").startswith(b"c OK")
        assert time.monotonic() - start > DEADLINE
        assert app.inbox_messages(USER) == [message]


def test_imap_idle(start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    """IDLE ends by IMAP_IDLE_TIMEOUT after its continuation, whatever trickles in."""
    with start_app(**{**ALL_DEADLINES, "IMAP_LOGIN_TIMEOUT": 30}) as app, \
            connect(app.port("imaps"), client_tls) as sock:
        imap_login(sock)
        sock.sendall(b"d IDLE\r\n")
        expect_line(sock, b"+ ")
        took, said = drip(sock, trickle(b"DON"))
    assert b"* BYE" in said, said
    assert_cut_off_at_deadline(took)


# -- POP3 ---------------------------------------------------------------------------------


def test_pop3_command_line(start_app: StartApp) -> None:
    with start_app(**ALL_DEADLINES) as app, connect(app.port("pop3")) as sock:
        expect_line(sock, b"+OK")
        took, said = drip(sock, itertools.chain([b"USER "], trickle()))
    assert said.startswith(b"-ERR"), said
    assert_cut_off_at_deadline(took)


def test_pop3_sasl_response(start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    with start_app(**ALL_DEADLINES) as app, connect(app.port("pop3s"), client_tls) as sock:
        expect_line(sock, b"+OK")
        sock.sendall(b"AUTH PLAIN\r\n")
        expect_line(sock, b"+")
        took, said = drip(sock, trickle(b"AGJvYg"))
    assert said.startswith(b"-ERR"), said
    assert_cut_off_at_deadline(took)


# -- PROXY protocol header --------------------------------------------------------------


def test_proxy_header(start_app: StartApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header read was bounded as a whole already (HEADER_TIMEOUT): a guard."""
    monkeypatch.setattr(proxy_listener, "HEADER_TIMEOUT", DEADLINE)
    with start_app(PROXY_PROTOCOL_TRUSTED_NETWORKS="127.0.0.1/32") as app, \
            connect(app.port("smtp")) as sock:
        took, said = drip(sock, itertools.chain([b"PROXY TCP4 "], trickle(b"1")))
    assert said == b""  # no greeting: the balancer never finished its header
    assert_cut_off_at_deadline(took)


# -- many at once -------------------------------------------------------------------------

PER_PROTOCOL = 10
FIRST_WORDS = {"smtp": b"EHLO ", "imap": b"a LOGIN ", "pop3": b"USER "}


def test_many_drips_are_all_cut_off_and_others_served(start_app: StartApp) -> None:
    with start_app(**ALL_DEADLINES) as app, ExitStack() as stack:
        socks = [stack.enter_context(connect(app.port(name)))
                 for name in FIRST_WORDS for _ in range(PER_PROTOCOL)]
        for sock, name in zip(socks, [n for n in FIRST_WORDS for _ in range(PER_PROTOCOL)],
                              strict=True):
            read_line(sock)  # the greeting
            sock.sendall(FIRST_WORDS[name])
        start = time.monotonic()
        open_socks = set(socks)
        while open_socks and time.monotonic() - start < GIVE_UP:
            readable = set(select.select(list(open_socks), [], [], PACE)[0])
            for sock in readable:
                if not _receive(sock):
                    open_socks.discard(sock)
            for sock in open_socks - readable:
                try:
                    sock.sendall(b"x")
                except ConnectionError:
                    open_socks.discard(sock)
        took = time.monotonic() - start
        assert not open_socks, f"{len(open_socks)} of {len(socks)} still connected"
        assert took <= DEADLINE + MARGIN, took
        _assert_served(app.port("smtp"), app.port("imap"), app.port("pop3"))


def _assert_served(smtp_port: int, imap_port: int, pop3_port: int) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
        assert smtp.ehlo()[0] == 250
        assert smtp.noop()[0] == 250
    imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
    assert imap.noop()[0] == "OK"
    imap.logout()
    pop = poplib.POP3("127.0.0.1", pop3_port, timeout=10)
    assert pop.capa()
    pop.quit()
