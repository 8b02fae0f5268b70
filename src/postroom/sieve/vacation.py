"""Whether a vacation reply may go out, and what it looks like (RFC 5230 §4.5–§5,
RFC 3834), as pure functions; delivery adds the once-per-period check (it needs the
store) and queues the reply.

Owns the suppression rules that depend only on the message and the user: no reply to
the null sender or to ourselves, to automatic mail (Auto-Submitted other than "no",
Precedence bulk/list/junk, List-* fields, MAILER-DAEMON-style senders), and none
unless one of the user's addresses (the recipient, `:addresses`, the account's aliases)
is in To, Cc, Bcc, Resent-To, Resent-Cc or Resent-Bcc (§4.5); and rendering the reply:
`Auto-Submitted: auto-replied` (RFC 3834 §5), `In-Reply-To` / `References`, the
subject ("Auto: " + the original's unless `:subject`), `:mime` bodies.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable

from postroom.sieve.actions import Vacation
from postroom.sieve.message import SieveMessage

MIN_SECONDS = 60  # RFC 6131 §2: implementations pick their minimum; Pigeonhole's is 1 day
MAX_SECONDS = 90 * 86400
_RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
_AUTOMATIC_SENDERS = ("mailer-daemon", "listserv", "majordomo", "owner-", "-request",
                      "postmaster", "noreply", "no-reply", "bounce")  # fmt: skip


def clamp_period(seconds: int) -> int:
    return max(MIN_SECONDS, min(MAX_SECONDS, seconds))


def suppression_reason(action: Vacation, message: SieveMessage, sender: str,
                       own_addresses: Iterable[str]) -> str:  # fmt: skip
    """Why no reply goes out ("" when one may): RFC 5230 §4.5 and RFC 3834 §2."""
    own = {address.lower() for address in own_addresses} | {
        address.lower() for address in action.addresses}
    sender_lower = sender.lower()
    if not sender:
        return "null sender"
    if sender_lower in own:
        return "the sender is the user"
    local = sender_lower.rpartition("@")[0]
    if any(local.startswith(word) or local.endswith(word) for word in _AUTOMATIC_SENDERS):
        return "automatic sender"
    auto = " ".join(message.values("auto-submitted")).strip().lower()
    if auto and not auto.startswith("no"):
        return "Auto-Submitted message"
    precedence = " ".join(message.values("precedence")).strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    if any(message.has(name) for name in ("list-id", "list-post", "list-unsubscribe",
                                          "list-help", "x-list")):  # fmt: skip
        return "mailing list message"
    recipients = {address.lower() for name in _RECIPIENT_FIELDS
                  for address in message.addresses(name)}  # fmt: skip
    if not recipients & own:
        return "none of the user's addresses is in a recipient field"
    return ""


def render_reply(action: Vacation, message: SieveMessage, *, sender: str, from_address: str,
                 message_id: str, date: str) -> bytes:  # fmt: skip
    """The reply as bytes with CRLF line ends (RFC 5230 §5, RFC 3834 §3)."""
    original_subject = (message.values("subject") or [""])[0]
    subject = action.subject or f"Auto: {original_subject}".strip()
    references = " ".join(message.values("references")).split()
    original_id = (message.values("message-id") or [""])[0].strip()
    if original_id:
        references.append(original_id)
    lines = [
        f"From: {action.from_address or from_address}",
        f"To: {sender}",
        f"Subject: {_encode(subject)}",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        "Auto-Submitted: auto-replied (vacation)",
        "Precedence: bulk",
    ]
    if original_id:
        lines.append(f"In-Reply-To: {original_id}")
        lines.append(f"References: {' '.join(references[-10:])}")
    if action.is_mime:  # :mime: the reason is a MIME entity (headers and body)
        lines.append("MIME-Version: 1.0")
        body = action.reason.replace("\r\n", "\n").replace("\n", "\r\n")
        return ("\r\n".join(lines) + "\r\n" + body).encode("utf-8")
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
              "Content-Transfer-Encoding: 8bit"]  # fmt: skip
    body = action.reason.replace("\r\n", "\n").replace("\n", "\r\n")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def _encode(text: str) -> str:
    if text.isascii():
        return text
    import email.header

    return email.header.Header(text, "utf-8").encode()


def reply_sender(action: Vacation, recipient: str) -> str:
    """The address the reply comes from: the :from address when given, else the
    envelope recipient. Delivery checks that :from is one of the user's own addresses
    (RFC 5230 §4.4 lets the server ignore a foreign one)."""
    if action.from_address:
        address = email.utils.parseaddr(action.from_address)[1]
        if address:
            return address
    return recipient
