"""Sieve at final delivery (issue 19): which scripts run for an account, running them, and
turning their actions into what delivery does — mailboxes and flags, redirects, a
vacation reply, a refusal — with the rules that need the store.

Owns: the script sequence (the global `before`, the user's active script, the global
`after`, as Pigeonhole's sieve_before / sieve_after); what the evaluator may know
(mailbox names, special-use, included scripts, duplicate ids: loaded only when the
script requires them); `fileinto :create` (RFC 5490) and the INBOX fallback for a
missing mailbox; vacation's once-per-period rule and RFC 3834 suppression
(sieve/vacation.py) with the reply rendered; redirects with the SRS sender
(mail/srs.py); telling the user once a day that their script failed.

Invariants:
- Nothing is lost: a script that fails to load, compile or run means the implicit keep
  (RFC 5228 §2.10.6); a fileinto into a mailbox that cannot be created lands in INBOX.
- Side effects recorded in the store (vacation replies, duplicate ids) are recorded only
  by `commit`, which the caller runs once the message is stored.
- The global scripts are cached for GLOBAL_TTL seconds per process; the user's active
  script is one point read; an account without scripts costs that read and no more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from postroom.accounts.settingscache import AccountCache
from postroom.accounts.sievescripts import COMPILED, CompiledScripts, active_scripts
from postroom.clock import display_zone
from postroom.config import Config
from postroom.delivery.local import append_delivered, delivery_mailbox
from postroom.delivery.srsroute import rewrite_sender
from postroom.delivery.transit import ReceivedMessage
from postroom.errors import BadSyntax, Refused
from postroom.mail.dsn import DsnAction, DsnRecipient, DsnReport, render_dsn
from postroom.mail.mimetree import message_meta
from postroom.sieve.actions import FileInto, Keep, Redirect, Reject, SieveResult, Vacation
from postroom.sieve.compile import Script
from postroom.sieve.evaluate import Limits, SieveContext, SieveEnvelope, evaluate_sequence
from postroom.sieve.lexer import SieveSyntaxError
from postroom.sieve.message import SieveMessage
from postroom.sieve.vacation import render_reply, reply_sender, suppression_reason
from postroom.store.api import Account, Mailbox, Store
from postroom.store.blobs import BlobStore
from postroom.store.errors import AlreadyExists, NotFound
from postroom.store.sieve_api import storable_text

log = logging.getLogger("postroom.sieve")

GLOBAL_TTL = 5.0
# An evaluation first runs on the event loop with this many steps (a typical script on a
# typical message takes a few thousand: well under a millisecond); one that needs more is
# run again, from the start, in a worker thread with the whole budget. It is pure, so
# running it twice changes nothing; the loop is never held for long.
INLINE_STEPS = 50_000
TOO_MANY_STEPS = "the script took too many steps"
# The duplicate-id handle of "the user was told their script failed" (\x01: no script
# writes it by accident; PostgreSQL text refuses NUL).
ERROR_HANDLE = "\x01postroom:script-error"
INBOX = "INBOX"


@dataclass(frozen=True, slots=True)
class Filing:
    mailbox: str
    flags: frozenset[str]
    create: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message delivery must queue: a redirect or a vacation reply."""

    sender: str
    recipient: str
    raw: bytes
    is_forward: bool = False  # a redirect: ARC-sealed when a stranger sent it


@dataclass(slots=True)
class SieveOutcome:
    filings: list[Filing] = field(default_factory=list)  # empty: discarded (or rejected)
    reject: str | None = None  # reject / ereject reason
    outgoing: list[Outgoing] = field(default_factory=list)
    edited: bytes | None = None  # the message after editheader, to store instead
    error: str = ""
    description: str = ""  # for the delivery log line
    _vacation: tuple[str, str, dt.datetime] | None = None  # (handle, sender, expires)
    _duplicates: list[tuple[str, str, dt.datetime]] = field(default_factory=list)


class SieveFilter:
    def __init__(self, config: Config, store: Store, compiled: CompiledScripts = COMPILED
                 ) -> None:  # fmt: skip
        self._config = config
        self._store = store
        self._compiled = compiled
        self._globals: tuple[float, dict[str, str]] = (0.0, {})
        self._active = active_scripts(store)  # accounts/sievescripts.py forgets in it
        # What every evaluation's context shares, built once.
        self._zone = display_zone(config.timezone)  # TZ: what date tests compare in
        self._environment = {  # RFC 5183 §4
            "domain": config.hostname.partition(".")[2] or config.hostname,
            "host": config.hostname, "location": "MDA", "name": "postroom",
            "phase": "during", "version": "1.0"}
        self._limits = Limits(actions=config.sieve_max_actions,
                              redirects=config.sieve_max_redirects)

    # -- which scripts ---------------------------------------------------------------
    async def _global_scripts(self) -> dict[str, str]:
        loaded_at, scripts = self._globals
        if time.monotonic() - loaded_at < GLOBAL_TTL:
            return scripts
        scripts = {}
        for name in ("before", "after"):
            text = await self._store.get_global_sieve_script(name)
            if text is not None:
                scripts[name] = text
        self._globals = (time.monotonic(), scripts)
        return scripts

    async def scripts_for(self, account_id: int) -> list[Script] | None:
        """The compiled sequence, or None when no script applies. A script that no longer
        compiles (written by an older version) is left out and logged."""
        globals_ = await self._global_scripts()
        active = await self._active.get(account_id, self._store.active_sieve_script)
        texts = [globals_.get("before"), active[1] if active else None, globals_.get("after")]
        scripts = []
        for text in texts:
            if text is None:
                continue
            try:
                scripts.append(self._compiled.get(text))
            except SieveSyntaxError as error:
                log.warning("account %d: a Sieve script does not compile, skipped: %s",
                            account_id, error)  # fmt: skip
        return scripts or None

    # -- running -----------------------------------------------------------------------
    async def run(self, account: Account, scripts: list[Script], raw: bytes, *,
                  sender: str, recipient: str, keep: Filing) -> SieveOutcome:  # fmt: skip
        """Evaluate and translate. `keep` is where keep and the implicit keep go (INBOX,
        or Junk when the spam filter chose it) and the flags it brings."""
        now = dt.datetime.now(dt.UTC)
        context = await self._context(account, scripts, sender, recipient, now)
        message = SieveMessage.from_bytes(raw)
        result = evaluate_sequence(scripts, message, replace(
            context, limits=replace(context.limits, steps=INLINE_STEPS)))
        if result.error.endswith(TOO_MANY_STEPS):  # too long for the loop: in a thread
            message = SieveMessage.from_bytes(raw)  # from the start: edits undone
            result = await asyncio.to_thread(evaluate_sequence, scripts, message, context)
        outcome = SieveOutcome(edited=result.edited_message, error=result.error)
        if result.error:
            log.info("account %s: Sieve runtime error, message kept: %s", account.address,
                     result.error)  # fmt: skip
            outcome.filings.append(keep)
            outcome.description = "sieve=error keep"
            return outcome
        self._translate(result, outcome, keep)
        for action in result.actions:
            if isinstance(action, Redirect):
                outcome.outgoing.append(self._redirect(action, raw if result.edited_message
                                                       is None else result.edited_message,
                                                       sender))  # fmt: skip
            elif isinstance(action, Vacation):
                await self._vacation(action, outcome, message, account, sender, recipient, now)
        outcome._duplicates = [(mark.handle, mark.value, now + dt.timedelta(seconds=mark.seconds))
                               for mark in result.duplicates]  # fmt: skip
        return outcome

    async def _context(self, account: Account, scripts: list[Script], sender: str,
                       recipient: str, now: dt.datetime) -> SieveContext:  # fmt: skip
        requires = frozenset().union(*(script.requires for script in scripts))
        mailboxes: frozenset[str] = frozenset({INBOX})
        special: dict[str, str] = {}
        if requires & {"mailbox", "special-use"}:
            boxes = await self._store.list_mailboxes(account.id)
            mailboxes = frozenset(box.name for box in boxes) | {INBOX}
            special = {str(box.special_use): box.name for box in boxes if box.special_use}
        duplicates: frozenset[tuple[str, str]] = frozenset()
        if "duplicate" in requires:
            duplicates = await self._store.sieve_duplicates(account.id, now)
        includes = await self._includes(account.id, scripts) if "include" in requires else {}
        return SieveContext(
            SieveEnvelope(sender, recipient), now.astimezone(self._zone),
            environment=self._environment, mailboxes=mailboxes, special_use=special,
            include=lambda location, name: includes.get((location, name)),
            is_duplicate=lambda handle, value: (storable_text(handle),
                                                storable_text(value)) in duplicates,
            limits=self._limits)

    async def _includes(self, account_id: int, scripts: list[Script]
                        ) -> dict[tuple[str, str], Script]:  # fmt: skip
        """Every script the sequence may include, loaded ahead (the evaluator does no
        I/O), following includes of includes up to the evaluator's depth limit."""
        found: dict[tuple[str, str], Script] = {}
        pending = [include for script in scripts for include in script.includes]
        while pending and len(found) < Limits().includes:
            include = pending.pop()
            key = (include.location, include.name)
            if key in found:
                continue
            text = (await self._store.get_global_sieve_script(include.name)
                    if include.location == "global"
                    else await self._store.get_sieve_script(account_id, include.name))
            if text is None:
                continue
            try:
                found[key] = self._compiled.get(text)
            except SieveSyntaxError:
                continue
            pending += found[key].includes
        return found

    @staticmethod
    def _translate(result: SieveResult, outcome: SieveOutcome, keep: Filing) -> None:
        names: list[str] = []
        for action in result.actions:
            if isinstance(action, Keep):
                outcome.filings.append(Filing(keep.mailbox, keep.flags | set(action.flags)))
                names.append("keep")
            elif isinstance(action, FileInto):
                outcome.filings.append(Filing(action.mailbox, frozenset(action.flags),
                                              action.create))  # fmt: skip
                names.append(f"fileinto:{action.mailbox}")
            elif isinstance(action, Reject):
                outcome.reject = action.reason
                names.append("reject")
            else:
                names.append(type(action).__name__.lower())
        if result.implicit_keep:
            outcome.filings.append(Filing(keep.mailbox,
                                          keep.flags | set(result.implicit_keep_flags)))
            names.append("implicit-keep")
        outcome.description = "sieve=" + ",".join(names)

    # -- redirect (SRS) and vacation ---------------------------------------------------
    def _redirect(self, action: Redirect, raw: bytes, sender: str) -> Outgoing:
        return Outgoing(rewrite_sender(self._config, sender), action.address, raw,
                        is_forward=True)

    async def _vacation(self, action: Vacation, outcome: SieveOutcome, message: SieveMessage,
                        account: Account, sender: str, recipient: str,
                        now: dt.datetime) -> None:  # fmt: skip
        own = await self._own_addresses(account, recipient)
        why = suppression_reason(action, message, sender, own)
        if why:
            log.info("account %s: no vacation reply to <%s>: %s", account.address, sender, why)
            return
        if await self._store.vacation_replied(account.id, action.handle, sender, now):
            return
        config = self._config
        seconds = max(config.sieve_vacation_min_period,
                      min(action.seconds, config.sieve_vacation_max_period))  # fmt: skip
        from_address = reply_sender(action, recipient)
        if from_address.lower() not in {address.lower() for address in own}:
            from_address = account.address  # RFC 5230 §4.4: only the user's own addresses
        raw = render_reply(action, message, sender=sender, from_address=from_address,
                           message_id=f"<{secrets.token_hex(12)}@{config.hostname}>",
                           date=email.utils.format_datetime(now.astimezone()))  # fmt: skip
        outcome.outgoing.append(Outgoing("", sender, raw))  # RFC 3834 §3.3: null sender
        outcome._vacation = (action.handle, sender, now + dt.timedelta(seconds=seconds))

    async def _own_addresses(self, account: Account, recipient: str) -> list[str]:
        aliases = [alias.source for alias in await self._store.list_aliases()
                   if alias.target.lower() == account.address.lower()]
        return [account.address, recipient, *aliases]

    # -- after delivery ------------------------------------------------------------------
    async def commit(self, account: Account, outcome: SieveOutcome) -> None:
        """Record what vacation and duplicate must remember, once the message is kept."""
        now = dt.datetime.now(dt.UTC)
        if outcome._vacation is not None:
            handle, sender, expires = outcome._vacation
            await self._store.record_vacation_reply(account.id, handle, sender, expires, now)
        if outcome._duplicates:
            await self._store.record_sieve_duplicates(account.id, outcome._duplicates, now)

    async def error_notice(self, account: Account, error: str) -> bytes | None:
        """A short message telling the user their script failed, once a day per error
        (RFC 5228 §2.10.6: the message was kept)."""
        now = dt.datetime.now(dt.UTC)
        key = hashlib.sha256(error.encode("utf-8", "replace")).hexdigest()
        if (ERROR_HANDLE, key) in await self._store.sieve_duplicates(account.id, now):
            return None
        await self._store.record_sieve_duplicates(
            account.id, [(ERROR_HANDLE, key, now + dt.timedelta(days=1))], now)
        config = self._config
        text = (f"Your Sieve filter failed while filtering a message, which was kept in your"
                f" INBOX.\r\n\r\nThe error: {error}\r\n\r\nFix the script with your Sieve "
                f"client (ManageSieve) or ask your administrator.\r\n")
        return (f"From: Mail Delivery System <{config.postmaster}>\r\n"
                f"To: {account.address}\r\n"
                f"Subject: Your Sieve filter failed\r\n"
                f"Date: {email.utils.format_datetime(now.astimezone())}\r\n"
                f"Message-ID: <{secrets.token_hex(12)}@{config.hostname}>\r\n"
                "Auto-Submitted: auto-generated\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text).encode("utf-8")


# -- the delivery stage the SMTP receiver runs -------------------------------------------------
RawOf = Callable[[int], Awaitable[bytes]]


class Enqueue(Protocol):
    async def __call__(self, sender: str, recipients: Sequence[str], raw: bytes, *,
                       sign_as: str = "", seal_as: str = "") -> object: ...


@dataclass(slots=True)
class SieveDecisions:
    """Each scripted account's outcome; accounts without scripts are absent."""

    outcomes: dict[int, tuple[Account, SieveOutcome]] = field(default_factory=dict)

    def filings(self, account_id: int) -> list[Filing] | None:
        found = self.outcomes.get(account_id)
        return found[1].filings if found is not None else None

    def edited(self, account_id: int) -> bytes | None:
        found = self.outcomes.get(account_id)
        return found[1].edited if found is not None else None

    def refusal(self, account_ids: Iterable[int], has_remote: bool) -> str | None:
        """RFC 5429 §2.1: refuse in the protocol (550 5.7.1 at end of DATA) when every
        local account's script rejects and the message goes nowhere else."""
        reasons = [self.outcomes[i][1].reject if i in self.outcomes else None
                   for i in account_ids]  # fmt: skip
        if has_remote or not reasons or any(reason is None for reason in reasons):
            return None
        return str(reasons[0])

    def describe(self) -> str:
        return " ".join(outcome.description for _, outcome in self.outcomes.values()
                        if outcome.description)  # fmt: skip


class SieveStage:
    """Run by smtp/receive.py: `decide` before anything is stored (a reject must be able
    to refuse), `finish` after (what goes out, what is remembered)."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.filter = SieveFilter(config, store)
        self._accounts: AccountCache[Account | None] = AccountCache()  # address by id

    async def decide(self, message: ReceivedMessage, keeps: Mapping[int, Filing],
                     raw_of: RawOf) -> SieveDecisions:  # fmt: skip
        decisions = SieveDecisions()
        for account_id, keep in keeps.items():
            scripts = await self.filter.scripts_for(account_id)
            if scripts is None:
                continue
            account = await self._accounts.get(account_id, self.store.get_account_by_id)
            if account is None:
                continue
            outcome = await self.filter.run(
                account, scripts, await raw_of(account_id), sender=message.sender,
                recipient=_rcpt_of(message, account_id, account.address), keep=keep)
            decisions.outcomes[account_id] = (account, outcome)
        return decisions

    async def finish(self, message: ReceivedMessage, decisions: SieveDecisions, *,
                     enqueue: Enqueue | None, deliver_notice: Callable[[int, bytes],
                                                                       Awaitable[object]],
                     is_refused: bool) -> None:  # fmt: skip
        for account, outcome in decisions.outcomes.values():
            try:
                await self._finish_one(message, account, outcome, enqueue, deliver_notice,
                                       is_refused)  # fmt: skip
            except Exception as error:  # the message is stored: never a 4xx (a duplicate)
                log.warning("queue_id=%s account %s: Sieve's follow-up failed: %r",
                            message.queue_id, account.address, error)  # fmt: skip

    async def _finish_one(self, message: ReceivedMessage, account: Account,
                          outcome: SieveOutcome, enqueue: Enqueue | None,
                          deliver_notice: Callable[[int, bytes], Awaitable[object]],
                          is_refused: bool) -> None:  # fmt: skip
        """Redirects and replies queued, vacation and duplicate ids recorded, the user told
        of a failed script: after the message is stored."""
        domain = account.address.rpartition("@")[2]
        if outcome.reject is not None and not is_refused:
            await self._bounce(message, account, outcome.reject, enqueue)
        for out in outcome.outgoing:
            if enqueue is None:
                log.warning("account %s: no outbound queue: %s to <%s> not sent",
                            account.address, "reply" if not out.sender else "redirect",
                            out.recipient)  # fmt: skip
                continue
            seal = out.is_forward and not message.client.is_ours  # RFC 8617 §5.1
            await enqueue(out.sender, [out.recipient], out.raw, sign_as=domain,
                          seal_as=domain if seal else "")
        await self.filter.commit(account, outcome)
        if outcome.error:
            notice = await self.filter.error_notice(account, outcome.error)
            if notice is not None:
                await deliver_notice(account.id, notice)

    async def _bounce(self, message: ReceivedMessage, account: Account, reason: str,
                      enqueue: Enqueue | None) -> None:  # fmt: skip
        """A reject that could not refuse in the protocol (other recipients took the
        message): a DSN to the sender (RFC 5429 §2.1), never to the null sender."""
        if not message.sender or enqueue is None:
            return
        now = dt.datetime.now(dt.UTC)
        report = DsnReport(
            reporting_mta=self.config.hostname, original_sender=message.sender,
            original_message=message.body or b"", arrival_date=message.received_at,
            recipients=[DsnRecipient(account.address, DsnAction.FAILED, "5.7.1",
                                     f"rejected by the recipient's filter: {reason}",
                                     is_smtp_diagnostic=False)])  # fmt: skip
        raw = render_dsn(report, date=now,
                         message_id=f"<{secrets.token_hex(12)}@{self.config.hostname}>")
        await enqueue("", [message.sender], raw)


def _rcpt_of(message: ReceivedMessage, account_id: int, fallback: str) -> str:
    """The RCPT address that reached the account (Sieve's envelope "to")."""
    for recipient in message.recipients:
        if any(target.account_id == account_id for target in recipient.local):
            return recipient.address
    return fallback


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """The copy delivery is storing: `unwritten` holds its bytes until the first
    append writes them (smtp/receive.py's small-message path)."""

    blob_id: str
    size: int
    meta: str
    unwritten: bytes | None


async def deliver_filings(store: Store, blobs: BlobStore, account_id: int, keep_box: Mailbox,
                          base_flags: frozenset[str], filings: Sequence[Filing],
                          edited: bytes | None, copy: StoredCopy,
                          when: dt.datetime) -> bool:  # fmt: skip
    """Append the message to every filing's mailbox; whether `copy.unwritten` got
    written. An edited message (editheader) is stored as its own blob."""
    if not filings:
        return False
    if edited is not None:
        blob_id = await blobs.put(edited)
        try:
            meta = await asyncio.to_thread(message_meta, edited)
            edited_copy = StoredCopy(blob_id, len(edited), meta, None)
            for filing in filings:
                await _append(store, account_id, keep_box, base_flags, filing, edited_copy,
                              when)  # fmt: skip
        finally:
            await store.release_blob_if_unused(blob_id)
        return False
    for filing in filings:
        await _append(store, account_id, keep_box, base_flags, filing, copy, when)
        copy = StoredCopy(copy.blob_id, copy.size, copy.meta, None)
    return True


async def _append(store: Store, account_id: int, keep_box: Mailbox, base_flags: frozenset[str],
                  filing: Filing, copy: StoredCopy, when: dt.datetime) -> None:  # fmt: skip
    box = await _filing_box(store, account_id, keep_box, filing)
    flags = base_flags | filing.flags
    try:
        await append_delivered(store, box, copy.blob_id, copy.size, copy.meta, flags,
                               internal_date=when, body=copy.unwritten)  # fmt: skip
    except NotFound:  # deleted since it was chosen
        box = await delivery_mailbox(store, account_id, box.name)
        await append_delivered(store, box, copy.blob_id, copy.size, copy.meta, flags,
                               internal_date=when, body=copy.unwritten)  # fmt: skip


async def _filing_box(store: Store, account_id: int, keep_box: Mailbox,
                      filing: Filing) -> Mailbox:  # fmt: skip
    """The mailbox a filing names: keep's, an existing one, one `fileinto :create` makes
    (RFC 5490 §3.2), else INBOX (a missing folder never loses mail)."""
    name = INBOX if filing.mailbox.upper() == INBOX else filing.mailbox
    if name == keep_box.name:
        return keep_box
    box = await store.get_mailbox(account_id, name)
    if box is not None:
        return box
    if filing.create:
        try:
            return await store.create_mailbox(account_id, name)
        except AlreadyExists:
            found = await store.get_mailbox(account_id, name)
            if found is not None:
                return found
        except (Refused, BadSyntax) as error:
            log.info("account %d: fileinto :create %r refused (%s): INBOX instead",
                     account_id, name[:100], error)  # fmt: skip
    return await delivery_mailbox(store, account_id, INBOX)
