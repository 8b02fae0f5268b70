"""Outbound DANE (RFC 7672) end to end: TLSA records in answers with or without the AD
bit from the test DNS server, a receiving MX with a self-signed or CA-issued certificate,
the queue worker deciding; and the matching rules of outbound/dane.py directly."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from postroom.clock import ManualClock
from postroom.dns.resolver import TlsaRecord
from postroom.outbound import dane
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from postroom.tls.selfsigned import ensure_self_signed
from tests.queue.fakemx import FakeMx
from tests.support.dnsserver import DnsTestServer
from tests.transport.conftest import (
    DOMAIN,
    MX_HOST,
    Outcomes,
    PolicyServer,
    policy_text,
    queue_one,
    server_context,
)

TLSA_NAME = f"_25._tcp.{MX_HOST}"


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, x509.Certificate]:
    cert_path, key_path = tmp_path / "mx.pem", tmp_path / "mx.key"
    ensure_self_signed(cert_path, key_path, MX_HOST)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, x509.load_pem_x509_certificate(cert_path.read_bytes())


def spki_sha256(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(Encoding.DER,
                                                 PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def cert_sha256(pem: bytes) -> str:
    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
                          ).hexdigest()


async def test_dane_ee_match_with_a_self_signed_certificate_delivers(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        tmp_path: Path, outcomes: Outcomes) -> None:
    mx.tls_context, certificate = self_signed(tmp_path)
    dns.secure(DOMAIN)
    dns.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(certificate)}")
    await queue_one(runtime, worker)
    assert (await worker.run_once()).delivered
    assert mx.transactions[0].is_tls
    (outcome,) = outcomes.seen
    assert (outcome.policy_type, outcome.failure) == ("tlsa", None)
    assert outcome.policy_strings == (f"3 1 1 {spki_sha256(certificate)}",)


async def test_tlsa_mismatch_stays_queued_and_bounces_with_the_reason(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        tmp_path: Path, outcomes: Outcomes, clock: ManualClock) -> None:
    mx.tls_context, _ = self_signed(tmp_path)
    dns.secure(DOMAIN)
    dns.add(TLSA_NAME, "TLSA", f"3 1 1 {'ab' * 32}")
    await queue_one(runtime, worker)
    assert (await worker.run_once()).deferred and not mx.transactions
    (entry,) = await runtime.store.list_queue()
    reason = f"DANE policy of {MX_HOST}: certificate of {MX_HOST} matches no TLSA record"
    assert entry.last_error == reason
    assert (outcomes.seen[-1].policy_type, outcomes.seen[-1].failure) == (
        "tlsa", "validation-failure")
    clock.advance(dt.timedelta(hours=2))  # past QUEUE_LIFETIME=1h
    await worker.run_once()
    assert not await runtime.store.list_queue() and not mx.transactions


async def test_insecure_tlsa_records_are_ignored(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        tmp_path: Path, outcomes: Outcomes) -> None:
    mx.tls_context, _ = self_signed(tmp_path)
    dns.add(TLSA_NAME, "TLSA", f"3 1 1 {'ab' * 32}")  # no AD bit anywhere
    await queue_one(runtime, worker)
    assert (await worker.run_once()).delivered
    assert [(o.policy_type, o.failure) for o in outcomes.seen] == [("no-policy-found", None)]


async def test_tlsa_of_a_host_under_an_insecure_mx_answer_is_ignored(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        tmp_path: Path) -> None:
    mx.tls_context, _ = self_signed(tmp_path)
    dns.secure(MX_HOST)  # the TLSA answer is validated, the domain's MX answer is not
    dns.add(TLSA_NAME, "TLSA", f"3 1 1 {'ab' * 32}")
    await queue_one(runtime, worker)
    assert (await worker.run_once()).delivered


async def test_tlsa_of_a_host_with_insecure_addresses_is_ignored(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        tmp_path: Path) -> None:
    mx.tls_context, _ = self_signed(tmp_path)
    dns.replace(DOMAIN, "MX", "10 mx.other.test.")
    dns.add("mx.other.test", "A", "127.0.0.1")
    dns.add("_25._tcp.mx.other.test", "TLSA", f"3 1 1 {'ab' * 32}")
    dns.secure(DOMAIN)
    dns.secure("_25._tcp.mx.other.test")  # validated TLSA, but not the host's A record
    await queue_one(runtime, worker)
    assert (await worker.run_once()).delivered


async def test_failing_tlsa_lookup_in_a_secure_zone_defers(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        tmp_path: Path, outcomes: Outcomes) -> None:
    mx.tls_context, _ = self_signed(tmp_path)
    dns.secure(DOMAIN)
    dns.fail(TLSA_NAME)
    await queue_one(runtime, worker)
    await worker.run_once()
    (entry,) = await runtime.store.list_queue()
    assert entry.last_error.startswith(f"DANE policy of {MX_HOST}: TLSA lookup for")
    assert outcomes.seen[-1].failure == "dnssec-invalid" and not mx.connections


async def test_dane_without_starttls_defers(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer) -> None:
    dns.secure(DOMAIN)
    dns.add(TLSA_NAME, "TLSA", f"3 1 1 {'ab' * 32}")
    await queue_one(runtime, worker)  # the MX offers no STARTTLS
    await worker.run_once()
    (entry,) = await runtime.store.list_queue()
    assert entry.last_error == f"DANE policy of {MX_HOST}: {MX_HOST} does not offer STARTTLS"


async def test_dane_ta_on_an_intermediate_names_the_host(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        trustme_ca: trustme.CA) -> None:
    intermediate = trustme_ca.create_child_ca()
    dns.secure(DOMAIN)
    dns.add(TLSA_NAME, "TLSA", f"2 0 1 {cert_sha256(intermediate.cert_pem.bytes())}")
    mx.tls_context = server_context(intermediate.issue_cert("other.example"))
    await queue_one(runtime, worker, "wrong name")
    await worker.run_once()
    (entry,) = await runtime.store.list_queue()
    assert entry.last_error.endswith(f"does not name {MX_HOST}")
    mx.tls_context = server_context(intermediate.issue_cert(MX_HOST))
    await runtime.store.finish_queue_entry(entry.id)
    await queue_one(runtime, worker, "right name")
    await worker.run_once()
    assert [b"Subject: right name" in t.content for t in mx.transactions] == [True]


async def test_dane_takes_precedence_over_mta_sts(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, tmp_path: Path) -> None:
    dns.replace(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=one;")
    policy_server.body = policy_text("enforce")  # the self-signed certificate fails PKIX
    mx.tls_context, certificate = self_signed(tmp_path)
    dns.secure(DOMAIN)
    dns.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(certificate)}")
    await queue_one(runtime, worker)
    assert (await worker.run_once()).delivered


# -- outbound/dane.py directly --------------------------------------------------------

def test_pkix_usages_and_bad_digest_lengths_are_unusable() -> None:
    records = [TlsaRecord(0, 0, 1, b"x" * 32), TlsaRecord(1, 1, 1, b"x" * 32),
               TlsaRecord(3, 1, 1, b"x" * 31), TlsaRecord(3, 2, 1, b"x" * 32),
               TlsaRecord(3, 1, 3, b"x" * 32), TlsaRecord(2, 1, 2, b"x" * 64)]
    assert dane.usable(records) == [records[-1]]


def test_dane_ee_ignores_names_and_dates(tmp_path: Path) -> None:
    _, certificate = self_signed(tmp_path)
    der = certificate.public_bytes(Encoding.DER)
    far_future = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
    full = TlsaRecord(3, 0, 0, der)
    sha512 = TlsaRecord(3, 0, 2, hashlib.sha512(der).digest())
    assert dane.mismatch([full], [der], "unrelated.test", far_future) is None
    assert dane.mismatch([sha512], [der], "unrelated.test", far_future) is None
    assert dane.mismatch([TlsaRecord(2, 0, 0, der)], [der], MX_HOST, far_future) == (
        "matches no TLSA record")  # a trust anchor must be above the server's certificate


def test_garbage_certificates_are_a_mismatch_not_an_exception() -> None:
    now = dt.datetime.now(dt.UTC)
    assert dane.mismatch([TlsaRecord(3, 1, 1, b"x" * 32)], [b"\x30\x03junk"], MX_HOST,
                         now).startswith("unreadable certificate")
    assert dane.mismatch([TlsaRecord(3, 1, 1, b"x" * 32)], [], MX_HOST, now) == (
        "no certificate")
