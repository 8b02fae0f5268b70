"""DMARC (RFC 7489): record parsing, organizational domains, alignment and policy.

Owns: `parse_dmarc_record`, `organizational_domain`, `is_aligned`, `evaluate_dmarc` (all
pure), `check_dmarc` (record discovery through the async Resolver, §6.6.3) and
`override_policy` (§6.7 / §10.1: a local policy that accepts a failing message, with the
PolicyOverride reason aggregate reports carry, RFC 7489 Appendix C).

Sans-IO: imports nothing from asyncio, ssl, socket or the store (ARCHITECTURE.md rule 1);
`check_dmarc` only awaits the Resolver it is given.

Organizational domain decision: the full Public Suffix List, ICANN *and* private
sections (publicsuffixlist's default). So `alice.github.io` is its own organizational
domain: mail from `alice.github.io` does not align with a DKIM signature by
`bob.github.io`, and `x.alice.github.io` falls back to `_dmarc.alice.github.io`, not to
`_dmarc.github.io`. Names under a private suffix belong to different owners, and aligning
them would let one customer of a hosting platform pass DMARC as another. OpenDMARC makes
the same choice (it loads the whole list); tests/mailauth/test_dmarc.py pins it.

Invariants: SPF and DKIM inputs are taken structurally (`.domain`, `.result`), so this
module does not import the SPF or DKIM modules (which need threads and I/O libraries);
`rng` is injectable so `pct` sampling is testable; a DNS temporary error gives temperror
and never a policy; an unusable record gives permerror and never a policy.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from publicsuffixlist import PublicSuffixList

from postroom.dns.resolver import DnsTemporaryError, NxDomain, Resolver, normalize_name

_PSL = PublicSuffixList()  # loads the bundled list once; lookups are pure


class DmarcVerdict(StrEnum):
    """RFC 7489 §11.2 Authentication-Results values."""

    PASS = "pass"  # noqa: S105 (a result name, not a password)
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class Policy(StrEnum):
    """Requested policy (p=, sp=) and the disposition actually applied (RFC 7489 §6.3)."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class PolicyOverride(StrEnum):
    """RFC 7489 Appendix C PolicyOverrideType: why the applied disposition differs from
    the requested policy (reported in aggregate reports' <reason><type>)."""

    FORWARDED = "forwarded"
    SAMPLED_OUT = "sampled_out"
    TRUSTED_FORWARDER = "trusted_forwarder"
    MAILING_LIST = "mailing_list"
    LOCAL_POLICY = "local_policy"
    OTHER = "other"


class Alignment(StrEnum):
    RELAXED = "r"
    STRICT = "s"


class DmarcSyntaxError(ValueError):
    """The record cannot be used (RFC 7489 §6.6.3 step 6: no valid p= and no valid rua)."""


class AuthenticatedIdentity(Protocol):
    """What DMARC needs from an SPF or DKIM result: the authenticated domain and verdict."""

    @property
    def domain(self) -> str: ...

    @property
    def result(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: Policy
    subdomain_policy: Policy | None = None  # None: subdomains get `policy` (§6.3 sp)
    pct: int = 100
    adkim: Alignment = Alignment.RELAXED
    aspf: Alignment = Alignment.RELAXED
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    errors: tuple[str, ...] = ()  # problems ignored in favour of defaults (§6.3)


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: DmarcVerdict
    disposition: Policy  # what to do with the message after pct sampling
    from_domain: str
    reason: str = ""
    policy_domain: str = ""  # where the record was found ("" without one)
    policy: Policy | None = None  # the requested p or sp that applied, before pct
    record: DmarcRecord | None = None
    spf_aligned: bool = False
    dkim_aligned: bool = False
    override: PolicyOverride | None = None  # §6.7: local policy changed the disposition


# -- record ------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"\s*v\s*=\s*DMARC1\s*(;|$)")  # §6.4: "DMARC1" is case-exact
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s!,]+(![0-9]+[kmgtKMGT]?)?")
_FO_RE = re.compile(r"[01ds](:[01ds])*")


def is_dmarc_record(text: str) -> bool:
    """§6.6.3 step 3: only records starting with v=DMARC1 are candidates."""
    return _VERSION_RE.match(text) is not None


def parse_dmarc_record(text: str) -> DmarcRecord:
    """Parse a TXT value. Raises DmarcSyntaxError when no policy can be derived."""
    if not is_dmarc_record(text):
        raise DmarcSyntaxError("record does not start with v=DMARC1")
    tags: dict[str, str] = {}
    for part in text.split(";")[1:]:
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())  # unknown tags ignored
    errors: list[str] = []
    rua = _parse_uris(tags.get("rua"), "rua", errors)
    policy = _parse_policy(tags.get("p"))
    subdomain_policy = _parse_policy(tags.get("sp"))
    if policy is None or ("sp" in tags and subdomain_policy is None):
        if not rua:
            raise DmarcSyntaxError("no valid p= (or invalid sp=) and no valid rua=")
        # §6.6.3 step 6: act as if p=none was published, and keep the reports flowing.
        errors.append("invalid or missing p=/sp=; treated as p=none")
        policy, subdomain_policy = Policy.NONE, None
    return DmarcRecord(
        policy=policy, subdomain_policy=subdomain_policy,
        pct=_parse_pct(tags.get("pct"), errors),
        adkim=_parse_alignment(tags.get("adkim"), "adkim", errors),
        aspf=_parse_alignment(tags.get("aspf"), "aspf", errors),
        rua=rua, ruf=_parse_uris(tags.get("ruf"), "ruf", errors),
        fo=_parse_fo(tags.get("fo"), errors), errors=tuple(errors))


def _parse_policy(value: str | None) -> Policy | None:
    try:
        return Policy(value.lower()) if value is not None else None
    except ValueError:
        return None


def _parse_pct(value: str | None, errors: list[str]) -> int:
    if value is None:
        return 100
    if value.isdigit() and 0 <= int(value) <= 100:
        return int(value)
    errors.append(f"invalid pct={value!r}; using 100")
    return 100


def _parse_alignment(value: str | None, tag: str, errors: list[str]) -> Alignment:
    if value is None:
        return Alignment.RELAXED
    try:
        return Alignment(value.lower())
    except ValueError:
        errors.append(f"invalid {tag}={value!r}; using r")
        return Alignment.RELAXED


def _parse_uris(value: str | None, tag: str, errors: list[str]) -> tuple[str, ...]:
    if not value:
        return ()
    valid = []
    for uri in (item.strip() for item in value.split(",")):
        if _URI_RE.fullmatch(uri):
            valid.append(uri)
        else:
            errors.append(f"invalid {tag} URI {uri!r}")
    return tuple(valid)


def _parse_fo(value: str | None, errors: list[str]) -> str:
    if value is None:
        return "0"
    compact = value.replace(" ", "")
    if _FO_RE.fullmatch(compact):
        return compact
    errors.append(f"invalid fo={value!r}; using 0")
    return "0"


# -- domains -----------------------------------------------------------------------------

def organizational_domain(domain: str) -> str:
    """§3.2 via the Public Suffix List (ICANN and private sections; see module docstring).

    A name that is itself a public suffix, or has no dot, is its own organizational domain.
    """
    name = normalize_name(domain)
    return _PSL.privatesuffix(name) or name


def is_aligned(authenticated_domain: str, from_domain: str, mode: Alignment) -> bool:
    """§3.1.1 / §3.1.2: strict needs the same name, relaxed the same org domain."""
    auth, sender = normalize_name(authenticated_domain), normalize_name(from_domain)
    if not auth or not sender:
        return False
    if mode is Alignment.STRICT:
        return auth == sender
    return organizational_domain(auth) == organizational_domain(sender)


# -- evaluation --------------------------------------------------------------------------

def evaluate_dmarc(from_domain: str, record: DmarcRecord, policy_domain: str,
                   spf: AuthenticatedIdentity | None,
                   dkim: Sequence[AuthenticatedIdentity],
                   rng: Callable[[], float] = random.random) -> DmarcResult:
    """§6.6.2 / §6.6.4: pass when an aligned identifier passed, else apply the policy."""
    from_domain = normalize_name(from_domain)
    spf_aligned = spf is not None and spf.result == "pass" and is_aligned(
        spf.domain, from_domain, record.aspf)
    dkim_aligned = any(sig.result == "pass" and is_aligned(sig.domain, from_domain,
                                                           record.adkim) for sig in dkim)
    requested = _requested(record, from_domain, policy_domain)
    if spf_aligned or dkim_aligned:
        verdict, disposition = DmarcVerdict.PASS, Policy.NONE
        reason = "aligned identifier passed"
    else:
        verdict, disposition = DmarcVerdict.FAIL, _sampled(requested, record.pct, rng)
        reason = "no aligned identifier passed"
        if disposition is not requested:
            reason += f"; pct={record.pct} sampled out, applying {disposition}"
    return DmarcResult(verdict, disposition, from_domain, reason, policy_domain, requested,
                       record, spf_aligned, dkim_aligned)


def override_policy(result: DmarcResult, reason: PolicyOverride, why: str) -> DmarcResult:
    """§6.7 / §10.1: deliver a failing message as with p=none, saying why (`why` joins the
    reason text; `reason` is the report's PolicyOverrideType). The verdict stays fail."""
    return replace(result, disposition=Policy.NONE, override=reason,
                   reason=f"{result.reason}; {reason}: {why}" if result.reason else why)


def _requested(record: DmarcRecord, from_domain: str, policy_domain: str) -> Policy:
    # sp applies when the record was found for the organizational domain of a subdomain.
    if normalize_name(policy_domain) != from_domain and record.subdomain_policy is not None:
        return record.subdomain_policy
    return record.policy


def _sampled(requested: Policy, pct: int, rng: Callable[[], float]) -> Policy:
    """§6.3 pct: messages not selected get the next weaker policy."""
    if requested is Policy.NONE or rng() * 100 < pct:
        return requested
    return Policy.QUARANTINE if requested is Policy.REJECT else Policy.NONE


# -- discovery ---------------------------------------------------------------------------

async def check_dmarc(resolver: Resolver, from_domain: str,
                      spf: AuthenticatedIdentity | None,
                      dkim: Sequence[AuthenticatedIdentity],
                      rng: Callable[[], float] = random.random) -> DmarcResult:
    """Discover the policy for the RFC5322.From domain (§6.6.3) and evaluate it."""
    domain = normalize_name(from_domain)
    if not domain or "." not in domain:
        return DmarcResult(DmarcVerdict.PERMERROR, Policy.NONE, domain,
                           reason="no usable RFC5322.From domain")
    candidates = [domain]
    org = organizational_domain(domain)
    if org != domain:
        candidates.append(org)
    for policy_domain in candidates:
        try:
            texts = [text for text in await _txt_or_empty(resolver, f"_dmarc.{policy_domain}")
                     if is_dmarc_record(text)]
        except DnsTemporaryError as exc:
            return DmarcResult(DmarcVerdict.TEMPERROR, Policy.NONE, domain,
                               reason=f"DNS error at _dmarc.{policy_domain}: {exc}")
        if not texts:
            continue
        return _evaluate_found(domain, policy_domain, texts, spf, dkim, rng)
    return DmarcResult(DmarcVerdict.NONE, Policy.NONE, domain, reason="no DMARC record")


def _evaluate_found(domain: str, policy_domain: str, texts: list[str],
                    spf: AuthenticatedIdentity | None,
                    dkim: Sequence[AuthenticatedIdentity],
                    rng: Callable[[], float]) -> DmarcResult:
    if len(texts) > 1:
        # §6.6.3 step 5: several records means DMARC is not applied.
        return DmarcResult(DmarcVerdict.PERMERROR, Policy.NONE, domain, policy_domain=
                           policy_domain, reason=f"{len(texts)} DMARC records")
    try:
        record = parse_dmarc_record(texts[0])
    except DmarcSyntaxError as exc:
        return DmarcResult(DmarcVerdict.PERMERROR, Policy.NONE, domain,
                           policy_domain=policy_domain, reason=str(exc))
    return evaluate_dmarc(domain, record, policy_domain, spf, dkim, rng)


async def _txt_or_empty(resolver: Resolver, name: str) -> list[str]:
    try:
        return await resolver.txt(name)
    except NxDomain:
        return []
