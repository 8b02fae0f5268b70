"""Port 25 mail authentication over real sockets, against the real test DNS server:
SPF at RCPT, DKIM and DMARC after DATA, Authentication-Results, forged A-R stripping."""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postroom.config import Config
from postroom.mailauth.dkim import sign_message
from postroom.mailauth.keys import generate_private_key, public_txt_value
from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from tests.conftest import TEST_HOSTNAME, make_config
from tests.smtp.conftest import SIZE_LIMIT, RawClient, serve, stored_messages
from tests.support.dnsserver import DnsTestServer

USER = "user@example.test"

ZONE = """
$TTL 60
pass.test.           TXT "v=spf1 ip4:127.0.0.1 -all"
_spf.pass.test.      TXT "v=spf1 ip4:127.0.0.0/8 -all"
sub.pass.test.       TXT "v=spf1 ip4:127.0.0.1 -all"
fail.test.           TXT "v=spf1 ip4:192.0.2.1 -all"
soft.test.           TXT "v=spf1 ip4:192.0.2.1 ~all"
neutral.test.        TXT "v=spf1 ?all"
nospf.test.          A   192.0.2.1
perm.test.           TXT "v=spf1 ipv5:127.0.0.1 -all"
twice.test.          TXT "v=spf1 -all"
twice.test.          TXT "v=spf1 +all"
tempfail.test.       TXT "v=spf1 +all"
amech.test.          TXT "v=spf1 a:host.amech.test -all"
host.amech.test.     A   127.0.0.1
mxmech.test.         TXT "v=spf1 mx -all"
mxmech.test.         MX  10 mx.mxmech.test.
mx.mxmech.test.      A   127.0.0.1
include.test.        TXT "v=spf1 include:_spf.pass.test -all"
redirect.test.       TXT "v=spf1 redirect=pass.test"
macro.test.          TXT "v=spf1 exists:%{i}.allow.%{d} -all"
127.0.0.1.allow.macro.test. A 127.0.0.2
ip6only.test.        TXT "v=spf1 ip6:2001:db8::/32 -all"
helo.test.           TXT "v=spf1 ip4:127.0.0.1 -all"
badhelo.test.        TXT "v=spf1 -all"
example.test.        TXT "v=spf1 -all"
_dmarc.dkim.test.    TXT "v=DMARC1; p=reject"
_dmarc.pass.test.    TXT "v=DMARC1; p=reject; aspf=s"
_dmarc.strict.test.  TXT "v=DMARC1; p=reject"
strict.test.         TXT "v=spf1 -all"
_dmarc.quar.test.    TXT "v=DMARC1; p=quarantine"
_dmarc.lax.test.     TXT "v=DMARC1; p=none"
_dmarc.org.test.     TXT "v=DMARC1; p=none; sp=reject"
"""


@pytest.fixture(scope="module")
def key() -> bytes:
    return generate_private_key(bits=1024)


@pytest.fixture(scope="module")
def dns(key: bytes) -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        server.add("sel._domainkey.dkim.test", "TXT", public_txt_value(key))
        server.add("sel._domainkey.strict.test", "TXT", public_txt_value(key))
        server.fail("tempfail.test")
        yield server


@pytest.fixture
def config(tmp_path: Path, server_cert: tuple[Path, Path], dns: DnsTestServer) -> Config:
    return make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT,
                       DNS_NAMESERVERS=dns.address)


def reconfigure(runtime: Runtime, tmp_path: Path, server_cert: tuple[Path, Path],
                dns: DnsTestServer, **overrides: object) -> None:
    runtime.config = make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT,
                                 DNS_NAMESERVERS=dns.address, **overrides)


def mail(author: str = "a@pass.test", subject: str = "hello", extra: bytes = b"",
         body: bytes = b"Hi there.\r\n") -> bytes:
    return extra + (f"From: {author}\r\nTo: {USER}\r\nSubject: {subject}\r\n"
                    "Date: Sat, 28 Nov 2026 00:00:00 +0000\r\nMessage-ID: <m1@x.test>\r\n"
                    "\r\n").encode() + body


@dataclass
class Outcome:
    rcpt: tuple[int, str]
    data: tuple[int, str] | None


async def deliver(port: int, sender: str, data: bytes, rcpt: str = USER,
                  helo: str = "client.example") -> Outcome:
    client = await RawClient.connect(port)
    try:
        await client.reply()
        await client.command(f"EHLO {helo}")
        assert (await client.command(f"MAIL FROM:<{sender}>"))[0] == 250
        rcpt_reply = await client.command(f"RCPT TO:<{rcpt}>")
        if rcpt_reply[0] != 250:
            return Outcome(rcpt_reply, None)
        assert (await client.command("DATA"))[0] == 354
        await client.send(data + b".\r\n")
        return Outcome(rcpt_reply, await client.reply())
    finally:
        await client.close()


def auth_results(stored: bytes) -> list[str]:
    """The unfolded Authentication-Results values of a stored message's header."""
    header = stored.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = re.sub(r"\r\n[ \t]+", " ", header)
    return [line.split(":", 1)[1].strip() for line in unfolded.split("\r\n")
            if line.lower().startswith("authentication-results:")]


async def only_stored(runtime: Runtime, mailbox: str = "INBOX") -> bytes:
    (stored,) = await stored_messages(runtime, USER, mailbox)
    return stored


# -- SPF ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("sender", "expected"), [
    ("a@pass.test", "spf=pass smtp.mailfrom=a@pass.test"),
    ("a@amech.test", "spf=pass"),
    ("a@mxmech.test", "spf=pass"),
    ("a@include.test", "spf=pass"),
    ("a@redirect.test", "spf=pass"),
    ("a@macro.test", "spf=pass"),
    ("a@soft.test", "spf=softfail smtp.mailfrom=a@soft.test"),
    ("a@neutral.test", "spf=neutral"),
    ("a@nospf.test", "spf=none"),
    ("a@nxdomain.test", "spf=none"),
    ("a@perm.test", "spf=permerror"),
    ("a@twice.test", "spf=permerror"),
], ids=lambda value: value.split("@")[-1].split()[0])
async def test_spf_results_are_recorded(accounts: Runtime, sender: str, expected: str) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, sender, mail("z@elsewhere.test"))
    assert outcome.data is not None and outcome.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert results.startswith(f"{TEST_HOSTNAME}; ")
    assert expected in results


@pytest.mark.parametrize("sender", ["a@fail.test", "a@ip6only.test"])
async def test_spf_fail_is_refused_at_rcpt(accounts: Runtime, sender: str) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, sender, mail())
    assert outcome.rcpt == (550, f"5.7.23 <{USER}>: Recipient address rejected: "
                                 "Message rejected due to: SPF fail - not authorized.")
    assert await stored_messages(accounts, USER) == []


async def test_spf_temperror_is_451_and_asked_once_per_transaction(
        accounts: Runtime, dns: DnsTestServer) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        client = await RawClient.connect(port)
        await client.reply()
        await client.command("EHLO client.example")
        await client.command("MAIL FROM:<a@tempfail.test>")
        asked = []
        for rcpt in (USER, "other@example.test"):
            code, text = await client.command(f"RCPT TO:<{rcpt}>")
            assert (code, text.split(" ", 1)[0]) == (451, "4.7.24")
            assert f"<{rcpt}>" in text
            asked.append(dns.queries.count(("tempfail.test.", "TXT")))
        assert asked[0] >= 1 and asked[1] == asked[0]  # evaluated once, not per recipient
        await client.close()


async def test_null_sender_checks_the_helo_name(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        refused = await deliver(port, "", mail("x@lax.test"), helo="badhelo.test")
        accepted = await deliver(port, "", mail("x@lax.test"), helo="helo.test")
    assert refused.rcpt[0] == 550 and refused.rcpt[1].startswith("5.7.23")
    assert accepted.data is not None and accepted.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert "spf=pass smtp.helo=helo.test" in results


async def test_unknown_recipient_is_refused_before_spf(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "a@fail.test", mail(), rcpt="nobody@example.test")
    assert outcome.rcpt[0] == 550 and outcome.rcpt[1].startswith("5.1.1")


async def test_trusted_networks_skip_every_check(
        accounts: Runtime, tmp_path: Path, server_cert: tuple[Path, Path],
        dns: DnsTestServer) -> None:
    reconfigure(accounts, tmp_path, server_cert, dns, TRUSTED_NETWORKS="127.0.0.0/8")
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "a@fail.test", mail("b@strict.test"))
    assert outcome.data is not None and outcome.data[0] == 250
    assert auth_results(await only_stored(accounts)) == [f"{TEST_HOSTNAME}; none"]


async def test_spf_switched_off_refuses_nothing_but_records_for_dmarc(
        accounts: Runtime, tmp_path: Path, server_cert: tuple[Path, Path],
        dns: DnsTestServer) -> None:
    reconfigure(accounts, tmp_path, server_cert, dns, ENABLE_POLICYD_SPF=0)
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "a@fail.test", mail("a@lax.test"))
    assert outcome.rcpt[0] == 250 and outcome.data is not None and outcome.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert "spf=fail smtp.mailfrom=a@fail.test" in results


async def test_without_verification_no_dns_and_no_header(accounts: Runtime,
                                                         dns: DnsTestServer) -> None:
    async with serve(accounts) as (port, _):
        outcome = await deliver(port, "a@unasked.test", mail("a@unasked.test"))
    assert outcome.data is not None and outcome.data[0] == 250
    assert auth_results(await only_stored(accounts)) == []
    assert not [query for query in dns.queries if "unasked" in query[0]]


# -- DKIM --------------------------------------------------------------------------------

async def signed(key: bytes, message: bytes, domain: str = "dkim.test",
                 selector: str = "sel") -> bytes:
    return await sign_message(message, domain, selector, key) + message


async def test_dkim_pass_and_dmarc_pass_via_dkim(accounts: Runtime, key: bytes) -> None:
    data = await signed(key, mail("Alice <alice@dkim.test>"))
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "bounce@nospf.test", data)
    assert outcome.data is not None and outcome.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert "spf=none" in results
    assert re.search(r"dkim=pass header\.d=dkim\.test header\.s=sel header\.b=\S{8}", results)
    assert "dmarc=pass (p=reject dis=none) header.from=dkim.test" in results


TAMPERING = {
    "body": lambda raw: raw.replace(b"Hi there.", b"Hi th3re."),
    "header": lambda raw: raw.replace(b"Subject: hello", b"Subject: HELLO"),
}


@pytest.mark.parametrize("part", TAMPERING)
async def test_dkim_tampered_is_recorded_as_fail(accounts: Runtime, key: bytes,
                                                 part: str) -> None:
    data = TAMPERING[part](await signed(key, mail("alice@lax.test")))
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "bounce@nospf.test", data)
    assert outcome.data is not None and outcome.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert re.search(r"dkim=fail reason=\"[^\"]+\" header\.d=dkim\.test header\.s=sel", results)
    assert "dmarc=fail" in results


@pytest.mark.parametrize("part", TAMPERING)
async def test_dkim_tampered_under_p_reject_is_refused(accounts: Runtime, key: bytes,
                                                       part: str) -> None:
    data = TAMPERING[part](await signed(key, mail("alice@dkim.test")))
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "bounce@nospf.test", data)
    assert outcome.data == (550, "5.7.1 Message rejected due to DMARC policy of dkim.test")
    assert await stored_messages(accounts, USER) == []


async def test_each_signature_is_recorded(accounts: Runtime, key: bytes) -> None:
    """Three signatures: good, body-tampered-looking (bad bh), and a missing key."""
    message = mail("alice@lax.test")
    good = await sign_message(message, "dkim.test", "sel", key)
    missing = await sign_message(message, "dkim.test", "gone", key)
    broken = re.sub(rb"bh=[^;]+;", b"bh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;",
                    await sign_message(message, "strict.test", "sel", key))
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "bounce@nospf.test", good + broken + missing + message)
    assert outcome.data is not None and outcome.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    dkim = [part.strip() for part in results.split(";") if part.strip().startswith("dkim=")]
    assert [entry.split()[0] for entry in dkim] == ["dkim=pass", "dkim=fail", "dkim=permerror"]
    assert "header.d=strict.test" in dkim[1] and "header.s=gone" in dkim[2]
    assert "dmarc=fail (p=none dis=none) header.from=lax.test" in results


async def test_dkim_switched_off(accounts: Runtime, key: bytes, tmp_path: Path,
                                 server_cert: tuple[Path, Path], dns: DnsTestServer) -> None:
    reconfigure(accounts, tmp_path, server_cert, dns, ENABLE_OPENDKIM=0)
    data = await signed(key, mail("alice@lax.test"))
    async with serve(accounts, verify_senders=True) as (port, _):
        await deliver(port, "a@pass.test", data)
    (results,) = auth_results(await only_stored(accounts))
    assert "dkim=" not in results and "spf=pass" in results and "dmarc=fail" in results


# -- DMARC -------------------------------------------------------------------------------

async def test_dmarc_pass_via_spf(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "bounce@pass.test", mail("Bob <bob@pass.test>"))
    assert outcome.data is not None and outcome.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert "dmarc=pass (p=reject dis=none) header.from=pass.test" in results


async def test_dmarc_strict_spf_alignment_needs_the_same_name(accounts: Runtime) -> None:
    """aspf=s at pass.test: SPF passes for sub.pass.test, which relaxed alignment would
    accept (same organizational domain) and strict does not."""
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "bounce@sub.pass.test", mail("bob@pass.test"))
    assert outcome.rcpt[0] == 250
    assert outcome.data == (550, "5.7.1 Message rejected due to DMARC policy of pass.test")


async def test_dmarc_reject_stores_nothing(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "elon@nospf.test", mail("Elon <elon@strict.test>"))
    assert outcome.rcpt[0] == 250
    assert outcome.data == (550, "5.7.1 Message rejected due to DMARC policy of strict.test")
    assert await stored_messages(accounts, USER) == []
    assert await stored_messages(accounts, USER, "Junk") == []


async def test_dmarc_quarantine_goes_to_junk(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "x@nospf.test", mail("x@quar.test"))
    assert outcome.data is not None and outcome.data[0] == 250
    assert await stored_messages(accounts, USER) == []
    (results,) = auth_results(await only_stored(accounts, "Junk"))
    assert "dmarc=fail (p=quarantine dis=quarantine) header.from=quar.test" in results


async def test_dmarc_none_is_delivered_to_inbox(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        await deliver(port, "x@nospf.test", mail("x@lax.test"))
    (results,) = auth_results(await only_stored(accounts))
    assert "dmarc=fail (p=none dis=none) header.from=lax.test" in results


async def test_dmarc_subdomain_policy(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        sub = await deliver(port, "x@nospf.test", mail("x@mail.org.test"))
        org = await deliver(port, "x@nospf.test", mail("x@org.test"))
    assert sub.data == (550, "5.7.1 Message rejected due to DMARC policy of mail.org.test")
    assert org.data is not None and org.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert "dmarc=fail (p=none dis=none) header.from=org.test" in results


async def test_dmarc_without_record_is_none(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        await deliver(port, "x@nospf.test", mail("x@nospf.test"))
    (results,) = auth_results(await only_stored(accounts))
    assert "dmarc=none header.from=nospf.test" in results


async def test_several_author_domains_are_refused(accounts: Runtime) -> None:
    """RFC 7489 §6.6.1 evaluates one author domain: a passing first author cannot cover a
    spoofed second one, in one From field or in two (RFC 5322 §3.6 allows one)."""
    async with serve(accounts, verify_senders=True) as (port, _):
        one_field = await deliver(port, "a@pass.test", mail("a@pass.test, b@strict.test"))
        two_fields = await deliver(port, "a@pass.test", mail(
            "a@pass.test", extra=b"From: b@quar.test\r\n"))
    assert one_field.data == (550, "5.7.1 Message rejected: From header addresses in "
                                   "several domains; DMARC needs one author domain")
    assert two_fields.data == (550, "5.7.1 Message rejected: 2 From header fields; "
                                    "DMARC needs one author domain")
    assert await stored_messages(accounts, USER, "Junk") == []
    assert await stored_messages(accounts, USER) == []


async def test_no_from_is_refused(accounts: Runtime) -> None:
    data = b"To: user@example.test\r\nSubject: anonymous\r\n\r\nwho?\r\n"
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "x@pass.test", data)
    assert outcome.data == (550, "5.7.1 Message rejected: no From header field; "
                                 "DMARC needs one author domain")
    assert await stored_messages(accounts, USER) == []


async def test_dmarc_switched_off(accounts: Runtime, tmp_path: Path,
                                  server_cert: tuple[Path, Path], dns: DnsTestServer) -> None:
    reconfigure(accounts, tmp_path, server_cert, dns, ENABLE_OPENDMARC=0)
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "x@nospf.test", mail("x@strict.test"))
    assert outcome.data is not None and outcome.data[0] == 250
    (results,) = auth_results(await only_stored(accounts))
    assert "dmarc=" not in results and "spf=none" in results


async def test_quarantine_reaches_every_account_of_an_alias(accounts: Runtime) -> None:
    async with serve(accounts, verify_senders=True) as (port, _):
        outcome = await deliver(port, "x@nospf.test", mail("x@quar.test"),
                                rcpt="team@example.test")
    assert outcome.data is not None and outcome.data[0] == 250
    assert len(await stored_messages(accounts, "other@example.test", "Junk")) == 1
    assert len(await stored_messages(accounts, USER, "Junk")) == 1


# -- Authentication-Results hygiene ------------------------------------------------------

async def test_forged_authentication_results_are_stripped(accounts: Runtime) -> None:
    forged = (b"Authentication-Results: " + TEST_HOSTNAME.upper().encode()
              + b"; dkim=pass header.d=strict.test\r\n"
              b"Authentication-Results: (sneaky)\r\n " + TEST_HOSTNAME.encode()
              + b";\r\n\tdmarc=pass header.from=strict.test\r\n"
              b"Authentication-Results: relay.other.example; spf=pass\r\n")
    data = mail("x@lax.test", extra=forged)
    async with serve(accounts, verify_senders=True) as (port, _):
        await deliver(port, "x@nospf.test", data)
    stored = await only_stored(accounts)
    results = auth_results(stored)
    assert len(results) == 2
    assert results[0].startswith(f"{TEST_HOSTNAME}; spf=none")
    assert results[1] == "relay.other.example; spf=pass"
    assert b"strict.test" not in stored
    assert stored.endswith(mail("x@lax.test", extra=b"Authentication-Results: "
                                b"relay.other.example; spf=pass\r\n"))


async def test_forged_results_stripped_on_submission_too(
        accounts: Runtime, client_tls: ssl.SSLContext) -> None:
    forged = (b"Authentication-Results: " + TEST_HOSTNAME.encode()
              + b"; dmarc=pass header.from=bank.example\r\n")
    async with serve(accounts, SmtpMode.SUBMISSIONS, implicit_tls=True,
                     verify_senders=True) as (port, _):
        client = await RawClient.connect(port, client_tls)
        await client.reply()
        await client.command("EHLO laptop.example")
        plain = base64.b64encode(b"\0user@example.test\0correct horse").decode()
        assert (await client.command(f"AUTH PLAIN {plain}"))[0] == 235
        assert (await client.command(f"MAIL FROM:<{USER}>"))[0] == 250
        assert (await client.command(f"RCPT TO:<{USER}>"))[0] == 250
        await client.command("DATA")
        await client.send(mail(USER, extra=forged) + b".\r\n")
        assert (await client.reply())[0] == 250
        await client.close()
    stored = await only_stored(accounts)
    assert auth_results(stored) == [] and b"bank.example" not in stored
