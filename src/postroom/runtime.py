"""The services a protocol session may use, built once by app.py.

Owns nothing but the bundle: sessions receive a `Runtime` instead of importing concrete
implementations, so dependencies point one way (wire ← commands ← session ← app) and tests
can build a Runtime around a temporary store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postroom.accounts.service import AccountService
from postroom.config import Config
from postroom.delivery.spamfiling import AccountScorer
from postroom.dns.resolver import Resolver
from postroom.junk import JunkFilter
from postroom.store.api import Store
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed
from postroom.tls.contexts import TlsContexts


@dataclass(slots=True)
class Runtime:
    config: Config
    store: Store
    blobs: BlobStore
    feed: ChangeFeed
    accounts: AccountService
    tls: TlsContexts
    resolver: Resolver  # DNS_NAMESERVERS (or the system resolver), shared and cached
    # Set when SIGTERM arrives: sessions finish the transaction in flight, then refuse
    # new work (SMTP 421, IMAP BYE, POP3 -ERR) and close.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    # The per-account junk filter (issue 18): trained on IMAP moves and sent mail, scoring
    # at delivery; None when neither ENABLE_JUNK_FILTER nor RSPAMD_LEARN asks for it.
    junk: JunkFilter | None = None
    # Per-account spam signals (issue 18: the learning filter), asked for each local
    # recipient at delivery (delivery/spamfiling.py); app.py wires them.
    account_scorers: tuple[AccountScorer, ...] = ()
    # Issue 20 (reports/service.py, wired by app.py): inbound DMARC evaluations counted
    # for the aggregate reports we send; mail to report addresses read for reports.
    # (Protocols here: reports/ builds on outbound/, which builds on this module.)
    dmarc_record: Callable[..., None] | None = None  # DmarcRecorder.record
    report_intake: ReportOffer | None = None  # ReportIntake


class ReportOffer(Protocol):
    def offer(self, recipients: Sequence[str], blob_id: str, size: int) -> bool: ...
