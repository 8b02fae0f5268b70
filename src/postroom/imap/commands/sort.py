"""SORT and UID SORT (RFC 5256 §3, RFC 5957 SORT=DISPLAY, RFC 5267 ESORT and
CONTEXT=SORT, RFC 9394 PARTIAL) and CANCELUPDATE (RFC 5267 §4.2).

Owns putting the messages a search program matches (`search.evaluate`) in the order of
the sort criteria, and the `* SORT` / ESEARCH answers.

Invariants:
- Sort keys (RFC 5256 §3): ARRIVAL the internal date, SIZE RFC822.SIZE, DATE the Date
  field in UTC or else the internal date, SUBJECT the base subject, FROM/TO/CC the first
  address's mailbox, DISPLAYFROM/DISPLAYTO its display name or else its address
  (RFC 5957 §3); text compared with i;ascii-casemap (RFC 5256 §2.2); REVERSE reverses
  only the key it precedes; messages equal on every key stay in mailbox (sequence
  number) order. Header facts come from the ENVELOPE stored at delivery
  (`mail/sortkeys.py`); the blob is read only for a message stored without one.
- The 100,000-message rule: matching runs in slices (search.py); the facts are read in
  batches of SORT_BATCH messages (one `get_metas` query and one thread hop each) and
  kept by blob id in a bounded cache (`FACTS_CACHE`; a blob never changes, so neither do
  its facts); the sort itself runs in a worker thread. The loop is never held for more
  than one batch's bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import IO, Any

from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.esearch import Answer, esearch_items, refuse_program
from postroom.imap.commands.resultcontext import (
    contexts_of,
    keep_updating,
    refuse_tag_reuse,
)
from postroom.imap.commands.search import evaluate, has_modseq_key
from postroom.imap.commands.spec import SELECTED, CommandSpec
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.commands.sort import CancelUpdate, Sort, SortCriterion
from postroom.imap.wire.search import render_esearch_data
from postroom.mail.envelope import render_envelope
from postroom.mail.headers import find_body_start
from postroom.mail.mimetree import MessageMeta
from postroom.mail.sortkeys import EMPTY_FACTS, SortFacts, sort_facts
from postroom.store.api import MessageRow, Store
from postroom.store.blobs import BlobOpener

SORT_BATCH = 1000  # messages whose facts one store query and one thread hop compute
ROWS_BATCH = 5000  # rows read per store query (made into MessageRows on the loop)
HEADER_READ = 64 * 1024


class FactsCache:
    """Sort facts by blob id, least recently used dropped past `max_entries`. Used on
    the loop only."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, SortFacts] = OrderedDict()

    def get(self, blob_id: str) -> SortFacts | None:
        facts = self._entries.get(blob_id)
        if facts is not None:
            self._entries.move_to_end(blob_id)
        return facts

    def put(self, blob_id: str, facts: SortFacts) -> None:
        self._entries[blob_id] = facts
        self._entries.move_to_end(blob_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


FACTS_CACHE = FactsCache(max_entries=250_000)  # ~100 bytes of keys each


# -- reading the facts --------------------------------------------------------------------------
def _facts_of_meta(text: str | None) -> SortFacts | None:
    if not text:
        return None
    try:
        document = json.loads(text)
        # Meta version 1 (mail/mimetree.py) keeps the ENVELOPE under "e": reading only it
        # is a fifth of the cost of rebuilding the whole MIME tree (`MessageMeta.from_json`).
        if document.get("v") == 1 and isinstance(document.get("e"), list):
            return sort_facts(document["e"])
        return sort_facts(MessageMeta.from_json(text).envelope)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # another meta version (or damaged): read the header instead


def _facts_of_blob(handle: IO[bytes]) -> SortFacts:
    with handle:
        data = handle.read(HEADER_READ)
    return sort_facts(render_envelope(data[: find_body_start(data)]))


def _compute_facts(rows: list[MessageRow], metas: dict[int, str],
                   open_blob: BlobOpener) -> dict[str, SortFacts]:  # fmt: skip
    """Runs in a worker thread: the facts of each row's blob, from its meta or header."""
    found: dict[str, SortFacts] = {}
    for row in rows:
        facts = _facts_of_meta(metas.get(row.uid))
        if facts is None:
            try:
                facts = _facts_of_blob(open_blob(row.blob_id))
            except FileNotFoundError:
                facts = EMPTY_FACTS  # expunged meanwhile: it drops out of the result
        found[row.blob_id] = facts
    return found


async def _get_metas(store: Store, mailbox_id: int, uids: list[int]) -> dict[int, str]:
    loader = getattr(store, "get_metas", None)
    if loader is None:
        return {}  # a Store written before issue 8 (test doubles): headers are read
    metas: dict[int, str] = await loader(mailbox_id, uids)
    return metas


async def load_facts(ctx: Context, view: SelectedMailbox, rows: list[MessageRow]
                     ) -> dict[str, SortFacts]:  # fmt: skip
    """Facts for every row's blob: from the cache, else in batches off the loop."""
    facts: dict[str, SortFacts] = {}
    missing: list[MessageRow] = []
    for index, row in enumerate(rows):
        if index % ROWS_BATCH == ROWS_BATCH - 1:
            await asyncio.sleep(0)
        cached = FACTS_CACHE.get(row.blob_id)
        if cached is not None:
            facts[row.blob_id] = cached
        elif row.blob_id not in facts:
            facts[row.blob_id] = EMPTY_FACTS  # placeholder: one read per blob
            missing.append(row)
    for start in range(0, len(missing), SORT_BATCH):
        batch = missing[start : start + SORT_BATCH]
        metas = await _get_metas(ctx.runtime.store, view.mailbox_id, [r.uid for r in batch])
        unread = [row.blob_id for row in batch if not metas.get(row.uid)]
        open_blob = await ctx.runtime.blobs.opener(unread)
        computed = await asyncio.to_thread(_compute_facts, batch, metas, open_blob)
        for blob_id, one in computed.items():
            FACTS_CACHE.put(blob_id, one)
        facts.update(computed)
    return facts


# -- sorting ------------------------------------------------------------------------------------
KeyOf = Callable[[MessageRow, SortFacts], Any]
_KEYS: dict[str, KeyOf] = {
    "ARRIVAL": lambda row, _f: row.internal_date.timestamp(),
    "SIZE": lambda row, _f: row.size,
    # RFC 5256 §3 DATE: the sent date, or the internal date when there is none.
    "DATE": lambda row, f: row.internal_date.timestamp() if f.sent is None else f.sent,
    "SUBJECT": lambda _r, f: f.subject,
    "FROM": lambda _r, f: f.from_mailbox,
    "TO": lambda _r, f: f.to_mailbox,
    "CC": lambda _r, f: f.cc_mailbox,
    "DISPLAYFROM": lambda _r, f: f.display_from,
    "DISPLAYTO": lambda _r, f: f.display_to,
}
_ROW_KEYS = frozenset({"ARRIVAL", "SIZE"})


def _sort(rows: list[MessageRow], facts: dict[str, SortFacts],
          criteria: Sequence[SortCriterion]) -> list[int]:  # fmt: skip
    """Runs in a worker thread. `rows` in mailbox order; one stable sort per key, last
    key first, so earlier keys decide and full ties keep mailbox order (RFC 5256 §3).
    Python's sort stays stable with reverse=True, which is what REVERSE needs."""
    entries = [(row, facts.get(row.blob_id, EMPTY_FACTS)) for row in rows]
    for criterion in reversed(criteria):
        key_of = _KEYS[criterion.key]
        entries.sort(key=lambda entry: key_of(*entry), reverse=criterion.is_reverse)
    return [row.uid for row, _ in entries]


def effective_criteria(criteria: Sequence[SortCriterion]) -> list[SortCriterion]:
    """The criteria that can decide anything: a key again after its first use (REVERSE
    or not) only compares messages that key already found equal. So at most nine sorts
    run, however long the list a client sends."""
    seen: set[str] = set()
    kept: list[SortCriterion] = []
    for criterion in criteria:
        if criterion.key not in seen:
            seen.add(criterion.key)
            kept.append(criterion)
    return kept


async def sort_uids(ctx: Context, view: SelectedMailbox, uids: list[int],
                    criteria: Sequence[SortCriterion]) -> list[int]:  # fmt: skip
    """`uids` (ascending) in the order of `criteria`."""
    criteria = effective_criteria(criteria)
    rows: list[MessageRow] = []
    for start in range(0, len(uids), ROWS_BATCH):  # the first time: 100,000 rows in parts
        part = uids[start : start + ROWS_BATCH]
        await view.load_rows(ctx.runtime.store, part)
        rows += [row for row in (view.rows.get(uid) for uid in part) if row is not None]
        await asyncio.sleep(0)  # rows already loaded never await: yield all the same
    facts: dict[str, SortFacts] = {}
    if any(criterion.key not in _ROW_KEYS for criterion in criteria):
        facts = await load_facts(ctx, view, rows)
    return await asyncio.to_thread(_sort, rows, facts, criteria)


# -- the commands -------------------------------------------------------------------------------
def render_sort(numbers: Sequence[int], modseq: int | None) -> bytes:
    """`* SORT 2 3 1` (RFC 5256 §4) with `(MODSEQ n)` after a MODSEQ key (RFC 7162 §3.1.5)."""
    out = ["* SORT", *(str(number) for number in numbers)]
    if modseq is not None:
        out.append(f"(MODSEQ {modseq})")
    return " ".join(out).encode("ascii") + b"\r\n"


async def handle_sort(ctx: Context, command: Sort) -> Done:
    view = ctx.require_selected()
    name = f"{'UID ' if command.is_uid else ''}SORT"
    refusal = refuse_program(ctx, command.charset, command.search)
    if refusal is not None:
        return refusal
    if command.return_options is not None and "UPDATE" in command.return_options:
        refuse_tag_reuse(ctx, view, command.tag)

    async def recompute(ctx: Context) -> list[int]:
        matched = await evaluate(ctx, view, key=command.search)
        return await sort_uids(ctx, view, matched, command.criteria)

    ordered = await recompute(ctx)
    has_modseq = has_modseq_key(command.search)
    if has_modseq:
        ctx.enable_condstore()  # RFC 7162 §3.1
    if command.return_options is None:
        numbers = ordered if command.is_uid else [view.seq_of(uid) for uid in ordered]
        modseq = max((view.modseqs[uid] for uid in ordered), default=None) if has_modseq \
            else None  # fmt: skip
        await ctx.write(render_sort(numbers, modseq))
        return Done(f"{name} completed")
    answer = Answer.of(view, ordered, is_uid=command.is_uid, options=command.return_options,
                       partial=command.partial)  # fmt: skip
    items = esearch_items(answer, view.modseqs if has_modseq else None)
    await ctx.write(render_esearch_data(command.tag, is_uid=command.is_uid, items=items))
    if "UPDATE" in answer.options:
        await keep_updating(ctx, view, command.tag, command.is_uid, ordered, recompute,
                            is_sorted=True)
    return Done(f"{name} completed")


async def handle_cancel_update(ctx: Context, command: CancelUpdate) -> Done:
    view = ctx.require_selected()
    contexts_of(ctx, view).cancel(command.tags)  # RFC 5267 §4.2: unknown tags are no error
    return Done("CANCELUPDATE completed")


SPECS = (
    CommandSpec(Sort, ("SORT", "UID SORT"), handle_sort, SELECTED, allows_expunge=False,
                capabilities=("SORT", "SORT=DISPLAY", "ESORT", "CONTEXT=SORT")),
    CommandSpec(CancelUpdate, ("CANCELUPDATE",), handle_cancel_update, SELECTED,
                needs_view_tables=False),
)  # fmt: skip
