"""ManageSieve (RFC 5804) over real sockets: a raw client for each command and error,
and Debian's `sieve-connect` uploading, checking, activating and downloading a script."""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import make_config
from tests.support.server import NO_DNS_CHECKS, AppThread

ADDRESS, PASSWORD = "user@example.com", "correct horse battery"
PLAIN = "AHVzZXJAZXhhbXBsZS5jb20AY29ycmVjdCBob3JzZSBiYXR0ZXJ5"  # \0user\0password


@pytest.fixture
def server(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[AppThread]:
    config = make_config(tmp_path, server_cert, **NO_DNS_CHECKS, ENABLE_DNSBL=0,
                         ENABLE_MANAGESIEVE=1, MANAGESIEVE_PORT=0,
                         SIEVE_MAX_SCRIPTS=3, SIEVE_MAX_SCRIPT_SIZE=2048,
                         AUTH_FAILURE_DELAY=0)  # fmt: skip
    with AppThread(config) as app:
        app.add_account(ADDRESS, PASSWORD)
        yield app


class Client:
    """A line client that understands just enough of RFC 5804 responses."""

    def __init__(self, port: int, client_tls: ssl.SSLContext) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=10)
        self.tls = client_tls
        self.buffer = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def response(self) -> tuple[list[bytes], bytes]:
        """Lines up to the final OK/NO/BYE line, and that line."""
        lines: list[bytes] = []
        while True:
            line = self.line()
            if line.split(b" ")[0] in (b"OK", b"NO", b"BYE"):
                return lines, line
            if line.endswith(b"}") and b"{" in line:  # a literal: read it whole
                size = int(line[line.rindex(b"{") + 1:-1].rstrip(b"+"))
                while len(self.buffer) < size:
                    self.buffer += self.sock.recv(65536)
                lines.append(self.buffer[:size])
                self.buffer = self.buffer[size:]
                assert self.line() == b""  # the CRLF that ends the literal's line
                continue
            lines.append(line)

    def send(self, data: bytes) -> tuple[list[bytes], bytes]:
        self.sock.sendall(data)
        return self.response()

    def starttls(self) -> list[bytes]:
        assert self.send(b"STARTTLS\r\n")[1].startswith(b"OK")
        self.sock = self.tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        lines, final = self.response()  # RFC 5804 §2.2: capabilities again
        assert final.startswith(b"OK")
        return lines

    def login(self) -> None:
        self.starttls()
        assert self.send(f'AUTHENTICATE "PLAIN" "{PLAIN}"\r\n'.encode())[1] == \
            b'OK "logged in"'

    def put(self, name: str, script: str) -> bytes:
        data = script.encode()
        return self.send(f'PUTSCRIPT "{name}" {{{len(data)}+}}\r\n'.encode() + data
                         + b"\r\n")[1]  # fmt: skip


def connect(server: AppThread, client_tls: ssl.SSLContext) -> Client:
    client = Client(server.port("managesieve"), client_tls)
    client.response()  # greeting
    return client


def test_greeting_lists_capabilities_and_hides_sasl_before_tls(
        server: AppThread, client_tls: ssl.SSLContext) -> None:
    client = Client(server.port("managesieve"), client_tls)
    lines, final = client.response()
    text = b"\n".join(lines)
    assert final.startswith(b"OK")
    assert b'"STARTTLS"' in text and b'"SASL" ""' in text
    assert b'"SIEVE" "fileinto reject ereject envelope' in text
    assert b'"VERSION" "1.0"' in text
    assert b"vacation-seconds" in text and b"special-use" in text
    over_tls = b"\n".join(client.starttls())
    assert b'"SASL" "PLAIN LOGIN"' in over_tls and b'"STARTTLS"' not in over_tls


def test_authenticate_needs_tls(server: AppThread, client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    _, final = client.send(f'AUTHENTICATE "PLAIN" "{PLAIN}"\r\n'.encode())
    assert final.startswith(b"NO (ENCRYPT-NEEDED)")


def test_login_with_a_continuation(server: AppThread, client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    client.starttls()
    client.sock.sendall(b'AUTHENTICATE "PLAIN"\r\n')
    assert client.line() == b'""'
    assert client.send(f'"{PLAIN}"\r\n'.encode())[1] == b'OK "logged in"'


def test_scripts_lifecycle(server: AppThread, client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    client.login()
    assert client.put("main", 'require "fileinto";\r\nfileinto "Lists";\r\n').startswith(b"OK")
    assert client.put("spare", "keep;").startswith(b"OK")
    assert client.send(b'SETACTIVE "main"\r\n')[1].startswith(b"OK")
    lines, final = client.send(b"LISTSCRIPTS\r\n")
    assert sorted(lines) == [b'"main" ACTIVE', b'"spare"'] and final.startswith(b"OK")
    lines, _ = client.send(b'GETSCRIPT "main"\r\n')
    assert lines == [b'require "fileinto";\r\nfileinto "Lists";\r\n']
    _, final = client.send(b'DELETESCRIPT "main"\r\n')
    assert final.startswith(b"NO (ACTIVE)")
    _, final = client.send(b'RENAMESCRIPT "spare" "main"\r\n')
    assert final.startswith(b"NO (ALREADYEXISTS)")
    assert client.send(b'RENAMESCRIPT "spare" "other"\r\n')[1].startswith(b"OK")
    assert client.send(b'DELETESCRIPT "other"\r\n')[1].startswith(b"OK")
    _, final = client.send(b'GETSCRIPT "other"\r\n')
    assert final.startswith(b"NO (NONEXISTENT)")
    assert client.send(b'SETACTIVE ""\r\n')[1].startswith(b"OK")
    assert client.send(b"LISTSCRIPTS\r\n")[0] == [b'"main"']


def test_a_broken_script_is_refused_with_its_position(server: AppThread,
                                                       client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    client.login()
    final = client.put("bad", 'require "fileinto";\r\nif true {\r\n  fileinto "x"\r\n}\r\n')
    assert final.startswith(b'NO "line 4, column 1: error: expected \';\' or \'{\'')
    data = b"keep;\r\nfoo;\r\n"
    _, final = client.send(b"CHECKSCRIPT {%d+}\r\n" % len(data) + data + b"\r\n")
    assert final == b"NO \"line 2, column 1: error: unknown command 'foo'\""
    assert client.send(b"LISTSCRIPTS\r\n")[0] == []


def test_quotas(server: AppThread, client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    client.login()
    _, final = client.send(b'HAVESPACE "big" 4096\r\n')
    assert final.startswith(b"NO (QUOTA/MAXSIZE)")
    assert client.send(b'HAVESPACE "small" 100\r\n')[1].startswith(b"OK")
    for name in ("a", "b", "c"):
        assert client.put(name, "keep;").startswith(b"OK")
    assert client.put("d", "keep;").startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert client.put("a", "discard;").startswith(b"OK")  # replacing is not a new script


def test_an_oversized_literal_is_refused_and_the_connection_stays_in_sync(
        server: AppThread, client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    client.login()
    data = b"#" * 5000
    _, final = client.send(b'PUTSCRIPT "huge" {5000+}\r\n' + data + b"\r\n")
    assert final.startswith(b"NO")
    _, final = client.send(b'NOOP "still here"\r\n')
    assert final == b'OK (TAG "still here") "done"'


def test_wrong_passwords_end_the_connection(server: AppThread,
                                             client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    client.starttls()
    wrong = "AHVzZXJAZXhhbXBsZS5jb20Ad3Jvbmc="
    for _ in range(2):
        assert client.send(f'AUTHENTICATE "PLAIN" "{wrong}"\r\n'.encode())[1].startswith(
            b"NO")
    _, final = client.send(f'AUTHENTICATE "PLAIN" "{wrong}"\r\n'.encode())
    assert final.startswith(b"BYE")


def test_commands_need_login_and_garbage_gets_no(server: AppThread,
                                                 client_tls: ssl.SSLContext) -> None:
    client = connect(server, client_tls)
    assert client.send(b"LISTSCRIPTS\r\n")[1].startswith(b"NO")
    assert client.send(b"FROBNICATE\r\n")[1].startswith(b"NO")
    assert client.send(b'"not a command"\r\n')[1].startswith(b"NO")
    assert client.send(b"LOGOUT\r\n")[1].startswith(b"OK")


SIEVE_CONNECT = shutil.which("sieve-connect")


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect is not installed")
def test_sieve_connect_uploads_checks_activates_and_downloads(
        server: AppThread, tmp_path: Path, trustme_ca: trustme.CA) -> None:
    ca = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(ca)
    script = tmp_path / "filter.sieve"
    script.write_text('require ["fileinto", "mailbox"];\nif header :contains "subject" '
                      '"report" {\n  fileinto :create "Reports";\n}\n')  # fmt: skip
    base = [SIEVE_CONNECT, "--server", "127.0.0.1", "--port",
            str(server.port("managesieve")), "--user", ADDRESS, "--passwordfd", "0",
            "--tlscafile", str(ca), "--tlshostname", "127.0.0.1", "--authmech", "PLAIN"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], input=PASSWORD + "\n", capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    checked = run("--checkscript", "--localsieve", str(script))
    assert checked.returncode == 0, checked.stderr
    uploaded = run("--upload", "--localsieve", str(script), "--remotesieve", "filter")
    assert uploaded.returncode == 0, uploaded.stderr
    activated = run("--activate", "--remotesieve", "filter")
    assert activated.returncode == 0, activated.stderr
    listed = run("--list")
    assert "filter" in listed.stdout and "active" in listed.stdout.lower(), listed.stdout
    copy = tmp_path / "copy.sieve"
    downloaded = run("--download", "--remotesieve", "filter", "--localsieve", str(copy))
    assert downloaded.returncode == 0, downloaded.stderr
    assert copy.read_text() == script.read_text()
    # Then delivery applies it.
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.sendmail("joe@example.org", [ADDRESS],
                        b"From: joe@example.org\r\nSubject: monthly report\r\n\r\nfigures\r\n")
    assert len(server.inbox_messages(ADDRESS, "Reports")) == 1
