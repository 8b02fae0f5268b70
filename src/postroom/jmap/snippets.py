"""SearchSnippet/get (RFC 8621 §5): why an Email matched a text search, highlighted.

Owns turning an Email/query filter and a list of Email ids into SearchSnippets: the
subject and a piece of the body text around the first match, HTML-escaped, with every
occurrence of a searched term wrapped in `<mark></mark>` (§5.1).

Invariants:
- Terms come from the filter's text, subject and body conditions outside NOT (a term the
  Email must *not* contain has nothing to show); subject shows text and subject terms,
  preview text and body terms. No term found: that property is null, as §5.1 asks.
- Matching is Email/query's: case-insensitive (str.casefold), substring. The markup is
  built from escaped pieces only, so message text can never inject HTML.
- Bounded: at most maxObjectsInGet ids (requestTooLarge past it), MAX_TERMS terms of at
  most MAX_TERM_CHARS each, a preview of at most PREVIEW_CHARS characters of text.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from typing import Any

from postroom.jmap.context import MAIL, CallContext
from postroom.jmap.core import Call, MethodRegistry, Response
from postroom.jmap.emailheaders import HeaderBlock, text_form
from postroom.jmap.emailmeta import EmailRecord, load_emails
from postroom.jmap.emailquery import check_filter
from postroom.jmap.errors import MethodError, MethodErrorType
from postroom.jmap.query import Filter, FilterOperator, Operator, parse_filter
from postroom.jmap.types import expect_id, expect_id_list, optional, reject_unknown, required
from postroom.mail.searchtext import message_texts

MAX_TERMS = 16
MAX_TERM_CHARS = 256
PREVIEW_CHARS = 255  # §5.1: "SHOULD NOT be more than 255 characters"
_SUBJECT_CONDITIONS = ("text", "subject")
_BODY_CONDITIONS = ("text", "body")


def search_terms(node: Filter | None, names: Sequence[str]) -> list[str]:
    """The (case-folded, distinct) values of the `names` conditions outside NOT."""
    terms: list[str] = []
    for value in _values(node, names):
        folded = value.casefold()[:MAX_TERM_CHARS]
        if folded.strip() and folded not in terms and len(terms) < MAX_TERMS:
            terms.append(folded)
    return terms


def _values(node: Filter | None, names: Sequence[str]) -> Iterator[str]:
    if node is None:
        return
    if isinstance(node, FilterOperator):
        if node.operator is not Operator.NOT:
            for condition in node.conditions:
                yield from _values(condition, names)
        return
    for name in names:
        if isinstance(node.get(name), str):
            yield node[name]


def _spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Where the terms occur in `text`, merged where they overlap, in order."""
    folded = text.casefold()
    if len(folded) != len(text):  # casefold changed lengths (ß → ss): match on the text
        folded = text.lower()
    spans: list[tuple[int, int]] = []
    for term in terms:
        start = folded.find(term)
        while start >= 0:
            spans.append((start, start + len(term)))
            start = folded.find(term, start + len(term))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, spans: Sequence[tuple[int, int]], start: int = 0,
              end: int | None = None) -> str:  # fmt: skip
    """`text[start:end]` HTML-escaped, the spans inside it marked."""
    stop = len(text) if end is None else end
    pieces, at = [], start
    for left, right in spans:
        left, right = max(left, start), min(right, stop)
        if left >= right:
            continue
        pieces += [html.escape(text[at:left]), "<mark>", html.escape(text[left:right]),
                   "</mark>"]  # fmt: skip
        at = right
    pieces.append(html.escape(text[at:stop]))
    return "".join(pieces)


def marked_subject(subject: str, terms: Sequence[str]) -> str | None:
    spans = _spans(subject, terms)
    return highlight(subject, spans) if spans else None


def marked_preview(body: str, terms: Sequence[str]) -> str | None:
    """Up to PREVIEW_CHARS characters of the body (whitespace collapsed) around its first
    match, a quarter of them before it."""
    text = " ".join(body.split())
    spans = _spans(text, terms)
    if not spans:
        return None
    start = max(0, min(spans[0][0] - PREVIEW_CHARS // 4, len(text) - PREVIEW_CHARS))
    return highlight(text, spans, start, min(len(text), start + PREVIEW_CHARS))


async def _snippet(call: Call[CallContext], record: EmailRecord, subject_terms: list[str],
                   body_terms: list[str]) -> dict[str, Any]:  # fmt: skip
    runtime = call.context.jmap.runtime
    copy = record.copies[0]
    raw = await runtime.blobs.read(record.blob_id)
    meta = await runtime.store.get_meta(copy.mailbox_id, copy.uid)
    header, body = message_texts(raw, meta)
    subjects = HeaderBlock(header).values("Subject")
    subject = text_form(subjects[-1]) if subjects else ""
    return {"emailId": record.blob_id,
            "subject": marked_subject(subject, subject_terms) if subject else None,
            "preview": marked_preview(body, body_terms) if body_terms else None}


async def handle_search_snippet_get(call: Call[CallContext]) -> list[Response]:
    args = call.arguments
    reject_unknown(args, ("accountId", "filter", "emailIds"))
    account_id = required(args, "accountId", expect_id)
    account = call.context.require_account(account_id)
    raw_filter = optional(args, "filter", lambda value, _: value, None)
    node = None if raw_filter is None else check_filter(parse_filter(raw_filter,
                                                                     call.limits))
    email_ids = required(args, "emailIds", expect_id_list)
    if len(email_ids) > call.limits.max_objects_in_get:
        raise MethodError(MethodErrorType.REQUEST_TOO_LARGE,
                          f"at most {call.limits.max_objects_in_get} emailIds")
    subject_terms = search_terms(node, _SUBJECT_CONDITIONS)
    body_terms = search_terms(node, _BODY_CONDITIONS)
    records = await load_emails(call.context.jmap.runtime.store, account.id, email_ids)
    found, missing = [], []
    for email_id in dict.fromkeys(email_ids):
        record = records.get(email_id)
        if record is None:
            missing.append(email_id)
            continue
        try:
            found.append(await _snippet(call, record, subject_terms, body_terms))
        except FileNotFoundError:  # expunged since it was looked up
            missing.append(email_id)
    return [("SearchSnippet/get", {"accountId": account_id, "list": found,
                                   "notFound": missing or None})]


def register(registry: MethodRegistry[CallContext]) -> None:
    registry.register("SearchSnippet/get", MAIL, handle_search_snippet_get)
