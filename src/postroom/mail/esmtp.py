"""The ESMTP parameters a message carries from MAIL and RCPT to final delivery or relay.

Owns `MailParams` and `RcptParams`: smtp/paths.py parses them, the message in transit
(delivery/transit.py) keeps them, and the outbound side reads the DSN ones (RFC 3461)
back. Sans-IO values only; parsing lives with the SMTP grammar.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MailParams:
    size: int | None = None  # RFC 1870
    body: str | None = None  # RFC 6152: "7BIT" or "8BITMIME"; RFC 3030: "BINARYMIME"
    is_smtputf8: bool = False  # RFC 6531
    auth: str | None = None  # RFC 4954 §5, xtext-decoded; "" for AUTH=<>
    ret: str | None = None  # RFC 3461 §4.3: "FULL" or "HDRS"
    envid: str | None = None  # RFC 3461 §4.4: xtext, case kept
    is_requiretls: bool = False  # RFC 8689 §2, §4: every hop must use verified TLS

    @property
    def is_binarymime(self) -> bool:
        """RFC 3030 §3: the body may hold any octets; only BDAT can carry it."""
        return self.body == "BINARYMIME"


@dataclass(frozen=True, slots=True)
class RcptParams:
    notify: tuple[str, ...] = ()  # RFC 3461 §4.1: ("NEVER",) or SUCCESS/FAILURE/DELAY
    orcpt: str | None = None  # RFC 3461 §4.2: "addr-type;xtext" as sent
