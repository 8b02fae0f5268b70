"""ARC chain validation and sealing without sockets (RFC 8617): chains built by dkimpy's
own arc_sign pass, tampered ones fail, and hostile headers (too many sets, duplicate or
out-of-range instances, a missing ARC-Authentication-Results, a gap, a seal saying
cv=fail) fail on their structure before any key is looked up. Also the A-R rendering of
the result and the DMARC override it may lead to."""

from __future__ import annotations

import logging

import pytest

from postroom.dns.fake import FakeResolver
from postroom.mailauth.arc import (
    MAX_ARC_SETS,
    ArcResult,
    ArcVerdict,
    has_arc_fields,
    seal_message,
    verify_arc,
)
from postroom.mailauth.authresults import render_header
from postroom.mailauth.dmarc import (
    DmarcVerdict,
    Policy,
    PolicyOverride,
    evaluate_dmarc,
    override_policy,
    parse_dmarc_record,
)
from tests.arc.chains import (
    KEYS,
    SELECTOR,
    arc_instances,
    forwarded,
    key_records,
    original,
    verify_with_dkimpy,
)


def resolver() -> FakeResolver:
    return FakeResolver({name: {"TXT": [value]} for name, value in key_records().items()})


def fake_set(instance: int, *, seal: bool = True, signature: bool = True,
             results: bool = True, cv: str = "none") -> bytes:
    fields = []
    if seal:
        fields.append(f"ARC-Seal: i={instance}; cv={cv}; a=rsa-sha256; d=fwd.test; "
                      f"s=sel; t=1; b=AAAA\r\n")
    if signature:
        fields.append(f"ARC-Message-Signature: i={instance}; a=rsa-sha256; d=fwd.test; "
                      f"s=sel; h=from; bh=AAAA; b=AAAA\r\n")
    if results:
        fields.append(f"ARC-Authentication-Results: i={instance}; fwd.test; spf=pass "
                      f"smtp.mailfrom=orig.test\r\n")
    return "".join(fields).encode()


BODY = original("a@orig.test", "user@example.test")


async def test_no_chain_is_none_without_dns() -> None:
    dns = resolver()
    result = await verify_arc(dns, BODY)
    assert result.result is ArcVerdict.NONE
    assert dns.queries == []


async def test_a_chain_sealed_by_dkimpy_passes() -> None:
    result = await verify_arc(resolver(), forwarded(BODY, "fwd.test"))
    assert (result.result, result.instance, result.sealer) == (ArcVerdict.PASS, 1, "fwd.test")


async def test_two_hops_pass_and_name_the_newest_sealer() -> None:
    twice = forwarded(forwarded(BODY, "fwd.test"), "list.test")
    result = await verify_arc(resolver(), twice)
    assert (result.result, result.instance, result.sealer) == (ArcVerdict.PASS, 2, "list.test")


async def test_a_body_changed_after_sealing_fails() -> None:
    tampered = forwarded(BODY, "fwd.test").replace(b"Hi there.", b"Hi thereX")
    result = await verify_arc(resolver(), tampered)
    assert result.result is ArcVerdict.FAIL
    assert "ARC-Message-Signature" in result.reason


async def test_a_seal_over_a_changed_arc_field_fails() -> None:
    sealed = forwarded(BODY, "fwd.test").replace(b"dkim=pass header.d=orig.test",
                                                 b"dkim=pass header.d=evil.test", 1)
    assert (await verify_arc(resolver(), sealed)).result is ArcVerdict.FAIL


async def test_a_missing_key_fails_and_a_dns_failure_fails() -> None:
    assert (await verify_arc(FakeResolver(), forwarded(BODY, "fwd.test"))).result \
        is ArcVerdict.FAIL
    dns = resolver()
    dns.fail(f"{SELECTOR}._domainkey.fwd.test")
    assert (await verify_arc(dns, forwarded(BODY, "fwd.test"))).result is ArcVerdict.FAIL


async def test_what_dkimpy_cannot_read_fails_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    odd = forwarded(BODY, "fwd.test").replace(b"ARC-Message-Signature: i=1;",
                                              b"ARC-Message-Signature: i=1 ;", 1)
    with caplog.at_level(logging.DEBUG):
        result = await verify_arc(resolver(), odd)
    assert result.result is ArcVerdict.FAIL
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("header", "reason"), [
    (b"".join(fake_set(i) for i in range(60, 0, -1)), "more than 50 sets"),
    (fake_set(MAX_ARC_SETS + 1), "outside 1..50"),
    (fake_set(0), "outside 1..50"),
    (fake_set(1) + b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=s; b=AA\r\n",
     "duplicate ARC-Seal for i=1"),
    (fake_set(1, results=False), "has no ARC-Authentication-Results"),
    (fake_set(1, signature=False), "has no ARC-Message-Signature"),
    (fake_set(2) , "no ARC set i=1 below i=2"),
    (fake_set(2, cv="fail") + fake_set(1), "says cv=fail"),
    (b"ARC-Seal: cv=none; d=fwd.test\r\n", "without a readable i= tag"),
    (b"ARC-Seal: i=1; i=2; =\r\n", "without a readable i= tag"),
    (b"ARC-Authentication-Results: fwd.test; spf=pass\r\n", "without a readable i= tag"),
])
async def test_hostile_chains_fail_on_structure_without_dns(header: bytes,
                                                            reason: str) -> None:
    dns = resolver()
    result = await verify_arc(dns, header + BODY)
    assert result.result is ArcVerdict.FAIL
    assert reason in result.reason
    assert dns.queries == []


def test_arc_fields_are_seen_by_name() -> None:
    assert has_arc_fields(frozenset({"from", "arc-seal"}))
    assert not has_arc_fields(frozenset({"from", "dkim-signature"}))


def test_only_a_passing_chain_of_a_listed_sealer_is_trusted() -> None:
    assert ArcResult(ArcVerdict.PASS, sealer="fwd.test").is_trusted(["fwd.test"])
    assert not ArcResult(ArcVerdict.PASS, sealer="fwd.test").is_trusted(["other.test"])
    assert not ArcResult(ArcVerdict.FAIL, sealer="fwd.test").is_trusted(["fwd.test"])
    assert not ArcResult(ArcVerdict.PASS, sealer="").is_trusted([""])


def test_the_result_is_rendered_before_dmarc() -> None:
    header = render_header("mx.example.test",
                           arc=ArcResult(ArcVerdict.PASS, "success", 2, "list.test"))
    assert header == (b"Authentication-Results: mx.example.test;\r\n"
                      b"\tarc=pass (i=2 d=list.test)\r\n")
    failed = render_header("mx", arc=ArcResult(ArcVerdict.FAIL, 'bad "seal"\r\n', 1, "x.test"))
    assert b'arc=fail reason="bad \\"seal\\"" (i=1 d=x.test)' in failed


def test_override_keeps_the_verdict_and_records_the_reason() -> None:
    record = parse_dmarc_record("v=DMARC1; p=reject")
    failed = evaluate_dmarc("orig.test", record, "orig.test", None, [])
    assert failed.disposition is Policy.REJECT
    lifted = override_policy(failed, PolicyOverride.TRUSTED_FORWARDER, "sealed by fwd.test")
    assert (lifted.result, lifted.disposition, lifted.override) == (
        DmarcVerdict.FAIL, Policy.NONE, PolicyOverride.TRUSTED_FORWARDER)
    assert lifted.policy is Policy.REJECT  # what was asked stays on record (reports)
    assert b"(p=reject dis=none override=trusted_forwarder)" in render_header(
        "mx", dmarc=lifted)


# -- sealing -----------------------------------------------------------------------------

OUR_AR = (b"Authentication-Results: mx.example.test;\r\n\tspf=pass "
          b"smtp.mailfrom=a@orig.test;\r\n\tdmarc=pass header.from=orig.test\r\n")


async def test_a_seal_starts_a_chain_that_dkimpy_verifies() -> None:
    arc_set = await seal_message(OUR_AR + BODY, "fwd.test", SELECTOR, KEYS["fwd.test"],
                                 "mx.example.test")
    sealed = arc_set + OUR_AR + BODY
    assert arc_instances(sealed) == [1]
    assert b"cv=none" in arc_set
    assert b"ARC-Authentication-Results: i=1; mx.example.test;" in arc_set
    assert verify_with_dkimpy(sealed, key_records()) == (b"pass", "success")


async def test_a_seal_continues_a_passing_chain() -> None:
    arrived = forwarded(BODY, "list.test")
    ours = b"Authentication-Results: mx.example.test; arc=pass (i=1 d=list.test)\r\n"
    arc_set = await seal_message(ours + arrived, "fwd.test", SELECTOR, KEYS["fwd.test"],
                                 "mx.example.test")
    sealed = arc_set + ours + arrived
    assert arc_instances(sealed) == [2, 1]
    assert b"cv=pass" in arc_set
    assert verify_with_dkimpy(sealed, key_records()) == (b"pass", "success")


async def test_no_results_of_ours_no_seal() -> None:
    assert await seal_message(BODY, "fwd.test", SELECTOR, KEYS["fwd.test"],
                              "mx.example.test") == b""


async def test_a_chain_at_its_limit_cannot_be_sealed() -> None:
    full = b"".join(fake_set(i) for i in range(MAX_ARC_SETS, 0, -1))
    ours = b"Authentication-Results: mx.example.test; arc=fail\r\n"
    with pytest.raises(ValueError, match="ARC sealing failed"):
        await seal_message(ours + full + BODY, "fwd.test", SELECTOR, KEYS["fwd.test"],
                           "mx.example.test")
