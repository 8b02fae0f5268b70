"""Issue 2 end to end: `postroom serve` as a user runs it — add an account, mail it over
port 25 (swaks and smtplib), submit over 587/465, read it over POP3 with STLS; restart
without losing anything; SIGTERM drains."""

from __future__ import annotations

import poplib
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServeProcess, local_serve_env, write_env


def postroom_cli(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def env_file(tmp_path: Path, server_cert: tuple[Path, Path]) -> Path:
    return write_env(tmp_path / "postroom.env",
                     local_serve_env(tmp_path / "data", server_cert, LOG_LEVEL="info"))


@pytest.fixture
def server(env_file: Path) -> Iterator[ServeProcess]:
    for address in ("admin@example.test", "bob@example.test"):
        assert postroom_cli(env_file, "email", "add", address, "pw-" + address[0]
                            ).returncode == 0
    with ServeProcess(env_file) as process:
        yield process


def pop3_messages(port: int, tls: ssl.SSLContext, user: str, password: str,
                  delete: bool = False) -> list[bytes]:
    pop = poplib.POP3("127.0.0.1", port, timeout=10)
    pop.stls(tls)
    pop.user(user)
    pop.pass_(password)
    count, _ = pop.stat()
    messages = []
    for number in range(1, count + 1):
        messages.append(b"\r\n".join(pop.retr(number)[1]))
        if delete:
            pop.dele(number)
    pop.quit()
    return messages


def test_serve_prints_listeners_and_warns_without_accounts(env_file: Path) -> None:
    with ServeProcess(env_file) as process:
        names = set(process.ports)
        assert names == {"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"}
    assert any("no account exists yet" in line for line in process.output)


def test_mail_from_the_internet_read_over_pop3(server: ServeProcess,
                                               client_tls: ssl.SSLContext) -> None:
    if shutil.which("swaks"):
        swaks = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{server.ports['smtp']}", "--to",
             "admin@example.test", "--from", "someone@elsewhere.test",
             "--header", "Subject: via swaks", "--body", "hello from swaks", "--tls"],
            capture_output=True, text=True, timeout=60)
        assert swaks.returncode == 0, swaks.stdout + swaks.stderr
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.starttls(context=client_tls)
        smtp.sendmail("someone@elsewhere.test", ["bob@example.test"],
                      b"From: someone@elsewhere.test\r\nSubject: for bob\r\n\r\nhi bob\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("someone@elsewhere.test", ["nobody@example.test"], b"x\r\n")
        assert refused.value.recipients["nobody@example.test"][0] == 550

    admin = pop3_messages(server.ports["pop3"], client_tls, "admin@example.test", "pw-a")
    bob = pop3_messages(server.ports["pop3"], client_tls, "bob@example.test", "pw-b")
    if shutil.which("swaks"):
        assert len(admin) == 1 and b"hello from swaks" in admin[0]
        assert admin[0].startswith(b"Return-Path: <someone@elsewhere.test>")
        assert b"Received: from " in admin[0]
    assert len(bob) == 1 and b"hi bob" in bob[0]


def test_submission_587_and_465(server: ServeProcess, client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        smtp.starttls(context=client_tls)
        smtp.login("admin@example.test", "pw-a")
        smtp.sendmail("admin@example.test", ["bob@example.test"],
                      b"From: admin@example.test\r\nSubject: 587\r\n\r\nvia 587\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=10,
                          context=client_tls) as smtp:
        smtp.login("bob@example.test", "pw-b")
        smtp.sendmail("bob@example.test", ["admin@example.test"],
                      b"From: bob@example.test\r\nSubject: 465\r\n\r\nvia 465\r\n")
    assert b"via 587" in pop3_messages(server.ports["pop3"], client_tls,
                                       "bob@example.test", "pw-b")[0]
    assert b"via 465" in pop3_messages(server.ports["pop3"], client_tls,
                                       "admin@example.test", "pw-a")[0]


def test_restart_keeps_mail_and_pop3_deletions(env_file: Path, server: ServeProcess,
                                               client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for index in range(3):
            smtp.sendmail("a@elsewhere.test", ["admin@example.test"],
                          f"From: a@elsewhere.test\r\nSubject: n{index}\r\n\r\n"
                          f"body {index}\r\n".encode())
    first = pop3_messages(server.ports["pop3"], client_tls, "admin@example.test", "pw-a")
    assert len(first) == 3
    pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=client_tls, timeout=10)
    pop.user("admin@example.test")
    pop.pass_("pw-a")
    uidls_before = pop.uidl()[1]
    pop.dele(2)
    pop.quit()
    assert server.stop() == 0

    with ServeProcess(env_file) as again:
        pop = poplib.POP3_SSL("127.0.0.1", again.ports["pop3s"], context=client_tls,
                              timeout=10)
        pop.user("admin@example.test")
        pop.pass_("pw-a")
        uidls_after = pop.uidl()[1]
        assert [line.split()[1] for line in uidls_after] == [
            uidls_before[0].split()[1], uidls_before[2].split()[1]]
        bodies = [b"\r\n".join(pop.retr(n)[1]) for n in (1, 2)]
        pop.quit()
    assert b"body 0" in bodies[0] and b"body 2" in bodies[1]


def test_sigterm_exits_cleanly_and_refuses_new_work(server: ServeProcess) -> None:
    smtp = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
    smtp.ehlo()
    assert server.stop(signal.SIGTERM) == 0
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        smtp.mail("x@elsewhere.test")
        smtp.rcpt("admin@example.test")
    assert any("stopped" in line for line in server.output)


def test_bad_config_stops_serve_with_one_line(tmp_path: Path) -> None:
    env = write_env(tmp_path / "bad.env", {"DATA_DIR": tmp_path, "SSL_TYPE": "manual",
                                           "SSL_CERT_PATH": tmp_path / "none.crt",
                                           "SSL_KEY_PATH": tmp_path / "none.key"})
    result = postroom_cli(env, "serve")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"postroom: config: SSL_CERT_PATH: file {tmp_path / 'none.crt'} does not exist")
