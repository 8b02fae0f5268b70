"""The daily DMARC aggregate reports we send (RFC 7489 §7.2): one report per policy
domain evaluated that day, to each of its `rua=mailto:` addresses.

Owns choosing the destinations and sending: the rua of the record as last seen that day
(reports/dmarcrecord.py keeps it with the counts), at most `MAX_RUA` mailto: URIs (more
are legal, but a domain must not make us mail the world); a destination in another
organisational domain than the policy domain only once it agrees (§7.1:
`<policy-domain>._report._dmarc.<destination-domain>` has a TXT record starting
`v=DMARC1`; a temporary DNS failure skips it this time, logged); a report larger than a
URI's `!size` is not sent to it (§7.2.1.1 forbids it; logged). The report is the
Appendix C XML (reports/dmarcxml.py), gzipped, named
`receiver!policy-domain!begin!end.xml.gz` (§7.2.1.1), in a mail from the report sender
(reports/mailing.py), DKIM-signed by the queue.

Invariants: at most `MAX_RECORDS` rows per report (the largest counts); evaluations older
than `KEEP_DAYS` are pruned after each run; the report id is stable for a (day, domain),
so a resent report is recognisable as the same one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import json
import logging

from postroom.config import Config
from postroom.dns.resolver import DnsError, NxDomain, Resolver
from postroom.mailauth.dmarc import organizational_domain
from postroom.reports.daily import day_bounds
from postroom.reports.dmarcrecord import Evaluation
from postroom.reports.dmarcxml import PolicyPublished, ReportMeta, render_feedback
from postroom.reports.mailing import (
    Enqueue,
    MailtoUri,
    ReportMessage,
    parse_mailto,
    report_org_name,
    report_sender,
    send_report,
)
from postroom.store.api import Store
from postroom.store.dmarcreports_api import DmarcPolicySeen

log = logging.getLogger(__name__)

JOB = "dmarc"
MAX_RUA = 2
MAX_RECORDS = 10_000
KEEP_DAYS = 7


class DmarcReportJob:
    """The `DailyJob` of DMARC aggregate reports (reports/daily.py)."""

    name = JOB

    def __init__(self, config: Config, store: Store, resolver: Resolver,
                 enqueue: Enqueue) -> None:
        self.config = config
        self.store = store
        self.resolver = resolver
        self.enqueue = enqueue

    async def run(self, day: dt.date) -> str:
        sent = skipped = 0
        for seen in await self.store.dmarc_policies_for_day(day):
            done, refused = await self.send_domain(day, seen)
            sent, skipped = sent + done, skipped + refused
        await self.store.prune_dmarc_evaluations(day - dt.timedelta(days=KEEP_DAYS))
        return f"{sent} report(s) sent, {skipped} destination(s) skipped"

    async def send_domain(self, day: dt.date, seen: DmarcPolicySeen) -> tuple[int, int]:
        """Send `seen.domain`'s report of `day`; (reports sent, destinations skipped)."""
        policy = json.loads(seen.policy)
        uris = [u for u in (parse_mailto(text) for text in policy.get("rua", [])) if u]
        uris = uris[:MAX_RUA]
        if not uris:
            return 0, 0
        counts = await self.store.dmarc_counts_for_day(day, seen.domain, MAX_RECORDS)
        if not counts:
            return 0, 0
        # Up to MAX_RECORDS rows to decode, write and gzip: off the loop (rule 9).
        meta, name, attachment = await asyncio.to_thread(
            self._report, day, seen.domain, policy,
            [(c.record, c.count) for c in counts])
        sent = skipped = 0
        for uri in uris:
            if not await self._may_send(seen.domain, uri, len(attachment)):
                skipped += 1
                continue
            await send_report(self.enqueue, ReportMessage(
                sender=meta.email, recipient=uri.address,
                subject=f"Report Domain: {seen.domain} Submitter: {self._receiver()}"
                        f" Report-ID: <{meta.report_id}>",
                text=f"DMARC aggregate report for {seen.domain} from {meta.org_name},"
                     f" {day.isoformat()} (UTC).\r\n",
                attachment=attachment, content_type="application/gzip", filename=name,
                date=dt.datetime.now(dt.UTC), message_id_domain=self._receiver()))
            sent += 1
        return sent, skipped

    def _report(self, day: dt.date, domain: str, policy: dict[str, object],
                rows: list[tuple[str, int]]) -> tuple[ReportMeta, str, bytes]:
        records = [(Evaluation.from_json(record), count) for record, count in rows]
        begin, next_day = day_bounds(day)
        end = next_day - dt.timedelta(seconds=1)
        digest = hashlib.sha256(f"{self.config.hostname}|{domain}|{day}".encode()).hexdigest()
        meta = ReportMeta(report_org_name(self.config), report_sender(self.config),
                          f"{day:%Y%m%d}.{digest[:16]}", begin, end)
        published = PolicyPublished(domain, str(policy["p"]), str(policy["sp"]),
                                    int(str(policy["pct"])), str(policy["adkim"]),
                                    str(policy["aspf"]), str(policy.get("fo", "0")))
        xml = render_feedback(meta, published, records)
        name = (f"{self._receiver()}!{domain}!{int(begin.timestamp())}"
                f"!{int(end.timestamp())}.xml.gz")
        return meta, name, gzip.compress(xml, mtime=0)

    def _receiver(self) -> str:
        return report_sender(self.config).rpartition("@")[2]

    async def _may_send(self, domain: str, uri: MailtoUri, size: int) -> bool:
        if uri.max_size and size > uri.max_size:
            log.warning("DMARC report for %s not sent to %s: %d bytes, over its !%d limit",
                        domain, uri.address, size, uri.max_size)
            return False
        target = uri.address.rpartition("@")[2]
        if organizational_domain(target) == organizational_domain(domain):
            return True
        return await self._is_authorised(domain, target)

    async def _is_authorised(self, domain: str, target: str) -> bool:
        """§7.1: the destination's domain publishes that it takes `domain`'s reports."""
        name = f"{domain}._report._dmarc.{target}"
        try:
            texts = await self.resolver.txt(name)
        except NxDomain:
            texts = []
        except DnsError as error:
            log.warning("DMARC report for %s not sent to %s this time: %s", domain, target,
                        error)
            return False
        if any(text.strip().upper().startswith("V=DMARC1") for text in texts):
            return True
        log.info("DMARC report for %s not sent to %s: no v=DMARC1 TXT at %s (RFC 7489"
                 " §7.1)", domain, target, name)
        return False
