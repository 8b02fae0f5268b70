"""REQUIRETLS (RFC 8689): offered and accepted only under TLS, recorded with the queued
message, and delivered only over verified TLS to a next hop that offers REQUIRETLS, else
bounced 5.7.10 — against our own server, aiosmtpd (no REQUIRETLS) and swaks."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

from postroom.clock import ManualClock
from postroom.dns.fake import FakeResolver
from postroom.outbound.worker import PassReport, QueueWorker
from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from tests.conftest import make_config
from tests.queue.fakemx import FakeMx
from tests.queue.harness import NoJitter, inbox_messages, recipient_blocks
from tests.smtp.conftest import RawClient, message, serve, stored_messages
from tests.support.runtime import open_runtime

SENDER = "alice@sender.test"
ZONE = {
    "example.test": {"MX": [(10, "mail.example.test")]},  # the name the certificate has
    "mail.example.test": {"A": ["127.0.0.1"]},
    "misnamed.test": {"MX": [(10, "mx.misnamed.test")]},  # a name it does not have
    "mx.misnamed.test": {"A": ["127.0.0.1"]},
}


async def ehlo_keywords(client: RawClient) -> list[str]:
    code, text = await client.command("EHLO client.example")
    assert code == 250
    return text.split("\n")[1:]


async def test_offered_and_accepted_only_under_tls(accounts: Runtime,
                                                   client_tls: ssl.SSLContext) -> None:
    async with serve(accounts) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        assert "REQUIRETLS" not in await ehlo_keywords(client)
        assert await client.command("MAIL FROM:<a@remote.example> REQUIRETLS") == (
            530, "5.7.10 REQUIRETLS needs a TLS connection")
        assert (await client.command("STARTTLS"))[0] == 220
        await client.starttls(client_tls)
        assert "REQUIRETLS" in await ehlo_keywords(client)
        assert (await client.command("MAIL FROM:<a@remote.example> REQUIRETLS"))[0] == 250
        assert (await client.command("RCPT TO:<user@example.test>"))[0] == 250
        await client.send(b"DATA\r\n")
        assert (await client.reply())[0] == 354
        await client.send(message() + b".\r\n")
        assert (await client.reply())[0] == 250
        await client.close()
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert b"with ESMTPS" in stored.replace(b"\r\n\t", b" ")


async def test_implicit_tls_offers_it(accounts: Runtime, client_tls: ssl.SSLContext) -> None:
    async with serve(accounts, SmtpMode.SUBMISSIONS, implicit_tls=True) as (port, _):
        client = await RawClient.connect(port, client_tls)
        await client.reply()
        assert "REQUIRETLS" in await ehlo_keywords(client)
        await client.close()


async def test_recorded_with_the_queued_message(accounts: Runtime,
                                                client_tls: ssl.SSLContext) -> None:
    worker = QueueWorker(accounts, FakeResolver({}), ManualClock(), rng=NoJitter())
    async with serve(accounts, outbound=worker) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.command("STARTTLS")
        await client.starttls(client_tls)
        await client.command("EHLO client.example")
        for line in ("MAIL FROM:<a@remote.example> REQUIRETLS", "RCPT TO:<fwd@example.test>"):
            assert (await client.command(line))[0] == 250
        await client.send(b"DATA\r\n" + message() + b".\r\n")
        assert (await client.reply())[0] == 354
        assert (await client.reply())[0] == 250
        await client.close()
    (entry,) = await accounts.store.list_queue()  # fwd@ forwards to someone@remote.example
    assert entry.recipient == "someone@remote.example" and entry.is_requiretls


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
async def test_swaks_sees_requiretls_only_after_starttls(accounts: Runtime) -> None:
    async with serve(accounts) as (port, _):
        outputs = []
        for tls in ([], ["--tls"]):
            result = await asyncio.to_thread(
                subprocess.run, ["swaks", "--server", "127.0.0.1", "--port", str(port),
                                 *tls, "--quit-after", "EHLO", "--helo", "swaks.example"],
                capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stdout + result.stderr
            outputs.append(result.stdout)
    plain, secured = outputs
    assert "REQUIRETLS" not in plain
    assert "<~  250 REQUIRETLS" in secured  # swaks marks lines read over TLS with "~"


# -- outbound --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_file(trustme_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme_ca.cert_pem.write_to_path(path)
    return path


@asynccontextmanager
async def sender(tmp_path: Path, server_cert: tuple[Path, Path], port: int,
                 cafile: Path | None) -> AsyncIterator[tuple[Runtime, QueueWorker]]:
    settings: dict[str, object] = {"OVERRIDE_HOSTNAME": "out.sender.test",
                                   "OUTBOUND_SMTP_PORT": port}
    if cafile is not None:
        settings["SMTP_TLS_CAFILE"] = str(cafile)
    config = make_config(tmp_path / "sender", server_cert, **settings)
    async with open_runtime(config) as runtime:
        await runtime.store.create_account(SENDER, "x")
        yield runtime, QueueWorker(runtime, FakeResolver(ZONE), ManualClock(), rng=NoJitter())


async def send_requiretls(runtime: Runtime, worker: QueueWorker, recipient: str, *,
                          is_requiretls: bool = True, sender_address: str = SENDER,
                          extra: bytes = b"") -> PassReport:
    raw = extra + message("secret")
    blob = await runtime.blobs.put(raw)
    await worker.enqueue(sender_address, [recipient], blob, is_requiretls=is_requiretls,
                         ret="FULL")
    return await worker.run_once()


async def bounce_status(runtime: Runtime) -> tuple[str, str]:
    (dsn,) = await inbox_messages(runtime, SENDER)
    assert dsn.get_payload()[2].get_content_type() == "text/rfc822-headers"  # never FULL
    (block,) = recipient_blocks(dsn)
    return block["Action"], block["Status"]


async def test_delivered_over_verified_tls_to_a_requiretls_server(
        accounts: Runtime, tmp_path: Path, server_cert: tuple[Path, Path],
        ca_file: Path) -> None:
    async with serve(accounts) as (port, _), \
            sender(tmp_path, server_cert, port, ca_file) as (runtime, worker):
        report = await send_requiretls(runtime, worker, "user@example.test")
    assert len(report.delivered) == 1
    (stored,) = await stored_messages(accounts, "user@example.test")
    assert b"with ESMTPS" in stored.replace(b"\r\n\t", b" ")


@pytest.mark.parametrize(("recipient", "trusted"), [
    ("user@misnamed.test", True),  # the certificate does not name the MX
    ("user@example.test", False),  # the certificate's CA is not in the system store
])
async def test_certificate_failures_bounce_5_7_10(
        accounts: Runtime, tmp_path: Path, server_cert: tuple[Path, Path], ca_file: Path,
        recipient: str, trusted: bool) -> None:
    async with serve(accounts) as (port, _), \
            sender(tmp_path, server_cert, port, ca_file if trusted else None) as (
                runtime, worker):
        report = await send_requiretls(runtime, worker, recipient)
        assert len(report.bounced) == 1
        assert await bounce_status(runtime) == ("failed", "5.7.10")
    assert await stored_messages(accounts, "user@example.test") == []


async def test_a_server_without_requiretls_or_starttls_gets_nothing(
        tmp_path: Path, server_cert: tuple[Path, Path], ca_file: Path) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*server_cert)
    for mx in (FakeMx(tls_context=tls), FakeMx()):  # STARTTLS without REQUIRETLS; plain
        async with mx, sender(tmp_path / str(mx.tls_context is None), server_cert, mx.port,
                              ca_file) as (runtime, worker):
            report = await send_requiretls(runtime, worker, "user@example.test")
            assert len(report.bounced) == 1 and mx.transactions == []
            assert await bounce_status(runtime) == ("failed", "5.7.10")


async def test_the_bounce_of_a_requiretls_message_is_sent_with_requiretls(
        tmp_path: Path, server_cert: tuple[Path, Path], ca_file: Path) -> None:
    async with FakeMx() as mx, \
            sender(tmp_path, server_cert, mx.port, ca_file) as (runtime, worker):
        report = await send_requiretls(runtime, worker, "user@example.test",
                                       sender_address="someone@far.test")
        assert len(report.bounced) == 1
        (dsn,) = await runtime.store.list_queue()
    assert (dsn.sender, dsn.recipient, dsn.is_requiretls) == ("", "someone@far.test", True)


async def test_without_requiretls_certificates_are_not_checked(
        tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    """TLS-Required: No (RFC 8689 §3, §4.2.2) asks for what we do anyway without
    REQUIRETLS: TLS when offered, its certificate not verified (here: a CA nobody trusts,
    a wrong name)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*server_cert)
    async with FakeMx(tls_context=tls) as mx, \
            sender(tmp_path, server_cert, mx.port, None) as (runtime, worker):
        report = await send_requiretls(runtime, worker, "user@misnamed.test",
                                       is_requiretls=False, extra=b"TLS-Required: No\r\n")
    assert len(report.delivered) == 1
    (transaction,) = mx.transactions
    assert transaction.is_tls and b"TLS-Required: No" in transaction.content
