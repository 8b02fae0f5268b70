"""ARC on port 25 over real sockets, keys and policies in the real test DNS server: mail
from orig.test (p=reject) that a mailing list changed and sent on, so its DKIM signature
fails and its SPF passes only for the list's domain. A passing chain sealed by a sealer in
ARC_TRUSTED_SEALERS lifts the DMARC reject (A-R says arc=pass and the override); the same
chain by an untrusted sealer, or a broken chain by a trusted one, is refused 550."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.arc.chains import forwarded, key_records, original
from tests.conftest import make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread

USER = "user@example.test"

ZONE = """
$TTL 60
fwd.test.            TXT "v=spf1 ip4:127.0.0.0/8 -all"
list.test.           TXT "v=spf1 ip4:127.0.0.0/8 -all"
orig.test.           TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.orig.test.    TXT "v=DMARC1; p=reject"
lax.test.            TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.lax.test.     TXT "v=DMARC1; p=none"
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        for name, value in key_records().items():
            server.add(name, "TXT", value)
        yield server


@pytest.fixture
def server(tmp_path: Path, server_cert: tuple[Path, Path],
           dns: DnsTestServer) -> Iterator[AppThread]:
    config = make_config(tmp_path, server_cert, DNS_NAMESERVERS=dns.address,
                         ENABLE_DNSBL=0, ARC_TRUSTED_SEALERS="fwd.test")
    with AppThread(config) as app:
        app.add_account(USER, "pw")
        yield app


def send(app: AppThread, raw: bytes, sender: str) -> tuple[int, bytes]:
    """The reply to the end of DATA (smtplib raises on refusals: caught here)."""
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as client:
        client.ehlo("list.example")
        try:
            client.sendmail(sender, [USER], raw)
        except smtplib.SMTPDataError as error:
            text = error.smtp_error
            return error.smtp_code, text if isinstance(text, bytes) else text.encode()
        return 250, b""


def auth_results(stored: bytes) -> str:
    """Our Authentication-Results field (the first one, unfolded)."""
    header = stored.split(b"\r\n\r\n", 1)[0].decode()
    match = re.search(r"^Authentication-Results: mail\.example\.test;"
                      r"([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)",
                      header, re.M)
    assert match is not None, header
    return re.sub(r"\r\n[ \t]+", " ", match.group(1))


def test_a_trusted_forwarders_passing_chain_lifts_dmarc_reject(server: AppThread) -> None:
    raw = forwarded(original("a@orig.test", USER), "fwd.test")
    assert send(server, raw, "bounces@fwd.test") == (250, b"")
    [stored] = server.inbox_messages(USER)
    results = auth_results(stored)
    assert "arc=pass (i=1 d=fwd.test)" in results
    assert "dkim=fail" in results  # the list's footer broke the author's signature
    assert "dmarc=fail (p=reject dis=none override=trusted_forwarder) " \
           "header.from=orig.test" in results


def test_an_untrusted_sealer_changes_nothing(server: AppThread) -> None:
    raw = forwarded(original("a@orig.test", USER), "list.test")
    code, text = send(server, raw, "bounces@list.test")
    assert code == 550
    assert b"5.7.1" in text
    assert server.inbox_messages(USER) == []


def test_a_broken_chain_of_a_trusted_sealer_changes_nothing(server: AppThread) -> None:
    raw = forwarded(original("a@orig.test", USER), "fwd.test").replace(
        b"list footer", b"list fouter")
    code, _ = send(server, raw, "bounces@fwd.test")
    assert code == 550
    assert server.inbox_messages(USER) == []


def test_a_broken_chain_is_recorded_as_arc_fail(server: AppThread) -> None:
    raw = forwarded(original("a@lax.test", USER), "fwd.test").replace(
        b"list footer", b"list fouter")
    assert send(server, raw, "bounces@fwd.test") == (250, b"")
    [stored] = server.inbox_messages(USER)
    results = auth_results(stored)
    assert re.search(r"arc=fail reason=\"[^\"]+\" \(i=1 d=fwd\.test\)", results), results
    assert "dmarc=fail (p=none dis=none) header.from=lax.test" in results


def test_two_forwarders_the_newest_sealer_decides(server: AppThread) -> None:
    twice = forwarded(forwarded(original("a@orig.test", USER), "list.test"), "fwd.test")
    assert send(server, twice, "bounces@fwd.test") == (250, b"")
    [stored] = server.inbox_messages(USER)
    assert "arc=pass (i=2 d=fwd.test)" in auth_results(stored)


def test_arc_off_records_nothing_and_refuses(tmp_path: Path, server_cert: tuple[Path, Path],
                                             dns: DnsTestServer) -> None:
    config = make_config(tmp_path, server_cert, DNS_NAMESERVERS=dns.address,
                         ENABLE_DNSBL=0, ARC_TRUSTED_SEALERS="fwd.test", ENABLE_ARC=0)
    with AppThread(config) as app:
        app.add_account(USER, "pw")
        raw = forwarded(original("a@orig.test", USER), "fwd.test")
        assert send(app, raw, "bounces@fwd.test")[0] == 550
        raw = forwarded(original("a@lax.test", USER), "fwd.test")
        assert send(app, raw, "bounces@fwd.test") == (250, b"")
        [stored] = app.inbox_messages(USER)
        assert not re.search(r"\barc=", auth_results(stored))  # (dmarc= has no \b)
