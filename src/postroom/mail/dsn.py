"""Delivery Status Notifications: RFC 3464 `multipart/report; report-type=delivery-status`.

Owns the bytes of a bounce (Action: failed), a delay warning (Action: delayed) and a
success report (RFC 3461 NOTIFY=SUCCESS: Action delivered, relayed or expanded):
1. a text/plain part a person can read,
2. a message/delivery-status part: per-message fields (Reporting-MTA, Arrival-Date,
   Original-Envelope-Id) then one block per recipient (Original-Recipient,
   Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
   Will-Retry-Until),
3. the original message's header as text/rfc822-headers (RFC 6522 §4: headers only,
   which is what Postfix sends by default, so a bounce never re-sends a large body), or
   the whole message as message/rfc822 when the sender asked for it (RFC 3461 §4.3
   RET=FULL) and the report is a failure: RET speaks of failed DSNs only, and a message
   that is not valid 8-bit text (BINARYMIME) still gets headers only.

Invariants: the result is CRLF-terminated; every header line is under 998 octets; the
notification is From MAILER-DAEMON@<reporting host> and carries `Auto-Submitted:
auto-replied` (RFC 3834 §5) — the caller must send it with the null envelope sender
(RFC 3464 §2 / RFC 5321 §4.5.5) so it can never bounce itself; every date in it is
written in the zone the caller passes (TZ), with its offset. Pure: no I/O, no clock, no
randomness (the caller passes the date, the zone and the Message-ID).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime

from postroom.mail.headers import first_value, split_message

_MAX_DIAGNOSTIC = 900  # keeps "Diagnostic-Code: smtp; …" within RFC 5322's 998 octets


class DsnAction(enum.StrEnum):
    """RFC 3464 §2.3.3."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"  # into a local mailbox
    RELAYED = "relayed"  # handed to a next hop that does not offer DSN
    EXPANDED = "expanded"  # delivered to an alias's several targets

    @property
    def is_success(self) -> bool:
        return self in {DsnAction.DELIVERED, DsnAction.RELAYED, DsnAction.EXPANDED}


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    recipient: str
    action: DsnAction
    status: str  # RFC 3463 enhanced code, e.g. "5.1.1"
    diagnostic: str  # the remote reply "550 5.1.1 …", our own explanation, or "" (none)
    is_smtp_diagnostic: bool = True
    remote_mta: str = ""
    last_attempt: dt.datetime | None = None
    will_retry_until: dt.datetime | None = None  # delayed only
    original_recipient: str = ""  # RFC 3461 ORCPT, when the client gave one


@dataclass(frozen=True, slots=True)
class DsnReport:
    reporting_mta: str  # our host name
    original_sender: str  # where the report goes (never "")
    original_message: bytes  # only its header is copied
    arrival_date: dt.datetime
    recipients: Sequence[DsnRecipient]
    envid: str = ""  # RFC 3461 ENVID of the original transaction
    is_full_return: bool = False  # RFC 3461 RET=FULL: failures return the whole message


def render_dsn(report: DsnReport, *, date: dt.datetime, message_id: str,
               zone: dt.tzinfo = dt.UTC) -> bytes:
    """The complete notification message, ready to spool (no Return-Path); its dates in
    `zone` (clock.display_zone of TZ)."""
    if not report.recipients:
        raise ValueError("a DSN names at least one recipient")
    boundary = _boundary(message_id)
    original_header = _crlf(split_message(report.original_message)[0]).rstrip(b"\r\n")
    parts = [
        _part("text/plain; charset=utf-8", "8bit", _crlf(_human_text(report, zone).encode())),
        _part("message/delivery-status", "7bit", _status_fields(report, zone)),
        _returned_part(report, original_header),
    ]
    body = b"".join(b"--" + boundary + b"\r\n" + part for part in parts)
    body += b"--" + boundary + b"--\r\n"
    top = _top_header(report, _date(date, zone), message_id, boundary, original_header)
    return top + b"\r\n" + body


def _returned_part(report: DsnReport, original_header: bytes) -> bytes:
    """Part 3: the whole message for a failure under RET=FULL when it is valid 8-bit
    text (RFC 6152: CRLF lines of at most 998 octets, no NUL), else its header."""
    is_failure = any(r.action is DsnAction.FAILED for r in report.recipients)
    original = report.original_message
    if report.is_full_return and is_failure and _is_8bit_text(original):
        return _part("message/rfc822", "8bit", original)
    return _part("text/rfc822-headers", "8bit", original_header + b"\r\n")


def _is_8bit_text(data: bytes) -> bool:
    if b"\0" in data or data.count(b"\r") != data.count(b"\r\n"):
        return False
    lines = data.split(b"\r\n")
    return data.count(b"\n") == len(lines) - 1 and all(len(line) <= 998 for line in lines)


def _date(when: dt.datetime, zone: dt.tzinfo) -> str:
    """RFC 5322 §3.3 date-time in `zone`, as RFC 3464 §2.1.1 asks for DSN dates."""
    return format_datetime(when.astimezone(zone))


def _top_header(report: DsnReport, date: str, message_id: str, boundary: bytes,
                original_header: bytes) -> bytes:
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{report.reporting_mta}>",
        f"To: <{report.original_sender}>",
        f"Subject: {_subject(report)}",
        f"Date: {date}",
        f"Message-ID: <{message_id}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n'
        f'\tboundary="{boundary.decode()}"',
    ]
    original_id = first_value(original_header + b"\r\n", "message-id")
    if original_id and len(original_id) < _MAX_DIAGNOSTIC:
        lines += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    return "".join(line + "\r\n" for line in lines).encode()


def _subject(report: DsnReport) -> str:
    actions = {r.action for r in report.recipients}
    if DsnAction.FAILED in actions:
        return "Undelivered Mail Returned to Sender"
    if DsnAction.DELAYED in actions:
        return "Delayed Mail (still being retried)"
    return "Successful Mail Delivery Report"  # Postfix's words


def _boundary(message_id: str) -> bytes:
    # Derived from the Message-ID so rendering stays pure; the "=_" sequence cannot occur
    # in quoted-printable or base64 text, so the boundary never collides with content.
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:24]
    return f"=_postroom-dsn-{digest}".encode()


def _part(content_type: str, encoding: str, content: bytes) -> bytes:
    header = (f"Content-Type: {content_type}\r\n"
              f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode()
    return header + content + (b"" if content.endswith(b"\r\n") else b"\r\n")


def _human_text(report: DsnReport, zone: dt.tzinfo) -> str:
    attached = ("It is attached below." if report.is_full_return
                else "It is attached below (headers only).")
    sections = [
        ([r for r in report.recipients if r.action is DsnAction.FAILED],
         ["Your message could not be delivered to one or more recipients.", attached]),
        ([r for r in report.recipients if r.action is DsnAction.DELAYED],
         ["Delivery to the following recipients has been delayed. No action is",
          "needed on your part; delivery will be retried."]),
        ([r for r in report.recipients if r.action.is_success],
         ["Your message was delivered to the following recipients, or handed on to",
          "a system that reports no further (relayed)."]),
    ]
    lines = [f"This is the mail system at host {report.reporting_mta}."]
    for recipients, intro in sections:
        if recipients:
            lines += ["", *intro, ""]
            lines += [_human_line(r, zone) for r in recipients]
    return "\n".join(lines) + "\n"


def _human_line(recipient: DsnRecipient, zone: dt.tzinfo) -> str:
    where = f"host {recipient.remote_mta} said: " if recipient.remote_mta else ""
    said = _clip(recipient.diagnostic) or recipient.action.value
    line = f"<{recipient.recipient}>: {where}{said}"
    if recipient.will_retry_until is not None:
        line += f" (will retry until {_date(recipient.will_retry_until, zone)})"
    return line


def _status_fields(report: DsnReport, zone: dt.tzinfo) -> bytes:
    """RFC 3464 §2.2 per-message fields, then §2.3 per-recipient blocks, blank-separated."""
    blocks = [_per_message_fields(report, zone)]
    blocks += [_per_recipient_fields(r, zone) for r in report.recipients]
    return b"\r\n".join(
        "".join(line + "\r\n" for line in block).encode("utf-8") for block in blocks
    )


def _per_message_fields(report: DsnReport, zone: dt.tzinfo) -> list[str]:
    lines = []
    if report.envid:
        lines.append(f"Original-Envelope-Id: {_clip(report.envid)}")  # RFC 3464 §2.2.1
    lines += [f"Reporting-MTA: dns; {report.reporting_mta}",
              f"Arrival-Date: {_date(report.arrival_date, zone)}"]
    return lines


def _per_recipient_fields(recipient: DsnRecipient, zone: dt.tzinfo) -> list[str]:
    lines = []
    if recipient.original_recipient:  # RFC 3464 §2.3.1: only when ORCPT was given
        lines.append(f"Original-Recipient: {_clip(_orcpt(recipient.original_recipient))}")
    lines += [
        f"Final-Recipient: {_address_type(recipient.recipient)}; {recipient.recipient}",
        f"Action: {recipient.action.value}",
        f"Status: {recipient.status}",
    ]
    if recipient.remote_mta:
        lines.append(f"Remote-MTA: dns; {recipient.remote_mta}")
    # RFC 3464 §2.3.6: "smtp" for a remote SMTP reply; an X- type for our own text.
    diagnostic_type = "smtp" if recipient.is_smtp_diagnostic else "X-Postroom"
    if recipient.diagnostic:  # optional (§2.3.6): a local delivery has nothing to quote
        lines.append(f"Diagnostic-Code: {diagnostic_type}; {_clip(recipient.diagnostic)}")
    if recipient.last_attempt is not None:
        lines.append(f"Last-Attempt-Date: {_date(recipient.last_attempt, zone)}")
    if recipient.will_retry_until is not None:
        lines.append(f"Will-Retry-Until: {_date(recipient.will_retry_until, zone)}")
    return lines


def _orcpt(value: str) -> str:
    """RFC 3461 §4.2 ORCPT `addr-type;xtext` as RFC 3464 §2.3.1 writes it: xtext decoded
    (`+2B` → `+`), the address type as given."""
    addr_type, _, xtext = value.partition(";")
    decoded = re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), xtext)
    return f"{addr_type}; {decoded}" if xtext else value


def _address_type(address: str) -> str:
    # RFC 6533 §3: internationalised addresses use the "utf-8" address type.
    return "rfc822" if address.isascii() else "utf-8"


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_DIAGNOSTIC else flat[: _MAX_DIAGNOSTIC - 3] + "..."


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
