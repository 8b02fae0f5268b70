"""DMARC: record parsing, organizational domains, alignment, policy, discovery over DNS."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.dns.live import LiveResolver
from postroom.mailauth import dmarc
from postroom.mailauth.dkim import DkimResult, DkimVerdict
from postroom.mailauth.dmarc import (
    Alignment,
    DmarcRecord,
    DmarcSyntaxError,
    DmarcVerdict,
    Policy,
    check_dmarc,
    evaluate_dmarc,
    is_aligned,
    organizational_domain,
    parse_dmarc_record,
)
from postroom.mailauth.spf import SpfResult, SpfVerdict
from tests.support.dnsserver import DnsTestServer


def spf(domain: str, result: SpfVerdict = SpfVerdict.PASS) -> SpfResult:
    return SpfResult(result, domain, "", "smtp.mailfrom", f"bounce@{domain}")


def dkim(domain: str, result: DkimVerdict = DkimVerdict.PASS) -> DkimResult:
    return DkimResult(result, domain, "mail", "")


# -- parsing -----------------------------------------------------------------------------

def test_full_record() -> None:
    record = parse_dmarc_record(
        "v=DMARC1; p=Reject; sp=quarantine; pct=30; adkim=s; aspf=r; fo=1:d; "
        "rua=mailto:agg@example.com!10m, mailto:other@example.net; ruf=mailto:f@example.com;"
        " unknown=whatever")
    assert record == DmarcRecord(Policy.REJECT, Policy.QUARANTINE, 30, Alignment.STRICT,
                                 Alignment.RELAXED,
                                 ("mailto:agg@example.com!10m", "mailto:other@example.net"),
                                 ("mailto:f@example.com",), "1:d", ())


def test_defaults() -> None:
    record = parse_dmarc_record("v=DMARC1;p=none")
    assert (record.policy, record.subdomain_policy, record.pct, record.adkim,
            record.aspf, record.rua) == (Policy.NONE, None, 100, Alignment.RELAXED,
                                         Alignment.RELAXED, ())


@pytest.mark.parametrize("text", [
    "p=reject; v=DMARC1",        # v must come first
    "v=DMARC2; p=reject",
    "v=dmarc1; p=reject",        # DMARC1 is case-exact (RFC 7489 §6.4 ABNF)
    "v=DMARC1",                  # no p, no rua
    "v=DMARC1; p=block",         # invalid p, no rua
    "v=DMARC1; p=reject; sp=x",  # invalid sp, no rua
])
def test_unusable_records(text: str) -> None:
    with pytest.raises(DmarcSyntaxError):
        parse_dmarc_record(text)


@pytest.mark.parametrize("text", ["v=DMARC1; rua=mailto:a@example.com",
                                  "v=DMARC1; p=block; rua=mailto:a@example.com",
                                  "v=DMARC1; p=reject; sp=bad; rua=mailto:a@example.com"])
def test_invalid_policy_with_rua_acts_as_p_none(text: str) -> None:
    record = parse_dmarc_record(text)  # RFC 7489 §6.6.3 step 6
    assert record.policy == Policy.NONE and record.subdomain_policy is None
    assert record.errors


def test_syntax_errors_fall_back_to_defaults() -> None:
    record = parse_dmarc_record("v=DMARC1; p=reject; pct=150; adkim=x; fo=9; rua=notauri")
    assert (record.pct, record.adkim, record.fo, record.rua) == (
        100, Alignment.RELAXED, "0", ())
    assert len(record.errors) == 4


# -- domains and alignment ---------------------------------------------------------------

@pytest.mark.parametrize(("name", "org"), [
    ("example.com", "example.com"),
    ("a.b.example.com.", "example.com"),
    ("MAIL.Example.CO.UK", "example.co.uk"),
    ("com", "com"),
    # Private PSL section counts (see dmarc.py docstring): each github.io site is its own.
    ("alice.github.io", "alice.github.io"),
    ("x.alice.github.io", "alice.github.io"),
])
def test_organizational_domain(name: str, org: str) -> None:
    assert organizational_domain(name) == org


@pytest.mark.parametrize(("auth", "sender", "mode", "aligned"), [
    ("example.com", "example.com", Alignment.STRICT, True),
    ("mail.example.com", "example.com", Alignment.STRICT, False),
    ("mail.example.com", "example.com", Alignment.RELAXED, True),
    ("example.com", "news.example.com", Alignment.RELAXED, True),
    ("example.net", "example.com", Alignment.RELAXED, False),
    ("bob.github.io", "alice.github.io", Alignment.RELAXED, False),
    ("Example.COM.", "example.com", Alignment.STRICT, True),
    ("", "example.com", Alignment.RELAXED, False),
])
def test_alignment(auth: str, sender: str, mode: Alignment, aligned: bool) -> None:
    assert is_aligned(auth, sender, mode) is aligned


# -- evaluation (pure) -------------------------------------------------------------------

REJECT = DmarcRecord(Policy.REJECT)


def test_pass_via_dkim_or_spf_alignment() -> None:
    result = evaluate_dmarc("example.com", REJECT, "example.com", spf("other.net"),
                            [dkim("other.net"), dkim("mail.example.com")])
    assert (result.result, result.disposition, result.dkim_aligned, result.spf_aligned) == (
        DmarcVerdict.PASS, Policy.NONE, True, False)
    result = evaluate_dmarc("example.com", REJECT, "example.com", spf("bounce.example.com"),
                            [dkim("example.com", DkimVerdict.FAIL)])
    assert (result.result, result.spf_aligned, result.dkim_aligned) == (
        DmarcVerdict.PASS, True, False)


def test_unaligned_or_failed_identifiers_fail() -> None:
    result = evaluate_dmarc("example.com", REJECT, "example.com",
                            spf("example.com", SpfVerdict.SOFTFAIL),
                            [dkim("example.net"), dkim("example.com", DkimVerdict.FAIL)])
    assert (result.result, result.disposition, result.policy) == (
        DmarcVerdict.FAIL, Policy.REJECT, Policy.REJECT)


@pytest.mark.parametrize(("pct", "draw", "disposition"), [
    (0, 0.0, Policy.QUARANTINE),     # never selected: reject → quarantine
    (50, 0.49, Policy.REJECT),
    (50, 0.5, Policy.QUARANTINE),
    (100, 0.999, Policy.REJECT),
])
def test_pct_sampling(pct: int, draw: float, disposition: Policy) -> None:
    record = DmarcRecord(Policy.REJECT, pct=pct)
    result = evaluate_dmarc("example.com", record, "example.com", None, [],
                            rng=lambda: draw)
    assert result.disposition == disposition and result.policy == Policy.REJECT


def test_pct_zero_quarantine_becomes_none() -> None:
    record = DmarcRecord(Policy.QUARANTINE, pct=0)
    result = evaluate_dmarc("example.com", record, "example.com", None, [], rng=lambda: 0.0)
    assert (result.result, result.disposition) == (DmarcVerdict.FAIL, Policy.NONE)


def test_module_is_sans_io() -> None:
    tree = ast.parse(inspect.getsource(dmarc))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert not imported & {"asyncio", "ssl", "socket"}
    assert "postroom.mailauth.spf" not in inspect.getsource(dmarc)


# -- discovery over DNS ------------------------------------------------------------------

ZONE = """
$TTL 60
_dmarc.example.com.      TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"
_dmarc.own.example.com.  TXT "v=DMARC1; p=none"
_dmarc.example.com.      TXT "not a dmarc record"
_dmarc.quarantine.org.   TXT "v=DMARC1; p=quarantine"
_dmarc.relaxed.org.      TXT "v=DMARC1; p=none"
_dmarc.strict.org.       TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
_dmarc.sampled.org.      TXT "v=DMARC1; p=reject; pct=0"
_dmarc.twice.org.        TXT "v=DMARC1; p=reject"
_dmarc.twice.org.        TXT "v=DMARC1; p=none"
_dmarc.bad.org.          TXT "v=DMARC1; p=maybe"
nodmarc.org.             A   192.0.2.1
"""


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        server.fail("_dmarc.flaky.org")
        yield server


@pytest.fixture
def resolver(dns_server: DnsTestServer) -> LiveResolver:
    return LiveResolver([dns_server.nameserver], timeout=2.0)


async def test_dns_pass_via_dkim(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "example.com", spf("elsewhere.net"),
                               [dkim("mail.example.com")])
    assert (result.result, result.policy_domain, result.dkim_aligned) == (
        DmarcVerdict.PASS, "example.com", True)


async def test_dns_pass_via_spf(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "example.com", spf("example.com"), [])
    assert (result.result, result.spf_aligned) == (DmarcVerdict.PASS, True)


async def test_dns_reject(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "Example.com.", spf("evil.net"),
                               [dkim("evil.net")])
    assert (result.result, result.disposition, result.from_domain) == (
        DmarcVerdict.FAIL, Policy.REJECT, "example.com")
    assert result.record is not None and result.record.rua == ("mailto:d@example.com",)


async def test_dns_quarantine_and_none(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "quarantine.org", None, [])
    assert (result.result, result.disposition) == (DmarcVerdict.FAIL, Policy.QUARANTINE)
    result = await check_dmarc(resolver, "relaxed.org", None, [])
    assert (result.result, result.disposition) == (DmarcVerdict.FAIL, Policy.NONE)


async def test_dns_subdomain_uses_sp_from_org_domain(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "news.example.com", spf("evil.net"), [])
    assert (result.result, result.policy_domain, result.policy, result.disposition) == (
        DmarcVerdict.FAIL, "example.com", Policy.QUARANTINE, Policy.QUARANTINE)
    # Org-domain fallback still aligns relaxed identifiers of the org domain.
    result = await check_dmarc(resolver, "news.example.com", None, [dkim("example.com")])
    assert result.result == DmarcVerdict.PASS


async def test_dns_subdomain_with_own_record_uses_its_p(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "own.example.com", None, [])
    assert (result.policy_domain, result.policy) == ("own.example.com", Policy.NONE)


async def test_dns_strict_alignment(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "strict.org", spf("bounce.strict.org"),
                               [dkim("mail.strict.org")])
    assert (result.result, result.disposition) == (DmarcVerdict.FAIL, Policy.REJECT)
    result = await check_dmarc(resolver, "strict.org", None, [dkim("strict.org")])
    assert result.result == DmarcVerdict.PASS
    result = await check_dmarc(resolver, "relaxed.org", None, [dkim("mail.relaxed.org")])
    assert result.result == DmarcVerdict.PASS


async def test_dns_pct_zero(resolver: LiveResolver) -> None:
    result = await check_dmarc(resolver, "sampled.org", None, [], rng=lambda: 0.0)
    assert (result.result, result.policy, result.disposition) == (
        DmarcVerdict.FAIL, Policy.REJECT, Policy.QUARANTINE)


@pytest.mark.parametrize(("domain", "expected"), [
    ("nodmarc.org", DmarcVerdict.NONE),
    ("missing.example.net", DmarcVerdict.NONE),
    ("flaky.org", DmarcVerdict.TEMPERROR),
    ("twice.org", DmarcVerdict.PERMERROR),
    ("bad.org", DmarcVerdict.PERMERROR),
    ("", DmarcVerdict.PERMERROR),
])
async def test_dns_no_policy_outcomes(resolver: LiveResolver, domain: str,
                                      expected: DmarcVerdict) -> None:
    result = await check_dmarc(resolver, domain, spf("evil.net"), [])
    assert result.result == expected and result.disposition == Policy.NONE
    assert result.reason


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_fuzz_only_raises_syntax_errors(text: str) -> None:
    try:
        record = parse_dmarc_record("v=DMARC1;" + text)
    except DmarcSyntaxError:
        return
    assert 0 <= record.pct <= 100 and record.policy in Policy
