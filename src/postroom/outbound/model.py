"""The outbound queue's vocabulary: delivery outcomes, grouping rules and the admin view.

Owns the pure decisions shared by the worker, the DSN builder and the CLI (and what a
queued message asks of its SMTP transaction, `TransactionOptions`, and which DSNs its
sender asked for, `wants_dsn`):
- how a remote reply or a local error becomes an `Attempt` (delivered / deferred /
  failed) with an RFC 3463 enhanced status code;
- how due entries are grouped: by destination (one connection per destination carries
  several messages) and within a destination by message (one SMTP transaction carries
  all of a message's recipients there, at most `MAX_RECIPIENTS_PER_TRANSACTION`);
- the per-message summary `postroom queue list` prints.

Invariants: every Attempt's `status` is a syntactically valid enhanced code whose class
matches its outcome (2 delivered, 4 deferred, 5 failed). Sans-IO (no store, no sockets).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from postroom.mail.headers import parse_header_fields, split_message
from postroom.store.api import QueueEntry

# RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients per transaction,
# so batches of 100 never trip a conforming server's limit.
MAX_RECIPIENTS_PER_TRANSACTION = 100
# RFC 5321 §6.3 asks for loop detection by counting Received: fields; Postfix bounces at
# 50 (`hopcount_limit`).
MAX_RECEIVED_HEADERS = 50

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"  # temporary: retry later
    FAILED = "failed"  # permanent: bounce


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of trying one recipient once.

    `diagnostic` is what goes into the DSN's Diagnostic-Code and the queue's last_error:
    the remote reply ("550 5.1.1 no such user") when `is_remote_reply`, else our own
    explanation ("no MX host for example.com could be reached").
    """

    outcome: Outcome
    status: str  # RFC 3463 enhanced code, e.g. "5.1.1"
    diagnostic: str
    remote_mta: str = ""
    is_remote_reply: bool = False


def enhanced_status(code: int, text: str) -> str:
    """The enhanced code at the start of a reply's text, else one derived from the code.

    RFC 3463 §2: the class must agree with the reply code's first digit; a mismatching
    enhanced code in the text is ignored (RFC 2034 §4 says the reply code wins).
    """
    match = _ENHANCED.match(text.strip())
    first = str(code)[:1]
    if match and match.group(1) == first:
        return match.group(0)
    return {"2": "2.0.0", "4": "4.0.0", "5": "5.0.0"}.get(first, "4.0.0")


def attempt_from_reply(code: int, text: str, remote_mta: str) -> Attempt:
    """Classify one SMTP reply (RFC 5321 §4.2.1: 2yz done, 4yz transient, 5yz permanent).

    Anything else (1yz, 3yz where 2yz was due, garbage) is a protocol confusion on the
    remote side; treated as transient so a retry can sort it out.
    """
    text = " ".join(text.split())
    diagnostic = f"{code} {text}".strip()
    if 200 <= code < 300:
        outcome = Outcome.DELIVERED
    elif 500 <= code < 600:
        outcome = Outcome.FAILED
    else:
        outcome = Outcome.DEFERRED
        code = 451 if not 400 <= code < 500 else code
    return Attempt(outcome, enhanced_status(code, text), diagnostic, remote_mta,
                   is_remote_reply=True)


def deferred(status: str, diagnostic: str, remote_mta: str = "") -> Attempt:
    return Attempt(Outcome.DEFERRED, status, diagnostic, remote_mta)


def failed(status: str, diagnostic: str, remote_mta: str = "") -> Attempt:
    return Attempt(Outcome.FAILED, status, diagnostic, remote_mta)


@dataclass(frozen=True, slots=True)
class RecipientOptions:
    """RFC 3461 parameters of one RCPT, passed on when the server offers DSN."""

    notify: str = ""  # "SUCCESS,DELAY" / "NEVER" / "" (none given)
    orcpt: str = ""  # "rfc822;xtext" as received


@dataclass(frozen=True, slots=True)
class TransactionOptions:
    """What a queued message asks of its SMTP transaction beyond the addresses
    (outbound/client.py)."""

    body: str = ""  # "8BITMIME" / "BINARYMIME" (RFC 3030) / "" (decided from the bytes)
    ret: str = ""  # RFC 3461 RET
    envid: str = ""  # RFC 3461 ENVID (xtext)
    is_requiretls: bool = False  # RFC 8689: MAIL FROM … REQUIRETLS
    recipients: tuple[RecipientOptions, ...] = ()  # one per recipient, or none at all

    @property
    def is_binarymime(self) -> bool:
        return self.body == "BINARYMIME"


def transaction_options(batch: Sequence[QueueEntry]) -> TransactionOptions:
    """What the batch's message asks of its transaction; its entries share one message,
    so the per-message values are the first entry's."""
    first = batch[0]
    return TransactionOptions(
        body=first.body, ret=first.ret, envid=first.envid, is_requiretls=first.is_requiretls,
        recipients=tuple(RecipientOptions(entry.notify, entry.orcpt) for entry in batch))


def notify_words(entry: QueueEntry) -> frozenset[str]:
    """RFC 3461 §4.1 NOTIFY of the entry, upper-cased; empty when none was given."""
    return frozenset(word.strip().upper() for word in entry.notify.split(",") if word.strip())


def wants_dsn(entry: QueueEntry, kind: str) -> bool:
    """Whether the sender asked for (or by default gets) a `kind` DSN: "FAILURE" and
    "DELAY" unless NOTIFY named others or NEVER (§4.1 leaves the default to the MTA: we
    send both, as Postfix does once delay_warning_time is set); "SUCCESS" only when named.
    Never for the null sender (RFC 5321 §4.5.5: no report on a report)."""
    words = notify_words(entry)
    if not entry.sender:
        return False
    if not words:
        return kind in {"FAILURE", "DELAY"}
    return kind in words


def destination_key(entry: QueueEntry, *, has_relay: bool) -> str:
    """Entries with the same key share one connection: everything goes to the relay
    host when one is configured, otherwise one destination per recipient domain."""
    return "[relay]" if has_relay else entry.domain


def group_by_destination(entries: Iterable[QueueEntry], *, has_relay: bool
                         ) -> dict[str, list[QueueEntry]]:
    groups: dict[str, list[QueueEntry]] = {}
    for entry in entries:
        groups.setdefault(destination_key(entry, has_relay=has_relay), []).append(entry)
    return groups


def group_transactions(entries: Iterable[QueueEntry]) -> list[list[QueueEntry]]:
    """One list per SMTP transaction: same message, same envelope sender, ≤ 100 rcpts."""
    by_message: dict[tuple[str, str, str], list[QueueEntry]] = {}
    for entry in entries:
        by_message.setdefault((entry.message_id, entry.sender, entry.blob_id), []).append(entry)
    batches: list[list[QueueEntry]] = []
    for group in by_message.values():
        batches.extend(group[start:start + MAX_RECIPIENTS_PER_TRANSACTION]
                       for start in range(0, len(group), MAX_RECIPIENTS_PER_TRANSACTION))
    return batches


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One line of `postroom queue list`: a submission and its waiting recipients."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    size: int
    created: dt.datetime
    attempts: int
    next_attempt: dt.datetime
    last_error: str


def summarize_queue(entries: Sequence[QueueEntry]) -> list[QueuedMessage]:
    """Group queue rows by message, earliest next attempt first."""
    by_message: dict[str, list[QueueEntry]] = {}
    for entry in entries:
        by_message.setdefault(entry.message_id, []).append(entry)
    summaries = [_summarize(rows) for rows in by_message.values()]
    return sorted(summaries, key=lambda item: (item.next_attempt, item.message_id))


def _summarize(rows: list[QueueEntry]) -> QueuedMessage:
    first = rows[0]
    errors = [row.last_error for row in rows if row.last_error]
    return QueuedMessage(
        message_id=first.message_id,
        sender=first.sender,
        recipients=tuple(row.recipient for row in rows),
        size=first.size,
        created=min(row.created for row in rows),
        attempts=max(row.attempts for row in rows),
        next_attempt=min(row.next_attempt for row in rows),
        last_error=errors[-1] if errors else "",
    )


def strip_return_path(raw: bytes) -> bytes:
    """The message without the leading Return-Path field(s) the spool adds.

    RFC 5321 §4.4: Return-Path is added by the final delivery MTA; a relaying MTA must not
    send one on, so it is removed (with any folded continuation lines) before relaying.
    """
    while raw[:12].lower() == b"return-path:":
        end = raw.find(b"\n")
        while end >= 0 and raw[end + 1:end + 2] in (b" ", b"\t"):
            end = raw.find(b"\n", end + 1)
        raw = b"" if end < 0 else raw[end + 1:]
    return raw


def count_received(raw: bytes) -> int:
    """Number of Received: fields in the header block (RFC 5321 §6.3 loop detection)."""
    header, _ = split_message(raw)
    return sum(1 for f in parse_header_fields(header) if f.name.strip().lower() == "received")
