"""The outbound queue shared by several nodes: claims with row locks (FOR UPDATE SKIP
LOCKED) and leases, so each recipient is delivered once, and a node that dies mid-delivery
has its work taken over by another once the lease has run out."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.accounts.service import AccountService
from postroom.clock import ManualClock
from postroom.dns.fake import FakeResolver
from postroom.outbound.admin import flush_queue
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from postroom.store import open_store
from postroom.store.api import QueueEntry
from postroom.store.changes import ChangeFeed
from postroom.tls.contexts import TlsContexts
from tests.conftest import make_config
from tests.postgres.conftest import NO_DNS_CHECKS
from tests.queue.fakemx import FakeMx, _Handler
from tests.queue.harness import ALICE, NoJitter, message

ZONE = {"remote.test": {"MX": [(10, "mx.remote.test")]}, "mx.remote.test": {"A": ["127.0.0.1"]}}
START = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


class StallingMx(FakeMx):
    """A fake MX that, while `stall` is set, holds the end of DATA unanswered (the moment a
    sending node would die mid-delivery) and records nothing for it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stall = False
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()

    def _protocol(self) -> asyncio.Protocol:
        self.connections += 1
        return SMTP(_StallingHandler(self, self.connections), hostname="mx.fake.test")


class _StallingHandler(_Handler):
    mx: StallingMx

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.mx.stall:
            self.mx.stalled.set()
            await self.mx.release.wait()
            return "421 4.3.0 gone"
        return await super().handle_DATA(server, session, envelope)


@contextlib.asynccontextmanager
async def node(tmp_path: Path, server_cert: tuple[Path, Path], database_url: str,
               mx_port: int, name: str) -> AsyncIterator[Runtime]:
    config = make_config(tmp_path / name, server_cert, STORAGE="postgresql",
                         DATABASE_URL=database_url, OUTBOUND_SMTP_PORT=mx_port,
                         QUEUE_LIFETIME="5d", **NO_DNS_CHECKS)
    feed = ChangeFeed()
    store, blobs = await open_store(config, feed)
    try:
        yield Runtime(config=config, store=store, blobs=blobs, feed=feed,
                      accounts=AccountService(store),
                      tls=TlsContexts(config.cert_path, config.key_path),
                      resolver=FakeResolver(ZONE))
    finally:
        await store.close()


def worker(runtime: Runtime, clock: ManualClock) -> QueueWorker:
    return QueueWorker(runtime, FakeResolver(ZONE), clock, rng=NoJitter())


async def queue_for(runtime: Runtime, clock: ManualClock, recipients: list[str]) -> None:
    """One message per recipient, as the SMTP server's outbound hook would queue it."""
    queueing = worker(runtime, clock)
    for recipient in recipients:
        blob = await runtime.blobs.put(message(recipient.split("@")[0], to=recipient))
        await queueing.enqueue(ALICE, [recipient], blob)


@pytest.fixture
async def mx() -> AsyncIterator[StallingMx]:
    async with StallingMx() as server:
        yield server


async def test_claims_are_disjoint_and_leased(
    tmp_path: Path, server_cert: tuple[Path, Path], database_url: str, mx: StallingMx
) -> None:
    async with node(tmp_path, server_cert, database_url, mx.port, "a") as a, \
            node(tmp_path, server_cert, database_url, mx.port, "b") as b:
        entries = [QueueEntry(0, f"m{i}", ALICE, f"r{i}@remote.test", "remote.test",
                              await a.blobs.put(b"x"), 1, START, START, 0, "")
                   for i in range(60)]
        await a.store.enqueue(entries)
        lease = dt.timedelta(minutes=5)
        claims = await asyncio.gather(*(
            store.claim_due_queue_entries(START, 7, lease)  # type: ignore[attr-defined]
            for store in [a.store, b.store] * 6))
        ids = [entry.id for claim in claims for entry in claim]
        assert len(ids) == 60 and len(set(ids)) == 60
        assert all(entry.next_attempt == START for claim in claims for entry in claim)
        later = START + lease - dt.timedelta(seconds=1)
        assert await b.store.claim_due_queue_entries(later, 100, lease) == []  # type: ignore[attr-defined]
        expired = await b.store.claim_due_queue_entries(  # type: ignore[attr-defined]
            START + lease, 100, lease)
        assert len(expired) == 60


async def test_two_workers_deliver_each_recipient_once(
    tmp_path: Path, server_cert: tuple[Path, Path], database_url: str, mx: StallingMx
) -> None:
    clock = ManualClock(START)
    async with node(tmp_path, server_cert, database_url, mx.port, "a") as a, \
            node(tmp_path, server_cert, database_url, mx.port, "b") as b:
        await a.store.create_account(ALICE, "x")
        recipients = [f"user{i}@remote.test" for i in range(40)]
        await queue_for(a, clock, recipients)
        workers = [worker(runtime, clock) for runtime in (a, b, a, b)]
        reports = await asyncio.gather(*(w.run_once() for w in workers))
        assert sum(len(r.delivered) for r in reports) == 40
        delivered = sorted(r for t in mx.transactions for r in t.recipients)
        assert delivered == sorted(recipients)  # each exactly once
        assert await b.store.list_queue() == []


async def test_a_dead_node_s_delivery_is_taken_over_after_the_lease(
    tmp_path: Path, server_cert: tuple[Path, Path], database_url: str, mx: StallingMx
) -> None:
    clock_a, clock_b = ManualClock(START), ManualClock(START)
    async with node(tmp_path, server_cert, database_url, mx.port, "a") as a, \
            node(tmp_path, server_cert, database_url, mx.port, "b") as b:
        await a.store.create_account(ALICE, "x")
        await queue_for(a, clock_a, ["bob@remote.test"])
        mx.stall = True
        dying = asyncio.create_task(worker(a, clock_a).run_once())
        async with asyncio.timeout(10):
            await mx.stalled.wait()  # A is mid-delivery: DATA sent, no reply yet
        dying.cancel()  # node A dies: nothing it would have recorded is recorded
        with contextlib.suppress(asyncio.CancelledError):
            await dying
        mx.stall = False
        mx.release.set()
        survivor = worker(b, clock_b)
        assert (await survivor.run_once()).due == 0  # leased to A: not B's yet
        clock_b.advance(survivor.lease)
        report = await survivor.run_once()
        assert [e.recipient for e in report.delivered] == ["bob@remote.test"]
        assert [t.recipients for t in mx.transactions] == [["bob@remote.test"]]
        assert await b.store.list_queue() == []


async def test_a_slow_node_keeps_its_lease_by_renewing_it(
    tmp_path: Path, server_cert: tuple[Path, Path], database_url: str, mx: StallingMx
) -> None:
    """A delivery that outlasts the lease (a destination taking minutes per message): the
    worker renews its leases while the pass runs, so no other node sends the row too."""
    clock_a = ManualClock(START)
    async with node(tmp_path, server_cert, database_url, mx.port, "a") as a, \
            node(tmp_path, server_cert, database_url, mx.port, "b") as b:
        await a.store.create_account(ALICE, "x")
        await queue_for(a, clock_a, ["bob@remote.test"])
        mx.stall = True
        slow = QueueWorker(a, FakeResolver(ZONE), clock_a, rng=NoJitter(),
                           lease_renewal_seconds=0.05)
        delivering = asyncio.create_task(slow.run_once())
        async with asyncio.timeout(10):
            await mx.stalled.wait()  # A is mid-delivery, for longer than its lease
        for _ in range(3):  # each step is most of a lease; A renews in between
            clock_a.advance(slow.lease * 0.8)
            await asyncio.sleep(0.3)
        stolen = await b.store.claim_due_queue_entries(  # type: ignore[attr-defined]
            clock_a.now(), 10, slow.lease)
        assert stolen == []  # still A's
        mx.stall = False
        mx.release.set()  # A's transaction gets 421: deferred, its lease over
        report = await delivering
        assert [e.recipient for e in report.deferred] == ["bob@remote.test"]
        assert mx.transactions == []  # nobody else sent it meanwhile


async def test_flush_on_another_node_does_not_break_a_lease(
    tmp_path: Path, server_cert: tuple[Path, Path], database_url: str, mx: StallingMx
) -> None:
    clock_a, clock_b = ManualClock(START), ManualClock(START)
    async with node(tmp_path, server_cert, database_url, mx.port, "a") as a, \
            node(tmp_path, server_cert, database_url, mx.port, "b") as b:
        await a.store.create_account(ALICE, "x")
        await queue_for(a, clock_a, ["bob@remote.test", "carol@remote.test"])
        mx.stall = True
        delivering = asyncio.create_task(worker(a, clock_a).run_once())
        async with asyncio.timeout(10):
            await mx.stalled.wait()  # A holds both rows under its lease, mid-delivery
        # `postroom queue flush` against B: nothing A is delivering becomes due again.
        assert await flush_queue(b.store, clock_b) == 0
        assert (await worker(b, clock_b).run_once()).due == 0
        mx.stall = False
        mx.release.set()  # A's first transaction fails (421): deferred, its lease over
        report = await delivering
        assert [e.recipient for e in report.deferred] == ["bob@remote.test"]
        assert [e.recipient for e in report.delivered] == ["carol@remote.test"]
        assert await flush_queue(b.store, clock_b) == 1  # a deferred row flushes at once
        retried = await worker(b, clock_b).run_once()
        assert [e.recipient for e in retried.delivered] == ["bob@remote.test"]
        assert sorted(r for t in mx.transactions for r in t.recipients) == [
            "bob@remote.test", "carol@remote.test"]  # each once
