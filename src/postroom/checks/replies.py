"""The replies the built-in inbound checks refuse with, named (as smtp/replies.py names the
session's): Postfix's wording where clients or humans know it, RFC 3463 enhanced codes.

Owns texts only; a new check may keep its few replies in its own file instead.
"""

from __future__ import annotations

from postroom.checks.api import CheckReply


# RFC 7372 §3.2: X.7.23 "SPF validation failed", X.7.24 "SPF validation error".
def spf_fail(address: str) -> CheckReply:
    return CheckReply(550, "5.7.23", f"<{address}>: Recipient address rejected: "
                      "Message rejected due to: SPF fail - not authorized.")


def spf_temperror(address: str) -> CheckReply:
    return CheckReply(451, "4.7.24", f"<{address}>: Recipient address rejected: "
                      "SPF temporary error, try again later")


def sender_not_owned(sender: str, login: str) -> CheckReply:
    """SPOOF_PROTECTION at MAIL (Postfix reject_sender_login_mismatch wording)."""
    return CheckReply(553, "5.7.1",
                      f"<{sender}>: Sender address rejected: not owned by user {login}")


def from_not_owned(address: str, login: str) -> CheckReply:
    """SPOOF_PROTECTION after DATA: a From: address the login does not own."""
    return CheckReply(553, "5.7.1",
                      f"<{address}>: From header address rejected: not owned by user {login}")


def header_address_not_owned(field_name: str, address: str, login: str) -> CheckReply:
    """SPOOF_PROTECTION after DATA: a Sender: address, or a Reply-To: address in a local
    domain, that the login does not own."""
    return CheckReply(553, "5.7.1", f"<{address}>: {field_name} header address rejected: "
                      f"not owned by user {login}")


def header_unparsable(field_name: str) -> CheckReply:
    """An originator field that cannot be read whole: never treated as absent."""
    return CheckReply(550, "5.6.0",
                      f"Message rejected: {field_name} header field cannot be parsed")


def no_single_author_domain(reason: str) -> CheckReply:
    """DMARC on port 25 needs exactly one From field naming one domain (RFC 7489 §6.6.1,
    RFC 5322 §3.6: exactly one From)."""
    return CheckReply(550, "5.7.1",
                      f"Message rejected: {reason}; DMARC needs one author domain")


def dmarc_rejected(domain: str) -> CheckReply:
    return CheckReply(550, "5.7.1", f"Message rejected due to DMARC policy of {domain}")
