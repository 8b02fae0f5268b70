"""Limits (issue 7): connections per address and in total, each refused with its own
protocol's words before any greeting; many idle connections do not starve a new client;
messages per SMTP connection; recipients per message; header size."""

from __future__ import annotations

import contextlib
import imaplib
import io
import poplib
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from postroom.checks.headers import (
    HEADER_FIELD_TOO_LARGE,
    HEADER_SECTION_TOO_LARGE,
    MAX_HEADER_FIELD,
    MAX_HEADER_SECTION,
    header_size_refusal,
)
from postroom.imap.wire.responses import render_refusal as imap_refusal
from postroom.pop3.wire import render_refusal as pop3_refusal
from postroom.runtime import Runtime
from postroom.security import stalls
from postroom.security.limits import ConnectionLimiter, Refusal
from postroom.security.peer import address_key, peer_key
from postroom.smtp.replies import render_refusal as smtp_refusal
from tests.conftest import TEST_HOSTNAME
from tests.hardening.conftest import PASSWORD, USER, StartApp, connect, is_closed, read_line
from tests.support.server import AppThread

pytestmark = pytest.mark.timeout(60)


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait for a condition the server reaches asynchronously (a connection released)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        pause.wait(0.01)


def open_connections(app: AppThread) -> int:
    return app.call(_total(app))


async def _total(app: AppThread) -> int:
    return app.app.limiter.total


# -- units ---------------------------------------------------------------------------------


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"  # dual-stack listener
    assert address_key("2001:db8:1:2::5") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("2001:db8::/48") == "2001:db8::/48"
    assert address_key("192.0.2.7/32") == "192.0.2.7"
    with pytest.raises(ValueError):
        address_key("not-an-address")
    assert peer_key(("127.0.0.1", 4242)) == "127.0.0.1"
    assert peer_key(None) is None
    assert peer_key("/run/socket") is None


def test_limiter_counts_per_address_and_in_total() -> None:
    import ipaddress

    limiter = ConnectionLimiter(max_total=4, max_per_address=2,
                                exempt=[ipaddress.ip_network("10.0.0.0/8")])
    assert limiter.admit("192.0.2.1") is None
    assert limiter.admit("192.0.2.1") is None
    assert limiter.admit("192.0.2.1") is Refusal.TOO_MANY_FROM_ADDRESS
    assert limiter.admit("192.0.2.2") is None  # another address is not affected
    assert limiter.admit("10.1.2.3") is None  # trusted: no per-address limit...
    assert limiter.admit("10.1.2.3") is Refusal.TOO_MANY_CONNECTIONS  # ...but the total
    limiter.release("192.0.2.1")
    assert limiter.open_from("192.0.2.1") == 1
    assert limiter.admit("10.1.2.3") is None
    for key in ("192.0.2.1", "192.0.2.2", "10.1.2.3", "10.1.2.3"):
        limiter.release(key)
    assert limiter.total == 0 and limiter.open_from("10.1.2.3") == 0


def test_refusal_lines() -> None:
    assert smtp_refusal(Refusal.BANNED, "mx.example") == (
        b"421 4.7.0 mx.example too many failed logins from your address; try later"
        b" (admin: postroom ban del ADDRESS)\r\n")
    assert smtp_refusal(Refusal.TOO_MANY_CONNECTIONS, "mx.example") == (
        b"421 4.3.2 mx.example too many connections; try later\r\n")
    assert imap_refusal(Refusal.TOO_MANY_FROM_ADDRESS, "mx") == (
        b"* BYE [UNAVAILABLE] too many connections from your address; try later\r\n")
    assert pop3_refusal(Refusal.BANNED, "mx") == (
        b"-ERR [SYS/TEMP] too many failed logins from your address; try later"
        b" (admin: postroom ban del ADDRESS)\r\n")


# -- connection limits over real sockets -----------------------------------------------------


def test_per_address_limit_refuses_with_each_protocols_words(start_app: StartApp) -> None:
    with start_app(MAX_CONNECTIONS_PER_IP=3) as app:
        held = [connect(app.port("smtp")) for _ in range(3)]
        for sock in held:
            assert read_line(sock).startswith(b"220 ")
        refusals = {
            "smtp": b"421 4.7.0 " + TEST_HOSTNAME.encode()
                    + b" too many connections from your address; try later\r\n",
            "pop3": b"-ERR [SYS/TEMP] too many connections from your address; try later\r\n",
            "imap": b"* BYE [UNAVAILABLE] too many connections from your address; "
                    b"try later\r\n",
        }
        for name, line in refusals.items():
            sock = connect(app.port(name))
            assert read_line(sock) == line, name
            assert is_closed(sock)
            sock.close()
        held.pop().close()
        wait_until(lambda: open_connections(app) == 2)
        again = connect(app.port("pop3"))
        assert read_line(again).startswith(b"+OK ")
        for sock in [*held, again]:
            sock.close()


def test_total_limit(start_app: StartApp) -> None:
    with start_app(MAX_CONNECTIONS=2, MAX_CONNECTIONS_PER_IP=0) as app:
        held = [connect(app.port("smtp")), connect(app.port("imap"))]
        assert read_line(held[0]).startswith(b"220 ")
        assert read_line(held[1]).startswith(b"* OK")
        late = connect(app.port("smtp"))
        assert read_line(late) == (b"421 4.3.2 " + TEST_HOSTNAME.encode()
                                   + b" too many connections; try later\r\n")
        assert is_closed(late)
        for sock in [*held, late]:
            sock.close()
        wait_until(lambda: open_connections(app) == 0)


def test_many_idle_connections_do_not_starve_a_new_client(
        start_app: StartApp, client_tls: ssl.SSLContext) -> None:
    with start_app(MAX_CONNECTIONS_PER_IP=0) as app:
        names = ("smtp", "submission", "pop3", "imap")
        idle = [connect(app.port(names[index % 4])) for index in range(200)]
        for sock in idle:  # every one was accepted and greeted, and now says nothing
            assert read_line(sock)[:1] in (b"2", b"+", b"*")
        assert open_connections(app) == 200
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
            assert smtp.sendmail("a@remote.example", [USER], b"Subject: hi\r\n\r\nx\r\n") == {}
        pop = poplib.POP3("127.0.0.1", app.port("pop3"), timeout=10)
        pop.stls(client_tls)
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
        pop.quit()
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=10)
        imap.login(USER, PASSWORD)
        imap.logout()
        for sock in idle:
            sock.close()


# -- SMTP per-connection and per-message limits ----------------------------------------------


def test_messages_per_connection(start_app: StartApp) -> None:
    with start_app(SMTP_MAX_MESSAGES_PER_CONNECTION=2) as app:
        smtp = smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10)
        for number in range(2):
            smtp.sendmail("a@remote.example", [USER], f"Subject: {number}\r\n\r\nx\r\n")
        assert smtp.docmd("MAIL FROM:<a@remote.example>") == (
            421, b"4.7.0 Too many messages in one connection; reconnect")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
        smtp.close()
        assert len(app.inbox_messages(USER)) == 2


def test_recipients_per_message(start_app: StartApp) -> None:
    with start_app() as app:
        app.call(app.runtime.accounts.add_alias("@catch.example.test", USER))
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
            smtp.ehlo("client.example")
            assert smtp.mail("a@remote.example")[0] == 250
            for number in range(100):  # RFC 5321 §4.5.3.1.8: at least 100 must be taken
                assert smtp.rcpt(f"r{number}@catch.example.test")[0] == 250
            assert smtp.rcpt("r100@catch.example.test") == (452, b"4.5.3 Too many recipients")
            assert smtp.data(b"Subject: many\r\n\r\nx\r\n")[0] == 250
        assert len(app.inbox_messages(USER)) == 1  # one copy per account


# -- header size -------------------------------------------------------------------------------


def test_scan_header_limits(tmp_path: Path) -> None:
    path = tmp_path / "message"
    cases = [
        (b"Subject: x\r\n\r\n" + b"y" * (MAX_HEADER_SECTION * 2), None),  # big body is fine
        (b"X-Big: " + b"a" * (MAX_HEADER_FIELD - 20) + b"\r\n\r\nbody", None),
        (b"X-Big: " + b"a" * MAX_HEADER_FIELD + b"\r\n\r\nbody", HEADER_FIELD_TOO_LARGE),
        (b"X-Folded: a\r\n" + b" " + b"b" * 1000 + b"\r\n" * 0
         + b"".join(b" " + b"c" * 998 + b"\r\n" for _ in range(110)) + b"\r\n",
         HEADER_FIELD_TOO_LARGE),
        (b"".join(b"X-N%d: " % n + b"v" * 900 + b"\r\n" for n in range(1200)) + b"\r\n",
         HEADER_SECTION_TOO_LARGE),
        # A line without a colon does not start the body (IMAP serves what follows as
        # header fields), so the fields after it are still measured.
        (b"no colon here\r\nX-Big: " + b"a" * MAX_HEADER_FIELD + b"\r\n\r\nbody",
         HEADER_FIELD_TOO_LARGE),
        (b"no colon here\r\n" + b"z" * (MAX_HEADER_SECTION * 2), HEADER_SECTION_TOO_LARGE),
        (b"no colon\r\nSubject: x\r\n\r\n" + b"y" * (MAX_HEADER_SECTION * 2), None),
        (b"X-Long: " + b"q" * (MAX_HEADER_SECTION * 2), HEADER_SECTION_TOO_LARGE),
        (b"", None),
    ]
    for raw, expected in cases:
        path.write_bytes(raw)
        with path.open("rb") as source:
            assert header_size_refusal(source) == expected, raw[:40]
        assert header_size_refusal(io.BytesIO(raw)) == expected, raw[:40]  # a body held in memory


def test_oversized_header_refused_over_smtp_and_session_goes_on(start_app: StartApp) -> None:
    huge_field = b"X-Big: " + b"a" * 200_000 + b"\r\nSubject: big\r\n\r\nbody\r\n"
    many_fields = b"".join(b"X-N%d: %s\r\n" % (n, b"v" * 900) for n in range(1300))
    with start_app() as app:
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as smtp:
            for raw in (huge_field, many_fields + b"\r\nbody\r\n"):
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    smtp.sendmail("a@remote.example", [USER], raw)
                assert refused.value.smtp_code == 552
                assert refused.value.smtp_error.startswith(b"5.3.4 Message header")
            assert smtp.sendmail("a@remote.example", [USER], b"Subject: ok\r\n\r\nx\r\n") == {}
        assert len(app.inbox_messages(USER)) == 1


# -- clients that stop reading ---------------------------------------------------------------


def flood_without_reading(port: int, line: bytes, app: AppThread) -> socket.socket:
    """Pipeline commands and never read a reply, until the server stops taking them (it
    is stuck writing to us) or drops us. Returns the still-open socket."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    wait_until(lambda: open_connections(app) == 1)
    sock.settimeout(0.5)
    batch = line * 2000
    with contextlib.suppress(OSError):  # a timeout (both sides full) or a reset
        for _ in range(10_000):
            sock.sendall(batch)
    return sock


@pytest.mark.parametrize(("name", "line"), [
    ("smtp", b"NOOP\r\n"), ("imap", b"a NOOP\r\n"), ("pop3", b"CAPA\r\n"),
])
def test_client_that_stops_reading_is_cut_off(start_app: StartApp,
                                              monkeypatch: pytest.MonkeyPatch,
                                              name: str, line: bytes) -> None:
    monkeypatch.setattr(stalls, "WRITE_STALL_TIMEOUT", 0.5)
    with start_app() as app:
        sock = flood_without_reading(app.port(name), line, app)
        wait_until(lambda: open_connections(app) == 0)  # while our socket is still open
        sock.close()
        with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
            assert smtp.noop()[0] == 250


# -- RFC timeouts -------------------------------------------------------------------------------


async def test_rfc_timeouts_are_the_defaults(runtime: Runtime) -> None:
    """What `serve` runs with (app.py passes no overrides). The timeouts themselves are
    exercised with short values in tests/smtp, tests/pop3 and tests/imap."""
    from postroom.imap.session import ImapServer
    from postroom.pop3.session import Pop3Server
    from postroom.smtp.policy import SmtpMode
    from postroom.smtp.session import SmtpServer

    smtp = SmtpServer(runtime, SmtpMode.MX)
    # RFC 5321 §4.5.3.2.7 (server waiting for the next command: 5 minutes) and §4.5.3.2.6
    # (DATA block: at least 3 minutes; SMTP_DATA_TIMEOUT bounds the whole body, so it
    # leaves a 10 MB message ~17 KB/s).
    assert (smtp.command_timeout, smtp.data_timeout) == (300, 600)
    assert Pop3Server(runtime, implicit_tls=False).idle_timeout >= 600  # RFC 1939 §3
    imap = ImapServer(runtime, implicit_tls=False)
    assert imap.idle_timeout >= 30 * 60  # RFC 9051 §5.4 autologout: at least 30 minutes
    assert imap.preauth_timeout <= 60  # a client that never logs in is not kept long


def test_hardening_config_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from postroom.config import load_config

    monkeypatch.chdir(tmp_path)  # no ./postroom.env to pick up
    from postroom.errors import ConfigError

    env = {"AUTH_BAN_MAX_FAILURES": "3", "AUTH_BAN_FIND_TIME": "5m", "AUTH_BAN_TIME": "2d",
           "AUTH_FAILURE_DELAY": "0.5", "MAX_CONNECTIONS": "100",
           "MAX_CONNECTIONS_PER_IP": "0", "SMTP_MAX_MESSAGES_PER_CONNECTION": "10"}
    config = load_config(None, env).config
    assert (config.auth_ban_max_failures, config.auth_ban_find_time, config.auth_ban_time,
            config.auth_failure_delay) == (3, 300, 172800, 0.5)
    assert (config.max_connections, config.max_connections_per_ip,
            config.smtp_max_messages_per_connection) == (100, 0, 10)
    defaults = load_config(None, {}).config
    assert (defaults.auth_ban_max_failures, defaults.auth_ban_find_time,
            defaults.auth_ban_time) == (5, 600, 3600)  # Fail2ban's defaults
    for key, bad in (("MAX_CONNECTIONS_PER_IP", "-1"), ("AUTH_BAN_TIME", "soon"),
                     ("AUTH_FAILURE_DELAY", "600")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, {key: bad})
