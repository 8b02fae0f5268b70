"""`postroom reports`: the reports postroom sends and receives (issue 20).

- `reports send [--day YYYY-MM-DD] [--job NAME]`: run the daily report jobs by hand for a
  finished UTC day (yesterday by default); a day already sent (by `serve` or an earlier
  run, on any node) is not sent again. The reports are queued; the running server's
  queue sends them (at once when its pid file is found, else at its next poll).
- `reports dmarc [--domain D] [--days N]`: from the DMARC aggregate reports others sent
  us, who sends as our domains and whether they pass.
- `reports tls`: TLS-RPT reports received (its verbs are below their heading).

Owns the verbs and their output only: the jobs are reports/service.py's, the summaries
reports/dmarcintake.py's.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from postroom.cli.console import app, current_config, fail, print_table, run_cli
from postroom.config import Config

reports_app = typer.Typer(no_args_is_help=True, help="DMARC and TLS reports.")
app.add_typer(reports_app, name="reports")


def _parse_day(text: str | None) -> dt.date:
    if text is None:
        return (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise fail(f"--day {text!r} is not a date (YYYY-MM-DD)", status=2) from None


@reports_app.command("send")
def reports_send(
    day: Annotated[str | None, typer.Option(
        "--day", help="The UTC day to report (YYYY-MM-DD); default yesterday")] = None,
    job: Annotated[str | None, typer.Option(
        "--job", help="Only this job (dmarc, tlsrpt)")] = None,
) -> None:
    """Send the daily reports of a finished UTC day now."""
    config = current_config()
    chosen = _parse_day(day)
    outcomes = run_cli(_send(config, chosen, job))
    if not outcomes:
        raise fail("no report job is enabled (ENABLE_DMARC_REPORTS, ENABLE_TLSRPT)")
    print_table(("job", "day", "state", "detail"),
                [(o.job, o.day.isoformat(), o.state, o.detail) for o in outcomes])
    if any(o.state == "failed" for o in outcomes):
        raise typer.Exit(1)


async def _send(config: Config, day: dt.date, job: str | None) -> list[Any]:
    from postroom.accounts.service import AccountService
    from postroom.app import prepare_tls
    from postroom.clock import SystemClock
    from postroom.dns.cache import with_cache
    from postroom.dns.live import LiveResolver
    from postroom.outbound.signing import DkimSigner
    from postroom.outbound.worker import QueueWorker
    from postroom.reports.service import ReportServices
    from postroom.runtime import Runtime
    from postroom.store import open_store
    from postroom.store.changes import ChangeFeed

    feed = ChangeFeed()
    store, blobs = await open_store(config, feed)
    try:
        resolver = with_cache(LiveResolver(config.nameservers, cache_size=0),
                              config.dns_cache_size)
        runtime = Runtime(config=config, store=store, blobs=blobs, feed=feed,
                          accounts=AccountService(store), tls=prepare_tls(config),
                          resolver=resolver)
        queue = QueueWorker(runtime, resolver, SystemClock(), DkimSigner.from_config(config))
        queue.on_queued = lambda: _wake_server(config)
        services = ReportServices(config, store, blobs, resolver, queue.enqueue_message)
        if day >= dt.datetime.now(dt.UTC).date():
            raise fail(f"{day} has not ended yet (UTC)", status=2)
        return await services.daily.run_day(day, job)
    finally:
        await store.close()


def _wake_server(config: Config) -> None:
    """Ask a running `serve` to look at its queue now (SIGUSR1, as `queue flush`)."""
    import contextlib
    import os
    import signal

    from postroom.app import pid_path

    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_path(config).read_text().strip()), signal.SIGUSR1)


@reports_app.command("dmarc")
def reports_dmarc(
    domain: Annotated[str | None, typer.Option(
        "--domain", help="Only reports about this domain")] = None,
    days: Annotated[int, typer.Option(
        "--days", min=1, max=366, help="Reports of the last N days")] = 7,
) -> None:
    """Who sends as our domains, per received DMARC aggregate report, and whether they
    pass (DKIM or SPF aligned)."""
    from postroom.reports.dmarcintake import recent_sources
    from postroom.store import open_store
    from postroom.store.changes import ChangeFeed

    config = current_config()

    async def main() -> list[Any]:
        store, _ = await open_store(config, ChangeFeed())
        try:
            return await recent_sources(store, dt.datetime.now(dt.UTC), days, domain)
        finally:
            await store.close()

    sources = run_cli(main())
    if not sources:
        typer.echo(f"no DMARC reports received in the last {days} day(s)", err=True)
        return
    print_table(("domain", "source ip", "reporter", "messages", "disposition", "dkim",
                 "spf", "verdict"),
                [(s.domain, s.source_ip, s.reporter, s.messages, s.disposition, s.dkim,
                  s.spf, "pass" if s.passes else "FAIL") for s in sources])


# -- reports tls (TLS-RPT, RFC 8460) ---------------------------------------------------


@reports_app.command("tls")
def reports_tls(
    domain: Annotated[str | None, typer.Option(
        "--domain", help="Only reports about this domain")] = None,
    days: Annotated[int, typer.Option(
        "--days", min=1, max=366, help="Reports of the last N days")] = 7,
) -> None:
    """TLS-RPT reports others sent about our domains: per domain and sending
    organisation, sessions that succeeded and failed, and why they failed."""
    from postroom.reports.tlsrpt import summarise_received
    from postroom.store import open_store
    from postroom.store.changes import ChangeFeed

    config = current_config()

    async def main() -> list[Any]:
        store, _ = await open_store(config, ChangeFeed())
        try:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
            return summarise_received(await store.received_tls_reports(since, domain))
        finally:
            await store.close()

    summaries = run_cli(main())
    if not summaries:
        typer.echo(f"no TLS-RPT reports received in the last {days} day(s)", err=True)
        return
    print_table(("domain", "reporter", "reports", "successful", "failed", "failures"),
                [(s.policy_domain, s.organization, s.reports, s.successful, s.failed,
                  ", ".join(f"{kind} {count}" for kind, count in s.failures) or "-")
                 for s in summaries])
