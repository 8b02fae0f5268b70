"""SEARCH and UID SEARCH (RFC 9051 §6.4.4; RFC 4731 ESEARCH; RFC 5182 SEARCHRES;
RFC 3501 §6.4.4 for IMAP4rev1's untagged SEARCH).

Owns evaluating a search-key tree (from `imap/wire/search.py`) against the selected view.

Invariants:
- Each message is first judged from its row alone (flags, size, dates, UID, sequence
  number) with three-valued logic; only when the answer depends on the header or body is
  the blob read — the header alone (the first 64 KiB) when no body key is involved.
- Body keys find the text parts from the MIME tree stored at delivery (`get_metas`, one
  query per batch), never by parsing the message again; a message stored without it
  (or with a meta version this code does not read) is parsed, with the same result.
- Text matching is case-insensitive substring matching on decoded text: RFC 2047 words
  in headers, transfer encodings and charsets in bodies (RFC 9051 §6.4.4), the texts of
  mail/searchtext.py. TEXT/BODY strings of 3+ characters are first put to the full-text
  index (issue 22, `_use_index`): for the messages it holds it answers with no message
  read, the same answer by construction; the others are read as before.
  BCC/CC/FROM/TO match the field's addresses as parsed (`rendered_addresses`), so a
  comment inside an address is no part of it (issue 17).
- The answer (ESEARCH items, SAVE, MODSEQ, PARTIAL) is esearch.py's; RETURN (UPDATE)
  keeps the result live through resultcontext.py (RFC 5267 CONTEXT=SEARCH).
- SENT* dates use the Date: header's own date; BEFORE/ON/SINCE the internal date's own
  date, both disregarding time and timezone (RFC 9051 §6.4.4).
- Loaded content is kept by blob id in a bounded, process-wide cache (`CONTENT_CACHE`):
  blobs never change, so an entry can be old but never wrong. A client that searches
  its mailbox again (every few minutes, for each typed letter) then costs no file reads
  and no decoding (issue 8: SEARCH TEXT was a third of the logged-in IMAP mix).
- Cost is bounded per command (issue 25): a program of more than MAX_SEARCH_KEYS keys
  and operators is refused with NO [LIMIT] before any work. The rest is `prepare`d
  once (searchplan.py): repeated keys dropped, the UID/sequence sets of an AND intersected into one
  span list (membership O(log ranges), never a set of UIDs), the flag keys of an AND
  merged into one set test, flags upper-cased once per distinct flag set, search
  strings case-folded once, each header split into fields once per message however
  many header keys. Judging from rows runs on the loop in slices of SLICE_WORK key
  tests with a yield between them; judging content runs in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.esearch import Answer, esearch_items, refuse_program, saved_result
from postroom.imap.commands.objectid import email_id
from postroom.imap.commands.resultcontext import keep_updating, refuse_tag_reuse
from postroom.imap.commands.searchplan import (
    RECENT,
    FlagSet,
    HeaderTest,
    IndexedText,
    OneFlag,
    Spans,
    TextTest,
    prepare,
    text_tests,
    with_index,
)
from postroom.imap.commands.spec import SELECTED, CommandSpec
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.commands.search import Search
from postroom.imap.wire.responses import render_search
from postroom.imap.wire.search import (
    AllKey,
    AndKey,
    DateField,
    DateKey,
    DateOp,
    ModSeqKey,
    NotKey,
    ObjectIdKey,
    OrKey,
    SearchKey,
    SizeKey,
    WithinKey,
    render_esearch_data,
)
from postroom.mail.headers import (
    decode_words,
    find_body_start,
    header_values,
    parse_header_fields,
    unfold,
)
from postroom.mail.originators import Group, Mailbox, Unparsable, parse_addresses
from postroom.mail.searchtext import header_text, message_texts
from postroom.store.api import MessageRow, Store
from postroom.store.blobs import BlobOpener

HEADER_READ = 64 * 1024
SEARCH_BATCH = 256  # messages read and judged per worker-thread call
SLICE_WORK = 20_000  # key tests judged on the loop between two yields (~5-10 ms)
SLICE_MESSAGES = 1000  # and at most this many messages


_UNSET: Any = object()


@dataclass(slots=True)
class _Content:
    """What header/body keys look at; None when not loaded. The case-folded texts, the
    header's fields by name and the sent date are computed at the first search that needs
    them and kept with the content (so 1,000 HEADER keys parse a header once, issue 25)."""

    header: bytes | None = None
    body_text: str | None = None
    _folded_body: str | None = None
    _folded_header: str | None = None
    _fields: dict[str, list[bytes]] | None = None
    _folded_values: dict[str, tuple[str, ...]] | None = None
    _folded_addresses: dict[str, tuple[str, ...]] | None = None
    _sent: Any = _UNSET

    def folded_body(self) -> str:
        if self._folded_body is None:
            self._folded_body = (self.body_text or "").casefold()
        return self._folded_body

    def folded_header(self) -> str:
        if self._folded_header is None:
            self._folded_header = header_text(self.header or b"").casefold()
        return self._folded_header

    def has_field(self, name: str) -> bool:
        """`name` lower-cased."""
        return name in self._raw_fields()

    def folded_values(self, name: str) -> tuple[str, ...]:
        """Unfolded, RFC 2047-decoded, case-folded values of the fields called `name`
        (lower-cased), decoded once per name."""
        if self._folded_values is None:
            self._folded_values = {}
        values = self._folded_values.get(name)
        if values is None:
            values = tuple(decode_words(unfold(raw)).casefold()
                           for raw in self._raw_fields().get(name, ()))  # fmt: skip
            self._folded_values[name] = values
        return values

    def folded_addresses(self, name: str) -> tuple[str, ...]:
        """The fields called `name` (lower-cased) as their addresses read
        (`rendered_addresses`), case-folded, once per name."""
        if self._folded_addresses is None:
            self._folded_addresses = {}
        values = self._folded_addresses.get(name)
        if values is None:
            values = tuple(rendered_addresses(unfold(raw)).casefold()
                           for raw in self._raw_fields().get(name, ()))  # fmt: skip
            self._folded_addresses[name] = values
        return values

    def sent_date(self) -> dt.date | None:
        if self._sent is _UNSET:
            self._sent = _sent_date(self.header or b"")
        sent: dt.date | None = self._sent
        return sent

    def _raw_fields(self) -> dict[str, list[bytes]]:
        if self._fields is None:
            fields: dict[str, list[bytes]] = {}
            for one in parse_header_fields(self.header or b""):
                fields.setdefault(one.name.lower(), []).append(one.value)
            self._fields = fields
        return self._fields

    @property
    def cost(self) -> int:
        """Characters held, counting the folded copies a search may add."""
        return 2 * (len(self.header or b"") + len(self.body_text or ""))


class ContentCache:
    """Search content by blob id, least recently used dropped past `max_chars`. Used by
    the worker threads that load content, hence the lock."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._entries: OrderedDict[str, _Content] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, blob_id: str, with_body: bool) -> _Content | None:
        with self._lock:
            content = self._entries.get(blob_id)
            if content is None or (with_body and content.body_text is None):
                return None
            self._entries.move_to_end(blob_id)
            return content

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chars = 0

    def holds(self, blob_id: str) -> bool:
        with self._lock:
            return blob_id in self._entries

    def put(self, blob_id: str, content: _Content) -> None:
        if content.cost > self.max_chars // 8:
            return  # one huge message would push out everything else
        with self._lock:
            old = self._entries.pop(blob_id, None)
            self._chars += content.cost - (old.cost if old is not None else 0)
            self._entries[blob_id] = content
            while self._chars > self.max_chars:
                _, dropped = self._entries.popitem(last=False)
                self._chars -= dropped.cost


CONTENT_CACHE = ContentCache(max_chars=64 * 1024 * 1024)


@dataclass(slots=True)
class _Evaluator:
    view: SelectedMailbox
    now: dt.datetime
    upper_flags: dict[frozenset[str], frozenset[str]] = field(default_factory=dict)

    def judge(self, key: SearchKey, row: MessageRow, content: _Content) -> bool | None:
        """True/False, or None when the answer needs content not loaded yet. Runs on a
        prepared program (`prepare`)."""
        if isinstance(key, AndKey):
            is_unknown = False
            for part in key.keys:
                verdict = self.judge(part, row, content)
                if verdict is False:
                    return False
                is_unknown = is_unknown or verdict is None
            return None if is_unknown else True
        if isinstance(key, OrKey):
            left = self.judge(key.left, row, content)
            if left is True:
                return True
            right = self.judge(key.right, row, content)
            if right is True:
                return True
            return None if None in (left, right) else False
        if isinstance(key, NotKey):
            inner = self.judge(key.key, row, content)
            return None if inner is None else not inner
        return self._leaf(key, row, content)

    def _leaf(self, key: SearchKey, row: MessageRow, content: _Content) -> bool | None:
        if isinstance(key, OneFlag):
            return self._has_flag(row, key.upper) == key.is_set
        if isinstance(key, Spans):
            return key.has(row.uid)
        if isinstance(key, FlagSet):
            flags = self._upper(row.flags)
            return key.required <= flags and key.forbidden.isdisjoint(flags)
        if isinstance(key, AllKey):
            return True
        if isinstance(key, SizeKey):
            return row.size > key.size if key.is_larger else row.size < key.size
        if isinstance(key, ModSeqKey):
            return row.modseq >= key.modseq
        if isinstance(key, WithinKey):
            age = (self.now - row.internal_date).total_seconds()
            return age >= key.seconds if key.is_older else age < key.seconds
        if isinstance(key, DateKey) and key.field is DateField.INTERNAL:
            return _compare_date(row.internal_date.date(), key)
        if isinstance(key, ObjectIdKey):  # RFC 8474 §6: THREADID is NIL here, never equal
            return not key.is_thread and key.value == email_id(row.blob_id)
        if isinstance(key, DateKey) and key.field is DateField.SAVED:  # RFC 8514 §3
            return row.saved_date is not None and _compare_date(row.saved_date.date(), key)
        if isinstance(key, IndexedText):  # the full-text index's answer, else read it
            answer = key.answer(row.uid)
            return answer if answer is not None else self._content_leaf(key.test, content)
        return self._content_leaf(key, content)

    def _has_flag(self, row: MessageRow, upper: str) -> bool:
        if upper == RECENT:
            return row.uid in self.view.recent
        return upper in self._upper(row.flags)

    def _upper(self, flags: frozenset[str]) -> frozenset[str]:
        upper = self.upper_flags.get(flags)
        if upper is None:  # once per distinct flag set, not once per key and message
            upper = self.upper_flags[flags] = frozenset(flag.upper() for flag in flags)
        return upper

    def _content_leaf(self, key: SearchKey, content: _Content) -> bool | None:
        if content.header is None:
            return None
        if isinstance(key, HeaderTest):
            if not key.folded:
                return content.has_field(key.name)
            values = (content.folded_addresses(key.name) if key.is_address
                      else content.folded_values(key.name))  # fmt: skip
            return any(key.folded in value for value in values)
        if isinstance(key, DateKey):
            sent = content.sent_date()
            return sent is not None and _compare_date(sent, key)
        if isinstance(key, TextTest):
            if content.body_text is None:
                return None
            if key.folded in content.folded_body():
                return True
            return key.is_header_too and key.folded in content.folded_header()
        raise TypeError(f"unknown search key {key!r}")


def rendered_addresses(value: str) -> str:
    """An address field as FROM/TO/CC/BCC match it: each mailbox as `Name <local@domain>`
    (or `local@domain`), names RFC 2047-decoded, as `originators.parse_addresses` reads
    them, so comments and folding inside an address are no part of it
    (`<user (c)@ (c) example.org>` is `user@example.org`). A field that does not parse
    is matched as written, decoded."""
    parsed = parse_addresses(value, max_addresses=None)
    if isinstance(parsed, Unparsable):
        return decode_words(value)
    rendered: list[str] = []
    for entry in parsed.entries:
        if isinstance(entry, Group):
            rendered.append(decode_words(entry.display_name) + ":")
            rendered.extend(_rendered_mailbox(member) for member in entry.members)
        else:
            rendered.append(_rendered_mailbox(entry))
    return ", ".join(rendered)


def _rendered_mailbox(mailbox: Mailbox) -> str:
    if mailbox.display_name:
        return f"{decode_words(mailbox.display_name)} <{mailbox.address}>"
    return mailbox.address


def _compare_date(day: dt.date, key: DateKey) -> bool:
    if key.op is DateOp.BEFORE:
        return day < key.date
    if key.op is DateOp.ON:
        return day == key.date
    return day >= key.date


def _sent_date(header: bytes) -> dt.date | None:
    values = header_values(header, "Date")
    if not values:
        return None
    try:
        return email.utils.parsedate_to_datetime(values[0]).date()
    except (TypeError, ValueError, IndexError):
        return None


def _walk(key: SearchKey) -> Iterator[SearchKey]:
    yield key
    if isinstance(key, AndKey):
        for part in key.keys:
            yield from _walk(part)
    elif isinstance(key, OrKey):
        yield from _walk(key.left)
        yield from _walk(key.right)
    elif isinstance(key, NotKey):
        yield from _walk(key.key)


# Keys judged from what the view keeps for every message (UID, flags, MODSEQ).
_ROW_FREE_KEYS = (AndKey, OrKey, NotKey, AllKey, OneFlag, FlagSet, Spans, ModSeqKey)
_NO_DATE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _needs_rows(key: SearchKey, uids: list[int]) -> bool:
    """Whether judging `key` reads more of a message than its UID, flags and MODSEQ
    (a TEXT/BODY key the index answers for all of `uids` does not)."""
    return not all(isinstance(node, _ROW_FREE_KEYS)
                   or (isinstance(node, IndexedText) and node.covers(uids))
                   for node in _walk(key))  # fmt: skip


def _flags_only_row(view: SelectedMailbox, uid: int) -> MessageRow | None:
    """A row carrying only what `_ROW_FREE_KEYS` read (no full row is loaded for them)."""
    flags = view.flags.get(uid)
    if flags is None:
        return None
    return MessageRow(view.mailbox_id, uid, view.modseqs[uid], "", 0, _NO_DATE, flags)


def _needs_body(key: SearchKey) -> bool:
    return any(isinstance(node, TextTest | IndexedText) for node in _walk(key))


def _size(key: SearchKey) -> int:
    return sum(1 for _ in _walk(key))


# -- loading content ----------------------------------------------------------------------------
def _read_head(handle: IO[bytes]) -> bytes:
    with handle:
        data = handle.read(HEADER_READ)
        end = find_body_start(data)
        if end >= len(data) and len(data) == HEADER_READ:
            data += handle.read()  # a header longer than 64 KiB: read it all
            end = find_body_start(data)
        return data[:end]


def _load_content(handle: IO[bytes], with_body: bool, meta_text: str | None = None
                  ) -> _Content:  # fmt: skip
    if not with_body:
        return _Content(header=_read_head(handle))
    with handle:
        raw = handle.read()
    header, body_text = message_texts(raw, meta_text)  # what the full-text index holds
    return _Content(header=header, body_text=body_text)


def _judge_loaded(evaluator: _Evaluator, key: SearchKey,
                  batch: list[tuple[MessageRow, _Content | None]], with_body: bool,
                  metas: dict[int, str], open_blob: BlobOpener) -> list[int]:  # fmt: skip
    """Runs in a worker thread: read each message not cached (None) and judge it."""
    found: list[int] = []
    for row, content in batch:
        if content is None:
            try:
                content = _load_content(open_blob(row.blob_id), with_body, metas.get(row.uid))
            except FileNotFoundError:
                continue  # expunged meanwhile
            CONTENT_CACHE.put(row.blob_id, content)
        if evaluator.judge(key, row, content):
            found.append(row.uid)
    return found


async def _judge_batch(ctx: Context, evaluator: _Evaluator, key: SearchKey,
                       batch: list[MessageRow], with_body: bool) -> list[int]:
    """One metadata query (body keys only), one blob read and one thread hop for the
    whole batch."""
    metas: dict[int, str] = {}
    # Looked up once: an entry evicted before the thread runs is still held here.
    cached = [(row, CONTENT_CACHE.get(row.blob_id, with_body)) for row in batch]
    to_read = [row for row, content in cached if content is None]
    if with_body and to_read:
        metas = await _get_metas(ctx.runtime.store, evaluator.view.mailbox_id,
                                 [row.uid for row in to_read])  # fmt: skip
    open_blob = await ctx.runtime.blobs.opener(row.blob_id for row in to_read)
    return await asyncio.to_thread(_judge_loaded, evaluator, key, cached, with_body, metas,
                                   open_blob)  # fmt: skip


async def _get_metas(store: Store, mailbox_id: int, uids: list[int]) -> dict[int, str]:
    loader = getattr(store, "get_metas", None)
    if loader is None:
        return {}  # a Store written before issue 8 (test doubles): messages are parsed
    metas: dict[int, str] = await loader(mailbox_id, uids)
    return metas


def _indexed_only(view: SelectedMailbox, key: IndexedText) -> list[int]:
    """What the judging loop answers for a program of one covering `IndexedText`: its
    matches that the view holds and has not seen expunged."""
    return sorted(uid for uid in key.uids
                  if uid in view.flags and uid not in view.pending_expunge)  # fmt: skip


async def _use_index(store: Store, view: SelectedMailbox, program: SearchKey) -> SearchKey:
    """The program with its TEXT/BODY keys answered by the full-text index where it can
    (issue 22): one query per distinct string; messages it does not cover yet are read."""
    lookup = getattr(store, "fulltext_search", None)
    if lookup is None or not view.uids:
        return program  # a Store written before issue 22 (test doubles), or nothing to do
    answers: dict[TextTest, IndexedText] = {}
    for test in text_tests(program):
        match = await lookup(view.mailbox_id, test.folded, with_header=test.is_header_too)
        if match is not None and match.indexed_uid > 0:
            answers[test] = IndexedText(test, match.indexed_uid, match.uids, match.skipped)
    return with_index(program, answers) if answers else program


async def evaluate(ctx: Context, view: SelectedMailbox, key: SearchKey, *,
                   normalise: bool = True) -> list[int]:  # fmt: skip
    """UIDs of the messages matching `key`, ascending. Judging from the rows runs on
    the loop in slices of about SLICE_WORK key tests, yielding between them: a program
    of n keys over m messages never holds the loop for more than one slice (issue 25)."""
    program = await _use_index(ctx.runtime.store, view,
                               prepare(view, key, normalise=normalise))  # fmt: skip
    if isinstance(program, IndexedText) and program.covers(view.uids):
        return _indexed_only(view, program)  # one TEXT/BODY key, all indexed: no loop
    evaluator = _Evaluator(view, dt.datetime.now(dt.UTC))
    with_body = _needs_body(program)
    per_slice = max(1, min(SLICE_MESSAGES, SLICE_WORK // _size(program)))
    found: list[int] = []
    batch: list[MessageRow] = []
    empty = _Content()
    needs_rows = _needs_rows(program, view.uids)
    if needs_rows:
        await view.load_rows(ctx.runtime.store, view.uids)  # once per view: then cached
    for index, uid in enumerate(list(view.uids)):
        if index % per_slice == per_slice - 1:
            await asyncio.sleep(0)  # let other sessions run during a long search
        row = view.rows.get(uid) if needs_rows else _flags_only_row(view, uid)
        if row is None or uid in view.pending_expunge:
            continue  # expunged elsewhere: its number stays until EXPUNGE, it matches nothing
        verdict = evaluator.judge(program, row, empty)
        if verdict is None:  # needs the message itself: judged in batches off the loop
            batch.append(row)
        elif verdict:
            found.append(uid)
        if len(batch) >= SEARCH_BATCH:
            found += await _judge_batch(ctx, evaluator, program, batch, with_body)
            batch = []
    if batch:
        found += await _judge_batch(ctx, evaluator, program, batch, with_body)
    return sorted(found)


# -- the command --------------------------------------------------------------------------------
def has_modseq_key(criteria: SearchKey) -> bool:
    return any(isinstance(node, ModSeqKey) for node in _walk(criteria))


async def handle_search(ctx: Context, command: Search) -> Done:
    view = ctx.require_selected()
    name = f"{'UID ' if command.is_uid else ''}SEARCH"
    refusal = refuse_program(ctx, command.charset, command.criteria)
    if refusal is not None:
        return refusal
    if command.return_options is not None and "UPDATE" in command.return_options:
        refuse_tag_reuse(ctx, view, command.tag)
    uids = await evaluate(ctx, view, key=command.criteria)
    has_modseq = has_modseq_key(command.criteria)
    if has_modseq:
        ctx.enable_condstore()  # RFC 7162 §3.1
    options = command.return_options
    if options is None and not ctx.is_rev2:
        numbers = uids if command.is_uid else [view.seq_of(uid) for uid in uids]
        # RFC 7162 §3.1.5: the highest mod-sequence of the matching messages.
        modseq = max((view.modseqs[uid] for uid in uids), default=None) if has_modseq else None
        await ctx.write(render_search(numbers, modseq=modseq))  # IMAP4rev1 answer
        return Done(f"{name} completed")
    answer = Answer.of(view, uids, is_uid=command.is_uid, options=options or ("ALL",),
                       partial=command.partial)  # fmt: skip
    if "SAVE" in answer.options:
        view.saved = saved_result(answer)
    if answer.options != {"SAVE"}:  # RFC 5182 §2.1: SAVE alone gets no ESEARCH
        items = esearch_items(answer, view.modseqs if has_modseq else None)
        await ctx.write(render_esearch_data(command.tag, is_uid=command.is_uid, items=items))
    if "UPDATE" in answer.options:
        await keep_updating(ctx, view, command.tag, command.is_uid, uids,
                            lambda ctx: evaluate(ctx, view, key=command.criteria))
    return Done(f"{name} completed")


SPECS = (
    CommandSpec(Search, ("SEARCH", "UID SEARCH"), handle_search, SELECTED,
                allows_expunge=False,
                capabilities=("ESEARCH", "SEARCHRES", "WITHIN", "CONTEXT=SEARCH", "PARTIAL")),
)  # fmt: skip
