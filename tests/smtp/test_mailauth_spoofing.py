"""SPOOF_PROTECTION on submission (465 implicit TLS and 587 STARTTLS), over real sockets:
the envelope sender at MAIL and the From: addresses after DATA must be the login's own
address or an alias that delivers to it."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from postroom.config import Config
from postroom.runtime import Runtime
from postroom.smtp.policy import SmtpMode
from tests.conftest import make_config
from tests.smtp.conftest import PASSWORD, SIZE_LIMIT, RawClient, serve, stored_messages
from tests.support.dnsserver import DnsTestServer

USER = "user@example.test"
OTHER = "other@example.test"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    # Submission must not look anything up; the server is here to prove it.
    with DnsTestServer('$TTL 60\nexample.test. TXT "v=spf1 -all"\n') as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, server_cert: tuple[Path, Path], dns: DnsTestServer) -> Config:
    return make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT,
                       DNS_NAMESERVERS=dns.address)


@asynccontextmanager
async def logged_in(runtime: Runtime, tls: ssl.SSLContext, login: str = USER,
                    mode: SmtpMode = SmtpMode.SUBMISSIONS) -> AsyncIterator[RawClient]:
    implicit = mode is SmtpMode.SUBMISSIONS
    async with serve(runtime, mode, implicit_tls=implicit,
                     verify_senders=True) as (port, _):
        client = await RawClient.connect(port, tls if implicit else None)
        try:
            await client.reply()
            await client.command("EHLO laptop.example")
            if not implicit:
                await client.command("STARTTLS")
                await client.starttls(tls)
                await client.command("EHLO laptop.example")
            plain = base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode()
            assert (await client.command(f"AUTH PLAIN {plain}"))[0] == 235
            yield client
        finally:
            await client.close()


def mail(author: str) -> bytes:
    return (f"From: {author}\r\nTo: {OTHER}\r\nSubject: hi\r\n\r\nbody\r\n").encode()


async def send(client: RawClient, sender: str, author: str, rcpt: str = OTHER
               ) -> tuple[tuple[int, str], tuple[int, str] | None]:
    """(MAIL reply, DATA reply or None when MAIL was refused)."""
    mail_reply = await client.command(f"MAIL FROM:<{sender}>")
    if mail_reply[0] != 250:
        return mail_reply, None
    assert (await client.command(f"RCPT TO:<{rcpt}>"))[0] == 250
    assert (await client.command("DATA"))[0] == 354
    await client.send(mail(author) + b".\r\n")
    return mail_reply, await client.reply()


@pytest.mark.parametrize("mode", [SmtpMode.SUBMISSIONS, SmtpMode.SUBMISSION])
async def test_own_address_is_accepted_without_dns(accounts: Runtime, client_tls: ssl.SSLContext,
                                                   dns: DnsTestServer, mode: SmtpMode) -> None:
    asked = len(dns.queries)
    async with logged_in(accounts, client_tls, mode=mode) as client:
        _, data = await send(client, USER, "Me <User@Example.TEST>")
    assert data is not None and data[0] == 250
    (stored,) = await stored_messages(accounts, OTHER)
    assert b"Authentication-Results" not in stored  # submission adds none
    assert len(dns.queries) == asked  # no SPF for authenticated clients


async def test_alias_delivering_to_the_login_is_accepted(accounts: Runtime,
                                                         client_tls: ssl.SSLContext) -> None:
    async with logged_in(accounts, client_tls) as client:
        _, data = await send(client, "team@example.test", "Team <team@example.test>")
    assert data is not None and data[0] == 250


async def test_catch_all_owner_may_use_its_domain(accounts: Runtime,
                                                  client_tls: ssl.SSLContext) -> None:
    async with logged_in(accounts, client_tls, login="boss@catchall.test") as client:
        _, data = await send(client, "sales@catchall.test", "sales@catchall.test")
    assert data is not None and data[0] == 250


@pytest.mark.parametrize("sender", [OTHER, "someone@remote.example", "fwd@example.test",
                                    "nobody@example.test", ""])
async def test_envelope_sender_not_owned_is_553(accounts: Runtime, client_tls: ssl.SSLContext,
                                                sender: str) -> None:
    async with logged_in(accounts, client_tls) as client:
        mail_reply, _ = await send(client, sender, USER)
        # the session goes on: the user's own address still works
        _, data = await send(client, USER, USER)
    assert mail_reply == (553, f"5.7.1 <{sender}>: Sender address rejected: "
                               f"not owned by user {USER}")
    assert data is not None and data[0] == 250


@pytest.mark.parametrize("author", [
    OTHER, "Boss <boss@catchall.test>", f"{USER}, {OTHER}", "no-domain", "x@[192.0.2.1]",
])
async def test_from_header_not_owned_is_553_after_data(accounts: Runtime,
                                                       client_tls: ssl.SSLContext,
                                                       author: str) -> None:
    async with logged_in(accounts, client_tls) as client:
        mail_reply, data = await send(client, USER, author)
    assert mail_reply[0] == 250
    assert data is not None
    code, text = data
    assert (code, text[:6]) == (553, "5.7.1 ")
    assert text.endswith(f": From header address rejected: not owned by user {USER}")
    assert await stored_messages(accounts, OTHER) == []


async def test_spoof_protection_off_allows_anything(accounts: Runtime, client_tls: ssl.SSLContext,
                                                    tmp_path: Path,
                                                    server_cert: tuple[Path, Path],
                                                    dns: DnsTestServer) -> None:
    accounts.config = make_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=SIZE_LIMIT,
                                  DNS_NAMESERVERS=dns.address, SPOOF_PROTECTION=0)
    async with logged_in(accounts, client_tls) as client:
        _, data = await send(client, OTHER, "Ceo <ceo@remote.example>")
    assert data is not None and data[0] == 250
    (stored,) = await stored_messages(accounts, OTHER)
    assert stored.startswith(f"Return-Path: <{OTHER}>".encode())
