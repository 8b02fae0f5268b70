"""Outbound MTA-STS and DANE over real sockets: a test DNS server (with the AD bit for
chosen zones), an HTTPS policy server, a receiving MX with STARTTLS (tests/queue/fakemx.py)
and the queue worker over a real store, its clock in the test's hands."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from postroom.clock import ManualClock
from postroom.dns.live import LiveResolver
from postroom.outbound.tlsresults import TlsOutcome
from postroom.outbound.worker import QueueWorker
from postroom.runtime import Runtime
from tests.queue.fakemx import FakeMx
from tests.queue.harness import ALICE, NoJitter, message, queue_config, spool
from tests.support.dnsserver import DnsTestServer
from tests.support.runtime import open_runtime

DOMAIN = "remote.test"
MX_HOST = "mx.remote.test"
POLICY_HOST = f"mta-sts.{DOMAIN}"
RECIPIENT = f"bob@{DOMAIN}"


def policy_text(mode: str, mx: str = MX_HOST, max_age: int = 86400) -> str:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: {max_age}\r\n"


@dataclass
class PolicyServer:
    """Serves one file at any path over HTTPS on 127.0.0.1; `requests` counts GETs."""

    context: ssl.SSLContext
    body: str = ""
    status: str = "200 OK"
    content_type: str = "text/plain"
    requests: int = 0
    port: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> PolicyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                  ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            body = self.body.encode()
            writer.write(f"HTTP/1.1 {self.status}\r\nContent-Type: {self.content_type}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


class Outcomes:
    """A TlsOutcomeSink keeping what it is told."""

    def __init__(self) -> None:
        self.seen: list[TlsOutcome] = []

    def record(self, outcome: TlsOutcome) -> None:
        self.seen.append(outcome)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_file(trustme_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme_ca.cert_pem.write_to_path(path)
    return path


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        server.add(DOMAIN, "MX", f"10 {MX_HOST}.")
        server.add(MX_HOST, "A", "127.0.0.1")
        server.add(POLICY_HOST, "A", "127.0.0.1")
        yield server


@pytest.fixture
async def mx() -> AsyncIterator[FakeMx]:
    async with FakeMx() as server:
        yield server


@pytest.fixture
async def policy_server(trustme_ca: trustme.CA) -> AsyncIterator[PolicyServer]:
    server = PolicyServer(server_context(trustme_ca.issue_cert(POLICY_HOST)))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
async def runtime(tmp_path: Path, server_cert: tuple[Path, Path], mx: FakeMx,
                  dns: DnsTestServer, policy_server: PolicyServer, ca_file: Path
                  ) -> AsyncIterator[Runtime]:
    config = queue_config(tmp_path, server_cert, mx.port, QUEUE_LIFETIME="1h",
                          DNS_NAMESERVERS=dns.address, SMTP_TLS_CAFILE=str(ca_file),
                          MTA_STS_FETCH_PORT=policy_server.port)
    async with open_runtime(config) as built:
        await built.store.create_account(ALICE, "x")
        yield built


@pytest.fixture
def worker(runtime: Runtime, dns: DnsTestServer, clock: ManualClock,
           outcomes: Outcomes) -> QueueWorker:
    resolver = LiveResolver([dns.nameserver], timeout=2.0, cache_size=0)
    return QueueWorker(runtime, resolver, clock, rng=NoJitter(), tls_outcomes=outcomes)


async def queue_one(runtime: Runtime, worker: QueueWorker, subject: str = "hello") -> None:
    blob = await spool(runtime, message(subject, to=RECIPIENT))
    await worker.enqueue(ALICE, [RECIPIENT], blob)
