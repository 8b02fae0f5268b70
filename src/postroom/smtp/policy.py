"""Pure SMTP policy: what each listener offers and what it may accept.

Owns the per-port rules of issue 2 and the relay decision, as functions of plain facts
(no I/O, no store): the session gathers facts, asks here, and sends the reply it gets.
- MX (25): no AUTH; local recipients only, unless the client is in TRUSTED_NETWORKS.
- SUBMISSION (587): AUTH only after STARTTLS (RFC 8314 §3.3 cleartext must not carry
  passwords); MAIL without AUTH is 530 5.7.0.
- SUBMISSIONS (465): implicit TLS (RFC 8314 §3.3), otherwise as 587.
- SPF (RFC 7208) at RCPT on 25 and SPOOF_PROTECTION on authenticated submission are
  inbound checks (checks/spf.py, checks/spoofing.py), run after the rules here.
- A bare LF (SMTPD_FORBID_BARE_NEWLINE, Postfix 3.9's smtpd_forbid_bare_newline) is
  normalized on every port by default; `reject` applies to every port alike (a broken
  client that logged in is still broken) except TRUSTED_NETWORKS, which are normalized,
  as Postfix exempts smtpd_forbid_bare_newline_exclusions ($mynetworks).
Invariant: a recipient that is neither local nor relay-permitted is always refused.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from postroom.smtp import replies
from postroom.smtp.replies import Reply
from postroom.smtp.wire import BareNewlinePolicy

# RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted; more is our choice.
MAX_RECIPIENTS = 100
# RFC 5321 §6.3 suggests a limit on trace headers to catch loops; Postfix uses 50.
MAX_RECEIVED_HEADERS = 50

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SmtpMode(enum.Enum):
    MX = "mx"
    SUBMISSION = "submission"
    SUBMISSIONS = "submissions"

    @property
    def is_submission(self) -> bool:
        return self is not SmtpMode.MX


@dataclass(frozen=True, slots=True)
class SessionFacts:
    mode: SmtpMode
    is_tls: bool
    is_authenticated: bool
    is_trusted_client: bool  # in TRUSTED_NETWORKS

    @property
    def may_relay(self) -> bool:
        return self.is_authenticated or self.is_trusted_client


def is_trusted(client_ip: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def bare_newline_policy(setting: str, is_trusted_client: bool) -> BareNewlinePolicy:
    """SMTPD_FORBID_BARE_NEWLINE (`normalize`, `yes` = its Postfix alias, or `reject`).
    Exempt clients are normalized rather than let through as Postfix's `no` would: the
    end of data stays <CRLF>.<CRLF> for everyone (smuggling, 2023)."""
    if setting.lower() == "reject" and not is_trusted_client:
        return BareNewlinePolicy.REJECT
    return BareNewlinePolicy.NORMALIZE


def may_offer_starttls(facts: SessionFacts) -> bool:
    return not facts.is_tls


def may_offer_auth(facts: SessionFacts) -> bool:
    return facts.mode.is_submission and facts.is_tls


def capabilities(facts: SessionFacts, size_limit: int) -> list[str]:
    """EHLO keywords (RFC 5321 §4.1.1.1), in the order Postfix lists them."""
    keywords = ["PIPELINING", f"SIZE {size_limit}" if size_limit else "SIZE"]
    if may_offer_starttls(facts):
        keywords.append("STARTTLS")
    if may_offer_auth(facts):
        keywords.append("AUTH PLAIN LOGIN")
    keywords += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"]
    return keywords


def check_auth_allowed(facts: SessionFacts) -> Reply | None:
    """None when AUTH may start; else the refusal."""
    if not facts.mode.is_submission:
        return replies.AUTH_NOT_ENABLED
    if not facts.is_tls:
        return replies.MUST_STARTTLS  # RFC 3207 §4, RFC 4954 §4 (no plaintext passwords)
    if facts.is_authenticated:
        return replies.AUTH_ALREADY  # RFC 4954 §4: only one successful AUTH
    return None


def check_mail_allowed(facts: SessionFacts) -> Reply | None:
    if facts.mode.is_submission and not facts.is_authenticated:
        return replies.MUST_STARTTLS if not facts.is_tls else replies.AUTH_REQUIRED
    return None


def check_size(declared: int | None, size_limit: int) -> Reply | None:
    """RFC 1870 §6: refuse at MAIL when the declared size is over the limit."""
    if declared is not None and size_limit and declared > size_limit:
        return replies.size_too_big(size_limit)
    return None


class RecipientClass(enum.Enum):
    LOCAL = "local"  # resolves to at least one local mailbox (maybe remote targets too)
    UNKNOWN = "unknown"  # a local domain, but no account, alias or catch-all
    FORWARD = "forward"  # a local alias whose targets are all remote
    REMOTE = "remote"  # not a local domain (or not a local-able address)


def decide_recipient(recipient_class: RecipientClass, facts: SessionFacts,
                     has_outbound: bool, address: str) -> Reply:
    """The RCPT reply. A remote address needs a relay-permitted client (authenticated, or
    in TRUSTED_NETWORKS) and an outbound queue to hand it to. Remote targets of a local
    alias are the alias owner's choice, not the client's, so they need only the queue
    (receive.py logs and skips them while no queue is configured)."""
    if recipient_class is RecipientClass.UNKNOWN:
        return replies.user_unknown(address)
    if recipient_class is RecipientClass.REMOTE:
        if not facts.may_relay:
            return replies.relay_denied(address)
        if not has_outbound:
            return replies.relay_unavailable(address)
    if recipient_class is RecipientClass.FORWARD and not has_outbound:
        return replies.relay_unavailable(address)
    return replies.RECIPIENT_OK
