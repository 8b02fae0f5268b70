"""The daily TLS-RPT job (RFC 8460): for each recipient domain we delivered to on a UTC
day, its report sent to the rua of its `_smtp._tls` TXT record.

Owns `TlsReportJob`, the `DailyJob` named "tlsrpt" that reports/daily.py runs once per
day: the record looked up through our resolver (§3), the report built and gzipped
(reports/tlsrptjson.py), sent to each `mailto:` rua as a DKIM-signed multipart/report
mail (§5.3, through reports/mailing.py and the outbound queue) and POSTed to each
`https:` rua (§5.2, h11 through checks/httpclient.py; TLS verified against
SMTP_TLS_CAFILE, else the system's store; `HTTPS_TIMEOUT` per POST), then the day's
outcomes (and any older ones never sent) forgotten.

Invariants: one destination failing (a mailbox refused at enqueue, a web server down or
answering non-2xx) is logged and does not stop the others nor make the day run again —
a day's report is never sent twice to a destination that took it; at most `MAX_DOMAINS`
domains a day, `MAX_RUA` destinations each and `MAX_REPORT` compressed bytes a report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
import ssl
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from postroom.checks import httpclient
from postroom.checks.scanning import ScannerError
from postroom.clock import Clock
from postroom.config import Config
from postroom.dns.resolver import DnsError, Resolver
from postroom.reports.mailing import (
    Enqueue,
    ReportMessage,
    report_org_name,
    report_sender,
    send_report,
)
from postroom.reports.tlsrptjson import (
    MEDIA_GZIP,
    Reporter,
    build_report,
    parse_rua,
    render_report,
    report_filename,
)
from postroom.store.tlsreports_api import TlsOutcomeCount, TlsReportStore

log = logging.getLogger(__name__)

MAX_DOMAINS = 5000  # policy domains reported per day
MAX_REPORT = 1024 * 1024  # one gzipped report
HTTPS_TIMEOUT = 30.0  # one POST: connect, send, answer
_ADDRESS = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}")


@dataclass(frozen=True, slots=True)
class Destinations:
    mailboxes: tuple[str, ...]
    urls: tuple[str, ...]


def split_rua(uris: Sequence[str]) -> Destinations:
    """mailto: addresses (query and %-escapes undone, RFC 6068) and https: URLs."""
    mailboxes, urls = [], []
    for uri in uris:
        if uri.lower().startswith("mailto:"):
            address = unquote(uri[len("mailto:"):].partition("?")[0]).strip()
            if _ADDRESS.fullmatch(address):
                mailboxes.append(address)
        elif urlsplit(uri).hostname:
            urls.append(uri)
    return Destinations(tuple(mailboxes), tuple(urls))


def verifying_context(cafile: str) -> ssl.SSLContext:
    """What an https: rua's certificate is checked against (blocking: a thread)."""
    return ssl.create_default_context(cafile=cafile or None)


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def post_report(url: str, data: bytes, context: ssl.SSLContext) -> None:
    """POST a gzipped report (§5.2); raises OSError, TimeoutError or ScannerError,
    or ValueError for an answer other than 2xx."""
    parts = urlsplit(url)
    endpoint = httpclient.Endpoint(parts.hostname or "", parts.port or 443, True, "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    async with asyncio.timeout(HTTPS_TIMEOUT):
        response = await httpclient.post(endpoint, target, [("Content-Type", MEDIA_GZIP)],
                                         _once(data), len(data), context=context)
    if not 200 <= response.status < 300:
        raise ValueError(f"answered {response.status}")


def reporter_of(config: Config) -> Reporter:
    """organization-name REPORT_ORG_NAME, contact-info the report sender (REPORT_SENDER),
    submitter OVERRIDE_HOSTNAME."""
    return Reporter(report_org_name(config), report_sender(config), config.hostname)


class TlsReportJob:
    """The "tlsrpt" daily job."""

    name = "tlsrpt"

    @classmethod
    def from_config(cls, config: Config, store: TlsReportStore, resolver: Resolver,
                    enqueue: Enqueue, clock: Clock) -> TlsReportJob:
        return cls(store, resolver, enqueue, reporter_of(config), clock,
                   cafile=config.smtp_tls_cafile)

    def __init__(self, store: TlsReportStore, resolver: Resolver, enqueue: Enqueue,
                 reporter: Reporter, clock: Clock, *, cafile: str = "") -> None:
        self.store = store
        self.resolver = resolver
        self.enqueue = enqueue
        self.reporter = reporter
        self.clock = clock
        self.cafile = cafile

    async def rua(self, domain: str) -> list[str]:
        """The rua URIs of `domain`'s TLS-RPT record; none when there is no record or
        DNS fails (the report of that day is then not sent)."""
        try:
            return parse_rua(await self.resolver.txt(f"_smtp._tls.{domain}"))
        except DnsError as error:
            log.info("TLS-RPT: no report for %s: %s", domain, error)
            return []

    async def run(self, day: dt.date) -> str:
        by_domain: dict[str, list[TlsOutcomeCount]] = {}
        for count in await self.store.tls_outcomes(day):
            by_domain.setdefault(count.policy_domain, []).append(count)
        context: ssl.SSLContext | None = None
        sent = failed = unreported = 0
        for domain in sorted(by_domain)[:MAX_DOMAINS]:
            destinations = split_rua(await self.rua(domain))
            if not destinations.mailboxes and not destinations.urls:
                unreported += 1
                continue
            if destinations.urls and context is None:
                context = await asyncio.to_thread(verifying_context, self.cafile)
            ok, bad = await self._send(domain, day, by_domain[domain], destinations, context)
            sent, failed = sent + ok, failed + bad
        await self.store.delete_tls_outcomes(day)
        return (f"{sent} sent, {failed} failed, {unreported} of {len(by_domain)} domains"
                " without a TLS-RPT record")

    async def _send(self, domain: str, day: dt.date, counts: Sequence[TlsOutcomeCount],
                    destinations: Destinations, context: ssl.SSLContext | None
                    ) -> tuple[int, int]:  # fmt: skip
        unique = secrets.token_hex(8)
        report_id = f"{day.isoformat()}.{unique}@{self.reporter.submitter}"
        data = render_report(build_report(self.reporter, domain, day, counts, report_id))
        if len(data) > MAX_REPORT:
            log.warning("TLS-RPT: the report for %s is %d bytes gzipped, over %d: not sent",
                        domain, len(data), MAX_REPORT)
            return 0, 1
        filename = report_filename(self.reporter.submitter, domain, day, unique)
        ok = bad = 0
        for mailbox in destinations.mailboxes:
            if await self._mail(mailbox, domain, report_id, data, filename):
                ok += 1
            else:
                bad += 1
        for url in destinations.urls:
            if context is not None and await self._post(url, domain, data, context):
                ok += 1
            else:
                bad += 1
        return ok, bad

    async def _mail(self, mailbox: str, domain: str, report_id: str, data: bytes,
                    filename: str) -> bool:
        submitter = self.reporter.submitter
        message = ReportMessage(
            sender=self.reporter.contact, recipient=mailbox,
            subject=f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>",
            text=(f"This is an aggregate TLS report (RFC 8460) from {submitter} about mail"
                  f" delivered to {domain}.\n"),
            attachment=data, content_type=MEDIA_GZIP, filename=filename,
            date=self.clock.now(), message_id_domain=submitter,
            extra_headers=(("TLS-Report-Domain", domain), ("TLS-Report-Submitter", submitter)),
            report_type="tlsrpt")
        try:
            await send_report(self.enqueue, message)
        except Exception as error:  # one destination must not stop the others
            log.warning("TLS-RPT: the report for %s to %s was not queued: %s", domain,
                        mailbox, error)
            return False
        return True

    async def _post(self, url: str, domain: str, data: bytes, context: ssl.SSLContext
                    ) -> bool:  # fmt: skip
        try:
            await post_report(url, data, context)
        except (OSError, TimeoutError, ScannerError, ValueError) as error:
            log.warning("TLS-RPT: the report for %s to %s failed: %s", domain, url,
                        error or type(error).__name__)
            return False
        return True
