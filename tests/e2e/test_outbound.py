"""Issue 4 end to end: two `postroom serve` processes on 127.0.0.2 and 127.0.0.3 with a
local test DNS zone made from `postroom dns records`. Mail submitted on one arrives at the
other DKIM-signed; an unknown remote user bounces into the sender's INBOX; with the
receiver down the message waits, survives a sender restart and goes after `queue flush`;
a null MX bounces; a relay host receives everything when configured."""

from __future__ import annotations

import asyncio
import email
import email.policy
import poplib
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from postroom.dns.live import LiveResolver
from postroom.mailauth.dkim import verify_dkim
from tests.support.dnsserver import DnsTestServer
from tests.support.server import ServeProcess, local_serve_env, write_env

SENDER_IP, RECEIVER_IP, RELAY_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
ALICE, BOB = "alice@a.test", "bob@b.test"


def free_port_on(*hosts: str) -> int:
    """A port number free on every given loopback address (both servers use it)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def cli(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), *args],
                            capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr
    return result


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


class Node:
    def __init__(self, root: Path, name: str, ip: str, domain: str, smtp_port: int,
                 cert: tuple[Path, Path], dns: DnsTestServer, **extra: object) -> None:
        self.ip, self.domain = ip, domain
        self.env = write_env(root / f"{name}.env", local_serve_env(
            root / name, cert, OVERRIDE_HOSTNAME=f"mail.{domain}", LISTEN_ADDRESS=ip,
            SMTP_PORT=smtp_port, DNS_NAMESERVERS=dns.address, OUTBOUND_SMTP_PORT=smtp_port,
            OUTBOUND_BIND_ADDRESS=ip, **extra))
        self.process: ServeProcess | None = None

    def start(self) -> Node:
        self.process = ServeProcess(self.env).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stop() == 0
            self.process = None

    @property
    def ports(self) -> dict[str, int]:
        assert self.process is not None
        return self.process.ports

    def submit(self, tls: ssl.SSLContext, sender: str, recipients: list[str],
               body: bytes) -> None:
        with smtplib.SMTP(self.ip, self.ports["submission"], timeout=20) as smtp:
            smtp.starttls(context=tls)
            smtp.login(sender, "pw")
            smtp.sendmail(sender, recipients, body)

    def inbox(self, tls: ssl.SSLContext, user: str) -> list[bytes]:
        pop = poplib.POP3_SSL(self.ip, self.ports["pop3s"], context=tls, timeout=20)
        pop.user(user)
        pop.pass_("pw")
        messages = [b"\r\n".join(pop.retr(n)[1]) for n in range(1, pop.stat()[0] + 1)]
        pop.quit()
        return messages


@pytest.fixture
def loopback_cert(trustme_ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = trustme_ca.issue_cert("mail.a.test", "mail.b.test", SENDER_IP, RECEIVER_IP)
    cert_path, key_path = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(key_path)
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return cert_path, key_path


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def nodes(tmp_path: Path, loopback_cert: tuple[Path, Path], dns: DnsTestServer
          ) -> Iterator[tuple[Node, Node]]:
    port = free_port_on(SENDER_IP, RECEIVER_IP)
    sender = Node(tmp_path, "sender", SENDER_IP, "a.test", port, loopback_cert, dns,
                  SUBMISSION_PORT=0, POP3S_PORT=0)
    receiver = Node(tmp_path, "receiver", RECEIVER_IP, "b.test", port, loopback_cert, dns)
    for node, user in ((sender, ALICE), (receiver, BOB)):
        assert cli(node.env, "email", "add", user, "pw").returncode == 0
        assert cli(node.env, "dkim", "generate", node.domain, "--keysize", "1024"
                   ).returncode == 0
        records = cli(node.env, "dns", "records", node.domain, "--ip", node.ip)
        dns.load_zone(records.stdout, origin=node.domain)
    # A third domain that announces it accepts no mail (RFC 7505).
    dns.add("c.test.", "MX", "0 .")
    sender.start()
    receiver.start()
    try:
        yield sender, receiver
    finally:
        sender.stop()
        receiver.stop()


def message(to: str, subject: str) -> bytes:
    return (f"From: Alice <{ALICE}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\n"
            f"{subject} body\r\n").encode()


def dsn_for(node: Node, tls: ssl.SSLContext, recipient: str) -> email.message.Message:
    found: list[bytes] = []

    def arrived() -> bool:
        found[:] = [m for m in node.inbox(tls, ALICE) if b"delivery-status" in m
                    and recipient.encode() in m]
        return bool(found)

    wait_for(arrived)
    return email.message_from_bytes(found[0], policy=email.policy.default)


def test_signed_mail_crosses_between_instances(nodes: tuple[Node, Node],
                                               client_tls: ssl.SSLContext,
                                               dns: DnsTestServer) -> None:
    sender, receiver = nodes
    sender.submit(client_tls, ALICE, [BOB], message(BOB, "cross"))
    received: list[bytes] = []
    wait_for(lambda: bool(received.extend(receiver.inbox(client_tls, BOB)) or received))
    raw = received[0]
    assert b"cross body" in raw
    assert b"DKIM-Signature:" in raw
    results = asyncio.run(verify_dkim(LiveResolver([dns.nameserver]), raw))
    assert [(r.domain, str(r.result)) for r in results] == [("a.test", "pass")]
    # Submission completed the headers the client left out.
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] and parsed["Date"]


def test_unknown_remote_user_bounces_to_sender(nodes: tuple[Node, Node],
                                               client_tls: ssl.SSLContext) -> None:
    sender, _ = nodes
    sender.submit(client_tls, ALICE, ["nobody@b.test"], message("nobody@b.test", "lost"))
    dsn = dsn_for(sender, client_tls, "nobody@b.test")
    assert dsn.get_content_type() == "multipart/report"
    status = dsn.get_payload()[1].get_payload()[1]  # per-recipient block
    assert status["Action"] == "failed"
    assert status["Status"] == "5.1.1"
    assert "550" in status["Diagnostic-Code"]


def test_null_mx_bounces_at_once(nodes: tuple[Node, Node], client_tls: ssl.SSLContext) -> None:
    sender, _ = nodes
    sender.submit(client_tls, ALICE, ["x@c.test"], message("x@c.test", "nowhere"))
    dsn = dsn_for(sender, client_tls, "x@c.test")
    assert "5.1.10" in dsn.as_string() or "null MX" in dsn.as_string().lower()


def test_queue_survives_receiver_down_and_sender_restart(
        nodes: tuple[Node, Node], client_tls: ssl.SSLContext) -> None:
    sender, receiver = nodes
    receiver.stop()
    sender.submit(client_tls, ALICE, [BOB], message(BOB, "patience"))
    wait_for(lambda: "bob@b.test" in cli(sender.env, "queue", "list").stdout
             and "\t1\t" in cli(sender.env, "queue", "list").stdout)
    sender.stop()
    sender.start()
    listing = cli(sender.env, "queue", "list").stdout
    assert BOB in listing and ALICE in listing
    receiver.start()
    assert cli(sender.env, "queue", "flush").returncode == 0
    received: list[bytes] = []
    wait_for(lambda: bool(received.extend(receiver.inbox(client_tls, BOB)) or received))
    assert b"patience body" in received[0]
    wait_for(lambda: cli(sender.env, "queue", "list").stdout.strip() == "")


class Sink:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))  # type: ignore[attr-defined]
        return "250 2.0.0 accepted"


def test_relay_host_receives_everything(tmp_path: Path, loopback_cert: tuple[Path, Path],
                                        dns: DnsTestServer, client_tls: ssl.SSLContext) -> None:
    sink = Sink()
    relay_port = free_port_on(RELAY_IP)
    controller = Controller(sink, hostname=RELAY_IP, port=relay_port)
    controller.start()
    try:
        node = Node(tmp_path, "relayed", SENDER_IP, "a.test", free_port_on(SENDER_IP),
                    loopback_cert, dns, DEFAULT_RELAY_HOST=f"[{RELAY_IP}]:{relay_port}",
                    SUBMISSION_PORT=0)
        assert cli(node.env, "email", "add", ALICE, "pw").returncode == 0
        node.start()
        try:
            node.submit(client_tls, ALICE, [BOB, "x@c.test"], message(BOB, "via relay"))
            wait_for(lambda: sorted(r for _, rcpts in sink.envelopes for r in rcpts)
                     == [BOB, "x@c.test"])
            assert all(sender == ALICE for sender, _ in sink.envelopes)
        finally:
            node.stop()
    finally:
        controller.stop()
