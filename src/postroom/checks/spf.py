"""SPF at RCPT (RFC 7208): refuse what the sender's domain says it did not send.

Owns `SpfCheck` and `evaluate_spf`. Enforced (ENABLE_POLICYD_SPF) for strangers on port
25 only — not for TRUSTED_NETWORKS nor authenticated clients, what docker-mailserver's
policyd-spf sees after permit_mynetworks and permit_sasl_authenticated — at RCPT, where
policyd-spf answers, so the refusal names the recipient. Evaluated once per transaction,
at the first RCPT the session would otherwise accept; the result is recorded in the
envelope, for DMARC after DATA (checks/dmarc.py).

Decisions: RFC 7208 §8.4 fail → 550 5.7.23; §8.6 temperror → 451 4.7.24 (RFC 7372
§3.2 codes, checks/replies.py); the rest are recorded only (softfail and neutral are too
weak to refuse on, §8.5, §8.2; permerror is the domain owner's mistake, and refusing on
it is left open by §8.7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from postroom.checks.api import ACCEPT, Envelope, Verdict, refuse
from postroom.checks.replies import spf_fail, spf_temperror
from postroom.config import Config
from postroom.dns.resolver import Resolver
from postroom.mailauth.spf import SpfResult, check_spf

log = logging.getLogger("postroom.checks")


async def evaluate_spf(resolver: Resolver, client_ip: str, sender: str,
                       helo: str) -> SpfResult:  # fmt: skip
    result = await check_spf(resolver, client_ip, sender, helo)
    log.info("client=%s spf=%s %s=%s%s", client_ip, result.result, result.property_name,
             result.property_value, f" {result.explanation}".rstrip())
    return result


@dataclass(frozen=True, slots=True)
class SpfCheck:
    config: Config
    resolver: Resolver
    name: str = "spf"
    timeout: float | None = None  # the resolver's own deadlines bound it
    fail_open: bool = False

    async def on_rcpt(self, envelope: Envelope, address: str) -> Verdict:
        client = envelope.client
        if (not self.config.enable_spf or client.is_submission or client.auth_user
                or client.is_trusted):
            return ACCEPT
        if envelope.spf is None:
            envelope.spf = await evaluate_spf(self.resolver, client.ip, envelope.sender,
                                              client.helo_name)
        if envelope.spf.result == "fail":
            return refuse(spf_fail(address), "spf=fail")
        if envelope.spf.result == "temperror":
            return refuse(spf_temperror(address), "spf=temperror")
        return ACCEPT
