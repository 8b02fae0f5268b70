"""DKIM signing and verification with keys served by the real test DNS server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from postroom.dns.fake import FakeResolver
from postroom.dns.live import LiveResolver
from postroom.mailauth.dkim import (
    MAX_SIGNATURES,
    ON_LOOP_BYTES,
    DkimVerdict,
    sign_message,
    verify_dkim,
)
from postroom.mailauth.keys import KeyAlgorithm, generate_private_key, public_txt_value
from tests.support.dnsserver import DnsTestServer

MESSAGE = (b"From: Alice <alice@example.com>\r\n"
           b"To: bob@example.org\r\n"
           b"Subject: Lunch\r\n"
           b"Date: Sat, 28 Nov 2026 00:00:00 +0000\r\n"
           b"Message-ID: <lunch-1@example.com>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Received: from somewhere\r\n"
           b"\r\n"
           b"Noon at the usual place?\r\n")


@pytest.fixture(scope="module")
def rsa_key() -> bytes:
    return generate_private_key(bits=1024)


@pytest.fixture(scope="module")
def other_rsa_key() -> bytes:
    return generate_private_key(bits=1024)


@pytest.fixture(scope="module")
def ed_key() -> bytes:
    return generate_private_key(KeyAlgorithm.ED25519)


@pytest.fixture(scope="module")
def dns_server(rsa_key: bytes, ed_key: bytes) -> Iterator[DnsTestServer]:
    with DnsTestServer("$TTL 60\nexample.com. A 192.0.2.1\n") as server:
        server.add("mail._domainkey.example.com", "TXT", public_txt_value(rsa_key))
        server.add("ed._domainkey.example.com", "TXT", public_txt_value(ed_key))
        server.add("revoked._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=")
        server.add("junk._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=!!!notbase64")
        server.fail("broken._domainkey.example.com")
        yield server


@pytest.fixture
def resolver(dns_server: DnsTestServer) -> LiveResolver:
    return LiveResolver([dns_server.nameserver], timeout=2.0)


async def signed(key: bytes, selector: str = "mail", message: bytes = MESSAGE) -> bytes:
    return await sign_message(message, "example.com", selector, key) + message


async def test_sign_then_verify_passes(resolver: LiveResolver, rsa_key: bytes) -> None:
    results = await verify_dkim(resolver, await signed(rsa_key))
    assert len(results) == 1
    result = results[0]
    assert (result.result, result.domain, result.selector) == (
        DkimVerdict.PASS, "example.com", "mail")
    assert result.algorithm == "rsa-sha256" and len(result.header_b) == 8


async def test_signature_shape(rsa_key: bytes) -> None:
    header = (await sign_message(MESSAGE, "example.com", "mail", rsa_key)).decode()
    assert header.startswith("DKIM-Signature:") and header.endswith("\r\n")
    unfolded = re.sub(r"\r\n[ \t]+", " ", header)
    assert "a=rsa-sha256" in unfolded and "c=relaxed/relaxed" in unfolded
    signed_list = re.search(r"h=([^;]+);", unfolded)
    assert signed_list is not None
    names = [name.strip() for name in signed_list.group(1).split(":")]
    assert names.count("from") == 2  # over-signed
    assert {"to", "subject", "date", "message-id", "mime-version",
            "content-type"} <= set(names)
    assert "received" not in names


async def test_body_tampered_fails(resolver: LiveResolver, rsa_key: bytes) -> None:
    message = (await signed(rsa_key)).replace(b"Noon", b"Nine")
    [result] = await verify_dkim(resolver, message)
    assert result.result == DkimVerdict.FAIL and "body hash" in result.reason


@pytest.mark.parametrize("size", [ON_LOOP_BYTES - 1024, ON_LOOP_BYTES + 1024])
async def test_either_side_of_the_on_loop_size(resolver: LiveResolver, rsa_key: bytes,
                                               size: int) -> None:
    """Small messages are verified on the loop, larger ones on a thread: same results."""
    message = MESSAGE + b"More of the same, line after line.\r\n" * (size // 36)
    whole = await signed(rsa_key, message=message)
    assert (len(whole) <= ON_LOOP_BYTES) is (size < ON_LOOP_BYTES)
    [result] = await verify_dkim(resolver, whole)
    assert result.result == DkimVerdict.PASS
    [result] = await verify_dkim(resolver, whole.replace(b"line after", b"line afore", 1))
    assert result.result == DkimVerdict.FAIL and "body hash" in result.reason


async def test_signatures_over_the_limit_are_not_verified(dns_server: DnsTestServer,
                                                          resolver: LiveResolver,
                                                          rsa_key: bytes) -> None:
    """RFC 6376 §6.1: a verifier may limit the signatures it verifies; a hostile header
    of many must not cost a key lookup and a verification each."""
    signatures = b"".join([await sign_message(MESSAGE, "example.com", "mail", rsa_key)]
                          + [await sign_message(MESSAGE, "example.com", f"many{n}", rsa_key)
                             for n in range(MAX_SIGNATURES + 2)])  # fmt: skip
    asked = len(dns_server.queries)
    results = await verify_dkim(resolver, signatures + MESSAGE + b"x" * ON_LOOP_BYTES)
    assert len(results) == MAX_SIGNATURES + 1
    assert results[0].result == DkimVerdict.FAIL  # the body grew: evaluated all the same
    assert {r.result for r in results[1:MAX_SIGNATURES]} == {DkimVerdict.PERMERROR}  # no key
    assert (results[-1].result, results[-1].reason) == (
        DkimVerdict.POLICY, "3 more signatures not evaluated")
    assert len(dns_server.queries) - asked == MAX_SIGNATURES  # one key lookup each


async def test_header_tampered_fails(resolver: LiveResolver, rsa_key: bytes) -> None:
    message = (await signed(rsa_key)).replace(b"Subject: Lunch", b"Subject: Lunch!")
    [result] = await verify_dkim(resolver, message)
    assert result.result == DkimVerdict.FAIL


async def test_added_from_breaks_oversigned_signature(resolver: LiveResolver,
                                                      rsa_key: bytes) -> None:
    message = b"From: Mallory <m@evil.example>\r\n" + await signed(rsa_key)
    [result] = await verify_dkim(resolver, message)
    assert result.result == DkimVerdict.FAIL


async def test_relaxed_canonicalization_tolerates_refolding(resolver: LiveResolver,
                                                            rsa_key: bytes) -> None:
    message = (await signed(rsa_key)).replace(b"Subject: Lunch", b"Subject:   Lunch")
    message = message.replace(b"Noon at the usual place?", b"Noon  at the usual place?  ")
    [result] = await verify_dkim(resolver, message)
    assert result.result == DkimVerdict.PASS


@pytest.mark.parametrize(("selector", "expected"), [
    ("missing", DkimVerdict.PERMERROR),   # NXDOMAIN: no key
    ("revoked", DkimVerdict.PERMERROR),   # empty p=
    ("junk", DkimVerdict.PERMERROR),      # unparseable key
    ("broken", DkimVerdict.TEMPERROR),    # SERVFAIL
])
async def test_key_problems(resolver: LiveResolver, rsa_key: bytes, selector: str,
                            expected: DkimVerdict) -> None:
    [result] = await verify_dkim(resolver, await signed(rsa_key, selector))
    assert result.result == expected
    assert result.selector == selector and result.reason


async def test_every_signature_is_reported(resolver: LiveResolver, rsa_key: bytes,
                                           other_rsa_key: bytes) -> None:
    good = await sign_message(MESSAGE, "example.com", "mail", rsa_key)
    # Signed with a key that is not the one published at mail._domainkey: bad.
    bad = await sign_message(MESSAGE, "example.com", "mail", other_rsa_key)
    results = await verify_dkim(resolver, bad + good + MESSAGE)
    assert [r.result for r in results] == [DkimVerdict.FAIL, DkimVerdict.PASS]
    results = await verify_dkim(resolver, good + bad + MESSAGE)
    assert [r.result for r in results] == [DkimVerdict.PASS, DkimVerdict.FAIL]


async def test_ed25519_dual_signature(resolver: LiveResolver, rsa_key: bytes,
                                      ed_key: bytes) -> None:
    header = await sign_message(MESSAGE, "example.com", "mail", rsa_key,
                                ed25519_selector="ed", ed25519_key=ed_key)
    results = await verify_dkim(resolver, header + MESSAGE)
    assert [(r.result, r.selector, r.algorithm) for r in results] == [
        (DkimVerdict.PASS, "mail", "rsa-sha256"),
        (DkimVerdict.PASS, "ed", "ed25519-sha256")]


async def test_malformed_signature_headers_never_raise(resolver: LiveResolver) -> None:
    message = (b"DKIM-Signature: this is not a tag list\r\n"
               b"DKIM-Signature: v=1; a=rsa-sha256; b=abc\r\n"
               b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=mail; h=from; bh=x; b=y\r\n"
               + MESSAGE)
    results = await verify_dkim(resolver, message)
    assert [r.result for r in results] == [DkimVerdict.PERMERROR] * 3


async def test_unsigned_message_has_no_results(resolver: LiveResolver) -> None:
    assert await verify_dkim(resolver, MESSAGE) == []


async def test_keys_are_prefetched_once_through_our_resolver(rsa_key: bytes) -> None:
    fake = FakeResolver({"mail._domainkey.example.com": {"TXT": [public_txt_value(rsa_key)]}})
    twice = await sign_message(MESSAGE, "example.com", "mail", rsa_key)
    results = await verify_dkim(fake, twice + twice + MESSAGE)
    assert [r.result for r in results] == [DkimVerdict.PASS, DkimVerdict.PASS]
    assert fake.queries == [("mail._domainkey.example.com", "TXT")]


async def test_lf_only_message(resolver: LiveResolver, rsa_key: bytes) -> None:
    message = MESSAGE.replace(b"\r\n", b"\n")
    header = await sign_message(message, "example.com", "mail", rsa_key)
    [result] = await verify_dkim(resolver, header.replace(b"\r\n", b"\n") + message)
    assert result.result == DkimVerdict.PASS


async def test_message_without_from_cannot_be_signed(rsa_key: bytes) -> None:
    with pytest.raises(ValueError, match="From"):
        await sign_message(b"Subject: x\r\n\r\nbody\r\n", "example.com", "mail", rsa_key)
