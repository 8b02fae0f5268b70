"""How a report leaves: the report message, DKIM-signed and queued (shared by DMARC
aggregate reports and TLS-RPT).

Owns the message format every report we send shares (RFC 7489 §7.2.1.1, RFC 8460 §5.3):
From the report sender (REPORT_SENDER, else noreply-reports@ the domain of the host
name), To the rua address, a Subject naming the report, Date and Message-ID, a
multipart/mixed body of a short text part and the compressed report attached with its
content type and file name; and the hand-over to the outbound queue
(`QueueWorker.enqueue_message`), which DKIM-signs it with the sender domain's key
(outbound/signing.py picks the From domain first) before it is durable.

Invariants: a report is sent from a real, non-null envelope sender (the report sender:
RFC 7489 §7.2.1.1 asks reports to be DKIM-signed and deliverable, and its bounces are
looked at by nobody but must not loop: the report sender is not a report address); the
envelope recipient is the rua address without its `!size` suffix; extra fields
(`extra_headers`, e.g. TLS-RPT's TLS-Report-Domain and TLS-Report-Submitter, RFC 8460
§5.3) are added verbatim after checking they hold no line breaks.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP

from postroom.config import Config

# The queue's `enqueue_message(sender, recipients, raw)`: durable (and signed) on return.
Enqueue = Callable[[str, Sequence[str], bytes], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ReportMessage:
    """What one report message says; `render_report` turns it into bytes."""

    sender: str  # From and envelope sender
    recipient: str  # the rua mailbox (mailto: and !size removed)
    subject: str
    text: str  # the human-readable part
    attachment: bytes  # the compressed report
    content_type: str  # e.g. "application/gzip", "application/tlsrpt+gzip"
    filename: str
    date: dt.datetime
    message_id_domain: str  # right-hand side of the Message-ID
    extra_headers: tuple[tuple[str, str], ...] = field(default=())
    # Non-empty: the body is multipart/report with this report-type (RFC 6522; TLS-RPT's
    # "tlsrpt", RFC 8460 §5.3) instead of multipart/mixed.
    report_type: str = ""


def report_sender(config: Config) -> str:
    """REPORT_SENDER, else noreply-reports@ the host name's domain (its parent when the
    host name has three labels or more: mail.example.org → example.org)."""
    if config.report_sender:
        return config.report_sender
    return f"noreply-reports@{sender_domain(config.hostname)}"


def sender_domain(hostname: str) -> str:
    labels = hostname.lower().rstrip(".").split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else ".".join(labels)


def report_org_name(config: Config) -> str:
    """REPORT_ORG_NAME, else the host name (RFC 7489 Appendix C org_name)."""
    return config.report_org_name or config.hostname


def render_report(report: ReportMessage) -> bytes:
    """The report as wire bytes (CRLF line ends, no Return-Path)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = report.sender
    message["To"] = report.recipient
    message["Subject"] = report.subject
    message["Date"] = email.utils.format_datetime(report.date.astimezone(dt.UTC))
    message["Message-ID"] = f"<{secrets.token_hex(12)}@{report.message_id_domain}>"
    for name, value in report.extra_headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} holds a line break")
        message[name] = value
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: no vacation replies
    message.set_content(report.text)
    maintype, _, subtype = report.content_type.partition("/")
    message.add_attachment(report.attachment, maintype=maintype, subtype=subtype,
                           filename=report.filename)
    if report.report_type:
        message.set_type("multipart/report")
        message.set_param("report-type", report.report_type)
    return message.as_bytes()


async def send_report(enqueue: Enqueue, report: ReportMessage) -> None:
    """Render, sign and queue one report; durable on return (raises what the queue
    raises: the caller logs it and tries again the next day or run)."""
    await enqueue(report.sender, [report.recipient], render_report(report))


@dataclass(frozen=True, slots=True)
class MailtoUri:
    """A `mailto:` report URI: the address and the `!size` limit (RFC 7489 §6.2; 0 =
    none). RFC 8460 rua URIs have no size suffix; it parses the same."""

    address: str
    max_size: int = 0


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_mailto(uri: str) -> MailtoUri | None:
    """A `mailto:local@domain[!size[kmgt]]` URI, or None when it is not a usable one
    (another scheme, no single address, a bad size)."""
    uri = uri.strip()
    if uri[:7].lower() != "mailto:":
        return None
    target, _, size_text = uri[7:].partition("!")
    address = urllib.parse.unquote(target.split("?", 1)[0]).strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c in address for c in ",;<> \t"):
        return None
    max_size = 0
    if size_text:
        digits, unit = size_text.rstrip("kmgtKMGT"), size_text[len(size_text.rstrip("kmgtKMGT")):]
        if not digits.isdigit() or len(unit) > 1 or len(digits) > 15:
            return None
        max_size = int(digits) * _SIZE_UNITS[unit.lower()]
    return MailtoUri(address, max_size)
