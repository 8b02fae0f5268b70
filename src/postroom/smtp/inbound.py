"""Inbound mail authentication on port 25: SPF at RCPT, DKIM and DMARC after DATA, and the
Authentication-Results field that records them.

Owns `InboundAuth`: the SPF evaluation the session asks for once per transaction, and the
after-DATA `MessageCheck` (receive.py) that verifies every DKIM signature, evaluates DMARC
for the author domain(s), applies the disposition (reject → 550 5.7.1 and nothing stored;
quarantine → every recipient's Junk; none → INBOX) and prepends one RFC 8601
Authentication-Results field with authserv-id = the hostname.

Decisions:
- TRUSTED_NETWORKS clients are ours (docker-mailserver hands them to OpenDKIM as internal
  hosts and OpenDMARC ignores them): nothing is evaluated, A-R says `none`.
- DKIM and DMARC run only when some recipient resolves to a local mailbox; a message that
  is only forwarded is judged by the next hop (it gets the A-R with what was checked).
- With ENABLE_POLICYD_SPF=0 nothing is refused at RCPT, but when DMARC is on, SPF is still
  evaluated after DATA and recorded: DMARC passes through aligned SPF (RFC 7489 §4.2), and
  switching off SPF refusals must not turn such mail into DMARC failures.
- RFC 7489 §6.6.1: a From with several author domains is checked for each domain and the
  strictest disposition among them applies; no usable author domain is `permerror`,
  recorded and delivered (the handling of such messages is outside RFC 7489).
Invariants: DNS is awaited on the loop through the Resolver; pyspf and dkimpy run in
worker threads (mailauth/); the message is read whole only for DKIM, off-loop, and only
up to the size limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from postroom.config import Config
from postroom.dns.resolver import Resolver
from postroom.mailauth.authresults import render_header
from postroom.mailauth.dkim import DkimResult, verify_dkim
from postroom.mailauth.dmarc import DmarcResult, DmarcVerdict, Policy, check_dmarc
from postroom.mailauth.spf import SpfResult, check_spf
from postroom.smtp import replies
from postroom.smtp.headerscan import parse_authors
from postroom.smtp.receive import ReceivedMessage
from postroom.smtp.replies import Reply

log = logging.getLogger("postroom.smtp")

JUNK = "Junk"
# With POSTFIX_MESSAGE_SIZE_LIMIT=0 (no limit) DKIM still reads at most this much.
UNLIMITED_DKIM_READ = 64 * 1024 * 1024

_STRICTNESS = {Policy.NONE: 0, Policy.QUARANTINE: 1, Policy.REJECT: 2}
_VERDICT_WEIGHT = {DmarcVerdict.PASS: 0, DmarcVerdict.NONE: 1, DmarcVerdict.PERMERROR: 2,
                   DmarcVerdict.TEMPERROR: 3, DmarcVerdict.FAIL: 4}


class InboundAuth:
    def __init__(self, config: Config, resolver: Resolver,
                 rng: Callable[[], float] = random.random) -> None:
        self._config = config
        self._resolver = resolver
        self._rng = rng  # DMARC pct sampling (RFC 7489 §6.3)

    async def evaluate_spf(self, client_ip: str, sender: str, helo: str) -> SpfResult:
        result = await check_spf(self._resolver, client_ip, sender, helo)
        log.info("client=%s spf=%s %s=%s %s", client_ip, result.result, result.property_name,
                 result.property_value, result.explanation)
        return result

    async def check(self, message: ReceivedMessage) -> Reply | None:
        client = message.client
        if client.is_trusted or client.auth_user:
            message.extra_headers.append(render_header(self._config.hostname))
            return None
        spf = message.spf
        dkim: list[DkimResult] = []
        dmarc: DmarcResult | None = None
        if any(recipient.local for recipient in message.recipients):
            if spf is None and self._config.enable_dmarc:
                spf = await self.evaluate_spf(client.ip, message.sender, client.helo_name)
            if self._config.enable_dkim:
                dkim = await self._verify_dkim(message)
            if self._config.enable_dmarc:
                dmarc = await self._evaluate_dmarc(message, spf, dkim)
        if dmarc is not None:
            refusal = self._apply(message, dmarc)
            if refusal is not None:
                return refusal
        message.extra_headers.append(
            render_header(self._config.hostname, spf=spf, dkim=dkim, dmarc=dmarc))
        return None

    async def _verify_dkim(self, message: ReceivedMessage) -> list[DkimResult]:
        limit = self._config.message_size_limit or UNLIMITED_DKIM_READ
        if message.body is not None:
            raw = message.body if len(message.body) <= limit else None
        else:
            raw = await asyncio.to_thread(_read_bounded, message.spool_path, limit)
        if raw is None:
            log.warning("queue_id=%s larger than %d bytes: DKIM not verified",
                        message.queue_id, limit)
            return []
        results = await verify_dkim(self._resolver, raw)
        for result in results:
            log.info("queue_id=%s dkim=%s d=%s s=%s %s", message.queue_id, result.result,
                     result.domain, result.selector, result.reason)
        return results

    async def _evaluate_dmarc(self, message: ReceivedMessage, spf: SpfResult | None,
                              dkim: Sequence[DkimResult]) -> DmarcResult:
        authors = parse_authors(message.header.from_values)
        domains = list(dict.fromkeys(author.domain for author in authors if author.domain))
        if not domains:
            reason = "no From header field" if not message.header.from_values \
                else "no usable RFC5322.From domain"
            return DmarcResult(DmarcVerdict.PERMERROR, Policy.NONE, "", reason=reason)
        results = await asyncio.gather(*(
            check_dmarc(self._resolver, domain, spf, dkim, self._rng) for domain in domains))
        # RFC 7489 §6.6.1: several author domains → the strictest policy among failures.
        return max(results, key=lambda result: (_STRICTNESS[result.disposition],
                                                _VERDICT_WEIGHT[result.result]))

    def _apply(self, message: ReceivedMessage, dmarc: DmarcResult) -> Reply | None:
        log.info("queue_id=%s dmarc=%s from=%s disposition=%s %s", message.queue_id,
                 dmarc.result, dmarc.from_domain, dmarc.disposition, dmarc.reason)
        if dmarc.disposition is Policy.REJECT:
            return replies.dmarc_rejected(dmarc.from_domain)
        if dmarc.disposition is Policy.QUARANTINE:
            for recipient in message.recipients:
                recipient.mailbox = JUNK
        return None


def _read_bounded(path: Path, limit: int) -> bytes | None:
    """The whole spooled message, or None when it is larger than `limit`."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None
