"""The web console's defences (issue 21), over real HTTPS: CSRF tokens on every POST,
the security headers (a strict CSP) on every answer, escaped output, the shared
brute-force ban (web and IMAP refuse alike), X-Forwarded-For only from
WEB_TRUSTED_PROXIES, and the request limits (body, head, slow clients, connections)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import trustme

from postroom.web import server as web_server
from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.server import NO_DNS_CHECKS
from tests.web.conftest import PASSWORD, USER, StartWebApp, WebClient, login, started

pytestmark = pytest.mark.timeout(120)

BANNED_IMAP = (b"* BYE [UNAVAILABLE] too many failed logins from your address; "
               b"try later (admin: postroom ban del ADDRESS)\r\n")


# -- CSRF ----------------------------------------------------------------------------------


def test_posts_without_the_right_csrf_token_are_refused(web_app: StartWebApp,
                                                        client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        page = client.get("/login")
        form = {"address": USER, "password": PASSWORD}
        assert client.post("/login", form).status == 403
        assert client.post("/login", {**form, "csrf_token": "x" * 43}).status == 403
        # The token of another browser is no good either (it must match this one's cookie).
        other = WebClient(app, client_tls)
        other_token = other.get("/login").csrf()
        refused = client.post("/login", {**form, "csrf_token": other_token})
        assert refused.status == 403
        assert "did not come from this site" in refused.body
        assert "__Host-postroom-session" not in client.cookies
        assert client.post("/login", {**form, "csrf_token": page.csrf()}).status == 303
        # Logged in, the token is the session's: the anonymous one no longer counts.
        assert client.post("/logout", {"csrf_token": page.csrf()}).status == 403
        assert client.post("/logout", {}).status == 403
        assert client.get("/reauth").status == 200  # still logged in
        token = client.get("/reauth").csrf()
        assert client.post("/logout", {"csrf_token": token}).status == 303


# -- headers ---------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(web_app: StartWebApp,
                                                   client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        answers = {
            "login page": client.get("/login"),
            "redirect": client.get("/"),
            "not found": client.get("/no/such/page"),
            "method not allowed": client.request("PUT", "/login"),
            "csrf refusal": client.post("/login", {}),
            "stylesheet": client.get("/static/style.css"),
        }
        user = WebClient(app, client_tls)
        login(user, USER)
        answers["forbidden"] = user.get("/admin")
        answers["logged-in page"] = user.get("/reauth")
        for name, answer in answers.items():
            csp = answer.headers.get("Content-Security-Policy", "")
            assert "default-src 'self'" in csp, name
            assert "frame-ancestors 'none'" in csp, name
            assert "'unsafe-inline'" not in csp, name
            assert answer.headers.get("X-Content-Type-Options") == "nosniff", name
            assert answer.headers.get("Referrer-Policy") == "no-referrer", name
        assert answers["not found"].status == 404
        assert answers["forbidden"].status == 403
        assert answers["logged-in page"].headers["Cache-Control"] == "no-store"
        assert "<script" not in answers["login page"].body  # no inline script anywhere
        assert " style=" not in answers["login page"].body


def test_a_body_over_web_max_body_is_refused_unread(web_app: StartWebApp,
                                                    client_tls: ssl.SSLContext) -> None:
    with web_app(WEB_MAX_BODY=4096) as app:
        with tls_socket(app.port("web"), client_tls) as sock:
            # The head announces the size; the body is never sent, nor waited for.
            sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
            answer = read_all(sock)
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 413 ")
        assert b"content-security-policy: default-src 'self'" in head
        # Up to the limit, a form is read (and judged: no CSRF token here).
        small = WebClient(app, client_tls).post("/login", {"x": "y" * 3000})
        assert small.status == 403


# -- escaping ----------------------------------------------------------------------------


def test_user_controlled_text_is_escaped(web_app: StartWebApp,
                                         client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        client = WebClient(app, client_tls)
        page = client.get("/login")
        hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
        answer = client.post("/login", {"csrf_token": page.csrf(), "address": hostile,
                                        "password": "x", "next": '/"><script>x</script>'})
        assert answer.status == 401
        assert "<script>" not in answer.body
        assert "<img src=x" not in answer.body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.body


# -- brute force -------------------------------------------------------------------------


def test_failed_web_logins_ban_the_client_on_every_port(web_app: StartWebApp,
                                                        client_tls: ssl.SSLContext) -> None:
    with web_app(AUTH_BAN_MAX_FAILURES=3) as app:
        client = WebClient(app, client_tls)
        for _ in range(3):
            assert login(client, USER, "guess").status == 401
        # Banned: even the right password is refused, with the way out named.
        refused = login(client, USER, PASSWORD)
        assert refused.status == 403
        assert "Too many failed logins" in refused.body
        assert "__Host-postroom-session" not in client.cookies
        # The same guard: IMAP from this address is refused before its greeting.
        with socket.create_connection(("127.0.0.1", app.port("imap")), timeout=10) as sock:
            assert sock.makefile("rb").readline() == BANNED_IMAP
        bans = app.call(app.runtime.store.list_bans(_now()))
        assert [ban.address for ban in bans] == ["127.0.0.1"]


def test_forwarded_for_counts_only_from_trusted_proxies(web_app: StartWebApp,
                                                        client_tls: ssl.SSLContext) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    with web_app(AUTH_BAN_MAX_FAILURES=2, WEB_TRUSTED_PROXIES="127.0.0.0/8") as app:
        proxied = WebClient(app, client_tls, headers=forwarded)
        for _ in range(2):
            assert login(proxied, USER, "guess").status == 401
        # The rightmost hop the proxy added is the client; the leftmost is only a claim.
        bans = app.call(app.runtime.store.list_bans(_now()))
        assert [ban.address for ban in bans] == ["198.51.100.7"]
        # The proxy itself, and its other clients, are not banned.
        assert login(WebClient(app, client_tls), USER).status == 303


def test_forwarded_for_from_anyone_else_is_ignored(web_app: StartWebApp,
                                                   client_tls: ssl.SSLContext) -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.7"}
    with web_app(AUTH_BAN_MAX_FAILURES=2) as app:  # no trusted proxy: the header is ignored
        spoofing = WebClient(app, client_tls, headers=forwarded)
        for _ in range(2):
            login(spoofing, USER, "guess")
        bans = app.call(app.runtime.store.list_bans(_now()))
        assert [ban.address for ban in bans] == ["127.0.0.1"]


# -- limits ------------------------------------------------------------------------------


def tls_socket(port: int, tls: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return tls.wrap_socket(sock, server_hostname=TEST_HOSTNAME)


def read_all(sock: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    return data


def test_an_oversized_request_head_is_refused(web_app: StartWebApp,
                                              client_tls: ssl.SSLContext) -> None:
    with web_app() as app, tls_socket(app.port("web"), client_tls) as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000
                     + b"\r\n\r\n")
        answer = read_all(sock)
        assert answer.split(b" ", 2)[1] in (b"400", b"431"), answer[:100]


def read_response(sock: ssl.SSLSocket) -> bytes:
    """One whole response with a content-length (keep-alive: the connection stays)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    assert len(body) == length  # nothing of a next answer read
    return head + b"\r\n\r\n" + body


def test_a_head_counted_across_reads_and_requests(web_app: StartWebApp,
                                                 client_tls: ssl.SSLContext) -> None:
    """The head limit holds however the bytes arrive: a normal head dribbled a byte at a
    time (its blank line split across reads) is served, then a second request on the same
    connection, just over MAX_HEAD and sent whole, is refused."""
    with web_app() as app, tls_socket(app.port("web"), client_tls) as sock:
        for byte in b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n":
            sock.sendall(bytes([byte]))
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first[:100]
        filler = web_server.MAX_HEAD - len(b"GET /login HTTP/1.1\r\nX: \r\n\r\n") + 1
        sock.sendall(b"GET /login HTTP/1.1\r\nX: " + b"a" * filler + b"\r\n\r\n")
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_client_that_never_finishes_its_request_is_cut_off(
        web_app: StartWebApp, client_tls: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "HEAD_TIMEOUT", 0.5)
    with web_app() as app, tls_socket(app.port("web"), client_tls) as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert read_all(sock) == b""  # closed without an answer


def test_connections_beyond_the_per_address_limit_get_503(
        web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    with web_app(MAX_CONNECTIONS_PER_IP=2) as app:
        port = app.port("web")
        held = [tls_socket(port, client_tls) for _ in range(2)]
        try:
            with tls_socket(port, client_tls) as third:
                answer = read_all(third)
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b"too many connections from your address" in answer
        finally:
            for sock in held:
                sock.close()
        # Released on close: a new connection is served again.
        assert WebClient(app, client_tls).get("/login").status == 200


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- TLS: the mail ports' certificates, hot reload included ------------------------------


def test_the_web_port_follows_certificate_renewals(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert_path, key_path = issue(old_ca, tmp_path / "tls")
    trust_old, trust_new = ssl.create_default_context(), ssl.create_default_context()
    old_ca.configure_trust(trust_old)
    new_ca.configure_trust(trust_new)
    with started(lambda port: make_config(tmp_path, (cert_path, key_path), WEB_PORT=port,
                                          **NO_DNS_CHECKS)) as app:
        assert WebClient(app, trust_old).get("/login").status == 200
        issue(new_ca, tmp_path / "tls")  # a renewal lands (as Certbot or ACME writes it)
        for path in (cert_path, key_path):
            later = path.stat().st_mtime_ns + 10_000_000_000
            os.utime(path, ns=(later, later))
        deadline = time.monotonic() + 60  # TlsContexts looks every few seconds
        while True:
            try:
                assert WebClient(app, trust_new).get("/login").status == 200
                break
            except ssl.SSLCertVerificationError:
                assert time.monotonic() < deadline, "the renewed certificate never served"
                time.sleep(0.5)
        with pytest.raises(ssl.SSLCertVerificationError):
            WebClient(app, trust_old).get("/login")


def issue(ca: trustme.CA, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    cert = ca.issue_cert(TEST_HOSTNAME, "127.0.0.1")
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert.private_key_pem.write_to_path(key_path)
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return cert_path, key_path
