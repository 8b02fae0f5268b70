"""The whole server (AppThread) sending through its queue to an MX whose domain enforces
MTA-STS: submitted over 465, held while the certificate does not match, delivered once it
does and the queue is flushed."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from postroom.clock import SystemClock
from postroom.outbound.admin import flush_queue
from postroom.store.api import QueueEntry
from tests.conftest import make_config
from tests.queue.fakemx import FakeMx
from tests.support.dnsserver import DnsTestServer
from tests.support.server import NO_DNS_CHECKS, AppThread
from tests.transport.conftest import (
    DOMAIN,
    MX_HOST,
    POLICY_HOST,
    RECIPIENT,
    PolicyServer,
    policy_text,
    server_context,
)

T = TypeVar("T")
SENDER = "alice@example.test"


class LoopThread:
    """An event loop in a thread, for the MX and the policy server beside the App's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def side() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def wait_until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_enforced_policy_holds_the_mail_until_the_certificate_matches(
        tmp_path: Path, server_cert: tuple[Path, Path], trustme_ca: trustme.CA,
        client_tls: ssl.SSLContext, side: LoopThread) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(ca_file)
    mx = side.call(FakeMx(tls_context=server_context(trustme_ca.issue_cert("other.example")))
                   .start())
    policy = side.call(PolicyServer(server_context(trustme_ca.issue_cert(POLICY_HOST)),
                                    body=policy_text("enforce")).start())
    with DnsTestServer() as dns:
        dns.add(DOMAIN, "MX", f"10 {MX_HOST}.")
        dns.add(MX_HOST, "A", "127.0.0.1")
        dns.add(POLICY_HOST, "A", "127.0.0.1")
        dns.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=e2e;")
        config = make_config(tmp_path, server_cert, **NO_DNS_CHECKS,
                             DNS_NAMESERVERS=dns.address, OUTBOUND_SMTP_PORT=mx.port,
                             SMTP_TLS_CAFILE=str(ca_file), MTA_STS_FETCH_PORT=policy.port)
        with AppThread(config) as app:
            app.add_account(SENDER, "pw-a")
            with smtplib.SMTP_SSL("127.0.0.1", app.port("submissions"), timeout=10,
                                  context=client_tls) as smtp:
                smtp.login(SENDER, "pw-a")
                smtp.sendmail(SENDER, [RECIPIENT], f"From: {SENDER}\r\nTo: {RECIPIENT}\r\n"
                              "Subject: sts\r\n\r\nover verified TLS only\r\n".encode())

            def queued() -> list[QueueEntry]:
                return app.call(app.runtime.store.list_queue())

            wait_until(lambda: any(entry.attempts for entry in queued()), "a first attempt")
            (entry,) = queued()
            assert entry.last_error == (f"MTA-STS policy of {DOMAIN} (enforce): certificate"
                                        f" of {MX_HOST} does not match")
            assert not mx.transactions
            mx.tls_context = server_context(trustme_ca.issue_cert(MX_HOST))
            app.call(flush_queue(app.runtime.store, SystemClock()))
            app.loop.call_soon_threadsafe(app.app.queue.kick)  # as SIGUSR1 does
            wait_until(lambda: not queued(), "the delivery", seconds=60)
    (transaction,) = mx.transactions
    assert transaction.is_tls and b"over verified TLS only" in transaction.content
    side.call(mx.stop())
    side.call(policy.stop())
