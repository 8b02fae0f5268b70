"""DKIM on the way out: the message that reaches the remote MX verifies against a real
test DNS server publishing the public keys (RSA and Ed25519)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.clock import ManualClock
from postroom.dns.live import LiveResolver
from postroom.mailauth import keys
from postroom.mailauth.dkim import DkimVerdict, verify_dkim
from postroom.outbound.signing import DkimSigner, keys_dir
from postroom.outbound.worker import QueueWorker
from tests.queue.fakemx import FakeMx
from tests.queue.harness import ALICE, NoJitter, message, queue_config, spool
from tests.support.dnsserver import DnsTestServer
from tests.support.runtime import open_runtime

ZONE = """
$TTL 60
@        IN SOA ns.test. hostmaster.test. 1 60 60 600 60
remote.test.     IN MX 10 mx.remote.test.
mx.remote.test.  IN A 127.0.0.1
"""


@pytest.fixture
async def mx() -> AsyncIterator[FakeMx]:
    async with FakeMx() as server:
        yield server


def publish(dns: DnsTestServer, key: keys.DkimKey) -> None:
    value = keys.public_txt_value(key.private_path.read_bytes())
    dns.add(f"{key.selector}._domainkey.{key.domain}", "TXT", value)


async def test_delivered_message_carries_verifying_rsa_and_ed25519_signatures(
        tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx) -> None:
    config = queue_config(tmp_path, server_cert, mx.port)
    rsa = keys.generate_key(keys_dir(config), "example.test", bits=1024)
    ed = keys.generate_key(keys_dir(config), "example.test", "ed",
                           algorithm=keys.KeyAlgorithm.ED25519)
    with DnsTestServer(ZONE, origin="test.") as dns:
        publish(dns, rsa)
        publish(dns, ed)
        resolver = LiveResolver([dns.nameserver], timeout=2)
        async with open_runtime(config) as runtime:
            worker = QueueWorker(runtime, resolver, ManualClock(),
                                 DkimSigner.from_config(config), rng=NoJitter())
            blob = await spool(runtime, message())
            await worker.enqueue(ALICE, ["bob@remote.test"], blob)
            report = await worker.run_once()
        assert len(report.delivered) == 1
        delivered = mx.transactions[0].content
        assert delivered.startswith(b"DKIM-Signature:")
        results = await verify_dkim(resolver, delivered)
    assert sorted((r.result, r.algorithm, r.selector) for r in results) == [
        (DkimVerdict.PASS, "ed25519-sha256", "ed"),
        (DkimVerdict.PASS, "rsa-sha256", "mail"),
    ]


async def test_signer_picks_the_from_domain_then_the_envelope_domain(tmp_path: Path) -> None:
    directory = tmp_path / "dkim"
    keys.generate_key(directory, "sender.test", bits=1024)
    signer = DkimSigner(directory)
    raw = b"From: a@other.test\r\nSubject: x\r\n\r\nbody\r\n"
    header = await signer.signature_for(raw, "bounce@sender.test")
    assert b"d=sender.test" in header
    keys.generate_key(directory, "other.test", "s1", bits=1024)
    header = await signer.signature_for(raw, "bounce@sender.test")
    assert b"d=other.test" in header and b"s=s1" in header
    assert await signer.signature_for(raw.replace(b"other", b"nokey"), "x@nokey.test") == b""
    assert await signer.signature_for(b"Subject: no from\r\n\r\n", "x@sender.test") == b""


def test_only_ed25519_keys_do_not_sign(tmp_path: Path) -> None:
    directory = tmp_path / "dkim"
    keys.generate_key(directory, "ed.test", "ed", algorithm=keys.KeyAlgorithm.ED25519)
    assert DkimSigner(directory).load_domain_keys("ed.test") is None
    assert DkimSigner(directory).load_domain_keys("absent.test") is None
