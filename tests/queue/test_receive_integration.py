"""The QueueWorker as the real SMTP receiver's outbound hook: a message arriving on our
MX for an alias that forwards off-site is queued before 250, then relayed by the worker."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.clock import ManualClock
from postroom.dns.fake import FakeResolver
from postroom.outbound.worker import QueueWorker
from postroom.smtp.policy import SmtpMode
from postroom.smtp.session import SmtpServer
from tests.queue.fakemx import FakeMx
from tests.queue.harness import NoJitter, blob_count, queue_config
from tests.support.runtime import open_runtime

ZONE = {"remote.test": {"MX": [(10, "mx.remote.test")]}, "mx.remote.test": {"A": ["127.0.0.1"]}}
MESSAGE = (b"From: Zed <zed@elsewhere.test>\r\nTo: fwd@example.test\r\nSubject: via alias\r\n"
           b"Message-ID: <a1@elsewhere.test>\r\n\r\nforward me\r\n")


@pytest.fixture
async def mx() -> AsyncIterator[FakeMx]:
    async with FakeMx() as server:
        yield server


def send(port: int, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as client:
        refused = client.sendmail("zed@elsewhere.test", recipients, MESSAGE)
        assert refused == {}


async def test_forwarding_alias_goes_out_through_the_queue(
        tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx) -> None:
    config = queue_config(tmp_path, server_cert, mx.port)
    async with open_runtime(config) as runtime:
        await runtime.store.create_account("user@example.test", "x")
        await runtime.accounts.add_alias("fwd@example.test", "someone@remote.test")
        await runtime.accounts.add_alias("both@example.test", "user@example.test")
        await runtime.accounts.add_alias("both@example.test", "other@remote.test")
        worker = QueueWorker(runtime, FakeResolver(ZONE), ManualClock(), rng=NoJitter())
        server = SmtpServer(runtime, SmtpMode.MX, worker)
        listener = await asyncio.start_server(server.handle_connection, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            await asyncio.to_thread(send, port, ["fwd@example.test"])
            await asyncio.to_thread(send, port, ["both@example.test"])
        finally:
            listener.close()
            await listener.wait_closed()
        queued = await runtime.store.list_queue()
        assert sorted(e.recipient for e in queued) == ["other@remote.test",
                                                      "someone@remote.test"]
        assert {e.sender for e in queued} == {"zed@elsewhere.test"}
        report = await worker.run_once()
        assert len(report.delivered) == 2
        # Only the local copy and nothing else is left in the blob store.
        assert await blob_count(runtime) == 1
    relayed = {t.recipients[0]: t.content for t in mx.transactions}
    for content in relayed.values():
        assert content.startswith(b"Received: from client.test")  # no Return-Path
        assert content.endswith(b"forward me\r\n")


