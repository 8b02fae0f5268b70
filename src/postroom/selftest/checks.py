"""The selftest's judgements: each check a receiving provider makes, as a small function.

Owns `CheckResult` (name, status, points, detail, fix), the points each check is worth
(`WEIGHTS`, summing to 10 like mail-tester's score) and the checks that need only DNS:
DKIM (the real verifier against the published key), SPF (the real evaluator for the
server's public address), DMARC alignment and policy, PTR/HELO (forward-confirmed reverse
DNS equal to the HELO name), MX, and DNSBL listings.

Invariants: a check never raises for a DNS problem — it becomes the check's detail (a
receiver that cannot look something up does not pass it either); every non-passing
result carries the exact fix, taken from selftest/records.py where that module already words
the record to publish, so `selftest` and `dns records` never disagree.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import asdict, dataclass

from postroom.dns.resolver import DnsError, DnsTemporaryError, NxDomain, Resolver
from postroom.mailauth.dkim import DkimResult, DkimVerdict, verify_dkim
from postroom.mailauth.dmarc import DmarcResult, DmarcVerdict, Policy, check_dmarc
from postroom.mailauth.spf import SpfResult, SpfVerdict, check_spf
from postroom.selftest import records


class CheckStatus(enum.StrEnum):
    PASS = "pass"  # noqa: S105 (a result name, not a password)
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # nothing to judge (no DNSBL zone given): left out of the score


# Points per check; they sum to 10. DKIM and SPF weigh most: without them big providers
# junk or refuse the mail outright.
WEIGHTS: dict[str, float] = {"DKIM": 2.5, "SPF": 2.0, "DMARC": 1.5, "PTR/HELO": 1.0,
                             "MX": 0.5, "TLS": 1.5, "DNSBL": 1.0}
_WARN_SHARE = 0.5  # a warning earns half the check's points
# DNSBL answers in 127.255.255.0/24 are error codes (Spamhaus: "query refused", e.g. from
# a public resolver), not listings.
_DNSBL_ERRORS = ipaddress.ip_network("127.255.255.0/24")
_DNS_TROUBLE_FIX = ("DNS did not answer: check that DNS_NAMESERVERS (or the system "
                    "resolver) answer and the domain's name servers are up, then rerun")
_NO_ADDRESS_FIX = ("pass --ip/--ipv6, set OUTBOUND_BIND_ADDRESS, or publish the A/AAAA "
                   "record of OVERRIDE_HOSTNAME")


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: CheckStatus
    points: float  # what the check is worth
    detail: str
    fix: str = ""

    @property
    def earned(self) -> float:
        if self.status is CheckStatus.PASS:
            return self.points
        return self.points * _WARN_SHARE if self.status is CheckStatus.WARN else 0.0

    @property
    def is_failure(self) -> bool:
        return self.status is CheckStatus.FAIL

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "earned": self.earned}


def result(name: str, status: CheckStatus, detail: str, fix: str = "") -> CheckResult:
    return CheckResult(name, status, WEIGHTS[name], detail, fix)


def score(results: list[CheckResult]) -> float:
    """Out of 10, over the checks that ran; one decimal."""
    counted = [r for r in results if r.status is not CheckStatus.SKIP]
    available = sum(r.points for r in counted)
    if not available:
        return 0.0
    return round(sum(r.earned for r in counted) / available * 10, 1)


def _first_fix(findings: list[records.Finding], fallback: str) -> str:
    return next((f.fix for f in findings if f.status is not records.Status.OK and f.fix),
                fallback)


# -- DKIM ---------------------------------------------------------------------------------
async def check_dkim_signature(resolver: Resolver, signed: bytes, spec: records.ZoneInput
                               ) -> tuple[CheckResult, list[DkimResult]]:
    verdicts = await verify_dkim(resolver, signed)
    passing = [v for v in verdicts if v.result is DkimVerdict.PASS]
    if passing:
        names = ", ".join(f"d={v.domain} s={v.selector} ({v.algorithm})" for v in passing)
        return result("DKIM", CheckStatus.PASS, f"signature verified: {names}"), verdicts
    fix = _first_fix(await records.check_dkim(resolver, spec),
                     f"run `postroom dkim generate {spec.domain}` and publish its record")
    if any(v.result is DkimVerdict.TEMPERROR for v in verdicts):
        fix = _DNS_TROUBLE_FIX
    if not verdicts:
        return result("DKIM", CheckStatus.FAIL, "the message went out unsigned: no DKIM key "
                      f"for {spec.domain} on this server", fix), verdicts
    found = "; ".join(f"d={v.domain} s={v.selector}: {v.result.value} ({v.reason})"
                      for v in verdicts)
    return result("DKIM", CheckStatus.FAIL, found, fix), verdicts


# -- SPF ----------------------------------------------------------------------------------
async def check_spf_for(resolver: Resolver, spec: records.ZoneInput, addresses: list[str],
                        sender: str) -> tuple[CheckResult, SpfResult | None]:
    if not addresses:
        return result("SPF", CheckStatus.FAIL, "no public address to check",
                      _NO_ADDRESS_FIX), None
    verdicts = [await check_spf(resolver, ip, sender, spec.hostname) for ip in addresses]
    detail = "; ".join(f"{v.result.value} for {ip}" for ip, v in zip(addresses, verdicts,
                                                                        strict=True))
    detail += f" (MAIL FROM {sender}, HELO {spec.hostname})"
    first = verdicts[0]
    if all(v.result is SpfVerdict.PASS for v in verdicts):
        return result("SPF", CheckStatus.PASS, detail), first
    if any(v.result is SpfVerdict.TEMPERROR for v in verdicts):
        return result("SPF", CheckStatus.FAIL, detail, _DNS_TROUBLE_FIX), first
    weak = {SpfVerdict.PASS, SpfVerdict.SOFTFAIL, SpfVerdict.NEUTRAL}
    status = CheckStatus.WARN if all(v.result in weak for v in verdicts) else CheckStatus.FAIL
    fallback = (f"authorize {', '.join(addresses)}: publish: {spec.domain}. IN TXT "
                f'"{records.spf_value(spec.ipv4, spec.ipv6)}"')
    fix = _first_fix(await records.check_spf_record(resolver, spec), fallback)
    return result("SPF", status, detail, fix), first


# -- DMARC --------------------------------------------------------------------------------
async def check_dmarc_alignment(resolver: Resolver, spec: records.ZoneInput, from_domain: str,
                                spf: SpfResult | None, dkim: list[DkimResult]
                                ) -> CheckResult:
    # rng 0.0: pct sampling always applies the policy, as a receiver's worst case.
    verdict = await check_dmarc(resolver, from_domain, spf, dkim, rng=lambda: 0.0)
    publish = _first_fix(await records.check_dmarc_record(resolver, spec),
                         f'publish: _dmarc.{spec.domain}. IN TXT '
                         f'"{records.dmarc_value(spec.postmaster)}"')
    if verdict.result is DmarcVerdict.PASS:
        return _dmarc_policy(spec, verdict)
    if verdict.result is DmarcVerdict.NONE:
        return result("DMARC", CheckStatus.FAIL, f"no DMARC record for {from_domain}", publish)
    if verdict.result is DmarcVerdict.TEMPERROR:
        return result("DMARC", CheckStatus.FAIL, f"temperror: {verdict.reason}",
                      _DNS_TROUBLE_FIX)
    if verdict.result is DmarcVerdict.FAIL:
        return result("DMARC", CheckStatus.FAIL,
                      f"neither DKIM nor SPF passed aligned with {from_domain} "
                      f"(policy p={verdict.policy.value if verdict.policy else 'none'})",
                      "fix DKIM or SPF (above) so one passes for the From domain")
    return result("DMARC", CheckStatus.FAIL, f"{verdict.result.value}: {verdict.reason}",
                  publish)


def _dmarc_policy(spec: records.ZoneInput, verdict: DmarcResult) -> CheckResult:
    aligned = [name for name, flag in (("DKIM", verdict.dkim_aligned),
                                       ("SPF", verdict.spf_aligned)) if flag]
    policy = verdict.policy or Policy.NONE
    detail = f"aligned by {' and '.join(aligned)}; policy p={policy.value}"
    if policy is Policy.NONE:
        return result("DMARC", CheckStatus.WARN, detail,
                      "p=quarantine or reject once reports look right: publish "
                      f'_dmarc.{verdict.policy_domain or spec.domain}. IN TXT '
                      f'"{records.dmarc_value(spec.postmaster)}"')
    return result("DMARC", CheckStatus.PASS, detail)


# -- PTR / HELO -----------------------------------------------------------------------------
async def check_ptr_helo(resolver: Resolver, addresses: list[str], hostname: str
                         ) -> CheckResult:
    if not addresses:
        return result("PTR/HELO", CheckStatus.FAIL, "no public address to check",
                      _NO_ADDRESS_FIX)
    judged = [await _ptr_one(resolver, ip, hostname) for ip in addresses]
    worst = max(judged, key=lambda item: _SEVERITY[item[0]])
    detail = "; ".join(item[1] for item in judged)
    return result("PTR/HELO", worst[0], detail, worst[2])


_SEVERITY = {CheckStatus.PASS: 0, CheckStatus.SKIP: 0, CheckStatus.WARN: 1,
             CheckStatus.FAIL: 2}


async def _ptr_one(resolver: Resolver, ip: str, hostname: str
                   ) -> tuple[CheckStatus, str, str]:
    ask = f"ask your provider to set the reverse DNS (PTR) of {ip} to {hostname}"
    try:
        names = [name.rstrip(".").lower() for name in await resolver.ptr(ip)]
    except NxDomain:
        return CheckStatus.FAIL, f"{ip}: no PTR record", ask
    except DnsTemporaryError as error:
        return CheckStatus.FAIL, f"{ip}: PTR lookup failed ({error})", _DNS_TROUBLE_FIX
    if not names:
        return CheckStatus.FAIL, f"{ip}: no PTR record", ask
    confirmed = [name for name in names if await _points_to(resolver, name, ip)]
    if hostname.lower() in confirmed:
        return CheckStatus.PASS, f"{ip} → {hostname} → {ip}, equal to the HELO name", ""
    if confirmed:
        return (CheckStatus.WARN, f"{ip} → {confirmed[0]} (confirmed), but HELO is "
                f"{hostname}", f"set OVERRIDE_HOSTNAME={confirmed[0]}, or {ask}")
    return (CheckStatus.FAIL, f"{ip} → {', '.join(names)}, which does not resolve back to "
            f"{ip}", f"{ask}, and publish {hostname}. IN A/AAAA {ip}")


async def _points_to(resolver: Resolver, name: str, ip: str) -> bool:
    wanted = ipaddress.ip_address(ip)
    lookup = resolver.a if wanted.version == 4 else resolver.aaaa
    try:
        return any(ipaddress.ip_address(found) == wanted for found in await lookup(name))
    except DnsError:
        return False


# -- MX -----------------------------------------------------------------------------------
async def check_mx_host(resolver: Resolver, spec: records.ZoneInput) -> CheckResult:
    finding = (await records.check_mx(resolver, spec))[0]
    if finding.status is records.Status.OK:
        return result("MX", CheckStatus.PASS, f"{spec.domain} MX {finding.found}")
    trouble = finding.found.startswith(DnsTemporaryError.__name__)
    return result("MX", CheckStatus.FAIL, finding.found,
                  _DNS_TROUBLE_FIX if trouble else finding.fix)


# -- DNSBL --------------------------------------------------------------------------------
def dnsbl_name(ip: str, zone: str) -> str:
    """RFC 5782 §2.1 (IPv4: reversed octets) and §2.4 (IPv6: reversed nibbles)."""
    reverse = ipaddress.ip_address(ip).reverse_pointer
    return reverse.rsplit(".", 2)[0] + "." + zone.strip(".").lower()


async def check_dnsbl(resolver: Resolver, addresses: list[str], zones: list[str]
                      ) -> CheckResult:
    if not zones:
        return result("DNSBL", CheckStatus.SKIP, "no DNSBL zone given",
                      "pass --dnsbl ZONE (repeatable) to check the server's address")
    if not addresses:
        return result("DNSBL", CheckStatus.FAIL, "no public address to check",
                      _NO_ADDRESS_FIX)
    judged = [await _dnsbl_one(resolver, ip, zone) for ip in addresses for zone in zones]
    worst = max(judged, key=lambda item: _SEVERITY[item[0]])
    fixes = "; ".join(item[2] for item in judged if item[2])
    return result("DNSBL", worst[0], "; ".join(item[1] for item in judged), fixes)


async def _dnsbl_one(resolver: Resolver, ip: str, zone: str) -> tuple[CheckStatus, str, str]:
    name = dnsbl_name(ip, zone)
    try:
        answers = await resolver.a(name)
    except NxDomain:
        return CheckStatus.PASS, f"{ip} not listed in {zone}", ""
    except DnsTemporaryError as error:
        return (CheckStatus.WARN, f"{zone}: lookup failed ({error})",
                "retry later, or check DNS_NAMESERVERS reaches the list")
    if not answers:
        return CheckStatus.PASS, f"{ip} not listed in {zone}", ""
    if all(ipaddress.ip_address(a) in _DNSBL_ERRORS for a in answers):
        return (CheckStatus.WARN, f"{zone} refused the query ({', '.join(answers)})",
                f"{zone} refuses public/open resolvers: set DNS_NAMESERVERS to your own "
                "resolver (or register for the list's data feed)")
    reason = await _listing_reason(resolver, name)
    return (CheckStatus.FAIL, f"{ip} LISTED in {zone} ({', '.join(answers)}): {reason}",
            f"request delisting at {zone}: {reason}")


async def _listing_reason(resolver: Resolver, name: str) -> str:
    try:
        texts = await resolver.txt(name)
    except DnsError:
        texts = []
    return " ".join(texts) or "no reason given (no TXT record)"
