"""Email/query and Email/queryChanges (RFC 8621 §4.4, §4.5).

Owns filtering and sorting the account's Emails. Every FilterCondition of §4.4.1 is
supported: inMailbox, inMailboxOtherThan, before, after, minSize, maxSize, the keyword
and thread-keyword conditions, hasAttachment, text, from, to, cc, bcc, subject, body and
header; AND / OR / NOT combine them. Sorts (§4.4.2): receivedAt, size, from, to, subject
(the base subject), sentAt, hasKeyword, allInThreadHaveKeyword, someInThreadHaveKeyword
(SORT_OPTIONS); no sort is receivedAt descending. collapseThreads keeps the first Email
of each thread in that order.

How text is matched: case-insensitive (str.casefold) substring search. from/to/cc/bcc/
subject read the stored ENVELOPE (display names and subject RFC 2047-decoded, addresses
as "name <local@domain>"); text is those or the body; body and text ask the full-text
index (store/fulltext_api.py) first, per mailbox, and read only the messages it does not
cover; header reads the message's header (`[name]`: the field is present, `[name,
value]`: its decoded value contains the value). At most MAX_MESSAGES_READ messages are
read for one query: past that the answer is serverUnavailable (RFC 8620 §3.6.2: later may
succeed, as the indexer catches up), never a partial result.

Decisions: the query state is the account's state; canCalculateChanges is false and
Email/queryChanges answers cannotCalculateChanges, which §5.6 allows (the client queries
again). A filter naming a mailbox that does not exist matches nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from postroom.jmap.context import MAIL, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.emailbody import build_body_tree, has_attachment, parse_structure
from postroom.jmap.emailmeta import keyword_of_flag, load_emails, mailboxes_by_id
from postroom.jmap.errors import MethodError, MethodErrorType, invalid_arguments
from postroom.jmap.standard import (
    Comparator,
    Filter,
    FilterOperator,
    Operator,
    compute_query_window,
    parse_query_args,
    parse_query_changes_args,
    render_query_response,
)
from postroom.jmap.threads import thread_ids
from postroom.jmap.types import (
    expect_bool,
    expect_id,
    expect_id_list,
    expect_string,
    expect_string_list,
    expect_unsigned_int,
    expect_utc_date,
)
from postroom.mail.headers import decode_words, find_body_start, parse_header_fields, unfold
from postroom.mail.searchtext import message_texts, stored_meta
from postroom.mail.sortkeys import EMPTY_FACTS, SortFacts, sort_facts
from postroom.runtime import Runtime
from postroom.store.fulltext_api import FulltextMatch

MAX_MESSAGES_READ = 10_000  # messages one query may read (header or body) beyond the index
# A big account's query must not hold the event loop for everyone else: the loops over its
# Emails let other tasks run every LOOP_SLICE of them, and more than SORT_ON_LOOP
# candidates are sorted in a worker thread.
LOOP_SLICE = 1000
SORT_ON_LOOP = 2000
HEAD_READ = 64 * 1024  # bytes of a message read for the header condition
SORT_OPTIONS = ("receivedAt", "size", "from", "to", "subject", "sentAt", "hasKeyword",
                "allInThreadHaveKeyword", "someInThreadHaveKeyword")  # fmt: skip
_ID_CONDITIONS = {"inMailbox": expect_id, "inMailboxOtherThan": expect_id_list}
_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    **_ID_CONDITIONS, "before": expect_utc_date, "after": expect_utc_date,
    "minSize": expect_unsigned_int, "maxSize": expect_unsigned_int,
    "allInThreadHaveKeyword": expect_string, "someInThreadHaveKeyword": expect_string,
    "noneInThreadHaveKeyword": expect_string, "hasKeyword": expect_string,
    "notKeyword": expect_string, "hasAttachment": expect_bool, "text": expect_string,
    "from": expect_string, "to": expect_string, "cc": expect_string, "bcc": expect_string,
    "subject": expect_string, "body": expect_string, "header": expect_string_list,
}
_ENVELOPE_FIELD = {"subject": 1, "from": 2, "to": 5, "cc": 6, "bcc": 7}
_THREAD_CONDITIONS = ("allInThreadHaveKeyword", "someInThreadHaveKeyword",
                      "noneInThreadHaveKeyword")  # fmt: skip
_THREAD_SORTS = ("allInThreadHaveKeyword", "someInThreadHaveKeyword")


@dataclass(slots=True)
class Candidate:
    """One Email of the account and what the query learned of it so far."""

    blob_id: str
    size: int
    received: dt.datetime
    mailboxes: set[str] = field(default_factory=set)
    keywords: set[str] = field(default_factory=set)
    place: tuple[int, int] = (0, 0)  # one row: (mailbox id, UID)
    envelope: list[Any] | None = None
    meta: str | None = None
    facts: SortFacts | None = None


def _add_row(found: dict[str, Candidate], blob_id: str, size: int, when: dt.datetime,
             box: str, flags: frozenset[str], place: tuple[int, int]) -> None:  # fmt: skip
    one = found.get(blob_id)
    if one is None:
        one = found[blob_id] = Candidate(blob_id, size, when.astimezone(dt.UTC), place=place)
    one.received = min(one.received, when.astimezone(dt.UTC))
    one.mailboxes.add(box)
    one.keywords.update(word for word in map(keyword_of_flag, flags) if word is not None)


async def _breathe(count: int) -> None:
    """Let the event loop run other tasks every LOOP_SLICE items of a long loop."""
    if count % LOOP_SLICE == 0:
        await asyncio.sleep(0)


def _required_mailbox(node: Filter | None) -> str | None:
    """A mailbox every match must be in (a top-level inMailbox), to read only it."""
    if isinstance(node, dict):
        value = node.get("inMailbox")
        return value if isinstance(value, str) else None
    if node is not None and node.operator is Operator.AND:
        return next((box for box in map(_required_mailbox, node.conditions) if box), None)
    return None


class Search:
    """One Email/query's evaluation over the account's Emails."""

    def __init__(self, runtime: Runtime, account_id: int) -> None:
        self.runtime = runtime
        self.account_id = account_id
        self.candidates: dict[str, Candidate] = {}
        self.threads: dict[str, str] = {}
        self.thread_keywords: dict[str, list[set[str]]] = {}
        self.index: dict[tuple[str, int], FulltextMatch | None] = {}
        self.reads = 0

    async def load(self, node: Filter | None) -> None:
        store = self.runtime.store
        boxes = await mailboxes_by_id(store, self.account_id)
        only = _required_mailbox(node)
        if only is not None:
            box = boxes.get(only)
            rows = await store.list_messages(box.id) if box is not None else []
            records = await load_emails(store, self.account_id, [row.blob_id for row in rows])
            for count, record in enumerate(records.values(), 1):
                await _breathe(count)
                for copy in record.copies:
                    _add_row(self.candidates, record.blob_id, copy.size, copy.internal_date,
                             copy.mailbox_object_id, copy.flags, (copy.mailbox_id, copy.uid))
            return
        for object_id, box in boxes.items():
            for count, row in enumerate(await store.list_messages(box.id), 1):
                await _breathe(count)
                _add_row(self.candidates, row.blob_id, row.size, row.internal_date, object_id,
                         row.flags, (row.mailbox_id, row.uid))  # fmt: skip

    async def load_threads(self, keywords_needed: bool) -> None:
        runtime, blob_ids = self.runtime, list(self.candidates)
        self.threads = await thread_ids(runtime, self.account_id, blob_ids)
        if not keywords_needed:
            return
        members = await runtime.store.jmap_thread_emails(self.account_id,
                                                         sorted(set(self.threads.values())))
        outside = [blob for blobs in members.values() for blob in blobs
                   if blob not in self.candidates]  # fmt: skip
        others = await load_emails(runtime.store, self.account_id, outside)
        for thread_id, blobs in members.items():
            sets = []
            for blob in blobs:
                if blob in self.candidates:
                    sets.append(self.candidates[blob].keywords)
                elif blob in others:
                    sets.append(set(others[blob].keywords))
            self.thread_keywords[thread_id] = sets

    async def load_envelopes(self) -> None:
        """The stored meta (and its ENVELOPE) of every candidate, one query per mailbox."""
        by_box: dict[int, list[Candidate]] = {}
        for one in self.candidates.values():
            by_box.setdefault(one.place[0], []).append(one)
        for mailbox_id, group in by_box.items():
            metas = await self.runtime.store.get_metas(mailbox_id, [c.place[1] for c in group])
            for one in group:
                one.meta = metas.get(one.place[1], "")
                one.envelope = _envelope(one.meta)

    def _count_read(self) -> None:
        self.reads += 1
        if self.reads > MAX_MESSAGES_READ:
            raise MethodError(MethodErrorType.SERVER_UNAVAILABLE,
                              f"the search would read more than {MAX_MESSAGES_READ} messages;"
                              " try again later or narrow it")  # fmt: skip

    async def _read(self, one: Candidate, limit: int | None = None) -> bytes:
        self._count_read()
        try:
            return await self.runtime.blobs.read(one.blob_id, limit=limit)
        except FileNotFoundError:  # expunged meanwhile: matches nothing
            return b""

    async def body_contains(self, one: Candidate, needle: str) -> bool:
        mailbox_id, uid = one.place
        key = (needle, mailbox_id)
        if key not in self.index:
            self.index[key] = await self.runtime.store.fulltext_search(
                mailbox_id, needle, with_header=False)
        match = self.index[key]
        if match is not None and uid <= match.indexed_uid and uid not in match.skipped:
            return uid in match.uids
        raw = await self._read(one)
        return needle in message_texts(raw, one.meta)[1].casefold()

    async def header_matches(self, one: Candidate, wanted: list[str]) -> bool:
        head = await self._read(one, HEAD_READ)
        name = wanted[0].lower()
        for header_field in parse_header_fields(head[:find_body_start(head)]):
            if header_field.name.lower() != name:
                continue
            if len(wanted) == 1 or wanted[1].casefold() in decode_words(
                    unfold(header_field.value)).casefold():  # fmt: skip
                return True
        return False

    def thread_sets(self, one: Candidate) -> list[set[str]]:
        thread_id = self.threads.get(one.blob_id)
        return self.thread_keywords.get(thread_id, [one.keywords]) if thread_id else [
            one.keywords]


def _envelope(meta: str) -> list[Any] | None:
    try:
        document = json.loads(meta) if meta else None
    except ValueError:
        return None
    envelope = document.get("e") if isinstance(document, dict) else None
    return envelope if isinstance(envelope, list) and len(envelope) == 10 else None


def _field_text(envelope: list[Any] | None, name: str) -> str:
    """An ENVELOPE field as text a condition searches (decoded, "name <address>")."""
    if envelope is None:
        return ""
    value = envelope[_ENVELOPE_FIELD[name]]
    if name == "subject":
        return decode_words(value) if isinstance(value, str) else ""
    texts = []
    for address in value or ():
        display = decode_words(address[0]) if address[0] else ""
        if address[3] is None:  # a group marker: its name, if any
            texts.append(address[2] or "")
        else:
            texts.append(f"{display} <{address[2] or ''}@{address[3]}>")
    return ", ".join(texts)


# -- conditions ---------------------------------------------------------------------------------


def check_filter(node: Filter) -> Filter:
    """The filter with its values parsed (dates as datetimes); unsupportedFilter for an
    unknown condition, invalidArguments for a bad value."""
    if isinstance(node, FilterOperator):
        if node.operator is not Operator.NOT and not node.conditions:
            raise invalid_arguments(f"an {node.operator} operator needs conditions")
        return FilterOperator(node.operator, tuple(map(check_filter, node.conditions)))
    parsed = {}
    for name, value in node.items():
        check = _CHECKS.get(name)
        if check is None:
            raise MethodError(MethodErrorType.UNSUPPORTED_FILTER, f"unknown condition {name}")
        parsed[name] = check(value, f"filter.{name}")
    header = parsed.get("header")
    if header is not None and not 1 <= len(header) <= 2:
        raise invalid_arguments("filter.header must hold a field name and perhaps a value")
    return parsed


async def matches(search: Search, node: Filter, one: Candidate) -> bool:
    if isinstance(node, FilterOperator):
        for child in node.conditions:  # in order, stopping once the answer is known
            if await matches(search, child, one) is not (node.operator is Operator.AND):
                return node.operator is Operator.OR
        return node.operator is not Operator.OR
    for name, value in node.items():
        if not await _condition(search, name, value, one):
            return False
    return True


def _keyword(value: str) -> str:
    return value.lower()


async def _condition(search: Search, name: str, value: Any, one: Candidate) -> bool:
    simple = _SIMPLE.get(name)
    if simple is not None:
        return simple(value, one)
    if name in _THREAD_CONDITIONS:
        having = [_keyword(value) in words for words in search.thread_sets(one)]
        if name == "allInThreadHaveKeyword":
            return all(having)
        return any(having) is (name == "someInThreadHaveKeyword")
    if name == "hasAttachment":
        return _has_attachment(one) == value
    if name in _ENVELOPE_FIELD:
        return value.casefold() in _field_text(one.envelope, name).casefold()
    if name == "text":
        needle = value.casefold()
        return any(needle in _field_text(one.envelope, part).casefold()
                   for part in _ENVELOPE_FIELD) or await search.body_contains(one, needle)
    if name == "body":
        return await search.body_contains(one, value.casefold())
    return await search.header_matches(one, value)  # "header": check_filter knows no other


_SIMPLE: dict[str, Callable[[Any, Candidate], bool]] = {
    "inMailbox": lambda value, one: value in one.mailboxes,
    "inMailboxOtherThan": lambda value, one: bool(one.mailboxes - set(value)),
    "before": lambda value, one: one.received < value,
    "after": lambda value, one: one.received >= value,
    "minSize": lambda value, one: one.size >= value,
    "maxSize": lambda value, one: one.size < value,
    "hasKeyword": lambda value, one: _keyword(value) in one.keywords,
    "notKeyword": lambda value, one: _keyword(value) not in one.keywords,
}


def _has_attachment(one: Candidate) -> bool:
    meta = stored_meta(one.meta)
    return meta is not None and has_attachment(parse_structure(build_body_tree(meta)).attachments)


def _needs(node: Filter | None, names: Sequence[str]) -> bool:
    if node is None:
        return False
    if isinstance(node, FilterOperator):
        return any(_needs(child, names) for child in node.conditions)
    return any(name in node for name in names)


# -- sorting ------------------------------------------------------------------------------------


def check_sort(sort: Sequence[Comparator]) -> None:
    for comparator in sort:
        if comparator.property not in SORT_OPTIONS:
            raise MethodError(MethodErrorType.UNSUPPORTED_SORT,
                              f"cannot sort by {comparator.property}")
        if comparator.property in ("hasKeyword", *_THREAD_SORTS) and not isinstance(
                comparator.extra.get("keyword"), str):  # fmt: skip
                raise invalid_arguments(f"sorting by {comparator.property} needs a keyword")


def _facts(one: Candidate) -> SortFacts:
    if one.facts is None:
        one.facts = sort_facts(one.envelope) if one.envelope is not None else EMPTY_FACTS
    return one.facts


def _sort_key(search: Search, comparator: Comparator) -> Callable[[Candidate], Any]:
    name, keyword = comparator.property, str(comparator.extra.get("keyword", "")).lower()
    keys: dict[str, Callable[[Candidate], Any]] = {
        "receivedAt": lambda one: one.received,
        "size": lambda one: one.size,
        "from": lambda one: _facts(one).display_from,
        "to": lambda one: _facts(one).display_to,
        "subject": lambda one: _facts(one).subject,
        "sentAt": lambda one: _facts(one).sent or one.received.timestamp(),
        "hasKeyword": lambda one: keyword in one.keywords,
        "allInThreadHaveKeyword": lambda one: all(keyword in words
                                                  for words in search.thread_sets(one)),
        "someInThreadHaveKeyword": lambda one: any(keyword in words
                                                   for words in search.thread_sets(one)),
    }  # fmt: skip
    return keys[name]


def sort_candidates(search: Search, found: list[Candidate],
                    sort: Sequence[Comparator]) -> list[Candidate]:  # fmt: skip
    """Sorted by the comparators, the first deciding; ties newest first, then by id."""
    ordered = sorted(found, key=lambda one: one.blob_id)
    ordered.sort(key=lambda one: one.received, reverse=True)
    for comparator in reversed(sort or (Comparator("receivedAt", is_ascending=False),)):
        ordered.sort(key=_sort_key(search, comparator), reverse=not comparator.is_ascending)
    return ordered


def _collapse(search: Search, ordered: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    kept = []
    for one in ordered:
        thread_id = search.threads.get(one.blob_id, one.blob_id)
        if thread_id not in seen:
            seen.add(thread_id)
            kept.append(one)
    return kept


# -- the methods --------------------------------------------------------------------------------


def _needs_envelope(node: Filter | None, sort: Sequence[Comparator]) -> bool:
    return _needs(node, (*_ENVELOPE_FIELD, "text", "body", "hasAttachment")) or any(
        comparator.property in ("from", "to", "subject", "sentAt") for comparator in sort)


async def _filtered(search: Search, node: Filter | None) -> list[Candidate]:
    if node is None:
        return list(search.candidates.values())
    kept = []
    for count, one in enumerate(search.candidates.values(), 1):
        await _breathe(count)
        if await matches(search, node, one):
            kept.append(one)
    return kept


def _ordered(search: Search, found: list[Candidate], sort: Sequence[Comparator],
             collapse: bool) -> list[Candidate]:  # fmt: skip
    ordered = sort_candidates(search, found, sort)
    return _collapse(search, ordered) if collapse else ordered


async def handle_email_query(call: Call[CallContext]) -> list[Response]:
    args = parse_query_args(call.arguments, call.limits, extra=("collapseThreads",))
    account = call.context.require_account(args.account_id)
    collapse = expect_bool(args.extra.get("collapseThreads", False), "collapseThreads")
    node = None if args.filter is None else check_filter(args.filter)
    check_sort(args.sort)
    runtime = call.context.jmap.runtime
    state = await runtime.store.jmap_state(account.id)
    search = Search(runtime, account.id)
    await search.load(node)
    needs_thread_keywords = _needs(node, _THREAD_CONDITIONS) or any(
        comparator.property in _THREAD_SORTS for comparator in args.sort)
    if collapse or needs_thread_keywords:
        await search.load_threads(needs_thread_keywords)
    if _needs_envelope(node, args.sort):
        await search.load_envelopes()
    found = await _filtered(search, node)
    if len(found) > SORT_ON_LOOP:  # pure work over the search's own data: a thread may
        ordered = await asyncio.to_thread(_ordered, search, found, args.sort, collapse)
    else:
        ordered = _ordered(search, found, args.sort, collapse)
    ids = [one.blob_id for one in ordered]
    window = compute_query_window(ids, position=args.position, anchor=args.anchor,
                                  anchor_offset=args.anchor_offset, limit=args.limit,
                                  max_limit=call.limits.max_query_limit)  # fmt: skip
    return [("Email/query", render_query_response(
        args.account_id, state, window, can_calculate_changes=False,
        total=len(ids) if args.calculate_total else None))]


async def handle_email_query_changes(call: Call[CallContext]) -> list[Response]:
    args = parse_query_changes_args(call.arguments, call.limits, extra=("collapseThreads",))
    call.context.require_account(args.account_id)
    raise MethodError(MethodErrorType.CANNOT_CALCULATE_CHANGES,
                      "query results are not tracked; run Email/query again")



def register(registry: MethodRegistry[CallContext]) -> None:
    registry.register("Email/query", MAIL, handle_email_query)
    registry.register("Email/queryChanges", MAIL, handle_email_query_changes)
