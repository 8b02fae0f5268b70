"""The message in transit: what SMTP receiving, the inbound checks, local delivery and the
outbound queue all hand each other.

Owns the data types only (no I/O but `ReceivedMessage.open_body`): the client's facts
(`ClientInfo`), the envelope as it grows during MAIL and RCPT (`Envelope`), an accepted
recipient, a spam-score `Symbol`, a message spooled after DATA (`ReceivedMessage`) and a
recipient handed to the outbound queue. smtp/ builds them; checks/ reads them; outbound/
and delivery/ consume them. Nothing here imports a protocol package, so every floor above
can use them.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from postroom.delivery.local import INBOX
from postroom.delivery.recipients import LocalTarget
from postroom.mail.esmtp import MailParams, RcptParams
from postroom.mailauth.headerscan import HeaderFacts

if TYPE_CHECKING:
    from postroom.mailauth.spf import SpfResult

# Up to this size a body held in memory is scanned and parsed on the event loop
# (ARCHITECTURE.md rule 9, decision 0021); larger ones off it.
ON_LOOP_LIMIT = 128 * 1024


@dataclass(frozen=True, slots=True)
class Symbol:
    """One named contribution to a message's spam score (rspamd's symbol, SpamAssassin's
    test): `score` may be negative (a DNSWL hit); `detail` says what matched (for the log
    and `postroom filter check`, never for the X-Spam-Status header). checks/api.py
    re-exports it: checks return symbols in verdicts, delivery adds per-account ones."""

    name: str
    score: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    helo_name: str
    is_esmtp: bool
    tls_version: str = ""
    tls_cipher: str = ""
    tls_bits: int = 0
    auth_user: str = ""
    is_trusted: bool = False  # in TRUSTED_NETWORKS
    is_submission: bool = False  # came in on 587/465, not port 25

    @property
    def is_ours(self) -> bool:
        """One of our users or networks: its mail is signed, not judged or ARC-sealed."""
        return self.is_submission or bool(self.auth_user) or self.is_trusted

    @property
    def protocol(self) -> str:
        """RFC 3848 `with` keyword."""
        if not self.is_esmtp:
            return "SMTP"
        return "ESMTP" + ("S" if self.tls_version else "") + ("A" if self.auth_user else "")


@dataclass(slots=True)
class AcceptedRecipient:
    """One accepted RCPT, resolved. `mailbox` is where local copies go; a check's
    quarantine verdict may set it (e.g. "Junk")."""

    address: str
    params: RcptParams
    local: tuple[LocalTarget, ...] = ()
    remote: tuple[str, ...] = ()
    mailbox: str = INBOX


@dataclass(slots=True)
class Envelope:
    """One mail transaction between MAIL and the end of DATA. `client` is fixed for its
    whole life: HELO, STARTTLS and AUTH are refused or end the transaction."""

    queue_id: str
    client: ClientInfo
    sender: str  # "" for the null reverse-path
    params: MailParams
    recipients: list[AcceptedRecipient] = field(default_factory=list)
    spf: SpfResult | None = None  # evaluated once, at the first RCPT that needs it
    # Scores the checks gave before DATA (checks/pipeline.py records them at RCPT); the
    # MESSAGE stage's verdict starts from them.
    symbols: list[Symbol] = field(default_factory=list)
    filter_decision: str = ""  # copied from the message after DATA, for the log line


@dataclass(frozen=True, slots=True)
class OutboundRecipient:
    address: str
    notify: tuple[str, ...] = ()  # RFC 3461, from the RCPT that led here
    orcpt: str | None = None


@dataclass(slots=True)
class ReceivedMessage:
    queue_id: str
    client: ClientInfo
    sender: str  # "" for the null reverse-path
    mail_params: MailParams
    recipients: list[AcceptedRecipient]
    spool_path: Path  # holds the message only when `body` is None
    size: int
    received_at: dt.datetime
    body: bytes | None = None  # the message as received, when it stayed in memory
    # Extra header lines (CRLF-terminated bytes) placed above our Received header: the
    # fields the inbound checks' verdicts add (e.g. Authentication-Results, RFC 8601 §5).
    extra_headers: list[bytes] = field(default_factory=list)
    spf: SpfResult | None = None  # evaluated at RCPT on port 25, when it was
    header: HeaderFacts = field(default_factory=HeaderFacts)  # set by the receiver
    symbols: tuple[Symbol, ...] = ()  # the envelope's, from the stages before DATA
    filter_decision: str = ""  # the spam verdict for the log (delivery/spamfiling.py)
    # Our trace fields (Return-Path, Received, submission's additions), rendered once:
    # every stored copy and the Sieve input share them (smtp/receive.py).
    rendered_trace: tuple[bytes, bytes, bytes] | None = None

    @property
    def is_small(self) -> bool:
        """Held in memory and small enough to scan or parse on the event loop."""
        return self.body is not None and len(self.body) <= ON_LOOP_LIMIT

    def open_body(self) -> IO[bytes]:
        """The message as the client sent it. Reading a spool file blocks: unless
        `body` is set, read it off the event loop."""
        if self.body is not None:
            return io.BytesIO(self.body)
        return self.spool_path.open("rb")
