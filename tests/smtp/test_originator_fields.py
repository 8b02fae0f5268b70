"""Issue 25, finding 1: From/Sender/Reply-To are read whole by one parser, and a field that
cannot be read is refused, never taken for "no From". Real sockets against the real test
DNS server: port 25 with DMARC (p=reject for bank.example) and submission with
SPOOF_PROTECTION, using the byte strings of the report."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from postroom.config import Config
from postroom.mailauth.headerscan import ORIGINATOR_FIELD_LIMIT
from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from tests.conftest import TEST_HOSTNAME, make_config
from tests.smtp.conftest import PASSWORD, SIZE_LIMIT, RawClient, serve, stored_messages
from tests.support.dnsserver import DnsTestServer

USER = "user@example.test"
BOB = "bob@example.test"
ADMIN = "admin@example.test"

ZONE = """
$TTL 60
attacker.test.        TXT "v=spf1 ip4:127.0.0.0/8 -all"
bank.example.         TXT "v=spf1 -all"
_dmarc.bank.example.  TXT "v=DMARC1; p=reject"
a.bank.example.       TXT "v=spf1 -all"
lax.test.             TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.lax.test.      TXT "v=DMARC1; p=none"
"""

# The report's port-25 field: a 66,000-character comment (folded), then the author.
LONG_COMMENT_FROM = (b"From: (" + b"\r\n ".join([b"x" * 1000] * 66)
                     + b") ceo@bank.example\r\n")
# The report's submission field: Bob's address, 22,000 folds, then the admin's.
MANY_FOLDS_FROM = b"From: bob@example.test," + b"\r\n " * 22_000 + b" admin@example.test\r\n"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, server_cert: tuple[Path, Path], dns: DnsTestServer) -> Config:
    return make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT,
                       DNS_NAMESERVERS=dns.address)


@pytest.fixture
async def users(accounts: Runtime, password_hash: str) -> Runtime:
    for address in (BOB, ADMIN):
        await accounts.store.create_account(address, password_hash)
    return accounts


def dmarc_off(runtime: Runtime, tmp_path: Path, server_cert: tuple[Path, Path],
              dns: DnsTestServer) -> None:
    runtime.config = make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT,
                                 DNS_NAMESERVERS=dns.address, ENABLE_OPENDMARC=0)


def message(header: bytes) -> bytes:
    return header + f"To: {USER}\r\nSubject: s\r\n\r\nbody\r\n".encode()


async def deliver_mx(port: int, data: bytes, sender: str = "x@attacker.test") -> tuple[int, str]:
    client = await RawClient.connect(port)
    try:
        await client.reply()
        await client.command("EHLO client.example")
        assert (await client.command(f"MAIL FROM:<{sender}>"))[0] == 250
        assert (await client.command(f"RCPT TO:<{USER}>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        await client.send(data + b".\r\n")
        return await client.reply()
    finally:
        await client.close()


# -- port 25, DMARC on ---------------------------------------------------------------------

async def test_long_comment_cannot_hide_a_p_reject_author(users: Runtime) -> None:
    async with serve(users, verify_senders=True) as (port, _):
        reply = await deliver_mx(port, message(LONG_COMMENT_FROM))
    assert reply == (550, "5.7.1 Message rejected due to DMARC policy of bank.example")
    assert await stored_messages(users, USER) == []


@pytest.mark.parametrize(("header", "reason"), [
    (b"", "no From header field"),
    (b"From: a@lax.test\r\nFrom: ceo@bank.example\r\n", "2 From header fields"),
    (b"From: a@lax.test, ceo@bank.example\r\n", "From header addresses in several domains"),
    (b"From: ceo@a.bank.example, ceo@bank.example\r\n",
     "From header addresses in several domains"),
    (b"From: ceo\r\n", "From header address without a usable domain"),
    (b"From: a@lax.test, x@[192.0.2.1]\r\n", "From header address without a usable domain"),
    (b"From: undisclosed:;\r\n", "From header field names no address"),
    (b"From: (ceo@lax.test\r\n", "From header field cannot be parsed"),
    (b"From: a@lax.test ceo@bank.example\r\n", "From header field cannot be parsed"),
    (b'From: "a@lax.test ceo@bank.example\r\n', "From header field cannot be parsed"),
])
async def test_dmarc_needs_exactly_one_author_domain(users: Runtime, header: bytes,
                                                     reason: str) -> None:
    """RFC 7489 §6.6.1 / RFC 5322 §3.6: refused before any DNS work, nothing stored."""
    async with serve(users, verify_senders=True) as (port, _):
        reply = await deliver_mx(port, message(header))
    assert reply == (550, f"5.7.1 Message rejected: {reason}; DMARC needs one author domain")
    assert await stored_messages(users, USER) == []


async def test_one_domain_several_addresses_is_evaluated(users: Runtime) -> None:
    header = b"From: a@lax.test,\r\n (comment) \"B\" <b@LAX.test>\r\n"
    async with serve(users, verify_senders=True) as (port, _):
        reply = await deliver_mx(port, message(header), sender="x@lax.test")
    assert reply[0] == 250
    (stored,) = await stored_messages(users, USER)
    assert b"dmarc=pass (p=none dis=none) header.from=lax.test" in stored


# -- port 25, DMARC off --------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    b"From: (ceo@bank.example\r\n",
    b"From: ceo@bank.example>\r\n",
    # longer than the scan keeps (after a line without a colon, past the header-size check)
    b"junk line\r\nFrom: (" + b"\r\n ".join([b"y" * 900] * (ORIGINATOR_FIELD_LIMIT // 900 + 2))
    + b") ceo@bank.example\r\n",
])
async def test_unparsable_from_is_refused_with_dmarc_off(users: Runtime, tmp_path: Path,
                                                         server_cert: tuple[Path, Path],
                                                         dns: DnsTestServer,
                                                         header: bytes) -> None:
    dmarc_off(users, tmp_path, server_cert, dns)
    async with serve(users, verify_senders=True) as (port, _):
        reply = await deliver_mx(port, message(header))
        missing = await deliver_mx(port, message(b""))
    assert reply == (550, "5.6.0 Message rejected: From header field cannot be parsed")
    assert missing[0] == 250  # absent is not unparsable; DMARC is off
    assert len(await stored_messages(users, USER)) == 1


async def test_forged_results_behind_a_long_comment_are_removed(users: Runtime) -> None:
    """Sibling: an Authentication-Results field whose authserv-id sits past what the scan
    keeps is removed, not kept on the strength of its first 64 KiB."""
    forged = (b"Authentication-Results: (" + b"\r\n ".join([b"x" * 1000] * 66) + b") "
              + TEST_HOSTNAME.encode() + b"; dmarc=pass header.from=bank.example\r\n")
    async with serve(users, verify_senders=True) as (port, _):
        reply = await deliver_mx(port, forged + message(b"From: a@lax.test\r\n"),
                                 sender="a@lax.test")
    assert reply[0] == 250
    (stored,) = await stored_messages(users, USER)
    assert b"header.from=bank.example" not in stored
    assert b"header.from=lax.test" in stored


# -- submission, SPOOF_PROTECTION ----------------------------------------------------------

@asynccontextmanager
async def logged_in(runtime: Runtime, tls: ssl.SSLContext, login: str = BOB
                    ) -> AsyncIterator[RawClient]:
    async with serve(runtime, SmtpMode.SUBMISSIONS, implicit_tls=True,
                     verify_senders=True) as (port, _):
        client = await RawClient.connect(port, tls)
        try:
            await client.reply()
            await client.command("EHLO laptop.example")
            plain = base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode()
            assert (await client.command(f"AUTH PLAIN {plain}"))[0] == 235
            yield client
        finally:
            await client.close()


async def submit(client: RawClient, header: bytes, sender: str = BOB) -> tuple[int, str]:
    assert (await client.command(f"MAIL FROM:<{sender}>"))[0] == 250
    assert (await client.command(f"RCPT TO:<{USER}>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    await client.send(message(header) + b".\r\n")
    return await client.reply()


async def test_many_folds_cannot_hide_a_second_author(users: Runtime,
                                                      client_tls: ssl.SSLContext) -> None:
    async with logged_in(users, client_tls) as client:
        reply = await submit(client, MANY_FOLDS_FROM)
    assert reply == (553, f"5.7.1 <{ADMIN}>: From header address rejected: "
                          f"not owned by user {BOB}")
    assert await stored_messages(users, USER) == []


@pytest.mark.parametrize(("header", "expected"), [
    (b"From: bob@example.test\r\nSender: admin@example.test\r\n",
     f"553 5.7.1 <{ADMIN}>: Sender header address rejected: not owned by user {BOB}"),
    (b"From: bob@example.test\r\nSender: Bob <bob@example.test>, admin@example.test\r\n",
     f"553 5.7.1 <{ADMIN}>: Sender header address rejected: not owned by user {BOB}"),
    (b"From: bob@example.test\r\nReply-To: admin@example.test\r\n",
     f"553 5.7.1 <{ADMIN}>: Reply-To header address rejected: not owned by user {BOB}"),
    (b"From: bob@example.test\r\nReply-To: x@remote.example, team@example.test\r\n",
     f"553 5.7.1 <team@example.test>: Reply-To header address rejected: "
     f"not owned by user {BOB}"),
    (b"From: bob@example.test\r\nReply-To: admin\r\n",
     f"553 5.7.1 <admin>: Reply-To header address rejected: not owned by user {BOB}"),
    (b"From: (bob@example.test\r\n",
     "550 5.6.0 Message rejected: From header field cannot be parsed"),
    (b"From: bob@example.test\r\nSender: <admin@example.test\r\n",
     "550 5.6.0 Message rejected: Sender header field cannot be parsed"),
    (b"From: bob@example.test\r\nReply-To: \"admin@example.test\r\n",
     "550 5.6.0 Message rejected: Reply-To header field cannot be parsed"),
    (b"From: bob@example.test\r\nFrom: admin@example.test\r\n",
     f"553 5.7.1 <{ADMIN}>: From header address rejected: not owned by user {BOB}"),
])
async def test_every_displayed_originator_is_checked(users: Runtime, client_tls: ssl.SSLContext,
                                                     header: bytes, expected: str) -> None:
    async with logged_in(users, client_tls) as client:
        code, text = await submit(client, header)
    assert f"{code} {text}" == expected
    assert await stored_messages(users, USER) == []


@pytest.mark.parametrize("header", [
    b"From: Bob <bob@example.test>\r\nSender: bob@example.test\r\n"
    b"Reply-To: someone@remote.example, Bob (me) <BOB@example.test>\r\n",
    b"From: bob@example.test\r\nReply-To: Friends: a@remote.example, b@other.example;\r\n",
    b"From: undisclosed:;\r\n",
])
async def test_owned_and_external_addresses_pass(users: Runtime, client_tls: ssl.SSLContext,
                                                 header: bytes) -> None:
    async with logged_in(users, client_tls) as client:
        reply = await submit(client, header)
    assert reply[0] == 250
    assert len(await stored_messages(users, USER)) == 1


async def test_cut_from_field_is_refused_on_submission(users: Runtime,
                                                       client_tls: ssl.SSLContext) -> None:
    long_from = (b"X-Junk\r\nFrom: bob@example.test, (" + b"\r\n ".join(
        [b"z" * 900] * (ORIGINATOR_FIELD_LIMIT // 900 + 2)) + b") admin@example.test\r\n")
    async with logged_in(users, client_tls) as client:
        reply = await submit(client, long_from)
    assert reply == (550, "5.6.0 Message rejected: From header field cannot be parsed")
