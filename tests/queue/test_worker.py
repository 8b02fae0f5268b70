"""The delivery worker against a fake remote MX on 127.0.0.1 (real sockets, real store)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.clock import ManualClock, SystemClock
from postroom.delivery.transit import ClientInfo, OutboundRecipient, ReceivedMessage
from postroom.dns.fake import FakeResolver
from postroom.mail.esmtp import MailParams, RcptParams
from postroom.outbound.admin import delete_queued, flush_queue, list_queued
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from tests.queue.fakemx import FakeMx
from tests.queue.harness import (
    ALICE,
    NoJitter,
    blob_exists,
    inbox_messages,
    message,
    queue_config,
    recipient_blocks,
    spool,
)
from tests.support.runtime import open_runtime

ZONE = {
    "remote.test": {"MX": [(10, "mx.remote.test")]},
    "far.test": {"MX": [(10, "mx.remote.test")]},
    "mx.remote.test": {"A": ["127.0.0.1"]},
    "nomail.test": {"MX": [(0, ".")]},
}


@pytest.fixture
async def mx() -> AsyncIterator[FakeMx]:
    async with FakeMx() as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver(ZONE)


@pytest.fixture
async def runtime(tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx
                  ) -> AsyncIterator[Runtime]:
    config = queue_config(tmp_path, server_cert, mx.port, QUEUE_LIFETIME="1h")
    async with open_runtime(config) as built:
        await built.store.create_account(ALICE, "x")
        yield built


@pytest.fixture
def worker(runtime: Runtime, resolver: FakeResolver, clock: ManualClock) -> QueueWorker:
    return QueueWorker(runtime, resolver, clock, rng=NoJitter())


async def queue_message(runtime: Runtime, worker: QueueWorker, recipients: list[str], *,
                        sender: str = ALICE, subject: str = "hello", extra: bytes = b"",
                        notify: tuple[str, ...] = ()) -> str:
    blob = await spool(runtime, message(subject, sender=sender or "x@y.test", extra=extra))
    entries = await worker.enqueue(sender, recipients, blob, notify=list(notify))
    return entries[0].message_id


async def test_several_recipients_and_messages_share_one_connection(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    spooled = await spool(runtime, message("one"))
    await worker.enqueue(ALICE, ["bob@remote.test", "carol@remote.test", "dave@remote.test"],
                         spooled)
    assert not await blob_exists(runtime, spooled)  # the queue keeps its own copy
    await queue_message(runtime, worker, ["erin@remote.test"], subject="two")
    report = await worker.run_once()
    assert len(report.delivered) == 4
    assert [t.recipients for t in mx.transactions] == [
        ["bob@remote.test", "carol@remote.test", "dave@remote.test"], ["erin@remote.test"]]
    assert {t.connection for t in mx.transactions} == {1}
    first = mx.transactions[0]
    assert first.sender == ALICE
    assert first.content.startswith(b"From: Alice")  # Return-Path removed (RFC 5321 §4.4)
    assert b"Subject: one" in first.content
    assert await runtime.store.list_queue() == []
    queued_blob = report.delivered[0].blob_id
    assert not await blob_exists(runtime, queued_blob)  # released once delivered


async def test_4xx_is_retried_after_backoff(runtime: Runtime, worker: QueueWorker,
                                            mx: FakeMx, clock: ManualClock) -> None:
    mx.rcpt_replies["bob@remote.test"] = "451 4.7.1 greylisted, come back later"
    await queue_message(runtime, worker, ["bob@remote.test", "carol@remote.test"])
    report = await worker.run_once()
    assert [e.recipient for e in report.delivered] == ["carol@remote.test"]
    (waiting,) = await runtime.store.list_queue()
    assert waiting.attempts == 1
    assert waiting.last_error == "451 4.7.1 greylisted, come back later"
    assert waiting.next_attempt == clock.now() + dt.timedelta(minutes=5)
    assert (await worker.run_once()).due == 0  # not due yet
    del mx.rcpt_replies["bob@remote.test"]
    clock.advance(dt.timedelta(minutes=5))
    report = await worker.run_once()
    assert [e.recipient for e in report.delivered] == ["bob@remote.test"]
    assert [t.recipients for t in mx.transactions] == [["carol@remote.test"],
                                                       ["bob@remote.test"]]
    assert await runtime.store.list_queue() == []
    assert await inbox_messages(runtime, ALICE) == []


async def test_5xx_bounces_into_local_senders_inbox(runtime: Runtime, worker: QueueWorker,
                                                    mx: FakeMx) -> None:
    mx.rcpt_replies["bob@remote.test"] = "550 5.1.1 <bob@remote.test>: no such user"
    await queue_message(runtime, worker, ["bob@remote.test", "carol@remote.test"])
    report = await worker.run_once()
    assert [e.recipient for e in report.bounced] == ["bob@remote.test"]
    assert [t.recipients for t in mx.transactions] == [["carol@remote.test"]]
    assert await runtime.store.list_queue() == []
    (dsn,) = await inbox_messages(runtime, ALICE)
    assert dsn["Return-Path"] == "<>"
    assert dsn["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.example.test"
    (block,) = recipient_blocks(dsn)
    assert block["Final-Recipient"] == "rfc822; bob@remote.test"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert block["Remote-MTA"] == "dns; mx.remote.test"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: no such user"
    headers = dsn.get_payload()[2].get_payload(decode=True)
    assert b"Subject: hello" in headers


async def test_data_rejection_bounces_every_accepted_recipient(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    mx.data_reply = "554 5.7.1 message refused as spam"
    await queue_message(runtime, worker, ["bob@remote.test", "carol@remote.test"])
    report = await worker.run_once()
    assert len(report.bounced) == 2
    (dsn,) = await inbox_messages(runtime, ALICE)
    assert [b["Status"] for b in recipient_blocks(dsn)] == ["5.7.1", "5.7.1"]


async def test_lifetime_exceeded_bounces(runtime: Runtime, worker: QueueWorker, mx: FakeMx,
                                         clock: ManualClock) -> None:
    mx.rcpt_replies["bob@remote.test"] = "452 4.2.2 mailbox full"
    await queue_message(runtime, worker, ["bob@remote.test"])
    attempts = 0
    while await runtime.store.list_queue():
        report = await worker.run_once()
        attempts += 1
        assert attempts < 20
        if report.deferred:
            (waiting,) = await runtime.store.list_queue()
            clock.set(waiting.next_attempt)
    # QUEUE_LIFETIME=1h: tries at 0, 5, 15, 35 min, then at the 60-minute deadline.
    assert len(mx.transactions) == 0 and attempts == 5
    (dsn,) = await inbox_messages(runtime, ALICE)
    (block,) = recipient_blocks(dsn)
    assert block["Action"] == "failed"
    assert block["Status"] == "4.2.2"
    assert block["Diagnostic-Code"] == "smtp; 452 4.2.2 mailbox full"


async def test_null_sender_failure_is_dropped_without_dsn(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    mx.rcpt_replies["bob@remote.test"] = "550 5.1.1 no such user"
    await queue_message(runtime, worker, ["bob@remote.test"], sender="")
    report = await worker.run_once()
    assert [e.recipient for e in report.dropped] == ["bob@remote.test"]
    assert report.bounced == []
    assert await runtime.store.list_queue() == []
    assert await inbox_messages(runtime, ALICE) == []


async def test_notify_never_suppresses_the_dsn(runtime: Runtime, worker: QueueWorker,
                                               mx: FakeMx) -> None:
    mx.rcpt_replies["bob@remote.test"] = "550 5.1.1 no such user"
    await queue_message(runtime, worker, ["bob@remote.test"], notify=("NEVER",))
    report = await worker.run_once()
    assert report.bounced == [] and len(report.dropped) == 1
    assert await inbox_messages(runtime, ALICE) == []


async def test_remote_sender_gets_a_queued_dsn_with_null_sender(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    mx.rcpt_replies["bob@remote.test"] = "550 5.1.1 no such user"
    await queue_message(runtime, worker, ["bob@remote.test"], sender="zed@far.test")
    await worker.run_once()
    (queued,) = await runtime.store.list_queue()
    assert (queued.sender, queued.recipient) == ("", "zed@far.test")
    report = await worker.run_once()
    assert [e.recipient for e in report.delivered] == ["zed@far.test"]
    bounce = mx.transactions[-1]
    assert (bounce.sender, bounce.recipients) == ("", ["zed@far.test"])
    assert b"report-type=delivery-status" in bounce.content


async def test_bounce_to_an_unknown_local_sender_is_dropped(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    mx.rcpt_replies["bob@remote.test"] = "550 5.1.1 no such user"
    await queue_message(runtime, worker, ["bob@remote.test"], sender="ghost@example.test")
    report = await worker.run_once()
    assert len(report.bounced) == 1
    assert await runtime.store.list_queue() == []  # not re-queued towards ourselves
    assert await inbox_messages(runtime, ALICE) == []


async def test_null_mx_bounces_at_once(runtime: Runtime, worker: QueueWorker,
                                       mx: FakeMx) -> None:
    await queue_message(runtime, worker, ["someone@nomail.test"])
    report = await worker.run_once()
    assert len(report.bounced) == 1 and mx.connections == 0
    (dsn,) = await inbox_messages(runtime, ALICE)
    (block,) = recipient_blocks(dsn)
    assert block["Status"] == "5.1.10"
    assert block["Diagnostic-Code"].startswith("X-Postroom; ")


async def test_mail_loop_is_bounced_without_sending(runtime: Runtime, worker: QueueWorker,
                                                    mx: FakeMx) -> None:
    hops = b"".join(b"Received: from hop%d by x; Sun, 1 Mar 2026 10:00:00 +0000\r\n" % i
                    for i in range(51))
    await queue_message(runtime, worker, ["bob@remote.test"], extra=hops)
    report = await worker.run_once()
    assert len(report.bounced) == 1 and mx.connections == 0
    (dsn,) = await inbox_messages(runtime, ALICE)
    assert recipient_blocks(dsn)[0]["Status"] == "5.4.6"


async def test_unreachable_mx_defers(runtime: Runtime, resolver: FakeResolver,
                                     clock: ManualClock, mx: FakeMx) -> None:
    await mx.stop()  # nothing listens on the port any more: connection refused
    worker = QueueWorker(runtime, resolver, clock, rng=NoJitter())
    await queue_message(runtime, worker, ["bob@remote.test"])
    report = await worker.run_once()
    assert len(report.deferred) == 1
    (waiting,) = await runtime.store.list_queue()
    assert "could be reached" in waiting.last_error


async def test_fallback_to_the_next_mx_when_the_first_turns_us_away(
        runtime: Runtime, resolver: FakeResolver, clock: ManualClock, mx: FakeMx) -> None:
    resolver.remove("remote.test", "MX")
    resolver.add("remote.test", "MX", (10, "mx1.remote.test"))
    resolver.add("remote.test", "MX", (20, "mx2.remote.test"))
    resolver.add("mx1.remote.test", "A", "127.0.0.1")
    resolver.add("mx2.remote.test", "A", "127.0.0.1")
    mx.refuse_connections = 1  # the first connection gets "421 busy" and is closed
    worker = QueueWorker(runtime, resolver, clock, rng=NoJitter())
    await queue_message(runtime, worker, ["bob@remote.test"])
    resolver.queries.clear()
    report = await worker.run_once()
    assert len(report.delivered) == 1
    assert [q for q in resolver.queries if q[1] == "A"] == [
        ("mx1.remote.test", "A"), ("mx2.remote.test", "A")]
    assert mx.connections == 2 and mx.transactions[0].connection == 2


async def test_restarted_worker_continues_without_duplicates(
        tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx, resolver: FakeResolver,
        clock: ManualClock) -> None:
    config = queue_config(tmp_path, server_cert, mx.port)
    mx.rcpt_replies["bob@remote.test"] = "451 4.3.0 try again later"
    async with open_runtime(config) as runtime:
        first = QueueWorker(runtime, resolver, clock, rng=NoJitter())
        await queue_message(runtime, first, ["bob@remote.test", "carol@remote.test"])
        first.start()
        async with asyncio.timeout(10):
            await first.wait_for_passes(1)
        await first.stop()
    assert [t.recipients for t in mx.transactions] == [["carol@remote.test"]]
    del mx.rcpt_replies["bob@remote.test"]
    clock.advance(dt.timedelta(hours=1))
    async with open_runtime(config) as runtime:  # a new process over the same files
        (waiting,) = await list_queued(runtime.store)
        assert waiting.recipients == ("bob@remote.test",) and waiting.attempts == 1
        second = QueueWorker(runtime, resolver, clock, rng=NoJitter())
        report = await second.run_once()
        assert [e.recipient for e in report.delivered] == ["bob@remote.test"]
    assert [t.recipients for t in mx.transactions] == [["carol@remote.test"],
                                                       ["bob@remote.test"]]


async def test_started_worker_delivers_on_enqueue_and_stops(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    worker.start()
    try:
        await queue_message(runtime, worker, ["bob@remote.test"])
        async with asyncio.timeout(10):
            await mx.wait_for(1)
    finally:
        await worker.stop()
    assert mx.transactions[0].recipients == ["bob@remote.test"]


async def test_started_worker_wakes_when_another_worker_s_lease_ends(
        runtime: Runtime, resolver: FakeResolver, mx: FakeMx) -> None:
    """A row claimed by a worker that then died (another node): nothing kicks this one
    and its poll is far off, yet it delivers the row as soon as the lease has run out."""
    survivor = QueueWorker(runtime, resolver, SystemClock(), rng=NoJitter(), poll_seconds=300)
    await queue_message(runtime, survivor, ["bob@remote.test"])
    lease = dt.timedelta(seconds=0.5)
    assert len(await runtime.store.claim_due_queue_entries(SystemClock().now(), 10, lease)) == 1
    survivor.start()
    try:
        async with asyncio.timeout(10):
            await mx.wait_for(1)
    finally:
        await survivor.stop()
    assert mx.transactions[0].recipients == ["bob@remote.test"]
    assert await list_queued(runtime.store) == []


async def test_admin_flush_and_delete(runtime: Runtime, worker: QueueWorker, mx: FakeMx,
                                      clock: ManualClock) -> None:
    mx.rcpt_replies["bob@remote.test"] = "450 4.2.1 later"
    kept = await queue_message(runtime, worker, ["bob@remote.test"])
    dropped = await queue_message(runtime, worker, ["bob@remote.test"], subject="other")
    await worker.run_once()
    assert (await worker.run_once()).due == 0
    assert await delete_queued(runtime.store, dropped) == 1
    assert await flush_queue(runtime.store, clock) == 1
    del mx.rcpt_replies["bob@remote.test"]
    report = await worker.run_once()
    assert [e.message_id for e in report.delivered] == [kept]
    assert await list_queued(runtime.store) == []


async def test_outbound_hook_of_the_smtp_receiver(runtime: Runtime, worker: QueueWorker,
                                                  tmp_path: Path) -> None:
    blob = await spool(runtime, message())
    received = ReceivedMessage(
        queue_id="Q1", client=ClientInfo("127.0.0.1", "client.test", True), sender=ALICE,
        mail_params=MailParams(envid="ENV-7"), recipients=[], spool_path=tmp_path / "s",
        size=100, received_at=dt.datetime.now(dt.UTC))
    await worker.enqueue_remote(received, [
        OutboundRecipient("bob@remote.test", ("FAILURE", "DELAY")),
        OutboundRecipient("carol@remote.test", RcptParams().notify)], blob, 100)
    bob, carol = await runtime.store.list_queue()
    assert (bob.envid, bob.notify, carol.notify) == ("ENV-7", "FAILURE,DELAY", "")
    assert bob.message_id == carol.message_id and bob.blob_id == carol.blob_id != blob


async def test_relay_host_gets_everything_over_starttls_with_auth(
        tmp_path: Path, server_cert: tuple[Path, Path], resolver: FakeResolver,
        clock: ManualClock) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*server_cert)
    async with FakeMx(tls_context=tls, credentials=("relayuser", "s3cret")) as relay:
        config = queue_config(tmp_path, server_cert, 1, RELAY_HOST=f"[127.0.0.1]:{relay.port}",
                              RELAY_USER="relayuser", RELAY_PASSWORD="s3cret")
        async with open_runtime(config) as runtime:
            worker = QueueWorker(runtime, resolver, clock, rng=NoJitter())
            await queue_message(runtime, worker, ["bob@remote.test", "x@unknown-domain.test",
                                                  "someone@nomail.test"])
            report = await worker.run_once()
    assert len(report.delivered) == 3
    (transaction,) = relay.transactions
    assert transaction.recipients == ["bob@remote.test", "x@unknown-domain.test",
                                      "someone@nomail.test"]
    assert transaction.is_tls and transaction.auth_user == "relayuser"
    assert resolver.queries == []  # the relay host bypasses MX lookups


async def test_relay_with_wrong_password_defers(
        tmp_path: Path, server_cert: tuple[Path, Path], resolver: FakeResolver,
        clock: ManualClock) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*server_cert)
    async with FakeMx(tls_context=tls, credentials=("relayuser", "s3cret")) as relay:
        config = queue_config(tmp_path, server_cert, 1, RELAY_HOST=f"[127.0.0.1]:{relay.port}",
                              RELAY_USER="relayuser", RELAY_PASSWORD="wrong")
        async with open_runtime(config) as runtime:
            worker = QueueWorker(runtime, resolver, clock, rng=NoJitter())
            await queue_message(runtime, worker, ["bob@remote.test"])
            report = await worker.run_once()
            (waiting,) = await runtime.store.list_queue()
    assert len(report.deferred) == 1 and relay.transactions == []
    assert "AUTH failed: 535" in waiting.last_error


def test_storage_failures_in_a_pass_are_one_line_bugs_keep_their_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """A full disk must not log a traceback per queue pass or bounce (issue 25 §9)."""
    from postroom.outbound.reports import log_failure as _log_failure
    from postroom.store.errors import StorageFull

    with caplog.at_level(logging.WARNING, logger="postroom"):
        _log_failure(StorageFull("database or disk is full"), "bounce for m1 failed")
        _log_failure(ValueError("a bug"), "queue pass failed")
    full, bug = caplog.records
    assert (full.levelno, full.exc_info) == (logging.WARNING, None)
    assert "bounce for m1 failed" in full.getMessage()
    assert bug.levelno == logging.ERROR and bug.exc_info is not None


async def test_a_busy_destination_gets_parallel_connections(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    """Issue 22: one connection per LANE_TRANSACTIONS messages waiting, up to the
    destination's limit; every message goes out once, every row is finished."""
    for index in range(4 * 3 + 1):  # thirteen transactions: four lanes
        await queue_message(runtime, worker, [f"r{index}@remote.test"], subject=f"m{index}")
    report = await worker.run_once()
    assert len(report.delivered) == 13
    assert sorted(r for t in mx.transactions for r in t.recipients) == sorted(
        f"r{index}@remote.test" for index in range(13))
    assert len({t.connection for t in mx.transactions}) == 4
    assert await runtime.store.list_queue() == []
