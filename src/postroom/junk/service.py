"""The per-account learning junk filter (issue 18, as mox does): training and scoring.

Owns `JunkFilter`, the training service on `Runtime.junk`, and `JunkScorer`, the scorer:
- `on_filed`: IMAP COPY/MOVE hook (imap/commands/copymove.py). Into Junk from another
  mailbox trains spam; out of Junk into a mailbox that is neither Junk nor Trash trains
  ham (Trash means "delete", not "this was good"). With RSPAMD_LEARN=1 rspamd is taught
  the same (`learners`).
- `note_sent`: what the account's user sends (checks/sentmail.py, on submission): its
  recipients become known-good senders.
- `JunkScorer.score`: the `AccountScorer` delivery calls per local account: BAYES_SPAM / BAYES_HAM
  from the classifier once the account trained `MIN_TRAINED` of each, and
  JUNK_KNOWN_SENDER for mail from a known-good sender whose SPF passed (an address
  alone is trivially forged).
- `train_message` for `postroom junk train`, `classify` and `stats`.

Invariants: a message is judged by its first `MAX_READ` bytes, tokenised off the event
loop unless it is small; a message's key is the SHA-256 of those bytes, so training the
same message twice counts once and re-judging it moves it between the counts; one IMAP
command trains at most `MAX_TRAIN_PER_COMMAND` messages (the rest is logged, not
trained); with ENABLE_JUNK_FILTER=0 nothing is counted or scored (rspamd may still learn).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postroom.accounts.settingscache import AccountCache
from postroom.checks.rspamd import RspamdLearner
from postroom.config import Config
from postroom.delivery.transit import ReceivedMessage, Symbol
from postroom.junk.classifier import spam_probability, token_probability
from postroom.junk.tokens import tokenize
from postroom.mailauth.spf import SpfVerdict
from postroom.store.api import Mailbox, SpecialUse, Store
from postroom.store.blobs import BlobStore
from postroom.store.junk_api import JunkTotals

log = logging.getLogger("postroom.junk")

MAX_READ = 1024 * 1024
ON_LOOP = 64 * 1024  # smaller messages are tokenised on the loop
MAX_TRAIN_PER_COMMAND = 500
MIN_TRAINED = 5  # of spam and of ham, before the classifier is listened to
TOKEN_CACHE = 16  # messages whose tokens are kept while delivery scores each account

# (probability at least, symbol, score): the first that applies.
SPAM_STEPS = ((0.99, 7.0), (0.9, 4.0), (0.75, 1.5))
HAM_STEPS = ((0.01, -3.0), (0.1, -1.5))
KNOWN_SENDER_SCORE = -4.0


class Learner(Protocol):
    """Another filter taught the same judgements (rspamd's /learnspam, /learnham)."""

    async def learn(self, message: bytes, *, is_spam: bool) -> bool: ...


def is_junk(mailbox: Mailbox) -> bool:
    return mailbox.special_use == SpecialUse.JUNK or mailbox.name.lower() == "junk"


def is_trash(mailbox: Mailbox) -> bool:
    return mailbox.special_use == SpecialUse.TRASH or mailbox.name.lower() == "trash"


def judgement(source: Mailbox, target: Mailbox) -> bool | None:
    """True: spam, False: ham, None: the move says nothing."""
    if is_junk(target) and not is_junk(source):
        return True
    if is_junk(source) and not is_junk(target) and not is_trash(target):
        return False
    return None


def symbols_for(probability: float, totals: JunkTotals) -> tuple[Symbol, ...]:
    if totals.spam < MIN_TRAINED or totals.ham < MIN_TRAINED:
        return ()
    detail = f"p={probability:.4f}"
    for threshold, score in SPAM_STEPS:
        if probability >= threshold:
            return (Symbol("BAYES_SPAM", score, detail),)
    for threshold, score in HAM_STEPS:
        if probability <= threshold:
            return (Symbol("BAYES_HAM", score, detail),)
    return ()


@dataclass(slots=True)
class JunkFilter:
    store: Store
    blobs: BlobStore
    is_enabled: bool = True  # ENABLE_JUNK_FILTER
    learners: tuple[Learner, ...] = ()

    # -- training ------------------------------------------------------------------------
    async def on_filed(self, account_id: int, source: Mailbox, target: Mailbox,
                       target_uids: Sequence[int]) -> int:
        """Train on messages the user copied or moved (now `target_uids` in `target`);
        returns how many were newly counted."""
        is_spam = judgement(source, target)
        if is_spam is None or not (self.is_enabled or self.learners):
            return 0
        try:
            return await self._train_filed(account_id, source, target, target_uids, is_spam)
        except Exception:  # the user's COPY/MOVE is done: a training failure is only logged
            log.exception("account %d: training on %s → %s failed", account_id, source.name,
                          target.name)
            return 0

    async def _train_filed(self, account_id: int, source: Mailbox, target: Mailbox,
                           target_uids: Sequence[int], is_spam: bool) -> int:
        if len(target_uids) > MAX_TRAIN_PER_COMMAND:
            log.info("account %d: %d messages filed at once, the first %d trained",
                     account_id, len(target_uids), MAX_TRAIN_PER_COMMAND)
        rows = await self.store.get_messages(target.id, target_uids[:MAX_TRAIN_PER_COMMAND])
        counted, learners = 0, self.learners
        for row in rows:
            try:
                data = await self.blobs.read(row.blob_id, limit=MAX_READ)
            except FileNotFoundError:
                continue  # expunged meanwhile
            if not await self._teach(learners, data, is_spam=is_spam):
                learners = ()  # one failure (logged) is enough: no FILTER_TIMEOUT per message
            counted += await self._count(account_id, data, is_spam=is_spam)
        log.info("account %d: trained %d of %d as %s (%s → %s)", account_id, counted,
                 len(rows), "spam" if is_spam else "ham", source.name, target.name)
        return counted

    async def train_message(self, account_id: int, data: bytes, *, is_spam: bool) -> bool:
        """Teach the learners and count the message; True when it was newly counted."""
        await self._teach(self.learners, data, is_spam=is_spam)
        return await self._count(account_id, data, is_spam=is_spam)

    @staticmethod
    async def _teach(learners: Sequence[Learner], data: bytes, *, is_spam: bool) -> bool:
        """True when every learner learnt it (a learner logs its own failure)."""
        results = [await learner.learn(data[:MAX_READ], is_spam=is_spam)
                   for learner in learners]
        return all(results)

    async def _count(self, account_id: int, data: bytes, *, is_spam: bool) -> bool:
        if not self.is_enabled:
            return False
        data = data[:MAX_READ]
        key = "sha256:" + hashlib.sha256(data).hexdigest()
        tokens = await tokenize_off_loop(data)
        trained = await self.store.junk_train(account_id, key, sorted(tokens), is_spam=is_spam)
        trained_totals(self.store).forget(account_id)  # the scorer rereads them
        return trained

    async def note_sent(self, account_id: int, recipients: Sequence[str]) -> None:
        if self.is_enabled:
            await self.store.junk_note_senders(account_id,
                                               [address.lower() for address in recipients])

    async def classify(self, account_id: int, data: bytes) -> tuple[float, JunkTotals]:
        """The spam probability of a message as raw bytes (for the CLI)."""
        totals = await self.store.junk_totals(account_id)
        tokens = await tokenize_off_loop(data[:MAX_READ])
        return await account_probability(self.store, account_id, tokens, totals), totals

    async def stats(self, account_id: int) -> JunkTotals:
        return await self.store.junk_stats(account_id)

    @classmethod
    def from_config(cls, config: Config, store: Store, blobs: BlobStore) -> JunkFilter | None:
        """The service ENABLE_JUNK_FILTER and RSPAMD_LEARN ask for (None: neither)."""
        learners: tuple[Learner, ...] = ()
        if config.enable_rspamd and config.rspamd_learn:
            learners = (RspamdLearner.from_config(config),)
        if not (config.enable_junk_filter or learners):
            return None
        return cls(store, blobs, config.enable_junk_filter, learners)


# Each account's training totals as the scorer last read them, per store: training here
# forgets them at once; training in another process (`postroom junk train`) is seen
# within the cache's ttl.
_TOTALS: weakref.WeakKeyDictionary[object, AccountCache[JunkTotals]] = (
    weakref.WeakKeyDictionary())


def trained_totals(store: Store) -> AccountCache[JunkTotals]:
    cache = _TOTALS.get(store)
    if cache is None:
        cache = _TOTALS[store] = AccountCache()
    return cache


@dataclass(slots=True)
class JunkScorer:
    """The `AccountScorer` of the learning filter (delivery/spamfiling.py asks it for
    each local account)."""

    store: Store
    _tokens: OrderedDict[str, frozenset[str]] = field(default_factory=OrderedDict)

    async def score(self, account_id: int, message: ReceivedMessage) -> tuple[Symbol, ...]:
        """The account's symbols for `message`."""
        symbols = await self._known_sender(account_id, message)
        totals = await trained_totals(self.store).get(account_id, self.store.junk_totals)
        if totals.spam < MIN_TRAINED or totals.ham < MIN_TRAINED:
            return symbols
        tokens = await self._message_tokens(message)
        probability = await account_probability(self.store, account_id, tokens, totals)
        return symbols + symbols_for(probability, totals)

    async def _known_sender(self, account_id: int, message: ReceivedMessage
                            ) -> tuple[Symbol, ...]:
        spf = message.spf
        if not message.sender or spf is None or spf.result != SpfVerdict.PASS:
            return ()
        sender = message.sender.lower()
        if sender in await self.store.junk_known_senders(account_id, [sender]):
            return (Symbol("JUNK_KNOWN_SENDER", KNOWN_SENDER_SCORE, sender),)
        return ()

    async def _message_tokens(self, message: ReceivedMessage) -> frozenset[str]:
        # One message is scored for each of its local accounts: tokenised once.
        key = f"{message.queue_id}/{message.size}"
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        if message.body is not None:
            data = message.body[:MAX_READ]
        else:
            data = await asyncio.to_thread(_read_spool, message)
        tokens = await tokenize_off_loop(data)
        self._tokens[key] = tokens
        while len(self._tokens) > TOKEN_CACHE:
            self._tokens.popitem(last=False)
        return tokens


async def account_probability(store: Store, account_id: int, tokens: frozenset[str],
                              totals: JunkTotals) -> float:
    counts = await store.junk_token_counts(account_id, sorted(tokens))
    return spam_probability(token_probability(count.spam, count.ham, totals.spam, totals.ham)
                            for count in counts.values())


async def tokenize_off_loop(data: bytes) -> frozenset[str]:
    if len(data) <= ON_LOOP:
        return tokenize(data)
    return await asyncio.to_thread(tokenize, data)


def _read_spool(message: ReceivedMessage) -> bytes:
    with message.open_body() as source:
        return source.read(MAX_READ)
