"""The delivery worker: takes due queue entries and delivers, retries or bounces them.

Owns the queue's life cycle after a message is accepted:
- `enqueue` (the SMTP server's outbound hook) stores a message for remote recipients:
  the spool's Return-Path is removed (RFC 5321 §4.4), mail forwarded for a stranger is
  ARC-sealed (outbound/arcseal.py), a DKIM signature is prepended once
  (outbound/signing.py), the result is written as its own durable blob, and one row per
  recipient is committed — all before the server replies 250;
- each pass (`run_once`) takes the due rows, groups them by destination (up to
  DESTINATION_CONCURRENCY connections per destination, one per LANE_TRANSACTIONS
  messages waiting, each carrying several messages) and by message (one transaction
  carries all of a message's recipients there), and settles every row: 2xx → finished;
  4xx or no reachable server → rescheduled with back-off (outbound/schedule.py); 5xx, null
  MX, a routing loop or an expired lifetime → bounced and finished;
- bounces are RFC 3464 DSNs from MAILER-DAEMON with the null sender: delivered locally
  when the original sender's domain is ours, queued otherwise; a message whose sender is
  the null sender is never bounced (RFC 5321 §4.5.5, no bounce loops);
- the other DSNs (RFC 3461) go the same way (outbound/reports.py sends them all): one
  `delayed` per recipient, at the first deferral DELAY_WARNING_TIME after it was queued
  (NOTIFY=DELAY or no NOTIFY, §5.2.5); `relayed` for NOTIFY=SUCCESS handed to a next
  hop that does not offer DSN (§5.2.2; one that does gets NOTIFY, ORCPT, RET and ENVID
  and reports itself, §5.2.1); `delivered`/`expanded` for local deliveries
  (`report_delivered`, called by smtp/receive.py). NOTIFY=NEVER gets none;
- a REQUIRETLS message (RFC 8689) travels only over a session with a verified certificate
  to a server offering REQUIRETLS (its own connection, see client.py), else it bounces
  5.7.10; its bounce returns headers only and is itself sent with REQUIRETLS;
- each destination's TLS policy — DANE, MTA-STS, or none — is planned before dialling
  (outbound/tlspolicy.py); a policy the servers fail defers the rows with 4.7.5 and the
  policy's reason, and every TLS attempt is reported to `tls_outcomes` (TLS-RPT).

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

from postroom.clock import Clock
from postroom.delivery.transit import OutboundRecipient, ReceivedMessage
from postroom.dns.resolver import Resolver
from postroom.loops import wait_event, within
from postroom.mail.dsn import DsnAction
from postroom.metrics import note_outbound
from postroom.outbound import schedule
from postroom.outbound.arcseal import ArcSealer, forwarding_domain
from postroom.outbound.client import (
    ClientSettings,
    OutboundSession,
    SessionError,
    TlsPolicyError,
)
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
    transaction_options,
    wants_dsn,
)
from postroom.outbound.reports import DsnSender, Notice, PassReport, domain_of, log_failure
from postroom.outbound.routing import RouteError, connect_first, resolve_route
from postroom.outbound.signing import DkimSigner
from postroom.outbound.tlspolicy import DestinationPlan, TlsPolicies
from postroom.outbound.tlsresults import DiscardOutcomes, TlsOutcomeSink
from postroom.runtime import Runtime
from postroom.store.api import QueueEntry

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_CONNECTIONS = 10
DESTINATION_CONCURRENCY = 10  # connections to one destination at once (issue 22)
LANE_TRANSACTIONS = 4  # a further connection per this many transactions waiting
# The worker also wakes on its own at least this often, so mail queued by another node and
# `postroom queue flush` run without a pid file to signal take effect within the interval.
POLL_SECONDS = 30.0
# Never sleep less than this between passes: a row due but locked by another node's claim
# for an instant must not make this worker spin.
MIN_SLEEP_SECONDS = 0.05


class QueueWorker:
    def __init__(self, runtime: Runtime, resolver: Resolver, clock: Clock,
                 dkim_signer: DkimSigner | None = None, *,
                 rng: random.Random | None = None,
                 batch_size: int = BATCH_SIZE, max_connections: int = MAX_CONNECTIONS,
                 poll_seconds: float = POLL_SECONDS,
                 lease_renewal_seconds: float | None = None,
                 tls_outcomes: TlsOutcomeSink | None = None) -> None:
        self.runtime = runtime
        self.resolver = resolver
        self.clock = clock
        self.signer = dkim_signer
        self.sealer = ArcSealer(runtime.config, dkim_signer) \
            if dkim_signer is not None and runtime.config.enable_arc else None
        self.rng = rng or random.Random()
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        # How long a claimed row stays out of other workers' reach (config.py explains).
        self.lease = dt.timedelta(seconds=runtime.config.queue_lease_seconds)
        # A renewal may fail or come late twice and the lease still holds.
        self.lease_renewal_seconds = lease_renewal_seconds or self.lease.total_seconds() / 3
        self.policy = schedule.RetryPolicy.from_seconds(runtime.config.queue_lifetime)
        self._connections = asyncio.Semaphore(max_connections)
        self.destination_concurrency = min(DESTINATION_CONCURRENCY, max_connections)
        self._pass_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._passes = 0
        self._pass_done = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Told after mail was queued: wakes this worker, or, in an SMTP worker process
        # (workers.py), tells the main process, whose queue worker sends it.
        self.on_queued: Callable[[], None] = self.kick
        self.reports = DsnSender(runtime, clock, self.policy, self.enqueue_message)
        self.tls_outcomes = tls_outcomes or DiscardOutcomes()
        self.tls_policies = TlsPolicies(runtime.config, runtime.store, resolver, clock,
                                        self.tls_outcomes)

    # -- accepting mail (the SMTP server's outbound hook) -------------------------------

    async def enqueue_remote(self, message: ReceivedMessage,
                             recipients: Sequence[OutboundRecipient],
                             blob_id: str, size: int) -> None:
        """smtp/receive.py's `OutboundQueue` hook: called after local delivery, before 250."""
        params = message.mail_params
        await self.enqueue(message.sender, [r.address for r in recipients], blob_id,
                           envid=params.envid or "",
                           notify=[",".join(r.notify) for r in recipients],
                           orcpt=[r.orcpt or "" for r in recipients], ret=params.ret or "",
                           body="BINARYMIME" if params.is_binarymime else "",
                           is_requiretls=params.is_requiretls,
                           seal_as=forwarding_domain(message))

    async def report_delivered(self, message: ReceivedMessage) -> None:
        """smtp/receive.py's hook after local delivery: success DSNs (outbound/reports.py)."""
        await self.reports.report_delivered(message)

    async def enqueue(self, sender: str, recipients: Sequence[str], blob_id: str, *,
                      envid: str = "", notify: Sequence[str] = (), orcpt: Sequence[str] = (),
                      ret: str = "", body: str = "", is_requiretls: bool = False,
                      seal_as: str = "") -> list[QueueEntry]:
        """Queue the spooled message `blob_id` for remote `recipients`; durable on return.

        The queue sends its own copy — Return-Path removed, DKIM signature prepended — so
        it takes over the spool blob: once the copy is queued, the spool blob is released
        unless a local delivery (which the receiver does first) still uses it.
        `notify` and `orcpt` optionally give each recipient's RFC 3461 NOTIFY and ORCPT
        ("" = none); `ret`, `body` (RFC 3030 "BINARYMIME") and `is_requiretls` (RFC 8689)
        are the message's; `seal_as`: the forwarding domain of mail to ARC-seal.
        """
        raw = strip_return_path(await self.runtime.blobs.read(blob_id))
        stored = await self.enqueue_message(sender, recipients, raw, envid=envid,
                                            notify=notify, orcpt=orcpt, ret=ret, body=body,
                                            is_requiretls=is_requiretls, seal_as=seal_as)
        await self.runtime.store.release_blob_if_unused(blob_id)
        return stored

    async def enqueue_message(self, sender: str, recipients: Sequence[str], raw: bytes, *,
                              envid: str = "", notify: Sequence[str] = (),
                              orcpt: Sequence[str] = (), ret: str = "", body: str = "",
                              is_requiretls: bool = False, sign_as: str = "",
                              seal_as: str = "") -> list[QueueEntry]:  # fmt: skip
        """Queue a message given as bytes (no Return-Path); signs it when a key applies
        (`sign_as`: the domain to sign for first, see DkimSigner.signature_for) and,
        with `seal_as` (forwarded mail: the forwarding domain), ARC-seals it first."""
        if not recipients:
            return []
        if seal_as and self.sealer is not None:
            raw = await self.sealer.seal(raw, seal_as) + raw
        if self.signer is not None:
            raw = await self.signer.signature_for(raw, sender, sign_as) + raw
        queued_blob = await self.runtime.blobs.put(raw)
        now = self.clock.now()
        message_id = secrets.token_hex(8)
        entries = [
            QueueEntry(id=0, message_id=message_id, sender=sender, recipient=recipient,
                       domain=domain_of(recipient), blob_id=queued_blob, size=len(raw),
                       created=now, next_attempt=now, attempts=0, last_error="",
                       envid=envid, notify=notify[index] if index < len(notify) else "",
                       orcpt=orcpt[index] if index < len(orcpt) else "", ret=ret, body=body,
                       is_requiretls=is_requiretls)
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
            await within(grace_seconds, task)
        except TimeoutError:
            log.warning("queue worker did not stop within %ss; cancelled", grace_seconds)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                report = await self.run_once()
                sleep = await self._sleep_seconds()
            except Exception as error:
                log_failure(error, "queue pass failed")
                report, sleep = PassReport(), self.poll_seconds  # no fast retry loop
            if report.due >= self.batch_size:
                continue  # more is due right now
            await wait_event(self._wake, sleep)

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
        notices: list[Notice] = []
        groups = group_by_destination(due, has_relay=self.runtime.config.relay is not None)
        outcomes = await asyncio.gather(
            *(self._deliver_destination(group, report, notices)
              for group in groups.values()), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                # One destination's bug must not stop the others' bounces; its rows
                # stay due and are tried again at the next pass.
                log.error("delivery to one destination failed", exc_info=outcome)
        await self.reports.send_pass_reports(notices, report)

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
                                   notices: list[Notice]) -> None:
        async with self._connections:
            try:
                route = await resolve_route(
                    entries[0].domain, self.resolver, relay=self.runtime.config.relay,
                    port=self.runtime.config.outbound_smtp_port, rng=self.rng)
                plan = await self.tls_policies.plan(route)
            except RouteError as error:
                for entry in entries:
                    await self._settle(entry, error.attempt, report, notices)
                return
        # Issue 22: a busy destination gets up to DESTINATION_CONCURRENCY connections
        # (Postfix: smtp_destination_concurrency_limit), each its share of the messages
        # and each holding one of the worker's connection slots.
        batches = group_transactions(entries)
        lanes: list[list[QueueEntry]] = [[] for _ in range(min(
            self.destination_concurrency, -(-len(batches) // LANE_TRANSACTIONS)))]
        for index, batch in enumerate(batches):
            lanes[index % len(lanes)].extend(batch)
        await asyncio.gather(*(self._deliver_lane(plan, lane, report, notices)
                               for lane in lanes))

    async def _deliver_lane(self, plan: DestinationPlan, entries: list[QueueEntry],
                            report: PassReport, notices: list[Notice]) -> None:
        async with self._connections:
            await self._deliver_route(plan, entries, report, notices)

    async def _deliver_route(self, plan: DestinationPlan, entries: list[QueueEntry],
                             report: PassReport, notices: list[Notice]) -> None:
        """Every batch over one connection per TLS policy: REQUIRETLS mail (RFC 8689)
        needs a verified one of its own. A policy whose connection failed settles its
        later batches with the same attempt instead of dialling again."""
        sessions: dict[bool, OutboundSession] = {}
        unreachable: dict[bool, Attempt] = {}
        try:
            for batch in group_transactions(entries):
                message = await self._load(batch, report, notices)
                if message is None:
                    continue
                requires_tls = batch[0].is_requiretls
                session = sessions.get(requires_tls)
                if requires_tls not in unreachable and (
                        session is None or not session.is_connected):
                    try:
                        session = sessions[requires_tls] = await self._connect(
                            plan, requires_tls=requires_tls)
                    except RouteError as error:
                        unreachable[requires_tls] = error.attempt
                if requires_tls in unreachable:
                    for entry in batch:
                        await self._settle(entry, unreachable[requires_tls], report, notices)
                    continue
                assert session is not None  # connected above
                await self._transact(session, batch, message, report, notices)
        finally:
            for session in sessions.values():
                await session.close()

    async def _connect(self, plan: DestinationPlan, *, requires_tls: bool
                       ) -> OutboundSession:
        """A session to the first server of the plan's route that takes us. REQUIRETLS:
        when every server reached failed its TLS policy, the attempt fails 5.7.10 (RFC 8689
        §5); a destination's DANE or MTA-STS policy failed: 4.7.5 with its reason."""
        route = plan.route
        policy_failures: list[TlsPolicyError] = []
        try:
            return await connect_first(route, self.resolver,
                                       self._opener(plan, requires_tls, policy_failures))
        except RouteError as error:
            if policy_failures and error.attempt.outcome is Outcome.FAILED:
                raise RouteError(failed("5.7.10", f"REQUIRETLS: {policy_failures[-1]}",
                                        route.hosts[-1])) from error  # fmt: skip
            if plan.failures and error.attempt.outcome is Outcome.DEFERRED:
                raise RouteError(deferred("4.7.5", str(plan.failures[-1]),
                                          route.hosts[-1])) from error  # fmt: skip
            raise

    def _opener(self, plan: DestinationPlan, requires_tls: bool,
                policy_failures: list[TlsPolicyError]
                ) -> Callable[[str, str], Awaitable[OutboundSession]]:
        config, route = self.runtime.config, plan.route
        relay = config.relay if route.is_relay else None
        settings = ClientSettings(
            helo_name=config.hostname, port=route.port,
            bind_address=config.outbound_bind_address,
            username=relay.username if relay else "", password=relay.password if relay else "",
            requires_tls=requires_tls, tls_cafile=config.smtp_tls_cafile)

        async def open_session(ip: str, host: str) -> OutboundSession:
            try:
                return await plan.open(ip, host, settings)
            except TlsPolicyError as error:
                policy_failures.append(error)
                raise

        return open_session

    async def _load(self, batch: list[QueueEntry], report: PassReport,
                    notices: list[Notice]) -> bytes | None:
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
            await self._settle(entry, attempt, report, notices)
        return None

    async def _transact(self, session: OutboundSession, batch: list[QueueEntry],
                        message: bytes, report: PassReport, notices: list[Notice]) -> None:
        first = batch[0]
        try:
            replies = await session.send(first.sender, [e.recipient for e in batch], message,
                                         transaction_options(batch))
        except SessionError as error:
            attempt = deferred("4.4.2", f"{session.server_name}[{session.ip}]: {error}",
                               session.server_name)
            for entry in batch:
                await self._settle(entry, attempt, report, notices)
            return
        for entry, reply in zip(batch, replies, strict=True):
            attempt = attempt_from_reply(reply.code, reply.text, session.server_name)
            if reply.is_local:
                attempt = Attempt(attempt.outcome, attempt.status, attempt.diagnostic,
                                  session.server_name, is_remote_reply=False)
            await self._settle(entry, attempt, report, notices)
            if (attempt.outcome is Outcome.DELIVERED and wants_dsn(entry, "SUCCESS")
                    and not session.offers("DSN")):
                # RFC 3461 §5.2.2: a next hop without DSN ends our duty to pass NOTIFY on:
                # we report "relayed" ourselves (one that offers DSN reports itself).
                notices.append(Notice(entry, attempt, DsnAction.RELAYED))

    # -- settling ----------------------------------------------------------------------

    async def _settle(self, entry: QueueEntry, attempt: Attempt, report: PassReport,
                      notices: list[Notice]) -> None:
        store = self.runtime.store
        if attempt.outcome is Outcome.DELIVERED:
            await store.finish_queue_entry(entry.id)
            report.delivered.append(entry)
            note_outbound("delivered")
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
                note_outbound("deferred")
                if self._is_delay_warning_due(entry, now):
                    notices.append(Notice(entry, attempt, DsnAction.DELAYED))
                log.info("deferred %s to <%s> until %s: %s", entry.message_id,
                         entry.recipient, when.isoformat(), attempt.diagnostic)
                return
            log.info("giving up on %s to <%s>: queue lifetime exceeded", entry.message_id,
                     entry.recipient)
        # Permanent failure or lifetime over: bounced after the pass (DSN first, then the
        # row is finished, so a crash in between re-bounces rather than losing the DSN).
        notices.append(Notice(entry, attempt))
        note_outbound("bounced")

    def _is_delay_warning_due(self, entry: QueueEntry, now: dt.datetime) -> bool:
        """RFC 3461 NOTIFY=DELAY: once, at the first deferral DELAY_WARNING_TIME (0 =
        never) after the entry was queued (Postfix's delay_warning_time)."""
        warn_after = self.runtime.config.delay_warning_time
        return (bool(warn_after) and not entry.is_delay_notified and wants_dsn(entry, "DELAY")
                and now - entry.created >= dt.timedelta(seconds=warn_after))
