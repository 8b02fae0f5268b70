"""The DSNs the outbound queue sends (RFC 3461, RFC 3464; rendered by mail/dsn.py).

Owns who gets which report and how it travels, for the delivery worker (worker.py):
- a pass's notices, sent after it, one report per message and kind: bounces (`failed`;
  the rows are finished only once the DSN is durable, else retried later), one `delayed`
  per recipient (marked in the queue once sent), `relayed` for NOTIFY=SUCCESS handed to a
  next hop without DSN;
- `delivered`/`expanded` reports for local deliveries (`report_delivered`, through the
  worker, for smtp/receive.py);
- every report from the null sender (RFC 5321 §4.5.5: never reported on itself), into
  the sender's mailbox when the sender is local, through the queue otherwise; a report on
  a REQUIRETLS message (RFC 8689) returns headers only and travels with REQUIRETLS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postroom.clock import Clock, display_zone
from postroom.delivery.local import deliver_local, delivered_notice
from postroom.delivery.transit import ReceivedMessage
from postroom.errors import TryLater
from postroom.mail.dsn import DsnAction, DsnRecipient, DsnReport, render_dsn
from postroom.mail.mimetree import message_meta
from postroom.mail.trace import render_return_path
from postroom.outbound import schedule
from postroom.outbound.model import Attempt, wants_dsn
from postroom.runtime import Runtime
from postroom.store.api import QueueEntry

log = logging.getLogger("postroom.outbound.worker")  # one logger for the queue's lines


@dataclass(slots=True)
class PassReport:
    """What one pass did (for logs and tests)."""

    delivered: list[QueueEntry] = field(default_factory=list)
    deferred: list[QueueEntry] = field(default_factory=list)
    bounced: list[QueueEntry] = field(default_factory=list)
    dropped: list[QueueEntry] = field(default_factory=list)  # failed, null sender: no DSN
    delay_warned: list[QueueEntry] = field(default_factory=list)  # delay DSN sent
    relayed: list[QueueEntry] = field(default_factory=list)  # success DSN "relayed" sent
    due: int = 0


@dataclass(slots=True)
class Notice:
    """A DSN owed after the pass: a failure (bounce), a delay or a relayed success."""

    entry: QueueEntry
    attempt: Attempt
    action: DsnAction = DsnAction.FAILED


class Enqueue(Protocol):
    """The worker's `enqueue_message`: how a report for a remote sender is sent."""

    async def __call__(self, sender: str, recipients: Sequence[str], raw: bytes, *,
                       is_requiretls: bool = False) -> list[QueueEntry]: ...


class DsnSender:
    def __init__(self, runtime: Runtime, clock: Clock, policy: schedule.RetryPolicy,
                 enqueue: Enqueue) -> None:
        self.runtime = runtime
        self.clock = clock
        self.policy = policy
        self._enqueue = enqueue

    async def send_pass_reports(self, notices: list[Notice], report: PassReport
                                ) -> None:
        """Send the pass's DSNs: one per message and kind."""
        groups: dict[tuple[str, DsnAction], list[Notice]] = {}
        for notice in notices:
            groups.setdefault((notice.entry.message_id, notice.action), []).append(notice)
        for (_, action), group in groups.items():
            if action is DsnAction.FAILED:
                await self._bounce(group, report)
            else:
                await self._notify(group, report)

    async def _bounce(self, group: list[Notice], report: PassReport) -> None:
        try:
            await self._bounce_message(group, report)
        except Exception as error:
            # The DSN could not be made durable: keep the rows and try again later
            # rather than finish them and lose the report.
            log_failure(error, f"bounce for {group[0].entry.message_id} failed; "
                                "retrying later")
            retry_at = self.clock.now() + self.policy.first_delay
            for failure in group:
                await self.runtime.store.reschedule(failure.entry.id, retry_at,
                                                    failure.attempt.diagnostic)

    async def _notify(self, group: list[Notice], report: PassReport) -> None:
        """A delay or relayed-success DSN. Not worth a retry when it fails: the delay
        warning is tried again at the next deferral (it is marked sent only once sent)."""
        first = group[0].entry
        try:
            await self._send_dsn(first, [_dsn_recipient(n, self.clock.now(), self.policy)
                                         for n in group])
        except Exception as error:
            log_failure(error, f"{group[0].action} DSN for {first.message_id} failed")
            return
        if group[0].action is DsnAction.DELAYED:
            await self.runtime.store.mark_delay_notified([n.entry.id for n in group])
            report.delay_warned.extend(n.entry for n in group)
        else:
            report.relayed.extend(n.entry for n in group)

    async def _bounce_message(self, group: list[Notice], report: PassReport) -> None:
        first = group[0].entry
        wanted = [f for f in group if wants_dsn(f.entry, "FAILURE")]
        if wanted:
            now = self.clock.now()
            await self._send_dsn(first, [_dsn_recipient(f, now, self.policy) for f in wanted])
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

    async def _send_dsn(self, first: QueueEntry, recipients: list[DsnRecipient]) -> None:
        try:
            original = await self.runtime.blobs.read(first.blob_id)
        except OSError:
            original = b""
        await self._send_report(DsnReport(
            reporting_mta=self.runtime.config.hostname, original_sender=first.sender,
            original_message=original, arrival_date=first.created, recipients=recipients,
            envid=first.envid,
            # RFC 8689 §5: a REQUIRETLS message's content is not sent back in the clear
            is_full_return=first.ret == "FULL" and not first.is_requiretls,
        ), is_requiretls=first.is_requiretls)

    async def report_delivered(self, message: ReceivedMessage) -> None:
        """Success DSNs (RFC 3461 NOTIFY=SUCCESS) for what smtp/receive.py has just
        delivered into local mailboxes (`delivered`, or `expanded` through an alias).
        A failure is logged: the mail itself is delivered."""
        notices = [delivered_notice(r.address, r.params.notify, r.params.orcpt,
                                    local=len(r.local), remote=len(r.remote))
                   for r in message.recipients]
        recipients = [notice for notice in notices if notice is not None]
        if not recipients or not message.sender:
            return
        try:
            original = await asyncio.to_thread(_message_head, message)
            await self._send_report(DsnReport(
                reporting_mta=self.runtime.config.hostname, original_sender=message.sender,
                original_message=original, arrival_date=message.received_at,
                recipients=recipients, envid=message.mail_params.envid or ""),
                is_requiretls=message.mail_params.is_requiretls)
        except Exception as error:
            log_failure(error, f"success DSN for {message.queue_id} failed")

    async def _send_report(self, report: DsnReport, *, is_requiretls: bool = False) -> None:
        """Render `report` and send it from the null sender: into the sender's mailbox
        when the sender is local, through the queue otherwise."""
        config, now = self.runtime.config, self.clock.now()
        dsn = render_dsn(report, date=now,
                         message_id=f"{secrets.token_hex(16)}@{config.hostname}",
                         zone=display_zone(config.timezone))
        sender = report.original_sender
        log.info("DSN (%s) to <%s> for %d recipient(s)",
                 ",".join(sorted({r.action.value for r in report.recipients})), sender,
                 len(report.recipients))
        if await self.runtime.store.is_local_domain(domain_of(sender)):
            await self._deliver_locally(sender, dsn)
        else:
            await self._enqueue("", [sender], dsn, is_requiretls=is_requiretls)

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


def _dsn_recipient(notice: Notice, now: dt.datetime, policy: schedule.RetryPolicy
                   ) -> DsnRecipient:
    attempt, entry = notice.attempt, notice.entry
    is_delay = notice.action is DsnAction.DELAYED
    return DsnRecipient(
        recipient=entry.recipient, action=notice.action, status=attempt.status,
        diagnostic=attempt.diagnostic, is_smtp_diagnostic=attempt.is_remote_reply,
        remote_mta=attempt.remote_mta, last_attempt=now,
        will_retry_until=schedule.deadline(entry.created, policy) if is_delay else None,
        original_recipient=entry.orcpt,
    )


def _message_head(message: ReceivedMessage) -> bytes:
    """Enough of the message for a DSN, which copies only its header (in a thread)."""
    with message.open_body() as body:
        return body.read(1024 * 1024)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def log_failure(error: Exception, what: str) -> None:
    """A temporary failure (storage full or damaged, a database gone) is one line, since
    the store already logs its kind once a minute; anything else is a bug: traceback."""
    if isinstance(error, TryLater):
        log.warning("%s: %s", what, error)
    else:
        log.error("%s", what, exc_info=error)
