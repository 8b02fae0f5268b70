"""ARC sealing of forwarded mail over real sockets (RFC 8617 §5.1): an alias of ours whose
target is an outside address, and a Sieve redirect, send mail on to outside.test, whose
MX (in the real test DNS server) is an SMTP sink on loopback (OUTBOUND_SMTP_PORT). The
copy that arrives carries our ARC set (i=1, or i=n+1 after a chain it came with), and
dkimpy's own arc_verify, reading our key from the test DNS zone, says pass. Our own
users' mail is DKIM-signed, not sealed; a domain without a key gets no seal."""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim  # dkimpy's arc_verify: the reference verifier, as the receiving side
import dns.message
import dns.query
import pytest

from postroom.mailauth import keys
from postroom.outbound.arcseal import ArcSealer
from postroom.outbound.signing import DkimSigner, keys_dir
from tests.arc.chains import arc_instances, forwarded, key_records, original
from tests.conftest import make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread
from tests.support.smtpsink import Sink

USER, ALIAS, OTHER_ALIAS = "user@example.test", "fwd@example.test", "desk@other.test"
OUR_KEY = keys.generate_private_key(bits=1024)

ZONE = """
$TTL 60
sender.test.         TXT "v=spf1 ip4:127.0.0.0/8 -all"
list.test.           TXT "v=spf1 ip4:127.0.0.0/8 -all"
outside.test.        MX  10 mx.outside.test.
mx.outside.test.     A   127.0.0.1
"""



@pytest.fixture(scope="module")
def zone() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        for name, value in key_records().items():
            server.add(name, "TXT", value)
        server.add("mail._domainkey.example.test", "TXT", keys.public_txt_value(OUR_KEY))
        yield server



@pytest.fixture
def server(tmp_path: Path, server_cert: tuple[Path, Path], zone: DnsTestServer,
           sink: tuple[Sink, int]) -> Iterator[AppThread]:
    # MTA-STS and DANE look-ups would only find nothing here: off, to test ARC alone.
    config = make_config(tmp_path, server_cert, DNS_NAMESERVERS=zone.address,
                         OUTBOUND_SMTP_PORT=sink[1], ENABLE_DNSBL=0, ENABLE_MTA_STS=0,
                         ENABLE_DANE=0)
    keys.write_key(keys_dir(config), "example.test", "mail", OUR_KEY)
    with AppThread(config) as app:
        app.add_account(USER, "pw")
        app.call(app.runtime.accounts.add_alias(ALIAS, "bob@outside.test"))
        app.call(app.runtime.accounts.add_alias(OTHER_ALIAS, "carol@outside.test"))
        yield app


def published(zone: DnsTestServer) -> Callable[[bytes, float], bytes | None]:
    """A dkimpy dnsfunc asking the test DNS server, as the receiving side would."""
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        query = dns.message.make_query(name.decode(), "TXT")
        answer = dns.query.udp(query, "127.0.0.1", port=zone.port, timeout=timeout)
        for rrset in answer.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)
        return None

    return dnsfunc


def arc_verdict(raw: bytes, zone: DnsTestServer) -> tuple[bytes | None, str]:
    cv, _results, reason = dkim.arc_verify(raw, dnsfunc=published(zone))
    return cv, reason


def send(app: AppThread, raw: bytes, sender: str, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", app.port("smtp"), timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail(sender, recipients, raw)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def arrived(sink: Sink, count: int = 1) -> bytes:
    wait_for(lambda: len(sink.received) >= count)
    return sink.received[count - 1][2]


def test_an_alias_to_an_outside_address_seals_with_the_alias_domains_key(
        server: AppThread, sink: tuple[Sink, int], zone: DnsTestServer) -> None:
    raw = original("a@sender.test", ALIAS, subject="aliased")
    send(server, raw, "a@sender.test", [ALIAS])
    out = arrived(sink[0])
    assert sink[0].received[0][1] == ["bob@outside.test"]
    assert arc_instances(out) == [1]
    assert out.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test; s=mail;")
    assert b"ARC-Authentication-Results: i=1; mail.example.test;" in out
    assert b"spf=pass smtp.mailfrom=a@sender.test" in out
    assert arc_verdict(out, zone) == (b"pass", "success")


def test_a_forward_of_a_chained_message_adds_the_next_set(
        server: AppThread, sink: tuple[Sink, int], zone: DnsTestServer) -> None:
    raw = forwarded(original("a@sender.test", ALIAS, subject="chained"), "list.test")
    send(server, raw, "bounces@list.test", [ALIAS])
    out = arrived(sink[0])
    assert arc_instances(out) == [2, 1]
    assert out.startswith(b"ARC-Seal: i=2; cv=pass;")
    assert b"arc=pass" in out.split(b"ARC-Seal: i=1", 1)[0]  # our AAR states the chain
    assert arc_verdict(out, zone) == (b"pass", "success")


def test_a_sieve_redirect_is_sealed(server: AppThread, sink: tuple[Sink, int],
                                    zone: DnsTestServer) -> None:
    async def script() -> None:
        store = server.runtime.store
        account = await store.get_account(USER)
        assert account is not None
        now = dt.datetime.now(dt.UTC)
        await store.put_sieve_script(account.id, "main", 'redirect "dan@outside.test";', now)
        await store.activate_sieve_script(account.id, "main")

    server.call(script())
    send(server, original("a@sender.test", USER, subject="redirected"), "a@sender.test",
         [USER])
    out = arrived(sink[0])
    assert sink[0].received[0][1] == ["dan@outside.test"]
    assert arc_instances(out) == [1]
    assert b"d=example.test; s=mail;" in out
    assert arc_verdict(out, zone) == (b"pass", "success")


def test_a_domain_without_a_key_falls_back_to_the_hostnames_domain(
        server: AppThread, sink: tuple[Sink, int], zone: DnsTestServer) -> None:
    send(server, original("a@sender.test", OTHER_ALIAS, subject="other"), "a@sender.test",
         [OTHER_ALIAS])
    out = arrived(sink[0])
    assert out.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test;")
    assert arc_verdict(out, zone) == (b"pass", "success")


def test_our_users_mail_is_signed_not_sealed(server: AppThread, sink: tuple[Sink, int],
                                             client_tls: ssl.SSLContext) -> None:
    raw = original(USER, "erin@outside.test", subject="mine")
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.starttls(context=client_tls)
        client.login(USER, "pw")
        client.sendmail(USER, ["erin@outside.test"], raw)
    out = arrived(sink[0])
    assert out.startswith(b"DKIM-Signature:")
    assert arc_instances(out) == []


async def test_no_key_anywhere_no_seal_logged_once(
        tmp_path: Path, server_cert: tuple[Path, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, server_cert)
    sealer = ArcSealer(config, DkimSigner(tmp_path / "no-keys"))
    ours = b"Authentication-Results: mail.example.test; spf=pass smtp.mailfrom=a@b.test\r\n"
    with caplog.at_level(logging.WARNING, logger="postroom.outbound.arcseal"):
        for _ in range(2):
            assert await sealer.seal(ours + original("a@sender.test", ALIAS), "x.test") == b""
    assert [r.message for r in caplog.records].count(
        "no DKIM key for x.test (nor a fallback domain): mail forwarded for it goes out "
        "without an ARC seal (`postroom dkim generate x.test`)") == 1
