"""THREAD and UID THREAD (RFC 5256 §4): the matching messages grouped into threads.

Owns loading what threading needs of each message — Message-ID, References (else the
first In-Reply-To id), the base subject and whether it was a reply or forward, the sent
date — and answering `* THREAD (…)(…)`. The algorithms are mail/threading.py's, run in a
worker thread; the search program is SEARCH's (`evaluate`, with its limits).

Invariants: headers come from the first HEAD_READ bytes of each blob (what threading
reads is in the header), cached per blob id (blobs never change); loading runs off the
loop in batches; numbers are sequence numbers, or UIDs for UID THREAD.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import IO

from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.esearch import refuse_program
from postroom.imap.commands.search import evaluate
from postroom.imap.commands.spec import SELECTED, CommandSpec
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.commands.thread import ALGORITHMS, Thread
from postroom.mail.basesubject import base_subject
from postroom.mail.headers import decode_words, find_body_start, first_values
from postroom.mail.threading import ThreadInput, ordered_subject, references, render_threads
from postroom.store.api import MessageRow

HEAD_READ = 64 * 1024
BATCH = 500
CACHE_SIZE = 50_000
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,998})>")
# RFC 5256 §2.1: a reply or forward marker removed from the front ("Re:", "Fwd:", "[fwd:").
_REPLY = re.compile(r"^\s*(\[[^\]]*\]\s*)*(re|fwd?)\s*(\[[^\]]*\])?\s*:|^\s*\[fwd:",
                    re.IGNORECASE)


class _Facts:
    __slots__ = ("is_reply", "message_id", "references", "sent", "subject")

    def __init__(self, header: bytes) -> None:
        fields = first_values(header, ("message-id", "references", "in-reply-to",
                                       "subject", "date"))  # fmt: skip
        ids = _MESSAGE_ID.findall(fields.get("message-id", ""))
        self.message_id: str = ids[0] if ids else ""
        refs = _MESSAGE_ID.findall(fields.get("references", ""))
        if not refs:  # RFC 5256 §3 REFERENCES step 1A: else the first In-Reply-To id
            refs = _MESSAGE_ID.findall(fields.get("in-reply-to", ""))[:1]
        self.references: tuple[str, ...] = tuple(refs)
        subject = decode_words(fields.get("subject", ""))
        self.subject: str = base_subject(subject)
        self.is_reply: bool = bool(_REPLY.match(subject))
        self.sent: dt.datetime | None = _parse_date(fields.get("date", ""))


def _parse_date(value: str) -> dt.datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


_CACHE: OrderedDict[str, _Facts] = OrderedDict()


def _read_facts(handle: IO[bytes]) -> _Facts:
    with handle:
        data = handle.read(HEAD_READ)
    return _Facts(data[:find_body_start(data)])


def _load(rows: list[MessageRow], open_blob: Callable[[str], IO[bytes]]
          ) -> dict[str, _Facts]:  # fmt: skip
    found: dict[str, _Facts] = {}
    for row in rows:
        try:
            found[row.blob_id] = _read_facts(open_blob(row.blob_id))
        except FileNotFoundError:
            found[row.blob_id] = _Facts(b"")  # expunged meanwhile
    return found


async def _facts(ctx: Context, rows: list[MessageRow]) -> dict[str, _Facts]:
    facts = {row.blob_id: _CACHE[row.blob_id] for row in rows if row.blob_id in _CACHE}
    missing = [row for row in rows if row.blob_id not in facts]
    for start in range(0, len(missing), BATCH):
        batch = missing[start:start + BATCH]
        open_blob = await ctx.runtime.blobs.opener(row.blob_id for row in batch)
        loaded = await asyncio.to_thread(_load, batch, open_blob)
        facts.update(loaded)
        _CACHE.update(loaded)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return facts


def _inputs(view: SelectedMailbox, rows: list[MessageRow], facts: dict[str, _Facts],
            is_uid: bool) -> list[ThreadInput]:  # fmt: skip
    inputs = []
    for row in rows:
        one = facts[row.blob_id]
        number = row.uid if is_uid else view.seq_of(row.uid)
        sent = one.sent or row.internal_date  # RFC 5256 §2.2: else the internal date
        inputs.append(ThreadInput(number, one.message_id, one.references, one.subject,
                                  one.is_reply, sent))  # fmt: skip
    return inputs


async def handle_thread(ctx: Context, command: Thread) -> Done:
    view = ctx.require_selected()
    refusal = refuse_program(ctx, command.charset, command.search)
    if refusal is not None:
        return refusal
    uids = await evaluate(ctx, view, key=command.search)
    await view.load_rows(ctx.runtime.store, uids)
    rows = [row for row in (view.rows.get(uid) for uid in uids) if row is not None]
    facts = await _facts(ctx, rows)
    inputs = _inputs(view, rows, facts, command.is_uid)
    algorithm = references if command.algorithm == "REFERENCES" else ordered_subject
    rendered = await asyncio.to_thread(lambda: render_threads(algorithm(inputs)))
    await ctx.write(("* THREAD " + rendered).rstrip().encode("ascii") + b"\r\n")
    return Done(f"{'UID ' if command.is_uid else ''}THREAD completed")


SPECS = (
    CommandSpec(Thread, ("THREAD", "UID THREAD"), handle_thread, SELECTED,
                allows_expunge=False,
                capabilities=tuple(f"THREAD={name}" for name in ALGORITHMS)),
)
