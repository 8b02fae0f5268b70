"""Issue 22, through the whole App (app.py wiring) and smtplib: port 25's SPF and DMARC
lookups for a sender are asked once for several messages when DNS_CACHE_SIZE is on (the
default), and once per message with DNS_CACHE_SIZE=0; queries counted at the test DNS
server."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from postroom.dns.cache import CachingResolver
from tests.conftest import make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread

ZONE = """$TTL 300
@        IN SOA ns hostmaster 1 60 60 60 60
@        IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc   IN TXT "v=DMARC1; p=reject"
"""
MESSAGES = 3


def send_messages(app: AppThread) -> None:
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=10) as smtp:
        for number in range(MESSAGES):
            smtp.sendmail("a@good.test", ["user@example.test"],
                          f"From: a@good.test\r\nSubject: {number}\r\n\r\nhi\r\n".encode())


@pytest.mark.parametrize(("cache_size", "expected_queries"), [("10000", 1), ("0", MESSAGES)])
def test_checks_share_the_cache(tmp_path: Path, server_cert: tuple[Path, Path],
                                cache_size: str, expected_queries: int) -> None:
    with DnsTestServer(ZONE, origin="good.test.") as dns, AppThread(make_config(
            tmp_path, server_cert, DNS_NAMESERVERS=dns.address, DNS_CACHE_SIZE=cache_size,
            ENABLE_IMAP=0, ENABLE_POP3=0)) as app:
        app.add_account("user@example.test", "pw")
        assert isinstance(app.runtime.resolver, CachingResolver) == (cache_size != "0")
        send_messages(app)
        assert len(app.inbox_messages("user@example.test")) == MESSAGES
        assert all(b"spf=pass" in raw and b"dmarc=pass" in raw
                   for raw in app.inbox_messages("user@example.test"))
        assert dns.queries.count(("good.test.", "TXT")) == expected_queries
        assert dns.queries.count(("_dmarc.good.test.", "TXT")) == expected_queries
