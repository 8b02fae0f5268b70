"""The composition root: config → store, TLS, accounts, queue, listeners; start; drain.

Owns the only place where concrete implementations are chosen and wired together, the
listener table, and shutdown: on SIGTERM the listeners stop accepting, sessions see
`runtime.shutting_down` and finish (or refuse with 421 / BYE / -ERR) what is in flight,
and whatever is still running after the drain deadline is cancelled. The store closes last.
Every connection passes `_serve` first (security/): it is counted against
MAX_CONNECTIONS / MAX_CONNECTIONS_PER_IP, refused before the greeting when over a limit
or banned (each protocol's own 421 / BYE / -ERR line), watched for a client that stops
reading, and its address is put where the login guard in AccountService reads it.
With PROXY_PROTOCOL_TRUSTED_NETWORKS set, listeners accept sockets themselves and read a
balancer's PROXY header before anything else (security/proxy_listener.py), so that
address is the real client's everywhere after.
With SMTP_PROCESSES or IMAP_PROCESSES > 1 the main App starts worker processes once its
listeners are bound (workers.py); each worker runs an App in the worker role on the
inherited SMTP and IMAP sockets, and the main App stops them as part of its own shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.accounts.authcache import AuthCache
from postroom.accounts.logins import LoginHistory
from postroom.accounts.service import AccountService
from postroom.checks import Check
from postroom.checks.clamav import VirusCheck
from postroom.checks.dmarc import DmarcCheck
from postroom.checks.dnsbl import DnsblCheck, DnsLists
from postroom.checks.greylist import GreylistCheck
from postroom.checks.gtube import GtubeCheck
from postroom.checks.headers import HeaderLimitCheck
from postroom.checks.rspamd import RspamdCheck
from postroom.checks.sentmail import SentMailCheck
from postroom.checks.spf import SpfCheck
from postroom.checks.spoofing import SpoofingCheck
from postroom.clock import SystemClock
from postroom.closing import close_connection
from postroom.config import Config
from postroom.delivery.fulltext import FulltextIndexer
from postroom.dns.cache import with_cache
from postroom.dns.live import LiveResolver
from postroom.junk import JunkFilter, JunkScorer
from postroom.loops import within
from postroom.metrics import (
    note_connection_closed,
    note_connection_open,
    note_connection_refused,
)
from postroom.outbound.signing import DkimSigner
from postroom.outbound.worker import QueueWorker
from postroom.reports.service import ReportServices
from postroom.reports.tlsrpt import TlsOutcomeRecorder
from postroom.runtime import Runtime
from postroom.security.bans import AuthGuard, ban_policy
from postroom.security.limits import ConnectionLimiter, Refusal, RefusalRenderer
from postroom.security.peer import (
    CLIENT_ADDRESS,
    LISTENER,
    PROXIED_PEER,
    client_peername,
    peer_key,
)
from postroom.security.proxy_listener import ProxyListener, accept_proxied
from postroom.security.stalls import watch_stalls
from postroom.store import open_store
from postroom.store.changes import ChangeFeed
from postroom.tls.buffers import limit_tls_read_buffer
from postroom.tls.contexts import TlsContexts
from postroom.tls.policyserver import PolicyServer
from postroom.tls.selfsigned import ensure_self_signed
from postroom.tls.stspolicy import policy_for
from postroom.workers import WorkerPool, worker_count

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from postroom.delivery.spamfiling import AccountScorer
    from postroom.jmap.context import JmapContext
    from postroom.jmap.threadkeeper import ThreadKeeper
    from postroom.store.api import Store
    from postroom.tls.acmemanager import AcmeManager
    from postroom.web.context import WebContext
    from postroom.web.server import WebServer
    from postroom.workers import WorkerRole

log = logging.getLogger("postroom")

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# A refused client gets its one line; one that does not read it is not waited for long.
REFUSAL_WRITE_TIMEOUT = 5.0
STREAM_LIMIT = 1024 * 1024  # StreamReader buffer limit


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str  # "smtp", "submission", … as printed at start
    port: int
    handler: ConnectionHandler
    implicit_tls: bool
    refusal: RefusalRenderer  # the protocol's own words when `_tracked` turns a client away


@dataclass(frozen=True, slots=True)
class BoundListener:
    name: str
    host: str
    port: int
    implicit_tls: bool


def prepare_tls(config: Config) -> TlsContexts:
    """Self-signed fallback is made once per DATA_DIR; `serve` warns about it. Under
    SSL_TYPE=acme it stands in until the first order replaces it (tls/acmemanager.py).
    SNI serves the ACME certificates and SSL_DOMAIN_CERT_DIR's by name (tls/contexts.py)."""
    is_stand_in = config.ssl_type == "acme"
    if (config.is_self_signed or is_stand_in) and ensure_self_signed(
        config.cert_path, config.key_path, config.hostname
    ):
        log.warning("created a self-signed certificate for %s in %s%s", config.hostname,
                    config.cert_path, " until ACME replaces it" if is_stand_in else "")
    cert_dirs = [config.acme_dir / "certs"] if is_stand_in else []
    if config.ssl_domain_cert_dir is not None:
        cert_dirs.append(config.ssl_domain_cert_dir)
    return TlsContexts(config.cert_path, config.key_path, cert_dirs=cert_dirs)


def acme_manager(config: Config, runtime: Runtime) -> AcmeManager:
    """SSL_TYPE=acme: orders and renews in the background; new files are served at once.
    Imported here: the ACME library (and `requests`) load only when used."""
    from postroom.tls.acmeclient import AcmeSettings
    from postroom.tls.acmemanager import AcmeManager

    settings = AcmeSettings(config.acme_directory, config.acme_ca_bundle, config.acme_email,
                            config.acme_challenge)
    return AcmeManager(settings, config.acme_dir, config.hostname,
                       config.acme_domain_prefixes, runtime.store, runtime.store.list_domains,
                       SystemClock(), listen_hosts=config.listen_addresses,
                       http_port=config.acme_http_port, tls_port=config.acme_tls_port,
                       on_issued=runtime.tls.reload_if_changed,
                       alpn_shared=config.mta_sts_port == config.acme_tls_port)


def policy_server(config: Config, runtime: Runtime, acme: AcmeManager | None) -> PolicyServer:
    """MTA_STS_PORT: our MTA-STS policy over HTTPS; on ACME_TLS_PORT it also answers
    TLS-ALPN-01 from the manager's board (tls/policyserver.py)."""
    board = acme.board if acme is not None and acme.alpn_shared else None
    return PolicyServer(runtime.tls, policy_for(config), runtime.store.list_domains,
                        board=board)


def pid_path(config: Config) -> Path:
    return config.data_dir / "postroom.pid"


def clear_leftovers(config: Config) -> None:
    """Spool files and unfinished blob temp files from a crash were never acknowledged
    (the 250 comes after the final blob is committed), so they are safe to remove."""
    for folder in (config.data_dir / "spool", config.data_dir / "blobs" / "tmp"):
        if folder.is_dir():
            for leftover in folder.iterdir():
                leftover.unlink(missing_ok=True)


def inbound_checks(runtime: Runtime) -> tuple[Check, ...]:
    """The inbound checks of every SMTP listener (checks/), one line each, in the order
    each stage runs them: cheap refusals before DNS work. Each check decides for itself
    which ports and clients it applies to."""
    config = runtime.config
    return (
        HeaderLimitCheck(),  # after DATA: header field and section sizes
        SpoofingCheck(config, runtime.store),  # submission: MAIL FROM, From/Sender/Reply-To
        SpfCheck(config, runtime.resolver),  # port 25, at RCPT
        GreylistCheck(config, runtime.store,  # port 25, at RCPT (ENABLE_POSTGREY)
                      DnsLists(runtime.resolver, config) if config.enable_dnsbl else None),
        DmarcCheck(config, runtime.resolver,  # port 25, after DATA: DKIM, DMARC, A-R
                   record=runtime.dmarc_record),
        VirusCheck.from_config(config),  # after DATA: EICAR always, clamd (ENABLE_CLAMAV)
        # after DATA, before GTUBE: with rspamd on, GTUBE tests rspamd's path end to end
        *((RspamdCheck.from_config(config),) if config.enable_rspamd else ()),
        GtubeCheck(),  # after DATA: the GTUBE test string, always
        DnsblCheck(config, runtime.resolver),  # after DATA: DNSBL/RHSBL/DNSWL scores
        # submission, after DATA: the recipients become the account's known-good senders
        *((SentMailCheck(runtime.store, runtime.junk),) if runtime.junk else ()),
    )


def account_scorers(config: Config, store: Store) -> tuple[AccountScorer, ...]:
    """The per-account spam signals (issue 18) delivery asks for each local recipient and
    adds to the message's score before that account's thresholds (delivery/spamfiling.py),
    one line each."""
    return (
        *((JunkScorer(store),) if config.enable_junk_filter else ()),  # the learning filter
    )


class App:
    def __init__(self, config: Config, drain_seconds: float = 30.0, *,
                 worker: WorkerRole | None = None) -> None:
        self.config = config
        self.drain_seconds = drain_seconds
        self.worker = worker  # set in a worker process (workers.py)
        self.listeners: list[BoundListener] = []
        self._listener_fds: dict[str, list[int]] = {}  # what workers inherit
        self._pool: WorkerPool | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._runtime: Runtime | None = None
        self._queue: QueueWorker | None = None
        self.fulltext: FulltextIndexer | None = None  # ENABLE_FTS, main process only
        self.thread_keeper: ThreadKeeper | None = None  # JMAP served: threads at delivery
        self.acme: AcmeManager | None = None  # SSL_TYPE=acme, main process only
        self.reports: ReportServices | None = None  # issue 20: DMARC/TLS reports
        self._stopped = asyncio.Event()
        self.limiter = ConnectionLimiter(config.max_connections, config.max_connections_per_ip,
                                         config.networks)
        self.guard: AuthGuard | None = None
        self.web: WebServer | None = None  # WEB_PORT: the web console (main process only)
        self.jmap: JmapContext | None = None  # ENABLE_JMAP on the web listener (issue 23)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("App.start() has not run")
        return self._runtime

    async def start(self) -> None:
        config = self.config
        limit_tls_read_buffer()  # 256 KiB per TLS connection otherwise (tls/buffers.py)
        tls = prepare_tls(config)
        if self.worker is None:  # a worker's start must not remove the others' files
            await asyncio.to_thread(clear_leftovers, config)
        feed = ChangeFeed() if self.worker is None else self.worker.make_feed(config)
        store, blobs = await open_store(config, feed)
        self.guard = AuthGuard(store, ban_policy(config), config.networks)
        self._runtime = Runtime(config=config, store=store, blobs=blobs, feed=feed,
                                accounts=AccountService(store, self.guard,
                                                        AuthCache.from_config(config),
                                                        LoginHistory(store)),
                                tls=tls,
                                resolver=with_cache(LiveResolver(config.nameservers, cache_size=0),
                                                    config.dns_cache_size),
                                account_scorers=account_scorers(config, store),
                                junk=JunkFilter.from_config(config, store, blobs))
        # TLS-RPT: each outbound TLS attempt counted (the main process's queue delivers).
        tls_outcomes = (TlsOutcomeRecorder(store, SystemClock())
                        if config.enable_tlsrpt and self.worker is None else None)
        self._queue = QueueWorker(self._runtime, self._runtime.resolver, SystemClock(),
                                  DkimSigner.from_config(config), tls_outcomes=tls_outcomes)
        if self.worker is not None:  # the main process's queue worker sends it
            self._queue.on_queued = self.worker.announce_queued
        self.reports = ReportServices(config, store, blobs, self._runtime.resolver,
                                      self._queue.enqueue_message,
                                      tls_outcomes=tls_outcomes)
        if self.reports.recorder is not None:
            self._runtime.dmarc_record = self.reports.recorder.record
        self._runtime.report_intake = self.reports.intake
        self.reports.start(is_main=self.worker is None)
        if self.worker is None and config.ssl_type == "acme":  # before the listeners:
            self.acme = acme_manager(config, self._runtime)  # mta-sts shares its board
        try:
            for spec in self._listener_specs():
                await self._listen_or_warn(spec)
            if self.worker is None and config.web_port:
                await self._start_web()
            if self.worker is None and worker_count(config) > 0:
                self._pool = WorkerPool(config, self._listener_fds, feed, self._queue.kick)
                await self._pool.start()
        except BaseException:
            await self.stop()
            raise
        if self.worker is not None:
            return
        self._queue.start()
        if config.enable_fts:  # the SEARCH index, brought up to date in the background
            self.fulltext = FulltextIndexer(store, blobs)
            self.fulltext.start()
        if self.jmap is not None:  # JMAP thread ids assigned as mail arrives (issue 23)
            from postroom.jmap.threadkeeper import ThreadKeeper
            self.thread_keeper = ThreadKeeper(self._runtime)
            self.thread_keeper.start()
        if self.acme is not None:
            self.acme.start()
        if await store.count_accounts() == 0:
            log.warning("no account exists yet: add one with `postroom email add ADDRESS`")

    def _listener_specs(self) -> list[ListenerSpec]:
        from postroom.pop3.session import Pop3Server
        from postroom.pop3.wire import render_refusal as pop3
        from postroom.smtp.replies import render_refusal as smtp
        from postroom.smtp.session import SmtpMode, SmtpServer

        runtime, config, queue = self.runtime, self.config, self.queue
        checks = inbound_checks(runtime)
        specs = [
            ListenerSpec("smtp", config.smtp_port,
                         SmtpServer(runtime, SmtpMode.MX, queue, checks=checks
                                    ).handle_connection, False, smtp),
            ListenerSpec("submission", config.submission_port,
                         SmtpServer(runtime, SmtpMode.SUBMISSION, queue, checks=checks
                                    ).handle_connection, False, smtp),
            ListenerSpec("submissions", config.submissions_port,
                         SmtpServer(runtime, SmtpMode.SUBMISSIONS, queue, checks=checks
                                    ).handle_connection, True, smtp),
        ]
        if config.enable_pop3:
            specs += [
                ListenerSpec("pop3", config.pop3_port,
                             Pop3Server(runtime, implicit_tls=False).handle_connection, False,
                             pop3),
                ListenerSpec("pop3s", config.pop3s_port,
                             Pop3Server(runtime, implicit_tls=True).handle_connection, True,
                             pop3),
            ]
        if config.enable_imap:
            from postroom.imap.session import ImapServer
            from postroom.imap.wire.responses import render_refusal as imap

            specs += [
                ListenerSpec("imap", config.imap_port,
                             ImapServer(runtime, implicit_tls=False).handle_connection, False,
                             imap),
                ListenerSpec("imaps", config.imaps_port,
                             ImapServer(runtime, implicit_tls=True).handle_connection, True,
                             imap),
            ]
        if config.enable_managesieve:
            from postroom.managesieve.session import ManageSieveServer
            from postroom.managesieve.wire import render_refusal as managesieve

            specs.append(ListenerSpec("managesieve", config.managesieve_port,
                                      ManageSieveServer(runtime).handle_connection, False,
                                      managesieve))  # fmt: skip
        if config.mta_sts_port and self.worker is None:
            specs.append(ListenerSpec("mta-sts", config.mta_sts_port,
                                      policy_server(config, runtime, self.acme
                                                    ).handle_connection, False,
                                      lambda _refusal, _host: b""))  # TLS: nothing to say
        if self.worker is not None:  # what it inherited sockets of
            return [spec for spec in specs if spec.name in self.worker.listeners]
        return specs

    async def _listen_or_warn(self, spec: ListenerSpec) -> None:
        """The MTA-STS port is often held by a web server (that then serves the policy
        file): saying so beats not starting."""
        try:
            await self._listen(spec)
        except OSError as error:
            if spec.name != "mta-sts":
                raise
            log.error("MTA-STS policy listener not started on port %d: %s (set "
                      "MTA_STS_PORT=0 when another web server serves the policy)",
                      spec.port, error)

    async def _listen(self, spec: ListenerSpec) -> None:
        if self.config.proxy_networks:
            await self._listen_proxied(spec)
            return
        tls: dict[str, ssl.SSLContext | float] = (
            {"ssl": self.runtime.tls.listener_context(), "ssl_handshake_timeout": 30}
            if spec.implicit_tls else {}
        )
        if self.worker is not None:
            for sock in self.worker.listeners.get(spec.name, []):
                self._servers.append(await asyncio.start_server(
                    self._tracked(spec), sock=sock, limit=STREAM_LIMIT,
                    **tls))  # type: ignore[arg-type]
            return
        for host in self.config.listen_addresses:
            server = await asyncio.start_server(
                self._tracked(spec), host, spec.port, reuse_address=True,
                limit=STREAM_LIMIT, **tls,  # type: ignore[arg-type]
            )
            self._servers.append(server)
            self._note_bound(spec, host, server.sockets[0])

    def _note_bound(self, spec: ListenerSpec, host: str, sock: socket.socket) -> None:
        self.listeners.append(BoundListener(spec.name, host, sock.getsockname()[1],
                                            spec.implicit_tls))
        self._listener_fds.setdefault(spec.name, []).append(sock.fileno())

    async def _listen_proxied(self, spec: ListenerSpec) -> None:
        """PROXY_PROTOCOL_TRUSTED_NETWORKS set: sockets are accepted here and the header is
        read before asyncio wraps them, TLS included (security/proxy_listener.py)."""
        context = self.runtime.tls.listener_context() if spec.implicit_tls else None

        def on_accept(sock: socket.socket) -> None:
            task = asyncio.create_task(self._proxied(spec, sock, context))
            self._connections.add(task)  # counted for the drain from the start
            task.add_done_callback(self._connections.discard)

        if self.worker is not None:
            for sock in self.worker.listeners.get(spec.name, []):
                self._servers.append(ProxyListener(sock, on_accept))
                await self._servers[-1].start_serving()
            return
        for host in self.config.listen_addresses:
            listener = ProxyListener.bind(host, spec.port, on_accept)
            self._servers.append(listener)
            await listener.start_serving()
            self._note_bound(spec, host, listener.sock)

    async def _proxied(self, spec: ListenerSpec, sock: socket.socket,
                       context: ssl.SSLContext | None) -> None:
        accepted = await accept_proxied(sock, self.config.proxy_networks, context,
                                        STREAM_LIMIT, spec.name)
        if accepted is not None:
            if accepted.client is not None:
                PROXIED_PEER.set(accepted.client)  # this connection task's context only
            await self._serve(spec, accepted.reader, accepted.writer)

    def _tracked(self, spec: ListenerSpec) -> ConnectionHandler:
        """The asyncio.start_server callback: counted for the drain, then `_serve`."""

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)  # type: ignore[arg-type]
            try:
                await self._serve(spec, reader, writer)
            finally:
                self._connections.discard(task)  # type: ignore[arg-type]

        return run

    async def _serve(self, spec: ListenerSpec, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        """Every connection: limited, refused before any protocol work when banned or over
        a limit, and its client address (the one a PROXY header named, if any) put where
        AccountService's guard reads it (security/peer.py)."""
        key = peer_key(client_peername(writer))
        refusal = self.limiter.admit(key)
        is_admitted = refusal is None
        note_connection_open(spec.name)
        stalls = watch_stalls(writer, str(key))  # a client that stops reading is cut off
        try:
            if is_admitted:
                CLIENT_ADDRESS.set(key)  # this connection task's context only
                LISTENER.set(spec.name)  # the login history's protocol (accounts/logins.py)
                refusal = await self._refusal_for(key)
            if refusal is not None:
                await self._refuse(spec, writer, key, refusal)
            else:
                await spec.handler(reader, writer)
        except Exception:
            log.exception("connection handler failed")
        finally:
            if is_admitted:
                self.limiter.release(key)
            note_connection_closed(spec.name)
            stalls.stop()
            await close_connection(reader, writer)  # after a refusal: its line is read

    async def _refusal_for(self, key: str | None) -> Refusal | None:
        if key is not None and self.guard is not None and await self.guard.is_banned(key):
            return Refusal.BANNED
        return None

    async def _refuse(self, spec: ListenerSpec, writer: asyncio.StreamWriter,
                      key: str | None, refusal: Refusal) -> None:
        log.info("client=%s refused on %s: %s", key, spec.name, refusal.value)
        note_connection_refused(spec.name, refusal.name.lower())
        writer.write(spec.refusal(refusal, self.config.hostname))
        with contextlib.suppress(ConnectionError, TimeoutError):
            await within(REFUSAL_WRITE_TIMEOUT, writer.drain())

    async def _start_web(self) -> None:
        """WEB_PORT: the web console (web/server.py) on LISTEN_ADDRESS, sharing the mail
        listeners' connection limits; JMAP on the same listener (`_web_app`)."""
        from postroom.selftest.domainadvice import DomainAdvisor
        from postroom.web.context import WebContext
        from postroom.web.server import WebServer

        ctx = WebContext(runtime=self.runtime, queue=self.queue, config=self.config,
                         guard=self.guard, listeners_bound=lambda: bool(self._servers),
                         domains=DomainAdvisor(self.config, self.runtime.resolver))
        self.web = WebServer(ctx, self.limiter, self.drain_seconds, app=self._web_app(ctx))
        for host, port in await self.web.start():
            self.listeners.append(BoundListener("web", host, port, True))

    def _web_app(self, ctx: WebContext) -> ASGIApp:
        """The console, with JMAP's routes (issue 23) when ENABLE_JMAP: jmap/ and web/
        share the listener but not their code (neither imports the other)."""
        from postroom.checks import Pipeline
        from postroom.jmap import http as jmap_http
        from postroom.jmap.context import JmapContext
        from postroom.jmap.methods import build_registry, capabilities
        from postroom.jmap.websocket import push_routes
        from postroom.smtp.receive import Receiver
        from postroom.web.application import build_app
        from postroom.web.clients import client_key

        if not self.config.enable_jmap:
            return build_app(ctx)
        # EmailSubmission hands its message to what SMTP submission runs after DATA.
        acceptor = Receiver(self.runtime, self.queue, Pipeline(inbound_checks(self.runtime)))
        jctx = JmapContext(runtime=self.runtime, config=self.config,
                           registry=build_registry(acceptor), guard=self.guard,
                           client_key=client_key, capabilities=capabilities(self.config))
        self.jmap = jctx
        return build_app(ctx, extra_routes=[*jmap_http.routes(jctx), *push_routes(jctx)],
                         uncapped=jmap_http.UNCAPPED)

    @property
    def queue(self) -> QueueWorker:
        if self._queue is None:
            raise RuntimeError("App.start() has not run")
        return self._queue

    def port(self, name: str) -> int:
        """The bound port of a listener (tests run with port 0)."""
        for listener in self.listeners:
            if listener.name == name:
                return listener.port
        raise KeyError(name)

    async def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.shutting_down.set()
        for server in self._servers:
            server.close()
        workers_stopped = (asyncio.create_task(self._pool.stop(self.drain_seconds + 5))
                           if self._pool is not None else None)
        web_stopped = asyncio.create_task(self.web.stop()) if self.web is not None else None
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=self.drain_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        if workers_stopped is not None:
            await workers_stopped
        if web_stopped is not None:
            await web_stopped
        if self._queue is not None:
            await self._queue.stop()
        if self.reports is not None:
            await self.reports.stop()
        if self.fulltext is not None:
            await self.fulltext.stop()
        if self.thread_keeper is not None:
            await self.thread_keeper.stop()
        if self.acme is not None:
            await self.acme.stop()
        if self._runtime is not None:
            if self._runtime.accounts.logins is not None:
                await self._runtime.accounts.logins.close()  # the batch still waiting
            await self._runtime.store.close()
        self._stopped.set()

    async def run_until_signalled(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Serve until SIGTERM/SIGINT. SIGUSR1 (sent by `postroom queue flush`, like
        Postfix's `postqueue -f`) makes the queue worker look at the queue now.
        `on_ready` runs once the handlers and the pid file are in place, so whoever
        waits for "ready" can signal the process safely."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)
        loop.add_signal_handler(signal.SIGUSR1, self.queue.kick)
        pid_file = pid_path(self.config)
        pid_file.write_text(f"{os.getpid()}\n")
        on_ready()
        try:
            await stop_requested.wait()
        finally:
            pid_file.unlink(missing_ok=True)
        log.info("shutting down: draining connections (up to %ss)", self.drain_seconds)
        await self.stop()
        log.info("stopped")
