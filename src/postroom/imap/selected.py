"""The selected-mailbox view of one IMAP session (RFC 9051 §2.3.1, §5.2, §7.5.1).

Owns the session's picture of the selected mailbox: the ordered UIDs that give sequence
numbers, the last-seen flags and MODSEQ of each message, the full rows (size, dates, blob)
of the messages a command needed, \\Recent for IMAP4rev1 clients, the SEARCHRES saved
result (RFC 5182), and the updates the client has not been told about yet.

Invariants:
- `uids` is strictly ascending; sequence number n is `uids[n - 1]`. A message another
  session expunged stays in `uids` (keeping numbers stable) until its EXPUNGE response
  is sent, which never happens during FETCH, STORE or SEARCH (RFC 9051 §7.5.1).
- Updates are found by re-reading the store — `list_messages(changed_since=baseline)`
  and `expunged_since(baseline)`, shared by the views of one mailbox that ask at once
  (imap/refreshshare.py) — never from the change-feed payload, so a missed or
  coalesced feed event loses nothing. The baseline is the mailbox's HIGHESTMODSEQ read
  *before* those queries, so a change racing the refresh is seen again next time (and
  de-duplicated), never skipped. The one exception: the session's own STORE, APPEND or
  EXPUNGE whose MODSEQ is exactly baseline + 1 (nothing else happened since) is applied to the
  view directly and moves the baseline (`_follow_own_write`); a feed event at or below
  the baseline (`covers`) then needs no re-read.
- SELECT costs one `select_summary` query: the UIDs, plus what the SELECT response needs
  (flag sets, first unseen), never per-message flags. `flags`/`modseqs` — what the
  client was told, per message — are loaded by `load_tables` (one `list_flag_columns`
  query, or a big mailbox's columns other sessions read at the same HIGHESTMODSEQ:
  imap/flagcache.py) before the first command that needs them; until then (`has_tables` False) they
  hold only what a refresh reported, and a change reported for a message the client
  knows nothing about is announced as a FETCH. A session that only IDLEs never loads
  them (issue 8: 100,000 messages, 10,000 IDLE sessions). Once loaded they hold every
  message in `uids`. Full rows are loaded by `load_rows` for the UIDs a command touches
  and kept; `rows` is a cache that is only ever replaced by fresher rows, never left
  behind `flags`/`modseqs`. Nothing here reads metadata or blobs.
- \\Recent comes from the claims of imap/recent.py, keyed by `Mailbox.object_id`; a
  read-only view (EXAMINE) shows the unclaimed messages as \\Recent and claims none.
  A refresh that finds another `object_id` under the view's row id ends the view
  (`MailboxGone`): the mailbox was deleted and the id reused.
- `keywords_shown` is what the last FLAGS response listed; any keyword entering the
  view's flags (refresh, own STORE/APPEND, load_tables) lands in `keywords_held`, and
  `take_keywords_update` announces FLAGS/PERMANENTFLAGS again before a FETCH shows it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from postroom.errors import BadSyntax, Refused
from postroom.imap.flagcache import flag_tables
from postroom.imap.recent import claim_recent, mailbox_key, unclaimed_recent
from postroom.imap.refreshshare import changes_since, current_mailbox
from postroom.imap.wire.grammar import SYSTEM_FLAGS, SequenceSet
from postroom.imap.wire.responses import Atom, render_flags, render_untagged_status
from postroom.store.api import (
    Expunged,
    FlagColumns,
    Mailbox,
    MessageRow,
    SelectSummary,
    Store,
)
from postroom.store.changes import ChangeFeed


class MailboxGone(Refused):
    """The selected mailbox was deleted (or renamed away) by someone else."""


def uids_within(uids: Iterable[int], sequence_set: SequenceSet, largest: int) -> list[int]:
    """The members of `uids` that a UID set names (`*` = `largest`; `$` names none of
    these: the saved result only holds UIDs still present)."""
    if sequence_set.is_saved:
        return []
    spans = sequence_set.resolve(largest)
    starts = [low for low, _ in spans]
    found = []
    for uid in uids:
        index = bisect.bisect_right(starts, uid) - 1
        if index >= 0 and uid <= spans[index][1]:
            found.append(uid)
    return found


@dataclass(frozen=True, slots=True)
class ExpungeUpdate:
    seq: int
    uid: int


@dataclass(frozen=True, slots=True)
class ExistsUpdate:
    count: int
    recent: int


@dataclass(frozen=True, slots=True)
class FlagsUpdate:
    seq: int
    uid: int
    flags: tuple[str, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class KeywordsUpdate:
    """The mailbox's FLAGS grew by a keyword the client was not told of: FLAGS and
    PERMANENTFLAGS go out again before any FETCH shows it (RFC 3501 §7.2.6, §7.1)."""

    flags: tuple[str, ...]
    permanent_flags: tuple[str, ...]


Update = ExpungeUpdate | ExistsUpdate | FlagsUpdate | KeywordsUpdate

_STORABLE = tuple(flag for flag in SYSTEM_FLAGS if flag != "\\Recent")


def keywords_of_sets(flag_sets: Iterable[frozenset[str]]) -> frozenset[str]:
    """The keywords (not system flags) among some flag sets."""
    return frozenset(flag for flags in flag_sets for flag in flags if not flag.startswith("\\"))


def mailbox_flags(keywords: Iterable[str], *, is_read_only: bool,
                  keyword_limit: int) -> KeywordsUpdate:  # fmt: skip
    """FLAGS and PERMANENTFLAGS for a mailbox whose messages use `keywords`.

    RFC 9051 §7.1: `\\*` says new keywords may be created; not once the mailbox uses
    MAX_KEYWORDS_PER_MAILBOX (`keyword_limit`, 0: no limit) of them (issue 25: a STORE
    of another is NO [LIMIT]). A read-only mailbox has no permanent flags."""
    words = sorted(keywords)
    flags = (*_STORABLE, *words)
    may_create = not keyword_limit or len(words) < keyword_limit
    permanent = () if is_read_only else (*flags, *(("\\*",) if may_create else ()))
    return KeywordsUpdate(flags, permanent)


def render_mailbox_flags(update: KeywordsUpdate) -> bytes:
    """`* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` (RFC 9051 §7.3.5, §7.1)."""
    return render_flags(list(update.flags)) + render_untagged_status(
        "OK", "flags allowed", "PERMANENTFLAGS",
        ([Atom(flag) for flag in update.permanent_flags],))


@dataclass(slots=True)
class SelectedMailbox:
    """See the module docstring. Built by `open_selected`."""

    mailbox: Mailbox
    is_read_only: bool
    uids: list[int]
    baseline: int
    flags: dict[int, frozenset[str]] = field(default_factory=dict)  # see has_tables
    modseqs: dict[int, int] = field(default_factory=dict)
    has_tables: bool = False  # flags/modseqs hold every message (load_tables ran)
    rows: dict[int, MessageRow] = field(default_factory=dict)  # loaded on demand
    recent: set[int] = field(default_factory=set)
    saved: tuple[int, ...] = ()  # RFC 5182 SEARCHRES, as UIDs
    announced: int = 0  # the EXISTS count the client knows
    announced_recent: int = 0
    pending_expunge: set[int] = field(default_factory=set)
    pending_flags: set[int] = field(default_factory=set)
    keyword_limit: int = 0  # MAX_KEYWORDS_PER_MAILBOX, for PERMANENTFLAGS' `\\*`
    keywords_shown: frozenset[str] = frozenset()  # in the last FLAGS response sent
    keywords_held: set[str] = field(default_factory=set)  # in any flags the view holds

    @property
    def mailbox_id(self) -> int:
        return self.mailbox.id

    @property
    def uidvalidity(self) -> int:
        return self.mailbox.uidvalidity

    @property
    def count(self) -> int:
        return len(self.uids)

    @property
    def uidnext(self) -> int:
        last = self.uids[-1] + 1 if self.uids else 1
        return max(self.mailbox.uidnext, last)

    def seq_of(self, uid: int) -> int:
        """Sequence number of `uid` (1-based); 0 when it is not in the view."""
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return 0

    def contains(self, uid: int) -> bool:
        """Whether `uid` is in the view (an expunge not yet announced keeps it there)."""
        if self.has_tables:
            return uid in self.modseqs
        return self.seq_of(uid) != 0

    async def load_tables(self, store: Store) -> None:
        """Fill `flags`/`modseqs` for every message in the view; once per view.

        They are read now, after SELECT: a message changed since the baseline is queued as
        a FETCH update (the client hears of it as from a refresh); one expunged since keeps
        what a refresh told (else no flags) until its EXPUNGE goes out; one added since is
        left to refresh(), which announces it with EXISTS.
        """
        if self.has_tables:
            return
        tables = await flag_tables(store, self.mailbox, self.baseline,
                                   lambda: _flag_columns(store, self.mailbox_id))
        flags, modseqs = tables.flags.copy(), tables.modseqs.copy()  # shared: copied
        flag_sets = tables.flag_sets
        last = self.uids[-1] if self.uids else 0
        for uid in tables.uids[bisect.bisect_right(tables.uids, last) :]:
            del flags[uid], modseqs[uid]
        if len(flags) != len(tables.uids) or len(flags) != len(self.uids):
            for uid in self.uids:
                if uid not in flags:
                    flags[uid] = self.flags.get(uid, frozenset())
                    modseqs[uid] = self.modseqs.get(uid, self.baseline)
            flag_sets = frozenset(flags.values())
        if tables.top_modseq > self.baseline:  # else nothing changed since SELECT
            for uid, modseq in modseqs.items():
                if modseq > self.baseline and uid not in self.pending_expunge:
                    self.pending_flags.add(uid)
        self.flags, self.modseqs, self.has_tables = flags, modseqs, True
        self._note_keywords(flag_sets)  # few distinct sets, hashes cached
        for uid in [uid for uid, row in self.rows.items() if row.modseq != modseqs.get(uid)]:
            del self.rows[uid]  # a row is never left behind flags/modseqs

    async def load_rows(self, store: Store, uids: Iterable[int]) -> None:
        """Make `rows[uid]` available for these UIDs (one query for the missing ones).
        A UID expunged meanwhile gets no row: callers skip it."""
        await self.load_tables(store)
        missing = [uid for uid in uids if uid not in self.rows and uid in self.modseqs]
        if not missing:
            return
        for row in await _get_messages(store, self.mailbox_id, missing):
            if row.uid in self.modseqs and row.uid not in self.rows:
                # Flags and MODSEQ stay as the client was told until the next refresh.
                self.rows[row.uid] = replace(row, flags=self.flags[row.uid],
                                             modseq=self.modseqs[row.uid])

    def _remember(self, row: MessageRow) -> None:
        self.flags[row.uid] = row.flags
        self.modseqs[row.uid] = row.modseq
        self.rows[row.uid] = row
        self._note_keywords((row.flags,))

    def _note_keywords(self, flag_sets: Iterable[frozenset[str]]) -> None:
        self.keywords_held.update(keywords_of_sets(flag_sets))

    def take_keywords_update(self) -> KeywordsUpdate | None:
        """FLAGS and PERMANENTFLAGS to send when the view holds a keyword the last FLAGS
        response did not list (issue 17), else None. Keywords are never taken back out:
        a FLAGS list may name flags no message carries any more."""
        if self.keywords_held <= self.keywords_shown:
            return None
        self.keywords_shown = frozenset(self.keywords_held)
        return mailbox_flags(self.keywords_shown, is_read_only=self.is_read_only,
                             keyword_limit=self.keyword_limit)  # fmt: skip

    def flags_of(self, uid: int, *, is_rev1: bool) -> tuple[str, ...]:
        """FLAGS as shown to the client: stored flags, plus \\Recent for rev1 clients."""
        known = self.flags.get(uid)
        flags = sorted(known) if known is not None else []
        if is_rev1 and uid in self.recent:
            flags.append("\\Recent")
        return tuple(flags)

    # -- sequence sets ------------------------------------------------------------------
    def resolve(self, sequence_set: SequenceSet, *, is_uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending (RFC 9051 §6.4.8, RFC 5182 `$`).

        UID sets name only existing messages (gaps are fine); message sequence numbers
        beyond the mailbox size are an error.
        """
        if sequence_set.is_saved:
            return [uid for uid in self.saved if self.contains(uid)]
        if is_uid:
            largest = self.uids[-1] if self.uids else 0
            if largest == 0:
                return []
            found: list[int] = []
            for low, high in sequence_set.resolve(largest):
                start = bisect.bisect_left(self.uids, low)
                end = bisect.bisect_right(self.uids, high)
                found.extend(self.uids[start:end])
            return found
        return self._resolve_sequence_numbers(sequence_set)

    def _resolve_sequence_numbers(self, sequence_set: SequenceSet) -> list[int]:
        count = len(self.uids)
        if count == 0:
            if sequence_set.uses_star:
                return []
            raise BadSyntax("invalid message sequence number: the mailbox is empty")
        found: list[int] = []
        for low, high in sequence_set.resolve(count):
            if high > count:
                raise BadSyntax(f"invalid message sequence number {high}")
            found.extend(self.uids[low - 1 : high])
        return found

    # -- updates ------------------------------------------------------------------------
    async def refresh(self, store: Store, feed: ChangeFeed | None = None) -> None:
        """Re-read the store and queue what changed since the baseline. With the `feed`
        whose change made the view stale, the mailbox row may be one read since that
        change for every session (refreshshare.current_mailbox); without, it is read."""
        mailbox = await (store.get_mailbox_by_id(self.mailbox_id) if feed is None
                         else current_mailbox(store, feed, self.mailbox_id))
        # A different object_id: deleted, and the row id handed to a new mailbox (SQLite).
        if mailbox is None or mailbox_key(mailbox) != mailbox_key(self.mailbox):
            raise MailboxGone("the selected mailbox was deleted", code="NONEXISTENT")
        # Lower: a shared row read before this view's own last read, and after the
        # change that made it stale; the view has seen all of it already.
        if mailbox.highest_modseq <= self.baseline:
            return
        news = await changes_since(store, mailbox, self.baseline)  # shared with other views
        self.mailbox = mailbox
        self.baseline = mailbox.highest_modseq
        self._note_changed(news.changed, store)
        for uid in news.expunged:
            if self.contains(uid):
                self.pending_expunge.add(uid)
                self.pending_flags.discard(uid)

    def _note_changed(self, changed: list[MessageRow], store: Store) -> None:
        last = self.uids[-1] if self.uids else 0
        new_uids: list[int] = []
        for row in changed:
            if row.uid > last:
                new_uids.append(row.uid)
                self._remember(row)
                continue
            if not self.contains(row.uid):
                continue  # expunged, and the client has been told
            # None: the tables are not loaded, the client was never told this message's
            # flags — announcing the change is always right.
            known = self.flags.get(row.uid)
            if known != row.flags and row.uid not in self.pending_expunge:
                self.pending_flags.add(row.uid)
            self._remember(row)
        if new_uids:
            self.uids.extend(new_uids)
            self.recent |= self._recent_among(store, new_uids)

    def note_stored(self, rows: Sequence[MessageRow]) -> bool:
        """Our own STORE changed these rows; the client hears about them from STORE.
        Returns whether the view is current after it (see `_follow_own_write`)."""
        is_known = True
        for row in rows:
            if self.contains(row.uid):
                self._remember(row)
                self.pending_flags.discard(row.uid)
            else:
                is_known = False
        modseqs = {row.modseq for row in rows}
        return is_known and len(modseqs) == 1 and self._follow_own_write(modseqs.pop())

    def note_appended(self, row: MessageRow, store: Store) -> bool:
        """Our own APPEND added `row` to this mailbox. Returns whether the view took it in
        (then the next `take_updates` announces it with EXISTS, as a refresh would); if not,
        the caller marks the view stale and a refresh reads it."""
        if self.uids and row.uid <= self.uids[-1]:
            return False
        if not self._follow_own_write(row.modseq, uidnext=row.uid + 1):
            return False
        self.uids.append(row.uid)
        self.flags[row.uid] = row.flags
        self.modseqs[row.uid] = row.modseq
        self._note_keywords((row.flags,))
        self.recent |= self._recent_among(store, [row.uid])
        return True

    def _recent_among(self, store: Store, uids: Sequence[int]) -> set[int]:
        """\\Recent for new `uids`: claimed by a read-write view, only looked at by a
        read-only one (EXAMINE), which leaves them \\Recent for the next SELECT."""
        if self.is_read_only:
            return unclaimed_recent(store, self.mailbox, uids)
        return claim_recent(store, self.mailbox, uids)

    def _follow_own_write(self, modseq: int, *, uidnext: int = 0) -> bool:
        """Our own write committed at `modseq` and the caller applied it to the view.

        When `modseq` is the very next one after the baseline, nothing else changed the
        mailbox in between: every write takes its own MODSEQ under the mailbox row's lock
        (store/sqlite.py, store/postgres.py), so the view is now what a refresh at `modseq`
        would make it. The baseline moves there without re-reading (issue 8), and the
        write's own change-feed event is skipped (`covers`). Otherwise the baseline stays
        and the next refresh reads what happened in between (our write again, harmlessly).
        """
        if modseq != self.baseline + 1:
            return False
        self.baseline = modseq
        self.mailbox = replace(self.mailbox, highest_modseq=modseq,
                               uidnext=max(self.mailbox.uidnext, uidnext))  # fmt: skip
        return True

    def covers(self, modseq: int) -> bool:
        """Whether a change-feed event at `modseq` (0: not known) is already in the view."""
        return 0 < modseq <= self.baseline

    def note_expunged(self, uids: Iterable[int]) -> bool:
        """Our own EXPUNGE/MOVE removed these; announce with the next `take_updates`.
        Returns whether every one of them was in the view."""
        is_known = True
        for uid in uids:
            if self.contains(uid):
                self.pending_expunge.add(uid)
                self.pending_flags.discard(uid)
            else:
                is_known = False
        return is_known

    def note_own_expunge(self, expunged: Expunged) -> bool:
        """Our own EXPUNGE removed `expunged.uids` at `expunged.modseq`. Like a refresh,
        it queues their EXPUNGE responses (sequence numbers are worked out against the
        client's view when they go out, `take_updates`); when the MODSEQ is baseline + 1
        the view is then current without a re-read (`_follow_own_write`)."""
        is_known = self.note_expunged(expunged.uids)
        return is_known and bool(expunged.uids) and self._follow_own_write(expunged.modseq)

    def take_updates(self, *, may_expunge: bool, is_rev1: bool) -> list[Update]:
        """Updates to send now, in order: EXPUNGE, then FLAGS (+PERMANENTFLAGS) when a
        keyword is new, then EXISTS (+RECENT), then FETCH FLAGS."""
        updates: list[Update] = []
        if may_expunge and self.pending_expunge:
            updates.extend(self._apply_expunges())
        keywords = self.take_keywords_update()
        if keywords is not None:  # before the EXISTS and FETCH that may show them
            updates.append(keywords)
        if self.count != self.announced or (is_rev1 and len(self.recent) != self.announced_recent):
            if self.count > self.announced or is_rev1:
                updates.append(ExistsUpdate(self.count, len(self.recent)))
            self.announced = self.count
            self.announced_recent = len(self.recent)
        for uid in sorted(self.pending_flags):
            seq = self.seq_of(uid)
            if seq and seq <= self.announced:
                flags = self.flags_of(uid, is_rev1=is_rev1)
                updates.append(FlagsUpdate(seq, uid, flags, self.modseqs[uid]))
        self.pending_flags.clear()
        return updates

    def _apply_expunges(self) -> list[Update]:
        # Descending order: each EXPUNGE number stays right without renumbering the rest.
        positions = sorted(((self.seq_of(uid), uid) for uid in self.pending_expunge),
                           reverse=True)  # fmt: skip
        updates: list[Update] = [ExpungeUpdate(seq, uid) for seq, uid in positions if seq]
        gone = self.pending_expunge
        self.uids = [uid for uid in self.uids if uid not in gone]
        for uid in gone:
            self.rows.pop(uid, None)
            self.flags.pop(uid, None)
            self.modseqs.pop(uid, None)
        self.recent -= gone
        self.saved = tuple(uid for uid in self.saved if uid not in gone)
        self.announced -= len(updates)
        self.announced_recent = min(self.announced_recent, len(self.recent))
        self.pending_expunge = set()
        return updates


async def open_selected(store: Store, mailbox: Mailbox, *, is_read_only: bool) -> SelectedMailbox:
    """The view of a mailbox just selected, from one select_summary query."""
    summary = await read_summary(store, mailbox.id)
    return selected_from_summary(store, mailbox, summary, is_read_only=is_read_only)


def selected_from_summary(store: Store, mailbox: Mailbox, summary: SelectSummary, *,
                          is_read_only: bool, keyword_limit: int = 0) -> SelectedMailbox:
    """The view, announced as `summary` says (RFC 9051 §6.3.2); `mailbox` (with its
    HIGHESTMODSEQ) must have been read before `summary`: anything committed after it is
    picked up by refresh(). `keyword_limit` is MAX_KEYWORDS_PER_MAILBOX (0: none), which
    decides whether PERMANENTFLAGS offers `\\*`."""
    view = SelectedMailbox(mailbox=mailbox, is_read_only=is_read_only, uids=summary.uids,
                           baseline=mailbox.highest_modseq,
                           keyword_limit=keyword_limit)  # fmt: skip
    view.recent = view._recent_among(store, summary.uids)
    view.keywords_shown = keywords_of_sets(summary.flag_sets)
    view.keywords_held = set(view.keywords_shown)
    view.announced = len(summary.uids)
    view.announced_recent = len(view.recent)
    return view


async def read_summary(store: Store, mailbox_id: int) -> SelectSummary:
    loader = getattr(store, "select_summary", None)
    if loader is not None:
        summary: SelectSummary = await loader(mailbox_id)
        return summary
    # A Store written before issue 8 (test doubles): the same answer from the columns.
    columns = await _flag_columns(store, mailbox_id)
    firsts: dict[frozenset[str], int] = {}
    for uid, flags in zip(columns.uids, columns.flags, strict=True):
        firsts.setdefault(flags, uid)
    unseen = [uid for flags, uid in firsts.items() if "\\Seen" not in flags]
    return SelectSummary(columns.uids, list(firsts), min(unseen, default=None))


async def _flag_columns(store: Store, mailbox_id: int) -> FlagColumns:
    loader = getattr(store, "list_flag_columns", None)
    if loader is not None:
        columns: FlagColumns = await loader(mailbox_id)
        return columns
    # A Store written before issue 8 (test doubles): the same columns from full rows.
    rows = await store.list_messages(mailbox_id)
    return FlagColumns([r.uid for r in rows], [r.modseq for r in rows], [r.flags for r in rows])


async def _get_messages(store: Store, mailbox_id: int, uids: list[int]) -> list[MessageRow]:
    loader = getattr(store, "get_messages", None)
    if loader is not None:
        rows: list[MessageRow] = await loader(mailbox_id, uids)
        return rows
    wanted = set(uids)
    return [row for row in await store.list_messages(mailbox_id) if row.uid in wanted]
