"""DNS block and allow lists over real sockets (issue 18): a client connecting from
127.0.0.2, listed in a zone the test DNS server answers, is refused or scored per weight;
domain lists see From and URL domains; an allow list lowers the score; 127.255.255.x
answers are ignored and logged once; a failing list counts as not listing, and one that
never answers delays nothing past DNSBL_TIMEOUT (with a resolver that never answers)."""

from __future__ import annotations

import asyncio
import email
import ipaddress
import logging
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postroom.checks.dnsbl import DnsLists
from postroom.config import Config
from postroom.dns.fake import FakeResolver
from tests.conftest import make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import NO_DNS_CHECKS, AppThread

USER = "user@example.test"
ZONE = """
2.0.0.127.bl.test.        60 IN A 127.0.0.2
2.0.0.127.blocked.test.   60 IN A 127.255.255.254
2.0.0.127.wl.test.        60 IN A 127.0.2.3
listed.example.dbl.test.  60 IN A 127.0.1.2
"""
MESSAGE = (b"From: news@listed.example\r\nTo: user@example.test\r\nSubject: Offer\r\n\r\n"
           b"See http://www.Listed.Example/offer and https://clean.example/\r\n")


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        yield server


def start(tmp_path: Path, cert: tuple[Path, Path], dns: DnsTestServer,
          **overrides: Any) -> AppThread:
    settings = {"DNSBL_QUERY_PRIVATE": 1, **overrides}
    config = make_config(tmp_path, cert, **NO_DNS_CHECKS, DNS_NAMESERVERS=dns.address,
                         ENABLE_POP3=0, ENABLE_IMAP=0, **settings)
    server = AppThread(config).__enter__()
    server.add_account(USER, "pw")
    return server


def send(server: AppThread, source: str, message: bytes = MESSAGE,
         sender: str = "a@sender.example") -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20,
                      source_address=(source, 0)) as client:
        client.sendmail(sender, [USER], message)


def test_listed_client_is_refused_per_weight(tmp_path: Path, server_cert: tuple[Path, Path],
                                             dns: DnsTestServer) -> None:
    server = start(tmp_path, server_cert, dns, DNSBL_ZONES="bl.test*20",
                   DNSBL_DOMAIN_ZONES="", DNSWL_ZONES="")
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(server, "127.0.0.2")
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            554, b"5.7.1 Message rejected as spam")
        send(server, "127.0.0.1")  # not listed (NXDOMAIN)
        (stored,) = server.inbox_messages(USER)
        assert b"X-Spam" not in stored
        assert ("2.0.0.127.bl.test.", "A") in dns.queries
    finally:
        server.stop()


def test_scores_add_up_and_refusing_lists_are_ignored(
        tmp_path: Path, server_cert: tuple[Path, Path], dns: DnsTestServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "postroom")
    server = start(tmp_path, server_cert, dns, DNSBL_ZONES="bl.test*3 blocked.test*50",
                   DNSBL_DOMAIN_ZONES="dbl.test*4", DNSWL_ZONES="wl.test*-1")
    try:
        send(server, "127.0.0.2")
        send(server, "127.0.0.2")
        first, _ = server.inbox_messages(USER)  # 3 + 4 - 1 = 6: tagged, below SA_TAG2
    finally:
        server.stop()
    status = email.message_from_bytes(first)["X-Spam-Status"].replace("\r\n\t", "")
    assert status == ("No, score=6 required=6.31 "
                      "tests=RHSBL_DBL_TEST=4,RBL_BL_TEST=3,DNSWL_WL_TEST=-1")
    refusals = [r for r in caplog.records if "blocked.test refused our queries" in r.getMessage()]
    assert len(refusals) == 1 and "127.255.255.254" in refusals[0].getMessage()
    delivered = [r.getMessage() for r in caplog.records if "result=250" in r.getMessage()]
    assert len(delivered) == 2
    assert all("spam=tag score=6 tests=RHSBL_DBL_TEST=4,RBL_BL_TEST=3,DNSWL_WL_TEST=-1" in line
               for line in delivered)


def test_return_code_filter_and_failing_list(tmp_path: Path, server_cert: tuple[Path, Path],
                                             dns: DnsTestServer) -> None:
    dns.fail("2.0.0.127.broken.test", "servfail")
    server = start(tmp_path, server_cert, dns, SA_TAG=0.5,
                   DNSBL_ZONES="bl.test=127.0.0.[3..5]*20 broken.test*20 bl.test=127.0.0.2*1",
                   DNSBL_DOMAIN_ZONES="", DNSWL_ZONES="")
    try:
        send(server, "127.0.0.2")
        (stored,) = server.inbox_messages(USER)
    finally:
        server.stop()
    assert b"score=1 required=6.31 tests=RBL_BL_TEST=1\r\n" in stored


class SilentResolver(FakeResolver):
    """A list that never answers: its lookups wait until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    async def a(self, name: str) -> list[str]:
        if "silent" not in name:
            return await super().a(name)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return []


async def test_one_deadline_for_every_lookup(config: Config) -> None:
    resolver = SilentResolver()
    resolver.add("2.0.0.127.bl.test", "A", "127.0.0.2")
    settings = config.model_copy(update={"dnsbl_timeout": 0.2, "dnsbl_query_private": True,
                                         "dnsbl_zones": ["silent.test*20", "bl.test*2"],
                                         "dnsbl_domain_zones": ["silent.test*5"],
                                         "dnswl_zones": []})
    lists = DnsLists(resolver, settings)
    started = time.monotonic()
    found = await lists.symbols(ipaddress.IPv4Address("127.0.0.2"), ["a.example", "b.example"])
    assert time.monotonic() - started < 2
    assert [(s.name, s.score) for s in found] == [("RBL_BL_TEST", 2.0)]
    assert resolver.cancelled == 3  # nothing left running


def test_private_clients_are_not_looked_up(
        tmp_path: Path, server_cert: tuple[Path, Path], dns: DnsTestServer) -> None:
    server = start(tmp_path, server_cert, dns, DNSBL_QUERY_PRIVATE=0, DNSBL_ZONES="bl.test*20")
    try:
        send(server, "127.0.0.2")
        assert len(server.inbox_messages(USER)) == 1
    finally:
        server.stop()
    assert not [query for query in dns.queries if "test" in str(query)]
