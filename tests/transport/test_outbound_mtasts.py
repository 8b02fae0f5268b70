"""Outbound MTA-STS (RFC 8461) end to end: TXT record and policy server, a receiving MX
with STARTTLS and a certificate that does or does not name it, the queue worker deciding."""

from __future__ import annotations

import datetime as dt

import trustme

from postroom.clock import ManualClock
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from tests.queue.fakemx import FakeMx
from tests.queue.harness import ALICE, inbox_messages, recipient_blocks
from tests.support.dnsserver import DnsTestServer
from tests.transport.conftest import (
    DOMAIN,
    MX_HOST,
    RECIPIENT,
    Outcomes,
    PolicyServer,
    policy_text,
    queue_one,
    server_context,
)

MISMATCH = (f"MTA-STS policy of {DOMAIN} (enforce): certificate of {MX_HOST}"
            " does not match")


def publish(dns: DnsTestServer, server: PolicyServer, mode: str, policy_id: str = "id1",
            **policy: object) -> None:
    dns.replace(f"_mta-sts.{DOMAIN}", "TXT", f"v=STSv1; id={policy_id};")
    server.body = policy_text(mode, **policy)  # type: ignore[arg-type]


async def test_enforce_with_a_mismatching_certificate_stays_queued_then_bounces(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, trustme_ca: trustme.CA, clock: ManualClock,
        outcomes: Outcomes) -> None:
    publish(dns, policy_server, "enforce")
    mx.tls_context = server_context(trustme_ca.issue_cert("other.example"))
    await queue_one(runtime, worker)
    report = await worker.run_once()
    assert report.deferred and not mx.transactions
    (entry,) = await runtime.store.list_queue()
    assert entry.last_error == MISMATCH
    failure = outcomes.seen[-1]
    assert (failure.policy_type, failure.failure) == ("sts", "certificate-host-mismatch")
    assert failure.mx_host == MX_HOST and "mode: enforce" in failure.policy_strings
    attempts = 1
    while await runtime.store.list_queue():
        (waiting,) = await runtime.store.list_queue()
        clock.set(waiting.next_attempt)
        await worker.run_once()
        attempts += 1
        assert attempts < 20
    assert not mx.transactions
    assert policy_server.requests == 1  # the cached policy served every later attempt
    (dsn,) = await inbox_messages(runtime, ALICE)
    (block,) = recipient_blocks(dsn)
    assert block["Action"] == "failed" and block["Status"] == "4.7.5"
    assert MISMATCH in block["Diagnostic-Code"]


async def test_enforce_with_a_good_certificate_delivers_over_tls(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, trustme_ca: trustme.CA, outcomes: Outcomes) -> None:
    publish(dns, policy_server, "enforce")
    mx.tls_context = server_context(trustme_ca.issue_cert(MX_HOST))
    await queue_one(runtime, worker)
    report = await worker.run_once()
    assert report.delivered
    (transaction,) = mx.transactions
    assert transaction.is_tls and transaction.recipients == [RECIPIENT]
    assert [(o.policy_type, o.failure) for o in outcomes.seen] == [("sts", None)]


async def test_enforce_without_starttls_stays_queued(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, outcomes: Outcomes) -> None:
    publish(dns, policy_server, "enforce")
    await queue_one(runtime, worker)  # mx.tls_context is None: no STARTTLS offered
    await worker.run_once()
    (entry,) = await runtime.store.list_queue()
    assert entry.last_error == (f"MTA-STS policy of {DOMAIN} (enforce): {MX_HOST} does not"
                                " offer STARTTLS")
    assert outcomes.seen[-1].failure == "starttls-not-supported" and not mx.transactions


async def test_enforce_drops_mx_hosts_outside_the_policy(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, trustme_ca: trustme.CA) -> None:
    publish(dns, policy_server, "enforce", mx="*.elsewhere.test")
    mx.tls_context = server_context(trustme_ca.issue_cert(MX_HOST))
    await queue_one(runtime, worker)
    await worker.run_once()
    (entry,) = await runtime.store.list_queue()
    assert "no MX host matches the policy" in entry.last_error and not mx.connections


async def test_testing_mode_delivers_despite_a_bad_certificate_and_reports_it(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, trustme_ca: trustme.CA, outcomes: Outcomes) -> None:
    publish(dns, policy_server, "testing")
    mx.tls_context = server_context(trustme_ca.issue_cert("other.example"))
    await queue_one(runtime, worker)
    report = await worker.run_once()
    assert report.delivered and mx.transactions[0].is_tls
    assert [(o.policy_type, o.failure) for o in outcomes.seen] == [
        ("sts", "certificate-host-mismatch")]


async def test_cached_policy_holds_while_the_policy_server_is_down(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, trustme_ca: trustme.CA, clock: ManualClock,
        outcomes: Outcomes) -> None:
    publish(dns, policy_server, "enforce")
    mx.tls_context = server_context(trustme_ca.issue_cert(MX_HOST))
    await queue_one(runtime, worker, "first")
    assert (await worker.run_once()).delivered
    # The policy server goes away and the TXT id changes: the fetch fails, the cached,
    # unexpired enforce policy stays in force (RFC 8461 §5.1).
    await policy_server.stop()
    dns.replace(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=id2;")
    mx.tls_context = server_context(trustme_ca.issue_cert("other.example"))
    clock.advance(dt.timedelta(hours=1))
    await queue_one(runtime, worker, "second")
    await worker.run_once()
    (entry,) = await runtime.store.list_queue()
    assert entry.last_error == MISMATCH and len(mx.transactions) == 1
    assert "sts-policy-fetch-error" in [o.failure for o in outcomes.seen]


async def test_expired_policy_and_no_txt_record_means_no_policy(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, trustme_ca: trustme.CA, clock: ManualClock) -> None:
    publish(dns, policy_server, "enforce", max_age=60)
    mx.tls_context = server_context(trustme_ca.issue_cert(MX_HOST))
    await queue_one(runtime, worker, "first")
    assert (await worker.run_once()).delivered
    dns.remove(f"_mta-sts.{DOMAIN}", "TXT")
    clock.advance(dt.timedelta(minutes=2))
    mx.tls_context = server_context(trustme_ca.issue_cert("other.example"))
    await queue_one(runtime, worker, "second")
    assert (await worker.run_once()).delivered  # opportunistic again


async def test_disabled_mta_sts_fetches_nothing(
        runtime: Runtime, worker: QueueWorker, mx: FakeMx, dns: DnsTestServer,
        policy_server: PolicyServer, trustme_ca: trustme.CA) -> None:
    publish(dns, policy_server, "enforce")
    worker.tls_policies.sts = None  # what ENABLE_MTA_STS=0 builds
    mx.tls_context = server_context(trustme_ca.issue_cert("other.example"))
    await queue_one(runtime, worker)
    assert (await worker.run_once()).delivered and policy_server.requests == 0
