"""The delivery worker: takes due queue entries and delivers, retries or bounces them.

Owns the queue's life cycle after a message is accepted:
- `enqueue` (the SMTP server's outbound hook) stores a message for remote recipients:
  the spool's Return-Path is removed (RFC 5321 §4.4), a DKIM signature is prepended once
  (outbound/signing.py), the result is written as its own durable blob, and one row per
  recipient is committed — all before the server replies 250;
- each pass (`run_once`) takes the due rows, groups them by destination (one connection
  per destination carries several messages) and by message (one transaction carries
  all of a message's recipients there), and settles every row: 2xx → finished;
  4xx or no reachable server → rescheduled with back-off (outbound/schedule.py); 5xx, null
  MX, a routing loop or an expired lifetime → bounced and finished;
- bounces are RFC 3464 DSNs from MAILER-DAEMON with the null sender: delivered locally
  when the original sender's domain is ours, queued otherwise; a message whose sender is
  the null sender is never bounced (RFC 5321 §4.5.5, no bounce loops).

Invariants: a row is finished only after the remote side accepted it or after its DSN
is durable, so a crash re-sends at worst a message whose 250 was not yet recorded (RFC
5321 §6.1 prefers a duplicate to a loss), and never loses one; passes never overlap
within one worker, and a pass *claims* its rows (`claim_due_queue_entries`: row locks,
and a lease of QUEUE_LEASE_SECONDS), so several workers — nodes sharing a PostgreSQL store
— never attempt one row at once, and a node that dies mid-delivery leaves its rows to the
others once the lease has run out: between passes a worker sleeps until the queue's
earliest next attempt (a claimed row's is its lease's end), at most POLL_SECONDS, so a
survivor takes a dead node's rows over as soon as their lease ends. While its pass runs, a
worker renews the leases of the rows it still holds every third of the lease, so a slow
delivery (a destination taking minutes per message) keeps its rows; only a node that has
died, or stalled a whole lease long (its database out of reach), has them claimed again
(at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from postroom.clock import Clock, display_zone
from postroom.delivery.local import deliver_local
from postroom.delivery.transit import OutboundRecipient, ReceivedMessage
from postroom.dns.resolver import Resolver
from postroom.errors import TryLater
from postroom.mail.dsn import DsnAction, DsnRecipient, DsnReport, render_dsn
from postroom.mail.mimetree import message_meta
from postroom.mail.trace import render_return_path
from postroom.outbound import schedule
from postroom.outbound.client import ClientSettings, OutboundSession, SessionError
from postroom.outbound.model import (
    MAX_RECEIVED_HEADERS,
    Attempt,
    Outcome,
    attempt_from_reply,
    count_received,
    deferred,
    failed,
    group_by_destination,
    group_transactions,
    strip_return_path,
)
from postroom.outbound.routing import Route, RouteError, connect_first, resolve_route
from postroom.outbound.signing import DkimSigner
from postroom.runtime import Runtime
from postroom.store.api import QueueEntry

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_CONNECTIONS = 10
# The worker also wakes on its own at least this often, so mail queued by another node and
# `postroom queue flush` run without a pid file to signal take effect within the interval.
POLL_SECONDS = 30.0
# Never sleep less than this between passes: a row due but locked by another node's claim
# for an instant must not make this worker spin.
MIN_SLEEP_SECONDS = 0.05


@dataclass(slots=True)
class PassReport:
    """What one pass did (for logs and tests)."""

    delivered: list[QueueEntry] = field(default_factory=list)
    deferred: list[QueueEntry] = field(default_factory=list)
    bounced: list[QueueEntry] = field(default_factory=list)
    dropped: list[QueueEntry] = field(default_factory=list)  # failed, null sender: no DSN
    due: int = 0


@dataclass(slots=True)
class _Failure:
    entry: QueueEntry
    attempt: Attempt


class QueueWorker:
    def __init__(self, runtime: Runtime, resolver: Resolver, clock: Clock,
                 dkim_signer: DkimSigner | None = None, *,
                 rng: random.Random | None = None,
                 batch_size: int = BATCH_SIZE, max_connections: int = MAX_CONNECTIONS,
                 poll_seconds: float = POLL_SECONDS,
                 lease_renewal_seconds: float | None = None) -> None:
        self.runtime = runtime
        self.resolver = resolver
        self.clock = clock
        self.signer = dkim_signer
        self.rng = rng or random.Random()
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        # How long a claimed row stays out of other workers' reach (config.py explains).
        self.lease = dt.timedelta(seconds=runtime.config.queue_lease_seconds)
        # A renewal may fail or come late twice and the lease still holds.
        self.lease_renewal_seconds = lease_renewal_seconds or self.lease.total_seconds() / 3
        self.policy = schedule.RetryPolicy.from_seconds(runtime.config.queue_lifetime)
        self._connections = asyncio.Semaphore(max_connections)
        self._pass_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._passes = 0
        self._pass_done = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Told after mail was queued: wakes this worker, or, in an SMTP worker process
        # (workers.py), tells the main process, whose queue worker sends it.
        self.on_queued: Callable[[], None] = self.kick

    # -- accepting mail (the SMTP server's outbound hook) -------------------------------

    async def enqueue_remote(self, message: ReceivedMessage,
                             recipients: Sequence[OutboundRecipient],
                             blob_id: str, size: int) -> None:
        """smtp/receive.py's `OutboundQueue` hook: called after local delivery, before 250."""
        await self.enqueue(message.sender, [r.address for r in recipients], blob_id,
                           envid=message.mail_params.envid or "",
                           notify=[",".join(r.notify) for r in recipients])

    async def enqueue(self, sender: str, recipients: Sequence[str], blob_id: str, *,
                      envid: str = "", notify: Sequence[str] = ()) -> list[QueueEntry]:
        """Queue the spooled message `blob_id` for remote `recipients`; durable on return.

        The queue sends its own copy — Return-Path removed, DKIM signature prepended — so
        it takes over the spool blob: once the copy is queued, the spool blob is released
        unless a local delivery (which the receiver does first) still uses it.
        `notify` optionally gives each recipient's RFC 3461 NOTIFY value ("" = default).
        """
        raw = strip_return_path(await self.runtime.blobs.read(blob_id))
        stored = await self.enqueue_message(sender, recipients, raw, envid=envid,
                                            notify=notify)
        await self.runtime.store.release_blob_if_unused(blob_id)
        return stored

    async def enqueue_message(self, sender: str, recipients: Sequence[str], raw: bytes, *,
                              envid: str = "", notify: Sequence[str] = ()) -> list[QueueEntry]:
        """Queue a message given as bytes (no Return-Path); signs it when a key applies."""
        if not recipients:
            return []
        if self.signer is not None:
            raw = await self.signer.signature_for(raw, sender) + raw
        queued_blob = await self.runtime.blobs.put(raw)
        now = self.clock.now()
        message_id = secrets.token_hex(8)
        entries = [
            QueueEntry(id=0, message_id=message_id, sender=sender, recipient=recipient,
                       domain=_domain_of(recipient), blob_id=queued_blob, size=len(raw),
                       created=now, next_attempt=now, attempts=0, last_error="",
                       envid=envid, notify=notify[index] if index < len(notify) else "")
            for index, recipient in enumerate(recipients)
        ]
        stored = await self.runtime.store.enqueue(entries)
        log.info("queued %s from <%s> for %d recipient(s)", message_id, sender, len(stored))
        self.on_queued()
        return stored

    # -- running ---------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="queue-worker")

    def kick(self) -> None:
        """Deliver now instead of at the next poll (e.g. after enqueue or flush)."""
        self._wake.set()

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Finish the pass in flight (up to `grace_seconds`), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(task, grace_seconds)
        except TimeoutError:
            log.warning("queue worker did not stop within %ss; cancelled", grace_seconds)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                report = await self.run_once()
                sleep = await self._sleep_seconds()
            except Exception as error:
                _log_failure(error, "queue pass failed")
                report, sleep = PassReport(), self.poll_seconds  # no fast retry loop
            if report.due >= self.batch_size:
                continue  # more is due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep)

    async def _sleep_seconds(self) -> float:
        """Until the queue's earliest next attempt — a retry, or the end of another
        node's lease — but at most `poll_seconds`."""
        soonest = await self.runtime.store.next_queue_attempt()
        if soonest is None:
            return self.poll_seconds
        wait = (soonest - self.clock.now()).total_seconds()
        return min(self.poll_seconds, max(MIN_SLEEP_SECONDS, wait))

    @property
    def completed_passes(self) -> int:
        return self._passes

    async def wait_for_passes(self, count: int) -> None:
        """Wait until at least `count` passes have completed (wrap in asyncio.timeout)."""
        async with self._pass_done:
            await self._pass_done.wait_for(lambda: self._passes >= count)

    async def run_once(self) -> PassReport:
        """One delivery pass over everything due now."""
        async with self._pass_lock:
            report = PassReport()
            now = self.clock.now()
            due = await self.runtime.store.claim_due_queue_entries(now, self.batch_size,
                                                                   self.lease)  # fmt: skip
            report.due = len(due)
            renewing = asyncio.create_task(self._keep_leases(due, now + self.lease))
            try:
                await self._deliver_all(due, report)
            finally:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
        async with self._pass_done:
            self._passes += 1
            self._pass_done.notify_all()
        return report

    async def _deliver_all(self, due: list[QueueEntry], report: PassReport) -> None:
        failures: list[_Failure] = []
        groups = group_by_destination(due, has_relay=self.runtime.config.relay is not None)
        outcomes = await asyncio.gather(
            *(self._deliver_destination(group, report, failures)
              for group in groups.values()), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                # One destination's bug must not stop the others' bounces; its rows
                # stay due and are tried again at the next pass.
                log.error("delivery to one destination failed", exc_info=outcome)
        await self._bounce(failures, report)

    async def _keep_leases(self, claimed: list[QueueEntry], held_until: dt.datetime) -> None:
        """Renew the leases of the claimed rows not yet settled until the pass ends
        (cancelled then); a row another worker claimed after its lease ran out is not
        ours any more and drops out."""
        ids = [entry.id for entry in claimed]
        while ids:
            await asyncio.sleep(self.lease_renewal_seconds)
            until = self.clock.now() + self.lease
            try:
                ids = await self.runtime.store.renew_queue_leases(ids, held_until, until)
            except Exception as error:  # the database is out of reach: try at the next tick
                log.warning("queue lease renewal failed: %s", error)
                continue
            held_until = until

    # -- one destination ---------------------------------------------------------------

    async def _deliver_destination(self, entries: list[QueueEntry], report: PassReport,
                                   failures: list[_Failure]) -> None:
        async with self._connections:
            try:
                route = await resolve_route(
                    entries[0].domain, self.resolver, relay=self.runtime.config.relay,
                    port=self.runtime.config.outbound_smtp_port, rng=self.rng)
            except RouteError as error:
                for entry in entries:
                    await self._settle(entry, error.attempt, report, failures)
                return
            await self._deliver_route(route, entries, report, failures)

    async def _deliver_route(self, route: Route, entries: list[QueueEntry],
                             report: PassReport, failures: list[_Failure]) -> None:
        session: OutboundSession | None = None
        batches = group_transactions(entries)
        try:
            for index, batch in enumerate(batches):
                message = await self._load(batch, report, failures)
                if message is None:
                    continue
                if session is None or not session.is_connected:
                    try:
                        session = await connect_first(route, self.resolver,
                                                      self._opener(route))
                    except RouteError as error:
                        for rest in batches[index:]:
                            for entry in rest:
                                await self._settle(entry, error.attempt, report, failures)
                        return
                await self._transact(session, batch, message, report, failures)
        finally:
            if session is not None:
                await session.close()

    def _opener(self, route: Route) -> Callable[[str, str], Awaitable[OutboundSession]]:
        config = self.runtime.config
        relay = config.relay if route.is_relay else None
        settings = ClientSettings(
            helo_name=config.hostname, port=route.port,
            bind_address=config.outbound_bind_address,
            username=relay.username if relay else "", password=relay.password if relay else "")

        async def open_session(ip: str, host: str) -> OutboundSession:
            return await OutboundSession.open(ip, host, settings)

        return open_session

    async def _load(self, batch: list[QueueEntry], report: PassReport,
                    failures: list[_Failure]) -> bytes | None:
        """The message bytes, or None after settling the batch when it cannot be sent."""
        try:
            message = await self.runtime.blobs.read(batch[0].blob_id)
        except OSError as exc:
            log.error("queued message %s has no readable blob: %s", batch[0].message_id, exc)
            attempt = failed("5.3.0", "the queued message file is missing")
        else:
            if count_received(message) <= MAX_RECEIVED_HEADERS:
                return message
            attempt = failed("5.4.6", "routing loop detected: too many Received headers")
        for entry in batch:
            await self._settle(entry, attempt, report, failures)
        return None

    async def _transact(self, session: OutboundSession, batch: list[QueueEntry],
                        message: bytes, report: PassReport, failures: list[_Failure]) -> None:
        first = batch[0]
        try:
            replies = await session.send(first.sender, [e.recipient for e in batch], message)
        except SessionError as error:
            attempt = deferred("4.4.2", f"{session.server_name}[{session.ip}]: {error}",
                               session.server_name)
            for entry in batch:
                await self._settle(entry, attempt, report, failures)
            return
        for entry, reply in zip(batch, replies, strict=True):
            attempt = attempt_from_reply(reply.code, reply.text, session.server_name)
            if reply.is_local:
                attempt = Attempt(attempt.outcome, attempt.status, attempt.diagnostic,
                                  session.server_name, is_remote_reply=False)
            await self._settle(entry, attempt, report, failures)

    # -- settling ----------------------------------------------------------------------

    async def _settle(self, entry: QueueEntry, attempt: Attempt, report: PassReport,
                      failures: list[_Failure]) -> None:
        store = self.runtime.store
        if attempt.outcome is Outcome.DELIVERED:
            await store.finish_queue_entry(entry.id)
            report.delivered.append(entry)
            log.info("delivered %s to <%s> via %s: %s", entry.message_id, entry.recipient,
                     attempt.remote_mta, attempt.diagnostic)
            return
        if attempt.outcome is Outcome.DEFERRED:
            now = self.clock.now()
            when = schedule.next_attempt(entry.created, now, entry.attempts + 1, self.policy,
                                         self.rng.random())
            if when is not None:
                await store.reschedule(entry.id, when, attempt.diagnostic)
                report.deferred.append(entry)
                log.info("deferred %s to <%s> until %s: %s", entry.message_id,
                         entry.recipient, when.isoformat(), attempt.diagnostic)
                return
            log.info("giving up on %s to <%s>: queue lifetime exceeded", entry.message_id,
                     entry.recipient)
        # Permanent failure or lifetime over: bounced after the pass (DSN first, then the
        # row is finished, so a crash in between re-bounces rather than losing the DSN).
        failures.append(_Failure(entry, attempt))

    async def _bounce(self, failures: list[_Failure], report: PassReport) -> None:
        by_message: dict[str, list[_Failure]] = {}
        for failure in failures:
            by_message.setdefault(failure.entry.message_id, []).append(failure)
        for group in by_message.values():
            try:
                await self._bounce_message(group, report)
            except Exception as error:
                # The DSN could not be made durable: keep the rows and try again later
                # rather than finish them and lose the report.
                _log_failure(error, f"bounce for {group[0].entry.message_id} failed; "
                                    "retrying later")
                retry_at = self.clock.now() + self.policy.first_delay
                for failure in group:
                    await self.runtime.store.reschedule(failure.entry.id, retry_at,
                                                        failure.attempt.diagnostic)

    async def _bounce_message(self, group: list[_Failure], report: PassReport) -> None:
        first = group[0].entry
        wanted = [f for f in group if first.sender and _wants_failure_dsn(f.entry)]
        if wanted:
            await self._send_dsn(first, wanted)
            report.bounced.extend(f.entry for f in wanted)
        for failure in group:
            if failure not in wanted:
                # RFC 5321 §4.5.5 / RFC 3464 §2: never report on a report (null sender);
                # RFC 3461 §4.1: NOTIFY without FAILURE asked for no report.
                report.dropped.append(failure.entry)
                log.warning("undeliverable %s to <%s> dropped without DSN: %s",
                            first.message_id, failure.entry.recipient,
                            failure.attempt.diagnostic)
            await self.runtime.store.finish_queue_entry(failure.entry.id)

    async def _send_dsn(self, first: QueueEntry, group: list[_Failure]) -> None:
        config = self.runtime.config
        try:
            original = await self.runtime.blobs.read(first.blob_id)
        except OSError:
            original = b""
        now = self.clock.now()
        dsn = render_dsn(DsnReport(
            reporting_mta=config.hostname, original_sender=first.sender,
            original_message=original, arrival_date=first.created,
            recipients=[_dsn_recipient(f, now) for f in group], envid=first.envid,
        ), date=now, message_id=f"{secrets.token_hex(16)}@{config.hostname}",
            zone=display_zone(config.timezone))
        log.info("bouncing %s to <%s> (%d recipient(s))", first.message_id, first.sender,
                 len(group))
        if await self.runtime.store.is_local_domain(_domain_of(first.sender)):
            await self._deliver_locally(first.sender, dsn)
        else:
            await self.enqueue_message("", [first.sender], dsn)

    async def _deliver_locally(self, address: str, raw: bytes) -> None:
        """Put a DSN into a local sender's INBOX (through an alias if need be)."""
        store = self.runtime.store
        account_ids = await self._local_accounts(address)
        if not account_ids:
            log.warning("DSN for <%s> dropped: no such local account", address)
            return
        data = render_return_path("") + raw  # RFC 5321 §4.4, written at final delivery
        blob_id = await self.runtime.blobs.put(data)
        try:
            meta = await asyncio.to_thread(message_meta, data)
            for account_id in account_ids:
                await deliver_local(store, account_id, blob_id, len(data), meta,
                                    internal_date=self.clock.now())
        finally:
            await store.release_blob_if_unused(blob_id)

    async def _local_accounts(self, address: str) -> list[int]:
        store = self.runtime.store
        account = await store.get_account(address.lower())
        if account is not None:
            return [account.id]
        found = []
        for target in await store.alias_targets(address.lower()):
            target_account = await store.get_account(target)
            if target_account is not None:
                found.append(target_account.id)
        return found


def _wants_failure_dsn(entry: QueueEntry) -> bool:
    """RFC 3461 §4.1: NOTIFY=NEVER, or a NOTIFY list without FAILURE, asks for no bounce."""
    if not entry.notify:
        return True
    return "FAILURE" in {word.strip().upper() for word in entry.notify.split(",")}


def _dsn_recipient(failure: _Failure, now: dt.datetime) -> DsnRecipient:
    attempt = failure.attempt
    return DsnRecipient(
        recipient=failure.entry.recipient, action=DsnAction.FAILED, status=attempt.status,
        diagnostic=attempt.diagnostic, is_smtp_diagnostic=attempt.is_remote_reply,
        remote_mta=attempt.remote_mta, last_attempt=now,
    )


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _log_failure(error: Exception, what: str) -> None:
    """A temporary failure (storage full or damaged, a database gone) is one line, since
    the store already logs its kind once a minute; anything else is a bug: traceback."""
    if isinstance(error, TryLater):
        log.warning("%s: %s", what, error)
    else:
        log.error("%s", what, exc_info=error)
