"""The report services of one process, built by app.py: the DMARC evaluation recorder,
the daily report runner with its jobs, and the intake of reports others send us.

Owns which jobs and parsers exist (one line each below: DMARC here, TLS-RPT beside it)
and their life: `start` (the recorder and intake in every process that receives mail;
the daily runner in the main process only), `stop` (the recorder writes what it holds).

Invariants: with ENABLE_DMARC_REPORTS=0 nothing is recorded and no DMARC report is sent;
received reports are read whatever the switches say (they cost nothing until one comes).
"""

from __future__ import annotations

from postroom.clock import Clock, SystemClock
from postroom.config import Config
from postroom.dns.resolver import Resolver
from postroom.reports.daily import DailyReports
from postroom.reports.dmarcintake import DmarcReportParser
from postroom.reports.dmarcrecord import DmarcRecorder
from postroom.reports.dmarcsend import DmarcReportJob
from postroom.reports.intake import ReportIntake
from postroom.reports.mailing import Enqueue
from postroom.reports.tlsrpt import TlsOutcomeRecorder, TlsReportParser
from postroom.reports.tlsrptsend import TlsReportJob
from postroom.store.api import Store
from postroom.store.blobs import BlobStore


class ReportServices:
    def __init__(self, config: Config, store: Store, blobs: BlobStore, resolver: Resolver,
                 enqueue: Enqueue, clock: Clock | None = None, *,
                 tls_outcomes: TlsOutcomeRecorder | None = None) -> None:
        clock = clock or SystemClock()
        self.recorder = DmarcRecorder(store, clock) if config.enable_dmarc_reports else None
        self.daily = DailyReports(store, clock)
        self.intake = ReportIntake(config, blobs, clock)
        # -- DMARC aggregate reports (RFC 7489 §7) -------------------------------------
        if config.enable_dmarc_reports:
            self.daily.register(DmarcReportJob(config, store, resolver, enqueue))
        self.intake.register(DmarcReportParser(store))
        # -- TLS-RPT (RFC 8460): its job and parser register here ----------------------
        # The sink app.py gave the queue worker (None: TLS-RPT off, or not the main process).
        self.tls_outcomes = tls_outcomes
        if config.enable_tlsrpt:
            self.daily.register(TlsReportJob.from_config(config, store, resolver, enqueue, clock))
        self.intake.register(TlsReportParser(store))

    def start(self, *, is_main: bool = True) -> None:
        if self.recorder is not None:
            self.recorder.start()
        self.intake.start()
        if is_main:
            self.daily.start()
            if self.tls_outcomes is not None:  # the queue worker runs in the main process
                self.tls_outcomes.start()

    async def stop(self) -> None:
        await self.daily.stop()
        await self.intake.stop()
        if self.tls_outcomes is not None:
            await self.tls_outcomes.stop()
        if self.recorder is not None:
            await self.recorder.stop()
