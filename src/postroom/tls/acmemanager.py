"""SSL_TYPE=acme: which certificates to hold, when to order or renew them, and doing so.

Owns the plan (one certificate for OVERRIDE_HOSTNAME, one per hosted domain for
`PREFIX.DOMAIN` names, ACME_DOMAIN_PREFIXES), the schedule (renewal at 2/3 of a
certificate's lifetime less a jitter of up to 1/20 of it taken from its serial, so nodes
and certificates spread out; failures retried after `retry_base` doubling up to
`RETRY_MAX`), and the run of one order: the challenge listener bound for its duration
only (port 80/443 are held only while the CA validates), the blocking client in a
thread, the pair written into DATA_DIR/acme/certs/FOLDER/ (tls/certfiles.py), and
`on_issued` telling the TLS contexts to reload now (they also notice within seconds by
themselves, which is how SMTP worker processes pick renewals up).

Several nodes on one PostgreSQL store: each pass first copies the store's certificates
and this node's over each other (tls/acmeshare.py); a node orders only while it holds the
store's lease "acme" (`LEASE_TIME`, extended before each order), so one node orders and
the others pick the files up at their next pass, `LEASE_WAIT` later at most when one of
their certificates is due.

A renewal keeps the certificate's key (a new certificate for the same key), so DANE-EE
TLSA records naming the key (3 1 1) survive renewals; a first order makes a new key.
With `alpn_shared` (ACME_TLS_PORT = MTA_STS_PORT) no TLS-ALPN-01 listener is bound: the
MTA-STS listener answers acme-tls/1 from the same board.

Invariants: one order at a time per installation; a failed order leaves the files it had;
a plan whose certificate is missing, self-signed (the stand-in app.py makes), lacks one of
its names or is due for renewal is ordered; nothing else is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from postroom.clock import Clock
from postroom.loops import cancel_and_wait, wait_event
from postroom.store.tls_api import TlsStore
from postroom.tls.acmeclient import AcmeClient, AcmeError, AcmeSettings
from postroom.tls.acmeshare import ensure_account_key, share_certificate, sync_certificates
from postroom.tls.certfiles import CHAIN_FILE, KEY_FILE, CertificateFacts, read_facts_file
from postroom.tls.challenges import ChallengeBoard, ChallengeListeners

log = logging.getLogger(__name__)

RETRY_BASE = dt.timedelta(minutes=5)
RETRY_MAX = dt.timedelta(hours=6)
RECHECK = dt.timedelta(hours=1)  # new hosted domains are noticed within this
JITTER_SHARE = 20  # renewal is brought forward by up to lifetime / JITTER_SHARE
LEASE_NAME = "acme"
LEASE_TIME = dt.timedelta(minutes=10)  # longer than one order takes (ORDER_TIMEOUT + I/O)
LEASE_WAIT = dt.timedelta(minutes=1)  # a node without the lease looks again this soon


@dataclass(frozen=True, slots=True)
class CertificatePlan:
    folder: str  # the subfolder of DATA_DIR/acme/certs/
    names: tuple[str, ...]


def plan_certificates(hostname: str, domains: Sequence[str],
                      prefixes: Sequence[str]) -> list[CertificatePlan]:
    """The host name's certificate first, then one per hosted domain with a name of
    its own (the host name itself is never repeated). A hosted domain that is the host
    name itself has its names on the host's certificate (one folder per name)."""
    host_names = [hostname]
    plans: list[CertificatePlan] = []
    for domain in sorted({domain.lower() for domain in domains}):
        names = [f"{prefix.lower()}.{domain}" for prefix in prefixes]
        if domain == hostname:
            host_names += names
        elif names := [name for name in dict.fromkeys(names) if name != hostname]:
            plans.append(CertificatePlan(domain, tuple(names)))
    return [CertificatePlan(hostname, tuple(dict.fromkeys(host_names))), *plans]


def renewal_time(facts: CertificateFacts) -> dt.datetime:
    """2/3 of the lifetime, brought forward by a jitter fixed by the serial number."""
    lifetime = facts.lifetime
    jitter = lifetime / JITTER_SHARE * ((facts.serial % 1000) / 1000)
    return facts.not_before + lifetime * 2 / 3 - jitter


def due_time(plan: CertificatePlan, facts: CertificateFacts | None,
             now: dt.datetime) -> dt.datetime:
    """When `plan` must next be ordered: now when it has no usable certificate."""
    if facts is None or facts.is_self_signed or not set(plan.names) <= set(facts.names):
        return now
    return renewal_time(facts)


def retry_delay(failures: int, base: dt.timedelta) -> dt.timedelta:
    return min(base * 2 ** max(failures - 1, 0), RETRY_MAX)


Domains = Callable[[], Awaitable[list[str]]]
T = TypeVar("T")


async def in_daemon_thread(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` in a thread `serve`'s exit does not wait for: an order blocked
    in the ACME library (up to ORDER_TIMEOUT) must not hold up a shutdown that has
    already closed its challenge listener."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # a cancelled wait has nobody to hand the outcome to
            outcome()

    def run() -> None:
        try:
            outcome = functools.partial(future.set_result, function(*args))
        except BaseException as error:  # handed to the awaiting task, as to_thread does
            outcome = functools.partial(future.set_exception, error)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="acme-order", daemon=True).start()
    return await future


class AcmeManager:
    def __init__(self, settings: AcmeSettings, acme_dir: Path, hostname: str,
                 prefixes: Sequence[str], store: TlsStore, domains: Domains, clock: Clock, *,
                 listen_hosts: Sequence[str], http_port: int, tls_port: int,
                 on_issued: Callable[[], object] = lambda: None,
                 retry_base: dt.timedelta = RETRY_BASE, alpn_shared: bool = False) -> None:
        self.settings = settings
        self.acme_dir = acme_dir
        self.hostname, self.prefixes, self.domains = hostname, tuple(prefixes), domains
        self.store = store
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.clock = clock
        self.listen_hosts, self.http_port, self.tls_port = listen_hosts, http_port, tls_port
        self.on_issued = on_issued
        self.retry_base = retry_base
        # TLS-ALPN-01 answered by the MTA-STS listener on the same port (policyserver.py)
        self.alpn_shared = alpn_shared
        self.board = ChallengeBoard(acme_dir / "tmp")
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, dt.datetime] = {}
        self._wake = asyncio.Event()
        self._pass_done = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # completed passes (tests wait on it: `wait_for_pass`)
        self.last_error: dict[str, str] = {}

    @property
    def certs_dir(self) -> Path:
        return self.acme_dir / "certs"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="acme")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def kick(self) -> None:
        """Look at every certificate now (a clock moved, a domain was added)."""
        self._wake.set()

    async def wait_for_pass(self, count: int) -> None:
        """Until `count` passes have completed (callers bound the wait)."""
        async with self._pass_done:
            await self._pass_done.wait_for(lambda: self.passes >= count)

    async def _run(self) -> None:
        while True:
            try:
                wake_at = await self.run_pass()
            except Exception:
                log.exception("acme: certificate pass failed")
                wake_at = self.clock.now() + self.retry_base
            async with self._pass_done:
                self.passes += 1
                self._pass_done.notify_all()
            delay = (wake_at - self.clock.now()).total_seconds()
            await wait_event(self._wake, max(delay, 0.0))
            self._wake.clear()

    async def run_pass(self) -> dt.datetime:
        """Share, order what is due (holding the lease); returns when to look again."""
        plans = plan_certificates(self.hostname, await self.domains(), self.prefixes)
        await self._sync(plans)
        if any(self._due(plan) <= self.clock.now() for plan in plans):
            await self._order_holding_lease(plans)
        now = self.clock.now()
        next_at = now + RECHECK
        for plan in plans:
            due = self._due(plan)  # still due now: another node holds the lease
            next_at = min(next_at, due if due > now else now + LEASE_WAIT)
        return next_at

    async def _sync(self, plans: list[CertificatePlan]) -> None:
        if await sync_certificates(self.store, self.certs_dir,
                                   [plan.folder for plan in plans], self.clock.now()):
            self.on_issued()

    async def _claim(self) -> bool:
        now = self.clock.now()
        return await self.store.claim_tls_lease(LEASE_NAME, self.holder, now,
                                                now + LEASE_TIME)

    async def _order_holding_lease(self, plans: list[CertificatePlan]) -> None:
        if not await self._claim():
            log.info("acme: another node is ordering; its certificates are shared")
            return
        try:
            await self._sync(plans)  # the lease's last holder may have just finished
            await ensure_account_key(self.store, self.acme_dir / "account.key")
            for plan in plans:
                if self._due(plan) <= self.clock.now():
                    if not await self._claim():  # extended per order; lost: stop here
                        return
                    await self._order(plan)
        finally:
            await self.store.release_tls_lease(LEASE_NAME, self.holder)

    def _due(self, plan: CertificatePlan) -> dt.datetime:
        now = self.clock.now()
        retry_at = self._retry_at.get(plan.folder)
        if retry_at is not None and retry_at > now:
            return retry_at
        return due_time(plan, self.facts(plan.folder), now)

    def facts(self, folder: str) -> CertificateFacts | None:
        try:
            return read_facts_file(self.certs_dir / folder / CHAIN_FILE)
        except (OSError, ValueError):
            return None

    async def _order(self, plan: CertificatePlan) -> None:
        log.info("acme: ordering a certificate for %s", ", ".join(plan.names))
        listeners = ChallengeListeners(self.board, self.listen_hosts)
        try:
            if self.settings.challenge == "http-01":
                await listeners.start_http(self.http_port)
            elif not self.alpn_shared:
                await listeners.start_alpn(self.tls_port)
            client = AcmeClient(self.settings, self.acme_dir / "account.key", self.board)
            issued = await in_daemon_thread(client.order, plan.names,
                                            self._kept_key(plan.folder))
            await share_certificate(self.store, self.certs_dir, plan.folder,
                                    issued.chain_pem, issued.key_pem, self.clock.now())
        except (AcmeError, OSError) as error:
            self._note_failure(plan, str(error))
            return
        finally:
            await listeners.close()
        self._failures.pop(plan.folder, None)
        self._retry_at.pop(plan.folder, None)
        self.last_error.pop(plan.folder, None)
        log.info("acme: certificate for %s written to %s", ", ".join(plan.names),
                 self.certs_dir / plan.folder)
        self.on_issued()

    def _kept_key(self, folder: str) -> bytes | None:
        """The key of the certificate being renewed: kept, so the TLSA 3 1 1 record
        (`dns records`) stays true across renewals (RFC 7671 §8.1)."""
        facts = self.facts(folder)
        if facts is None or facts.is_self_signed:
            return None
        try:
            return (self.certs_dir / folder / KEY_FILE).read_bytes()
        except OSError:
            return None

    def _note_failure(self, plan: CertificatePlan, reason: str) -> None:
        failures = self._failures.get(plan.folder, 0) + 1
        self._failures[plan.folder] = failures
        delay = retry_delay(failures, self.retry_base)
        self._retry_at[plan.folder] = self.clock.now() + delay
        self.last_error[plan.folder] = reason
        log.error("acme: ordering %s failed (attempt %d, next in %s): %s",
                  ", ".join(plan.names), failures, delay, reason)
