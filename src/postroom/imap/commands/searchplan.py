"""The prepared form of a SEARCH program (issue 25): what `prepare` makes of a parsed
search-key tree once per command, so judging a message does no normalising.

Owns the prepared leaves (`Spans`, `OneFlag`, `FlagSet`, `HeaderTest`, `TextTest`,
`IndexedText`: a TEXT/BODY key the full-text index answered) and `prepare`.
Invariants: UID and sequence sets are resolved once into sorted, disjoint UID spans
(membership O(log spans), never a set of UIDs) and the sets of one AND intersected
into one; the flag keys of one AND become one set test with flags upper-cased once;
header names are lower-cased and search strings case-folded once; repeated keys are
dropped (`normalise_criteria`). The result answers every message as the parsed tree would.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable
from dataclasses import dataclass

from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.search import (
    AndKey,
    BodyKey,
    FlagKey,
    HeaderKey,
    NotKey,
    OrKey,
    SearchKey,
    SequenceKey,
    TextKey,
    UidKey,
    normalise_criteria,
)


@dataclass(frozen=True, slots=True)
class Spans(SearchKey):
    """UIDs in sorted, disjoint, inclusive spans: membership costs O(log spans)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def of(cls, spans: Iterable[tuple[int, int]]) -> Spans:
        pairs = list(spans)
        return cls(tuple(low for low, _ in pairs), tuple(high for _, high in pairs))

    def has(self, uid: int) -> bool:
        index = bisect.bisect_right(self.starts, uid) - 1
        return index >= 0 and uid <= self.ends[index]

    def intersect(self, other: Spans) -> Spans:
        found: list[tuple[int, int]] = []
        i = j = 0
        while i < len(self.starts) and j < len(other.starts):
            low = max(self.starts[i], other.starts[j])
            high = min(self.ends[i], other.ends[j])
            if low <= high:
                found.append((low, high))
            if self.ends[i] < other.ends[j]:
                i += 1
            else:
                j += 1
        return Spans.of(found)


@dataclass(frozen=True, slots=True)
class OneFlag(SearchKey):
    upper: str  # the flag upper-cased: flags compare case-insensitively (RFC 9051 §2.3.2)
    is_set: bool


@dataclass(frozen=True, slots=True)
class FlagSet(SearchKey):
    """Several flag keys of one AND as one test: all of `required`, none of `forbidden`
    (upper-cased), two set operations per message however many keys."""

    required: frozenset[str]
    forbidden: frozenset[str]


@dataclass(frozen=True, slots=True)
class HeaderTest(SearchKey):
    name: str  # lower-cased
    folded: str  # the wanted text, case-folded; "" = the field is present
    is_address: bool = False  # BCC/CC/FROM/TO: tested against the parsed addresses


@dataclass(frozen=True, slots=True)
class TextTest(SearchKey):
    folded: str
    is_header_too: bool  # TEXT (header or body) rather than BODY


@dataclass(frozen=True, slots=True)
class IndexedText(SearchKey):
    """A `TextTest` the full-text index answered (issue 22): for a UID up to
    `indexed_uid` and not in `skipped` the answer is membership in `uids`, exactly what
    reading the message would give (the index holds the very texts `test` matches); any
    other message is read and judged by `test`."""

    test: TextTest
    indexed_uid: int
    uids: frozenset[int]
    skipped: frozenset[int]

    def answer(self, uid: int) -> bool | None:
        if uid > self.indexed_uid or uid in self.skipped:
            return None
        return uid in self.uids

    def covers(self, uids: list[int]) -> bool:
        """Whether every one of `uids` (ascending) is answered without reading it."""
        return not uids or (uids[-1] <= self.indexed_uid
                            and (not self.skipped or self.skipped.isdisjoint(uids)))


RECENT = "\\RECENT"


def prepare(view: SelectedMailbox, key: SearchKey, *, normalise: bool = True) -> SearchKey:
    """The program evaluation runs: leaves resolved against the view; with `normalise`
    also without repetition (`normalise_criteria`, before and after resolving, so
    `FROM bob FROM BOB` is one key) and with the UID sets of each AND intersected into
    one and its flag keys into one `FlagSet`. A message number beyond the mailbox
    matches nothing (issue 17, as Dovecot)."""
    if not normalise:
        return _prepare_leaves(view, key)
    prepared = normalise_criteria(_prepare_leaves(view, normalise_criteria(key)))
    return _merge_and_parts(prepared)


def _prepare_leaves(view: SelectedMailbox, key: SearchKey) -> SearchKey:
    if isinstance(key, AndKey):
        return AndKey(tuple(_prepare_leaves(view, part) for part in key.keys))
    if isinstance(key, OrKey):
        return OrKey(_prepare_leaves(view, key.left), _prepare_leaves(view, key.right))
    if isinstance(key, NotKey):
        return NotKey(_prepare_leaves(view, key.key))
    if isinstance(key, FlagKey):
        return OneFlag(key.flag.upper(), key.is_set)
    if isinstance(key, SequenceKey | UidKey):
        return _set_spans(view, key.sequence_set, is_uid=isinstance(key, UidKey))
    if isinstance(key, HeaderKey):
        return HeaderTest(key.field.lower(), key.value.casefold(), key.is_address)
    if isinstance(key, BodyKey | TextKey):
        return TextTest(key.text.casefold(), isinstance(key, TextKey))
    return key


def text_tests(key: SearchKey) -> set[TextTest]:
    """The TEXT/BODY leaves of a prepared program."""
    if isinstance(key, AndKey):
        return set().union(*(text_tests(part) for part in key.keys))
    if isinstance(key, OrKey):
        return text_tests(key.left) | text_tests(key.right)
    if isinstance(key, NotKey):
        return text_tests(key.key)
    return {key} if isinstance(key, TextTest) else set()


def with_index(key: SearchKey, answers: dict[TextTest, IndexedText]) -> SearchKey:
    """The program with each TEXT/BODY leaf the index answered replaced by its answer."""
    if isinstance(key, AndKey):
        return AndKey(tuple(with_index(part, answers) for part in key.keys))
    if isinstance(key, OrKey):
        return OrKey(with_index(key.left, answers), with_index(key.right, answers))
    if isinstance(key, NotKey):
        return NotKey(with_index(key.key, answers))
    return answers.get(key, key) if isinstance(key, TextTest) else key


def _set_spans(view: SelectedMailbox, sequence_set: SequenceSet, *, is_uid: bool) -> Spans:
    """The UIDs a set names, as spans, without listing them (`1:*` on a million messages
    is one span). Same answers as `SelectedMailbox.resolve`."""
    if sequence_set.is_saved:
        return _runs(sorted(view.resolve(sequence_set, is_uid=True)))
    uids = view.uids
    if is_uid:
        return Spans.of(sequence_set.resolve(uids[-1]) if uids else ())
    # Numbers past the mailbox's size match nothing (issue 17): clients search ranges
    # they knew before an expunge, and Dovecot answers OK with an empty result.
    spans = []
    for low, high in sequence_set.resolve(len(uids)) if uids else ():
        if low <= len(uids):
            spans.append((uids[low - 1], uids[min(high, len(uids)) - 1]))  # one UID span
    return Spans.of(spans)


def _runs(uids: list[int]) -> Spans:
    """Spans of sorted, distinct UIDs (neighbours share a span)."""
    spans: list[tuple[int, int]] = []
    for uid in uids:
        if spans and spans[-1][1] == uid - 1:
            spans[-1] = (spans[-1][0], uid)
        else:
            spans.append((uid, uid))
    return Spans.of(spans)


def _merge_and_parts(key: SearchKey) -> SearchKey:
    """Within each AND, the UID sets become one span list (intersected; placed first:
    the cheapest test) and the flag keys one `FlagSet`."""
    if isinstance(key, OrKey):
        return OrKey(_merge_and_parts(key.left), _merge_and_parts(key.right))
    if isinstance(key, NotKey):
        return NotKey(_merge_and_parts(key.key))
    if not isinstance(key, AndKey):
        return key
    parts = [_merge_and_parts(part) for part in key.keys]
    merged: list[SearchKey] = []
    sets = [part for part in parts if isinstance(part, Spans)]
    if sets:
        spans = functools.reduce(Spans.intersect, sets)
        if not spans.starts:
            return spans  # no UID is in every set: the AND matches nothing
        merged.append(spans)
    flags = [part for part in parts if isinstance(part, OneFlag) and part.upper != RECENT]
    if len(flags) > 1:
        merged.append(FlagSet(frozenset(f.upper for f in flags if f.is_set),
                             frozenset(f.upper for f in flags if not f.is_set)))  # fmt: skip
    elif flags:
        merged.append(flags[0])
    taken = {id(part) for part in flags}
    merged += [part for part in parts if not isinstance(part, Spans) and id(part) not in taken]
    return _conjunction(merged)


def _conjunction(parts: list[SearchKey]) -> SearchKey:
    return parts[0] if len(parts) == 1 else AndKey(tuple(parts))
