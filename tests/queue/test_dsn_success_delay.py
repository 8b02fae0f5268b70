"""DSN success and delay notifications (RFC 3461 NOTIFY=SUCCESS,DELAY; RFC 3464 reports):
the rendering, and the queue and SMTP receiver over real sockets — `delivered` for local
delivery, `relayed` to a next hop without DSN, the parameters passed on to one with DSN,
one `delayed` after DELAY_WARNING_TIME, NOTIFY=NEVER, RET, ENVID and ORCPT."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from postroom.clock import ManualClock
from postroom.dns.fake import FakeResolver
from postroom.mail.dsn import DsnAction, DsnRecipient, DsnReport, render_dsn
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from postroom.smtp.session import SmtpServer
from tests.queue.fakemx import FakeMx
from tests.queue.harness import (
    ALICE,
    NoJitter,
    inbox_messages,
    message,
    queue_config,
    recipient_blocks,
    spool,
)
from tests.support.runtime import open_runtime

ZONE = {"remote.test": {"MX": [(10, "mx.remote.test")]},
        "mx.remote.test": {"A": ["127.0.0.1"]}}
WHEN = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
FAR_SENDER = "alice@sender.test"  # not a domain of the receiving side


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def per_message(dsn: EmailMessage) -> email.message.Message:
    status = dsn.get_payload()[1]
    return status.get_payload()[0]


# -- rendering (mail/dsn.py) ------------------------------------------------------------


def report(*recipients: DsnRecipient, original: bytes = b"", full: bool = False
           ) -> DsnReport:
    return DsnReport("mail.example.test", "alice@example.test",
                     original or message("lunch?"), WHEN, recipients, envid="E+2B1",
                     is_full_return=full)


def test_delivered_report_has_no_diagnostic_and_decodes_orcpt() -> None:
    delivered = DsnRecipient("bob@example.test", DsnAction.DELIVERED, "2.0.0", "",
                             is_smtp_diagnostic=False,
                             original_recipient="rfc822;bob+2Btag@example.test")
    dsn = parse(render_dsn(report(delivered), date=WHEN, message_id="s1@mail.example.test"))
    assert dsn["Subject"] == "Successful Mail Delivery Report"
    assert per_message(dsn)["Original-Envelope-Id"] == "E+2B1"  # RFC 3464 §2.2.1: as sent
    (block,) = recipient_blocks(dsn)
    assert block["Action"] == "delivered" and block["Status"] == "2.0.0"
    assert block["Original-Recipient"] == "rfc822; bob+tag@example.test"
    assert block["Diagnostic-Code"] is None
    assert "bob@example.test" in dsn.get_payload()[0].get_content()


def test_ret_full_returns_the_message_only_for_failures_and_8bit_text() -> None:
    bounce = DsnRecipient("bob@remote.test", DsnAction.FAILED, "5.1.1", "550 5.1.1 no")
    delay = DsnRecipient("bob@remote.test", DsnAction.DELAYED, "4.0.0", "451 later",
                         will_retry_until=WHEN)
    full = parse(render_dsn(report(bounce, full=True), date=WHEN, message_id="f@x"))
    returned = full.get_payload()[2]
    assert returned.get_content_type() == "message/rfc822"
    assert b"Hi there." in returned.as_bytes()
    delayed = parse(render_dsn(report(delay, full=True), date=WHEN, message_id="d@x"))
    assert delayed["Subject"] == "Delayed Mail (still being retried)"
    assert delayed.get_payload()[2].get_content_type() == "text/rfc822-headers"
    (block,) = recipient_blocks(delayed)
    assert block["Will-Retry-Until"] and block["Action"] == "delayed"
    binary = message("bin") + b"\x00raw\n"
    raw = render_dsn(report(bounce, original=binary, full=True), date=WHEN, message_id="b@x")
    assert b"\x00" not in raw
    assert parse(raw).get_payload()[2].get_content_type() == "text/rfc822-headers"


# -- the queue --------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def mx() -> AsyncIterator[FakeMx]:
    async with FakeMx() as server:  # aiosmtpd: offers no DSN
        yield server


@pytest.fixture
async def runtime(tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx
                  ) -> AsyncIterator[Runtime]:
    config = queue_config(tmp_path, server_cert, mx.port, DELAY_WARNING_TIME="1h")
    async with open_runtime(config) as built:
        await built.store.create_account(ALICE, "x")
        yield built


@pytest.fixture
def worker(runtime: Runtime, clock: ManualClock) -> QueueWorker:
    return QueueWorker(runtime, FakeResolver(ZONE), clock, rng=NoJitter())


async def enqueue(runtime: Runtime, worker: QueueWorker, notify: str, **options: str) -> None:
    blob = await spool(runtime, message())
    await worker.enqueue(ALICE, ["bob@remote.test"], blob, notify=[notify], envid="ENV-1",
                         **options)  # type: ignore[arg-type]


async def test_relayed_success_when_the_next_hop_has_no_dsn(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    await enqueue(runtime, worker, "SUCCESS,FAILURE", orcpt=["rfc822;bob@remote.test"])
    report = await worker.run_once()
    assert [e.recipient for e in report.relayed] == ["bob@remote.test"]
    (dsn,) = await inbox_messages(runtime, ALICE)
    assert dsn["Subject"] == "Successful Mail Delivery Report"
    assert dsn["To"].addresses[0].addr_spec == ALICE
    assert per_message(dsn)["Original-Envelope-Id"] == "ENV-1"
    (block,) = recipient_blocks(dsn)
    assert (block["Action"], block["Status"]) == ("relayed", "2.0.0")
    assert block["Remote-MTA"] == "dns; mx.remote.test"
    assert block["Diagnostic-Code"].startswith("smtp; 250")
    assert block["Original-Recipient"] == "rfc822; bob@remote.test"


@pytest.mark.parametrize("notify", ["", "FAILURE", "NEVER"])
async def test_no_success_report_unless_asked(runtime: Runtime, worker: QueueWorker,
                                              notify: str) -> None:
    await enqueue(runtime, worker, notify)
    report = await worker.run_once()
    assert len(report.delivered) == 1 and report.relayed == []
    assert await inbox_messages(runtime, ALICE) == []


async def test_one_delay_report_after_delay_warning_time(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, clock: ManualClock) -> None:
    mx.rcpt_replies["bob@remote.test"] = "451 4.3.0 try again later"
    await enqueue(runtime, worker, "")  # no NOTIFY: failures and delays are reported
    assert (await worker.run_once()).delay_warned == []  # deferred, but not an hour yet
    clock.advance(dt.timedelta(minutes=61))
    report = await worker.run_once()
    assert [e.recipient for e in report.delay_warned] == ["bob@remote.test"]
    (dsn,) = await inbox_messages(runtime, ALICE)
    (block,) = recipient_blocks(dsn)
    assert (block["Action"], block["Status"]) == ("delayed", "4.3.0")
    assert block["Will-Retry-Until"]
    (entry,) = await runtime.store.list_queue()
    assert entry.is_delay_notified
    clock.advance(dt.timedelta(hours=5))
    report = await worker.run_once()
    assert len(report.deferred) == 1 and report.delay_warned == []  # once only
    assert len(await inbox_messages(runtime, ALICE)) == 1


@pytest.mark.parametrize("notify", ["NEVER", "FAILURE", "SUCCESS"])
async def test_delay_report_only_when_delay_is_asked_or_implied(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, clock: ManualClock,
        notify: str) -> None:
    mx.rcpt_replies["bob@remote.test"] = "451 4.3.0 try again later"
    await enqueue(runtime, worker, notify)
    await worker.run_once()
    clock.advance(dt.timedelta(hours=2))
    assert (await worker.run_once()).delay_warned == []
    assert await inbox_messages(runtime, ALICE) == []


async def test_delay_warning_time_zero_never_warns(
        tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx,
        clock: ManualClock) -> None:
    mx.rcpt_replies["bob@remote.test"] = "451 4.3.0 try again later"
    config = queue_config(tmp_path, server_cert, mx.port, DELAY_WARNING_TIME="0")
    async with open_runtime(config) as runtime:
        await runtime.store.create_account(ALICE, "x")
        worker = QueueWorker(runtime, FakeResolver(ZONE), clock, rng=NoJitter())
        await enqueue(runtime, worker, "DELAY")
        await worker.run_once()
        clock.advance(dt.timedelta(days=1))
        assert (await worker.run_once()).delay_warned == []


async def test_ret_full_bounce_returns_the_message(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx) -> None:
    mx.rcpt_replies["bob@remote.test"] = "550 5.1.1 no such user"
    await enqueue(runtime, worker, "", ret="FULL")
    await worker.run_once()
    (dsn,) = await inbox_messages(runtime, ALICE)
    assert dsn.get_payload()[2].get_content_type() == "message/rfc822"


# -- the SMTP receiver: local delivery and passing the parameters on ---------------------


def submit(port: int, sender: str, mail_options: list[str], rcpt_options: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as client:
        client.ehlo()
        assert client.has_extn("DSN")
        client.mail(sender, mail_options)
        code, _ = client.rcpt("user@example.test", rcpt_options)
        assert code == 250
        assert client.data(message("hello", sender=sender, to="user@example.test"))[0] == 250


@pytest.fixture
async def receiving(tmp_path: Path, server_cert: tuple[Path, Path]
                    ) -> AsyncIterator[tuple[Runtime, QueueWorker, int]]:
    """Our own MX for example.test with its queue: a next hop that offers DSN."""
    config = queue_config(tmp_path / "receiving", server_cert, 1)
    async with open_runtime(config) as runtime:
        await runtime.store.create_account("user@example.test", "x")
        await runtime.store.create_account("local@example.test", "x")
        worker = QueueWorker(runtime, FakeResolver({}), ManualClock(), rng=NoJitter())
        server = SmtpServer(runtime, SmtpMode.MX, worker)
        listener = await asyncio.start_server(server.handle_connection, "127.0.0.1", 0)
        try:
            yield runtime, worker, listener.sockets[0].getsockname()[1]
        finally:
            listener.close()
            await listener.wait_closed()


async def test_local_delivery_reports_delivered(
        receiving: tuple[Runtime, QueueWorker, int]) -> None:
    runtime, _, port = receiving
    await asyncio.to_thread(submit, port, "local@example.test", ["ENVID=QQ1", "RET=HDRS"],
                            ["NOTIFY=SUCCESS", "ORCPT=rfc822;user@example.test"])
    (delivered,) = await inbox_messages(runtime, "user@example.test")
    assert delivered["Subject"] == "hello"
    (dsn,) = await inbox_messages(runtime, "local@example.test")
    assert per_message(dsn)["Original-Envelope-Id"] == "QQ1"
    (block,) = recipient_blocks(dsn)
    assert (block["Action"], block["Status"]) == ("delivered", "2.0.0")
    assert block["Original-Recipient"] == "rfc822; user@example.test"
    assert block["Final-Recipient"] == "rfc822; user@example.test"


async def test_an_alias_to_several_mailboxes_reports_expanded(
        receiving: tuple[Runtime, QueueWorker, int]) -> None:
    runtime, _, port = receiving
    await runtime.accounts.add_alias("team@example.test", "user@example.test")
    await runtime.accounts.add_alias("team@example.test", "local@example.test")

    def send_to_team() -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as c:
            c.sendmail("local@example.test", ["team@example.test"],
                       message("team", sender="local@example.test", to="team@example.test"),
                       rcpt_options=["NOTIFY=SUCCESS"])

    await asyncio.to_thread(send_to_team)
    assert len(await inbox_messages(runtime, "user@example.test")) == 1
    copy, dsn = await inbox_messages(runtime, "local@example.test")
    assert copy["Subject"] == "team"
    (block,) = recipient_blocks(dsn)
    assert block["Action"] == "expanded"
    assert block["Final-Recipient"] == "rfc822; team@example.test"


async def test_notify_never_or_failure_reports_nothing_on_delivery(
        receiving: tuple[Runtime, QueueWorker, int]) -> None:
    runtime, _, port = receiving
    await asyncio.to_thread(submit, port, "local@example.test", [], ["NOTIFY=NEVER"])
    await asyncio.to_thread(submit, port, "local@example.test", [], ["NOTIFY=FAILURE,DELAY"])
    assert len(await inbox_messages(runtime, "user@example.test")) == 2
    assert await inbox_messages(runtime, "local@example.test") == []


async def test_parameters_passed_on_to_a_next_hop_with_dsn(
        receiving: tuple[Runtime, QueueWorker, int], tmp_path: Path,
        server_cert: tuple[Path, Path], clock: ManualClock) -> None:
    """Our queue relays to our own MX (which offers DSN): no `relayed` report from us,
    NOTIFY/ORCPT/ENVID go along, and the next hop reports `delivered` itself."""
    next_hop, _, port = receiving
    config = queue_config(tmp_path / "sending", server_cert, port)
    async with open_runtime(config) as runtime:
        await runtime.store.create_account(FAR_SENDER, "x")
        zone = {"example.test": {"MX": [(10, "mx.example.test")]},
                "mx.example.test": {"A": ["127.0.0.1"]}}
        worker = QueueWorker(runtime, FakeResolver(zone), clock, rng=NoJitter())
        blob = await spool(runtime, message(sender=FAR_SENDER, to="user@example.test"))
        await worker.enqueue(FAR_SENDER, ["user@example.test"], blob, notify=["SUCCESS"],
                             orcpt=["rfc822;user+2Bx@example.test"], envid="ENV-9", ret="HDRS")
        report = await worker.run_once()
        assert len(report.delivered) == 1 and report.relayed == []
        assert await inbox_messages(runtime, FAR_SENDER) == []
    (queued,) = await next_hop.store.list_queue()  # the next hop's report, going back
    assert (queued.sender, queued.recipient) == ("", FAR_SENDER)
    dsn = parse(await next_hop.blobs.read(queued.blob_id))
    assert per_message(dsn)["Original-Envelope-Id"] == "ENV-9"
    (block,) = recipient_blocks(dsn)
    assert block["Action"] == "delivered"
    assert block["Original-Recipient"] == "rfc822; user+x@example.test"
