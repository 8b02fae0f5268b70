"""DKIM and DMARC after DATA on port 25, and the Authentication-Results field recording
them with SPF.

Owns `DmarcCheck`: verifies every DKIM signature, evaluates DMARC for the author
domain(s) and turns the disposition into a verdict (reject → 550 5.7.1 and nothing
stored; quarantine → every recipient's Junk; none → INBOX), with one RFC 8601
Authentication-Results field (authserv-id = the hostname) to prepend in every case but a
refusal.

Decisions:
- TRUSTED_NETWORKS clients are ours (docker-mailserver hands them to OpenDKIM as internal
  hosts and OpenDMARC ignores them): nothing is evaluated, A-R says `none`. Submission
  ports are not checked at all (no A-R).
- DKIM and DMARC run only when some recipient resolves to a local mailbox; a message that
  is only forwarded is judged by the next hop (it gets the A-R with what was checked).
- With ENABLE_POLICYD_SPF=0 nothing is refused at RCPT, but when DMARC is on, SPF is still
  evaluated after DATA and recorded: DMARC passes through aligned SPF (RFC 7489 §4.2), and
  switching off SPF refusals must not turn such mail into DMARC failures.
- RFC 7489 §6.6.1 evaluates one author domain. A message with no From field, several
  From fields (RFC 5322 §3.6 wants exactly one), a From naming no address, an address
  without a usable domain, or addresses in several domains is refused (550 5.7.1) before
  any DNS work: these are the forms §6.6.1 says are typically rejected, and passing them
  would let a spoofed author ride along with, or hide behind, another.
- ARC (RFC 8617, ENABLE_ARC): a message carrying ARC fields has its chain validated
  (mailauth/arc.py) whether it is delivered or forwarded (our seal on a forward states
  the result, outbound/arcseal.py), and A-R says `arc=`. When DMARC fails, the chain
  passes and the newest seal's d= is in ARC_TRUSTED_SEALERS, the disposition becomes
  none with the override reason trusted_forwarder (RFC 7489 §6.7, §10.1: the forwarder
  vouches for what it saw); any other chain changes nothing.
- A From field that cannot be parsed whole (mail/originators.py; headerscan.py marks one
  it could not keep whole) is never read as "no From": it is refused from every client
  that is not ours, with DMARC on (550 5.7.1) or off (550 5.6.0).
Invariants: DNS is awaited on the loop through the Resolver; pyspf and dkimpy run in
worker threads (mailauth/); the message is read whole only for DKIM, off-loop, and only
up to the size limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from postroom.checks import replies
from postroom.checks.api import ACCEPT, Action, ReceivedMessage, Verdict, refuse
from postroom.checks.spf import evaluate_spf
from postroom.config import Config
from postroom.dns.resolver import Resolver
from postroom.mail.originators import Unparsable
from postroom.mailauth.arc import ArcResult, has_arc_fields, verify_arc
from postroom.mailauth.authresults import render_header
from postroom.mailauth.dkim import DkimResult, verify_dkim
from postroom.mailauth.dmarc import (
    DmarcResult,
    DmarcVerdict,
    Policy,
    PolicyOverride,
    check_dmarc,
    override_policy,
)
from postroom.mailauth.headerscan import HeaderFacts, authors_of

log = logging.getLogger("postroom.checks")

JUNK = "Junk"
# With POSTFIX_MESSAGE_SIZE_LIMIT=0 (no limit) DKIM still reads at most this much.
UNLIMITED_DKIM_READ = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DmarcCheck:
    config: Config
    resolver: Resolver
    rng: Callable[[], float] = field(default=random.random)  # DMARC pct (RFC 7489 §6.3)
    name: str = "dmarc"
    timeout: float | None = None  # the resolver's own deadlines bound it
    fail_open: bool = False
    # Issue 20: DmarcRecorder.record(ip, spf, dkim, dmarc), counts for aggregate reports
    record: Callable[..., None] | None = None

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        client = message.client
        if client.is_submission:
            return ACCEPT
        if client.is_trusted or client.auth_user:
            return _recorded(render_header(self.config.hostname))
        refusal = self._refuse_unparsable_from(message)
        if refusal is not None:
            return refusal
        spf = message.spf
        dkim: list[DkimResult] | None = None  # None: not checked; []: unsigned (dkim=none)
        dmarc: DmarcResult | None = None
        is_local = any(recipient.local for recipient in message.recipients)
        wants_arc = self.config.enable_arc and has_arc_fields(message.header.field_names)
        raw = await self._whole(message) if wants_arc or (
            is_local and self.config.enable_dkim) else None
        arc = await self._verify_arc(message, raw) if wants_arc else None
        if is_local:
            author_domain = ""
            if self.config.enable_dmarc:
                author_domain, problem = single_author_domain(message.header)
                if problem:
                    log.info("queue_id=%s refused: %s", message.queue_id, problem)
                    return refuse(replies.no_single_author_domain(problem))
                if spf is None:
                    spf = await evaluate_spf(self.resolver, client.ip, message.sender,
                                             client.helo_name)
            if self.config.enable_dkim:
                dkim = await self._verify_dkim(message, raw)
            if author_domain:
                dmarc = await check_dmarc(self.resolver, author_domain, spf, dkim or [],
                                          self.rng)
                dmarc = self._arc_override(message, dmarc, arc)
                if self.record is not None:
                    self.record(client.ip, spf, dkim or [], dmarc)
        header = render_header(self.config.hostname, spf=spf, dkim=dkim, dmarc=dmarc,
                               arc=arc)
        if dmarc is None:
            return _recorded(header)
        return _disposition(message, dmarc, header)

    async def _whole(self, message: ReceivedMessage) -> bytes | None:
        """The message for DKIM and ARC, None when larger than the size limit."""
        limit = self.config.message_size_limit or UNLIMITED_DKIM_READ
        if message.body is not None:
            raw = message.body if len(message.body) <= limit else None
        else:
            raw = await asyncio.to_thread(_read_bounded, message.spool_path, limit)
        if raw is None:
            log.warning("queue_id=%s larger than %d bytes: DKIM and ARC not verified",
                        message.queue_id, limit)
        return raw

    async def _verify_arc(self, message: ReceivedMessage, raw: bytes | None
                          ) -> ArcResult | None:
        if raw is None:
            return None
        result = await verify_arc(self.resolver, raw)
        log.info("queue_id=%s arc=%s i=%d d=%s %s", message.queue_id, result.result,
                 result.instance, result.sealer, result.reason)
        return result

    def _arc_override(self, message: ReceivedMessage, dmarc: DmarcResult,
                      arc: ArcResult | None) -> DmarcResult:
        """RFC 7489 §10.1 local policy: a trusted sealer's passing chain lifts a failure."""
        if dmarc.result is not DmarcVerdict.FAIL or dmarc.disposition is Policy.NONE \
                or arc is None or not arc.is_trusted(self.config.arc_trusted_sealers):
            return dmarc
        log.info("queue_id=%s dmarc=fail disposition %s lifted: ARC sealed by trusted %s",
                 message.queue_id, dmarc.disposition, arc.sealer)
        return override_policy(dmarc, PolicyOverride.TRUSTED_FORWARDER,
                               f"ARC chain sealed by {arc.sealer} passed")

    async def _verify_dkim(self, message: ReceivedMessage, raw: bytes | None
                           ) -> list[DkimResult]:
        if raw is None:
            return []
        results = await verify_dkim(self.resolver, raw)
        for result in results:
            log.info("queue_id=%s dkim=%s d=%s s=%s %s", message.queue_id, result.result,
                     result.domain, result.selector, result.reason)
        return results

    def _refuse_unparsable_from(self, message: ReceivedMessage) -> Verdict | None:
        for parsed in message.header.from_fields:
            if isinstance(parsed, Unparsable):
                log.info("queue_id=%s refused: From header field cannot be parsed: %s",
                         message.queue_id, parsed.reason)
                if self.config.enable_dmarc:
                    return refuse(replies.no_single_author_domain(
                        "From header field cannot be parsed"))
                return refuse(replies.header_unparsable("From"))
        return None


def _recorded(header: bytes) -> Verdict:
    return Verdict(headers=(header,))


def _disposition(message: ReceivedMessage, dmarc: DmarcResult, header: bytes) -> Verdict:
    log.info("queue_id=%s dmarc=%s from=%s disposition=%s %s", message.queue_id,
             dmarc.result, dmarc.from_domain, dmarc.disposition, dmarc.reason)
    if dmarc.disposition is Policy.REJECT:
        return refuse(replies.dmarc_rejected(dmarc.from_domain), "dmarc=reject")
    if dmarc.disposition is Policy.QUARANTINE:
        return Verdict(Action.QUARANTINE, headers=(header,), folder=JUNK,
                       reason="dmarc=quarantine")
    return _recorded(header)


def single_author_domain(header: HeaderFacts) -> tuple[str, str]:
    """(the one author domain, "") or ("", why there is not exactly one): RFC 7489 §6.6.1
    needs one domain, RFC 5322 §3.6 one From field."""
    if not header.from_fields:
        return "", "no From header field"
    if len(header.from_fields) > 1:
        return "", f"{len(header.from_fields)} From header fields"
    authors = authors_of(header.from_fields)
    if authors is None:
        return "", "From header field cannot be parsed"
    domains = {author.domain for author in authors}
    if not domains:
        return "", "From header field names no address"
    if "" in domains:
        return "", "From header address without a usable domain"
    if len(domains) > 1:
        return "", "From header addresses in several domains"
    return domains.pop(), ""


def _read_bounded(path: Path, limit: int) -> bytes | None:
    """The whole spooled message, or None when it is larger than `limit`."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None
