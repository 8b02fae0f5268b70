"""The TLS policy of one destination, as the queue worker applies it: DANE (RFC 7672)
first, else MTA-STS (RFC 8461), else opportunistic TLS; and each attempt's outcome
reported for TLS-RPT (RFC 8460).

Owns the per-destination decision (`TlsPolicies.plan`) and the per-connection rule
(`DestinationPlan.open`):
- DANE applies (ENABLE_DANE=1, DNSSEC_VALIDATION=resolver) to an MX host when the
  domain's MX answer, the host's address answer (RFC 7672 §2.2.2) and its `_25._tcp`
  TLSA answer are all DNSSEC-validated (AD bit, decision 0046) and TLSA records exist:
  STARTTLS is then mandatory and the chain must match a usable record (outbound/dane.py);
  with only unusable records TLS is still mandatory, unauthenticated (RFC 7672 §2.2). A
  TLSA lookup that fails is a temporary failure of that host (§2.2), never a silent
  downgrade. TLSA names always use port 25: OUTBOUND_SMTP_PORT only moves tests;
- DANE takes precedence over MTA-STS (RFC 8461 §2); for the other hosts an MTA-STS policy
  (ENABLE_MTA_STS=1, outbound/mtasts.py) in mode `enforce` keeps only the MX hosts its
  patterns match, and demands STARTTLS with a certificate that verifies (SMTP_TLS_CAFILE,
  else the system store) and names the host; `testing` delivers as without a policy but
  reports what would have failed; `none` or no policy: opportunistic, as before;
- a policy failure is temporary (4.7.5): the message stays queued and, at the end of
  QUEUE_LIFETIME, its DSN quotes the failure ("MTA-STS policy of example.org (enforce):
  certificate of mx.example.org does not match");
- the relay host (RELAY_HOST) and address literals have no policy.
Every TLS attempt is reported to the `TlsOutcomeSink` (which never blocks nor raises).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import ssl
from dataclasses import dataclass, field

from postroom.clock import Clock
from postroom.config import Config
from postroom.dns.resolver import (
    DnsTemporaryError,
    NxDomain,
    RecordType,
    Resolver,
    TlsaRecord,
)
from postroom.outbound import dane
from postroom.outbound.client import (
    ClientSettings,
    OutboundSession,
    TlsCheck,
    TlsRequirement,
    TlsRequirementError,
    verifying_tls_context,
)
from postroom.outbound.model import deferred
from postroom.outbound.mtasts import MtaStsPolicies, MtaStsPolicy
from postroom.outbound.routing import Route, RouteError
from postroom.outbound.tlsresults import PolicyType, TlsOutcome, TlsOutcomeSink
from postroom.store.mtasts_api import MtaStsStore

log = logging.getLogger(__name__)

MAX_DANE_HOSTS = 10  # TLSA lookups per destination (routing tries at most 10 addresses)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """What applies to one MX host."""

    policy_type: PolicyType
    strings: tuple[str, ...] = ()  # TLS-RPT policy-string
    requirement: TlsRequirement | None = None  # None: opportunistic TLS
    is_enforced: bool = True  # False: MTA-STS testing (report, deliver anyway)
    failure: tuple[str, str] | None = None  # known before dialling: (result type, reason)


NO_POLICY = HostPolicy("no-policy-found")


@dataclass(slots=True)
class DestinationPlan:
    """One destination's hosts to try and their policies, for one delivery pass."""

    domain: str
    route: Route
    sink: TlsOutcomeSink
    hosts: dict[str, HostPolicy] = field(default_factory=dict)
    failures: list[TlsRequirementError] = field(default_factory=list)

    async def open(self, ip: str, host: str, settings: ClientSettings) -> OutboundSession:
        """A session to `ip` under `host`'s policy; TlsRequirementError when enforced
        and not met (kept in `failures` for the attempt's diagnostic)."""
        policy = self.hosts.get(host, NO_POLICY)
        if policy.failure is not None:
            self._record(policy, host, "", *policy.failure)
            if policy.is_enforced:
                self._fail(TlsRequirementError(policy.failure[1], policy.failure[0]))
        if policy.requirement is None or (not policy.is_enforced and policy.failure):
            session = await OutboundSession.open(ip, host, settings)
            if policy.failure is None:
                self._record(policy, host, ip, *(None, "") if session.is_tls else (
                    "starttls-not-supported", f"{host} does not offer STARTTLS"))
            return session
        try:
            session = await OutboundSession.open(
                ip, host, dataclasses.replace(settings, tls_requirement=policy.requirement))
        except TlsRequirementError as error:
            self._record(policy, host, ip, error.result_type, str(error))
            if policy.is_enforced:
                self._fail(error)
            log.info("%s (testing: delivering anyway)", error)
            return await OutboundSession.open(ip, host, settings)
        self._record(policy, host, ip, None, "")
        return session

    def _fail(self, error: TlsRequirementError) -> None:
        self.failures.append(error)
        log.warning("%s", error)
        raise error

    def _record(self, policy: HostPolicy, host: str, ip: str, failure: str | None,
                detail: str) -> None:
        self.sink.record(TlsOutcome(self.domain, policy.policy_type, policy.strings, host, ip,
                                    failure, detail))


class TlsPolicies:
    """Builds each destination's plan from DNS, the MTA-STS cache and the config."""

    def __init__(self, config: Config, store: MtaStsStore, resolver: Resolver, clock: Clock,
                 sink: TlsOutcomeSink) -> None:
        self.resolver = resolver
        self.clock = clock
        self.sink = sink
        self.cafile = config.smtp_tls_cafile
        self.dane_enabled = config.enable_dane and config.dnssec_validation == "resolver"
        self.sts = MtaStsPolicies(store, resolver, clock, port=config.mta_sts_fetch_port,
                                  cafile=config.smtp_tls_cafile) if config.enable_mta_sts else None

    async def plan(self, route: Route) -> DestinationPlan:
        """The plan for `route`; RouteError (4.7.5) when an enforced MTA-STS policy
        leaves no MX host to try."""
        domain = route.destination
        plan = DestinationPlan(domain, route, self.sink)
        if route.is_relay or domain.startswith("["):
            return plan
        dane_hosts = await self._dane(domain, route.hosts) if self.dane_enabled else {}
        sts = await self._sts(domain)
        for host in route.hosts:
            policy = dane_hosts.get(host) or self._sts_host(domain, sts, host)
            if policy is not None:
                plan.hosts[host] = policy
        if not plan.hosts:
            assert sts is not None  # only an enforced policy drops hosts
            reason = (f"MTA-STS policy of {domain} (enforce): no MX host matches the policy"
                      f" ({', '.join(route.hosts)} against {', '.join(sts.mx)})")
            self.sink.record(TlsOutcome(domain, "sts", sts.lines, route.hosts[0], "",
                                        "validation-failure", reason))
            raise RouteError(deferred("4.7.5", reason))
        plan.route = dataclasses.replace(route, hosts=tuple(plan.hosts))
        return plan

    # -- MTA-STS -----------------------------------------------------------------------

    async def _sts(self, domain: str) -> MtaStsPolicy | None:
        if self.sts is None:
            return None
        found = await self.sts.lookup(domain)
        if found.failure is not None:
            self.sink.record(TlsOutcome(domain, "sts", (), "", "", found.failure,
                                        found.detail))
        policy = found.policy
        return policy if policy is not None and policy.mode != "none" else None

    def _sts_host(self, domain: str, sts: MtaStsPolicy | None, host: str
                  ) -> HostPolicy | None:
        """The host's policy; None when an enforced policy excludes it."""
        if sts is None:
            return NO_POLICY
        label = f"MTA-STS policy of {domain} ({sts.mode})"
        is_enforced = sts.mode == "enforce"
        if not sts.matches(host):
            if is_enforced:
                log.info("%s: %s is not a policy MX; skipped", label, host)
                return None
            return HostPolicy("sts", sts.lines, None, False, (
                "validation-failure", f"{label}: {host} is not a policy MX"))
        requirement = TlsRequirement(label, verifying_tls_context(self.cafile))
        return HostPolicy("sts", sts.lines, requirement, is_enforced)

    # -- DANE --------------------------------------------------------------------------

    async def _dane(self, domain: str, hosts: tuple[str, ...]) -> dict[str, HostPolicy]:
        """DANE policies of the hosts with validated TLSA records (RFC 7672 §2.2.1: only
        when the MX answer itself is validated)."""
        try:
            mx = await self.resolver.answer(domain, RecordType.MX)
        except DnsTemporaryError:
            return {}  # routing got its answer; without a validated one, no DANE
        if not mx.is_secure:
            return {}
        found = {}
        for host in hosts[:MAX_DANE_HOSTS]:
            policy = await self._dane_host(host)
            if policy is not None:
                found[host] = policy
        return found

    async def _dane_host(self, host: str) -> HostPolicy | None:
        name = f"_25._tcp.{host}"
        label = f"DANE policy of {host}"
        try:
            if not await self._addresses_secure(host):
                return None  # RFC 7672 §2.2.2: no TLSA lookup for an insecure host
            answer = await self.resolver.answer(name, RecordType.TLSA)
        except DnsTemporaryError as error:
            return HostPolicy("tlsa", (), failure=(  # RFC 7672 §2.2: temporary
                "dnssec-invalid", f"{label}: TLSA lookup for {name} failed: {error}"))
        except NxDomain:
            return None
        records = [r for r in answer.records if isinstance(r, TlsaRecord)]
        if not answer.is_secure or not records:
            return None  # insecure TLSA records are ignored (RFC 7672 §2.2)
        strings = tuple(str(record) for record in records)
        usable = dane.usable(records)
        check = _dane_check(usable, host, self.clock) if usable else None
        return HostPolicy("tlsa", strings, TlsRequirement(label, dane.handshake_context(),
                                                          check))

    async def _addresses_secure(self, host: str) -> bool:
        """Whether the host's A answer (its AAAA one when it has no A) is validated;
        an address literal or a failed lookup is not."""
        try:
            answer = await self.resolver.answer(host, RecordType.A)
            if not answer.records and not answer.is_nxdomain:
                answer = await self.resolver.answer(host, RecordType.AAAA)
        except (DnsTemporaryError, NxDomain):
            return False
        return answer.is_secure and bool(answer.records)


def _dane_check(records: list[TlsaRecord], host: str, clock: Clock) -> TlsCheck:
    def check(ssl_object: ssl.SSLObject) -> tuple[str, str] | None:
        now = clock.now().astimezone(dt.UTC)
        problem = dane.mismatch(records, dane.peer_chain(ssl_object), host, now)
        return None if problem is None else ("validation-failure", problem)
    return check
