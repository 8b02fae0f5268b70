"""The final filtering step: each local account's spam verdict, and what delivery does.

Owns the per-recipient decision of issue 18 (docker-mailserver's SA_TAG / SA_TAG2 /
SA_KILL, SPAM_SUBJECT, MOVE_SPAM_TO_JUNK, MARK_SPAM_AS_READ, SPAM_TO_INBOX). After the
MESSAGE stage of the checks, `SpamFiling.plan` takes the transaction's symbols, adds for
each local account what its `AccountScorer`s say (the per-account learning filter), and
compares the total with that account's thresholds (`postroom filter set`, else the
global keys). The result, a `FilingPlan`, says per account: the mailbox, the flags, the
X-Spam-* fields and the Subject mark; and for the message as a whole (what remote copies
carry) the same with the global thresholds.

Invariants:
- Refusing (554 5.7.1) happens only before anything is stored, and only when every
  recipient's verdict reaches its SA_KILL (SPAM_TO_INBOX=0): one DATA reply covers all
  recipients, so a recipient whose own threshold is higher is never refused for another's.
  Past that point a KILL verdict is delivered like SA_TAG2 (Junk): never a bounce after
  accepting, never mail dropped.
- A choice of mailbox made before (a DMARC quarantine) is kept; spam only moves mail that
  would have gone to INBOX.
- A scorer that fails or overruns `SCORER_TIMEOUT` adds nothing (logged): the account's
  mail is judged on the other symbols rather than delayed or lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postroom.accounts.settingscache import AccountCache
from postroom.config import Config
from postroom.delivery.local import INBOX
from postroom.delivery.spamverdict import (
    SPAM_FIELDS,
    Judgement,
    Level,
    Thresholds,
    find_fields,
    judge,
    render_number,
    render_spam_fields,
    render_subject,
    render_tests,
    symbol_name,
)
from postroom.delivery.transit import ReceivedMessage, Symbol
from postroom.store.greylist_api import GreylistStore, SpamThresholds

log = logging.getLogger("postroom.filter")

JUNK = "Junk"
SEEN = "\\Seen"
SCORER_TIMEOUT = 10.0  # seconds for one account's scorers


class AccountScorer(Protocol):
    """A per-account signal (the learning filter): symbols for one local recipient.
    app.py passes the scorers in `Runtime.account_scorers`."""

    async def score(self, account_id: int, message: ReceivedMessage) -> tuple[Symbol, ...]: ...


@dataclass(frozen=True, slots=True)
class Marks:
    """What a verdict changes in the stored message; equal marks share one blob."""

    fields: bytes = b""  # X-Spam-* fields, placed above Received
    subject_prefix: str = ""  # SPAM_SUBJECT to put before the Subject, "" for none


@dataclass(frozen=True, slots=True)
class Filing:
    judgement: Judgement
    level: Level  # as delivered: KILL only when the whole message is refused
    marks: Marks
    mailbox: str = ""  # "" : wherever the recipient's mail was going
    flags: frozenset[str] = frozenset()


@dataclass(slots=True)
class FilingPlan:
    shared: Filing  # the global thresholds: the message as a whole, remote copies
    accounts: dict[int, Filing] = field(default_factory=dict)
    is_refused: bool = False

    def describe(self) -> str:
        """One log word list: `spam=<action> score=… tests=…`, then accounts that differ."""
        text = _describe(self.shared, self.is_refused)
        shared = self.shared.judgement
        others = sorted(f"{account_id}:{_describe(filing, False)}"
                        for account_id, filing in self.accounts.items()
                        if filing.judgement is not shared and filing.judgement != shared)
        return " ".join([text, *others])


def _describe(filing: Filing, is_refused: bool) -> str:
    action = "reject" if is_refused else _ACTIONS[filing.level]
    if filing.mailbox == JUNK and action != "reject":
        action = "junk"
    tests = render_tests(filing.judgement.symbols) or "none"
    return (f"spam={action} score={render_number(filing.judgement.score)} "
            f"tests={tests}")


_ACTIONS = {Level.HAM: "none", Level.TAG: "tag", Level.SPAM: "spam", Level.KILL: "spam"}


class SpamFiling:
    def __init__(self, config: Config, store: GreylistStore,
                 scorers: Sequence[AccountScorer] = ()) -> None:
        self._config = config
        self._store = store
        self._scorers = tuple(scorers)
        self.thresholds = Thresholds(config.sa_tag, config.sa_tag2, config.sa_kill)
        # `postroom filter set` runs in another process: seen within the cache's 5 s.
        self._thresholds: AccountCache[SpamThresholds | None] = AccountCache()

    async def plan(self, message: ReceivedMessage, symbols: Sequence[Symbol]) -> FilingPlan:
        """Every local account's filing and the message's; refused when all reach KILL."""
        shared_judgement = judge(symbols, self.thresholds)
        judgements: dict[int, Judgement] = {}
        for recipient in message.recipients:
            for target in recipient.local:
                if target.account_id not in judgements:
                    judgements[target.account_id] = await self._judge_account(
                        target.account_id, message, symbols)
        everyone = list(judgements.values())
        if not judgements or any(recipient.remote for recipient in message.recipients):
            everyone.append(shared_judgement)
        is_refused = (not self._config.spam_to_inbox
                      and all(j.level is Level.KILL for j in everyone))
        plan = FilingPlan(self._filing(shared_judgement), is_refused=is_refused)
        plan.accounts = {account_id: self._filing(judgement)
                         for account_id, judgement in judgements.items()}
        return plan

    async def _judge_account(self, account_id: int, message: ReceivedMessage,
                             symbols: Sequence[Symbol]) -> Judgement:
        own = await self._thresholds.get(account_id, self._store.get_spam_thresholds)
        thresholds = self.thresholds if own is None else self.thresholds.overridden(
            own.tag, own.tag2, own.kill)
        extra = await self._scored(account_id, message) if self._scorers else ()
        return judge((*symbols, *extra), thresholds)

    async def _scored(self, account_id: int, message: ReceivedMessage) -> tuple[Symbol, ...]:
        found: list[Symbol] = []
        for scorer in self._scorers:
            try:
                async with asyncio.timeout(SCORER_TIMEOUT):
                    found.extend(await scorer.score(account_id, message))
            except TimeoutError:
                log.warning("queue_id=%s scorer %s timed out for account %d: ignored",
                            message.queue_id, type(scorer).__name__, account_id)
            except Exception:
                log.exception("queue_id=%s scorer %s failed for account %d: ignored",
                              message.queue_id, type(scorer).__name__, account_id)
        return tuple(found)

    def _filing(self, judgement: Judgement) -> Filing:
        # Past the refusal decision a KILL verdict is delivered as spam (module docstring).
        level = min(judgement.level, Level.SPAM)
        config = self._config
        if level < Level.SPAM:
            return Filing(judgement, level, Marks(render_spam_fields(judgement)))
        marks = Marks(render_spam_fields(judgement), config.spam_subject)
        mailbox = JUNK if config.move_spam_to_junk else ""
        flags = frozenset({SEEN}) if config.mark_spam_as_read else frozenset()
        return Filing(judgement, Level(level), marks, mailbox, flags)


def chosen_mailbox(filing: Filing | None, mailbox: str) -> str:
    """Where a recipient's copy goes: spam moves only what would have gone to INBOX."""
    if filing is None or not filing.mailbox or mailbox != INBOX:
        return mailbox
    return filing.mailbox


__all__ = ["JUNK", "AccountScorer", "CopyLayout", "Filing", "FilingPlan", "Judgement", "Level",
           "Marks", "SpamFiling", "Symbol", "Thresholds", "chosen_mailbox", "copy_layout",
           "needs_header", "read_header", "symbol_name"]


# -- the stored form of a marked copy ------------------------------------------------------

_HEADER_READ_LIMIT = 1024 * 1024  # checks/headers.py MAX_HEADER_SECTION: no header is longer


@dataclass(frozen=True, slots=True)
class CopyLayout:
    """How one stored copy differs from the message as received: fields above Received,
    a line just below it (the rewritten Subject) and the byte ranges of the client's
    message left out (forged Authentication-Results, its Subject and X-Spam-* fields)."""

    above: bytes = b""
    below: bytes = b""
    skipped: tuple[tuple[int, int], ...] = ()


def needs_header(marks: Marks) -> bool:
    """Whether laying out a copy with these marks reads the client's header."""
    return bool(marks.fields or marks.subject_prefix)


def read_header(message: ReceivedMessage) -> bytes:
    """The start of the message, enough to hold its header (blocking for a spool file)."""
    if message.body is not None:
        return message.body[:_HEADER_READ_LIMIT]
    with message.spool_path.open("rb") as spool:
        return spool.read(_HEADER_READ_LIMIT)


def copy_layout(header: bytes, forged: Sequence[tuple[int, int]], marks: Marks) -> CopyLayout:
    """The layout of a copy with `marks` (`header`: see `read_header`)."""
    if not needs_header(marks):
        return CopyLayout(skipped=tuple(forged))
    names = [*SPAM_FIELDS] if marks.fields else []
    if marks.subject_prefix:
        names.append(b"subject")
    found = find_fields(header, names)
    cut = [(f.start, f.end) for f in found if f.name in SPAM_FIELDS or marks.subject_prefix]
    below = b""
    if marks.subject_prefix:
        subject = next((f for f in found if f.name == b"subject"), None)
        below = render_subject(marks.subject_prefix, subject)
    return CopyLayout(marks.fields, below, _merged(forged, cut))


def _merged(*ranges: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, non-overlapping [start, end) ranges (forged A-R and cut fields are whole
    fields each, so they never overlap, but duplicates are possible)."""
    result: list[tuple[int, int]] = []
    for start, end in sorted({pair for group in ranges for pair in group}):
        if result and start < result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return tuple(result)
