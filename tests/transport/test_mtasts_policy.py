"""RFC 8461 policies as outbound/mtasts.py reads them: the strict parser against hostile
input, the TXT record, MX pattern matching, the fetch's refusals (redirects, media type,
size, certificate) and the durable cache in the store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trustme

from postroom.clock import ManualClock
from postroom.dns.live import LiveResolver
from postroom.outbound.mtasts import (
    MAX_LINES,
    MAX_MX,
    MAX_POLICY_SIZE,
    MtaStsPolicies,
    PolicyError,
    parse_policy,
    parse_txt_id,
)
from postroom.runtime import Runtime
from postroom.store.mtasts_api import CachedMtaStsPolicy
from tests.support.dnsserver import DnsTestServer
from tests.transport.conftest import DOMAIN, PolicyServer, policy_text, server_context

GOOD = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n"


def test_a_valid_policy_and_its_matching() -> None:
    policy = parse_policy(GOOD.replace("\n", "\r\n") + "future_field: ignored\r\n")
    assert (policy.mode, policy.max_age) == ("enforce", 604800)
    assert policy.mx == ("mail.example.com", "*.example.net")
    assert policy.matches("MAIL.example.com.") and policy.matches("mx1.example.net")
    assert not policy.matches("a.b.example.net")  # a wildcard covers one label only
    assert not policy.matches("example.net") and not policy.matches("xmail.example.com")
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 0\n").mx == ()


@pytest.mark.parametrize("text", [
    "",
    "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
    GOOD.replace("mode: enforce", "mode: Enforce"),
    GOOD.replace("max_age: 604800", "max_age: 31557601"),
    GOOD.replace("max_age: 604800", "max_age: -1"),
    GOOD.replace("max_age: 604800", "max_age: 99999999999999999999"),
    GOOD.replace("max_age: 604800", "max_age: 1e5"),
    GOOD + "mode: testing\n",  # a second mode
    GOOD + "version: STSv1\n",
    "version: STSv1\nmode: enforce\nmax_age: 60\n",  # no mx outside mode none
    GOOD.replace("mx: *.example.net", "mx: *.*.example.net"),
    GOOD.replace("mx: *.example.net", "mx: mail.*.example.net"),
    GOOD.replace("mx: *.example.net", "mx: -bad-.example.net"),
    GOOD.replace("mx: *.example.net", "mx: localhost"),
    GOOD.replace("mx: *.example.net", "mx: a..example.net"),
    GOOD.replace("mx: *.example.net", "mx: " + "a" * 64 + ".example.net"),
    GOOD + "this line has no colon\n",
    GOOD + "mx : spaced.example\n",
    GOOD + "mx: ok.example\x00evil\n",
    GOOD + "mx: ünicode.example\n",
    GOOD + "note: \x1b[31mred\n",
    GOOD + "x: y\n" * MAX_LINES,
    "version: STSv1\nmode: enforce\nmax_age: 60\n" + "mx: a.example\n" * (MAX_MX + 1),
    "<html><body>Not found</body></html>",
])
def test_hostile_or_broken_policies_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_a_huge_policy_is_refused_quickly() -> None:
    with pytest.raises(PolicyError):
        parse_policy("mx: a.example\n" * 1_000_000)


@pytest.mark.parametrize(("records", "expected"), [
    (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
    (["v=STSv1;id=abc", "v=spf1 -all"], "abc"),
    (["v=STSv1; id=abc; ext=1"], "abc"),
    (["v=STSv1; id=a", "v=STSv1; id=b"], None),  # two records: none (RFC 8461 §3.1)
    (["v=STSv1; id=has-dash"], None),
    (["v=STSv1; id=" + "a" * 33], None),
    (["v=STSv1;"], None),
    (["v=STSv10; id=abc"], None),
    ([], None),
])
def test_txt_record_ids(records: list[str], expected: str | None) -> None:
    assert parse_txt_id(records) == expected


# -- fetching and caching, against a real HTTPS server ----------------------------------

@pytest.fixture
def policies(runtime: Runtime, dns: DnsTestServer, policy_server: PolicyServer,
             ca_file: Path, clock: ManualClock) -> MtaStsPolicies:
    dns.replace(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=one;")
    policy_server.body = policy_text("enforce")
    return MtaStsPolicies(runtime.store, LiveResolver([dns.nameserver], cache_size=0), clock,
                          port=policy_server.port, cafile=str(ca_file), timeout=10)


async def test_a_fetched_policy_is_cached_with_its_id_and_expiry(
        policies: MtaStsPolicies, runtime: Runtime, policy_server: PolicyServer,
        clock: ManualClock, dns: DnsTestServer) -> None:
    found = await policies.lookup(DOMAIN)
    assert found.policy is not None and found.policy.mode == "enforce"
    cached = await runtime.store.mta_sts_policy(DOMAIN.upper())
    assert cached is not None and cached.policy_id == "one"
    assert cached.expires == clock.now() + dt.timedelta(days=1)
    await policies.lookup(DOMAIN)
    assert policy_server.requests == 1  # same id, unexpired: no fetch
    dns.replace(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=two;")
    policy_server.body = policy_text("testing")
    found = await policies.lookup(DOMAIN)
    assert found.policy is not None and found.policy.mode == "testing"
    assert policy_server.requests == 2


@pytest.mark.parametrize(("status", "content_type", "body", "failure"), [
    ("301 Moved Permanently", "text/plain", "", "sts-policy-fetch-error"),
    ("404 Not Found", "text/plain", "", "sts-policy-fetch-error"),
    ("200 OK", "text/html", policy_text("enforce"), "sts-policy-fetch-error"),
    ("200 OK", "text/plain", "x" * (MAX_POLICY_SIZE + 1), "sts-policy-fetch-error"),
    ("200 OK", "text/plain", "mode: enforce\n", "sts-policy-invalid"),
])
async def test_fetch_refusals(policies: MtaStsPolicies, policy_server: PolicyServer,
                              status: str, content_type: str, body: str,
                              failure: str) -> None:
    policy_server.status, policy_server.content_type = status, content_type
    policy_server.body = body
    found = await policies.lookup(DOMAIN)
    assert (found.policy, found.failure) == (None, failure)


async def test_a_certificate_not_naming_the_policy_host_is_refused(
        policies: MtaStsPolicies, policy_server: PolicyServer, trustme_ca: trustme.CA
        ) -> None:
    await policy_server.stop()
    policy_server.context = server_context(trustme_ca.issue_cert("mta-sts.other.test"))
    await policy_server.start()
    found = await policies.lookup(DOMAIN)
    assert found.policy is None and found.failure == "sts-policy-fetch-error"
    assert "certificate" in found.detail.lower() or "hostname" in found.detail.lower()


async def test_store_round_trip_replaces_the_row(runtime: Runtime) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    first = CachedMtaStsPolicy("example.org", "a", "text", when, when + dt.timedelta(days=1))
    await runtime.store.put_mta_sts_policy(first)
    second = CachedMtaStsPolicy("Example.ORG", "b", "other", when, when)
    await runtime.store.put_mta_sts_policy(second)
    found = await runtime.store.mta_sts_policy("example.org")
    assert found == CachedMtaStsPolicy("example.org", "b", "other", when, when)
    assert await runtime.store.mta_sts_policy("missing.example") is None
