"""The `postroom` command line: docker-mailserver's `setup` verbs plus `serve`.

Owns argument parsing, config discovery (`--config FILE`, else $POSTROOM_CONFIG, else
./postroom.env, else defaults) and every line a human reads. rich is imported here only,
and only for tables on a terminal; piped output is plain tab-separated text for scripts.
Errors are one line on stderr naming the problem, with exit status 1 (2 for bad config);
never a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from postroom.accounts.service import AccountService
from postroom.config import Config, ConfigError, check_serve_files, load_config
from postroom.errors import PostroomError
from postroom.logsetup import announce, setup_logging
from postroom.store.changes import ChangeFeed

if TYPE_CHECKING:
    from postroom.dns.records import ZoneInput
    from postroom.selftest import SelftestReport
    from postroom.store.transfer import TransferReport

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="postroom: a complete, self-hosted mail server.")
email_app = typer.Typer(no_args_is_help=True, help="Manage mail accounts.")
alias_app = typer.Typer(no_args_is_help=True, help="Manage aliases (catch-all: @domain).")
dkim_app = typer.Typer(no_args_is_help=True, help="DKIM signing keys.")
dns_app = typer.Typer(no_args_is_help=True, help="Print and check a domain's DNS records.")
app.add_typer(email_app, name="email")
app.add_typer(alias_app, name="alias")
app.add_typer(dkim_app, name="dkim")
app.add_typer(dns_app, name="dns")
import_app = typer.Typer(no_args_is_help=True, help="Import another mail server's data.")
export_app = typer.Typer(no_args_is_help=True, help="Export an account (no lock-in).")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
queue_app = typer.Typer(no_args_is_help=True, help="The outbound mail queue.")
app.add_typer(queue_app, name="queue")
migrate_app = typer.Typer(no_args_is_help=True, help="Move an installation to another store.")
app.add_typer(migrate_app, name="migrate")
ban_app = typer.Typer(no_args_is_help=True, help="Client addresses banned after failed logins.")
app.add_typer(ban_app, name="ban")


class _State:
    config_path: Path | None = None


def fail(message: str, status: int = 1) -> typer.Exit:
    typer.echo(f"postroom: {message}", err=True)
    return typer.Exit(status)


def current_config() -> Config:
    try:
        loaded = load_config(_State.config_path)
    except ConfigError as error:
        raise fail(str(error), status=2) from None
    for warning in loaded.warnings:
        typer.echo(f"postroom: warning: {warning}", err=True)
    return loaded.config


def run_with_store(action: Callable[[AccountService, Any], Awaitable[T]]) -> T:
    """Open the store for one CLI action; PostroomErrors become one-line messages."""
    from postroom.app import open_store

    config = current_config()

    async def main() -> T:
        store, _ = await open_store(config, ChangeFeed())
        try:
            return await action(AccountService(store), store)
        finally:
            await store.close()

    return run_cli(main())


def fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when the `speed` extra is installed, else None (asyncio's own).
    Only `serve` uses it: one-shot commands gain nothing from a faster loop.
    POSTROOM_EVENT_LOOP=asyncio keeps asyncio's loop although uvloop is installed (to
    rule the loop out when chasing a problem; the test suite runs `serve` on both)."""
    if os.environ.get("POSTROOM_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_cli(coroutine: Coroutine[Any, Any, T], *,
            loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> T:
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:  # asyncio.run, plus a loop
            return runner.run(coroutine)
    except PostroomError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")) from None


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers)
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        Console().print(table)
    else:
        for row in rows:
            typer.echo("\t".join(str(cell) for cell in row))


def read_password(password: str | None, confirm: bool = True) -> str:
    if password is not None:
        return password
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


def human_time(when: dt.datetime) -> str:
    """A stored (UTC) time as a person reads it: in TZ's zone, with its offset."""
    from postroom.clock import display_zone

    zone = display_zone(current_config().timezone)
    return when.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="env-file config (default: $POSTROOM_CONFIG, ./postroom.env)",
    )] = None,
) -> None:
    _State.config_path = config


@app.command()
def serve() -> None:
    """Run every listener (SMTP, submission, IMAP, POP3) until SIGTERM."""
    from postroom.app import App

    config = current_config()
    try:
        check_serve_files(config)
    except ConfigError as error:
        raise fail(str(error), status=2) from None
    setup_logging(config.log_level, timezone=config.timezone)

    async def main() -> None:
        server = App(config)
        await server.start()
        for listener in server.listeners:
            tls = " (implicit TLS)" if listener.implicit_tls else ""
            announce("%s listening on %s:%d%s", listener.name, listener.host, listener.port,
                     tls)
        await server.run_until_signalled(
            on_ready=lambda: announce("ready as %s", config.hostname))

    try:
        run_cli(main(), loop_factory=fast_loop_factory())
    except KeyboardInterrupt:
        logging.getLogger("postroom").info("interrupted")


# -- email -------------------------------------------------------------------------------
@email_app.command("add")
def email_add(address: str, password: Annotated[str | None, typer.Argument()] = None) -> None:
    """Add an account (prompts for the password when it is not given)."""
    secret = read_password(password)
    account = run_with_store(lambda accounts, _: accounts.add_account(address, secret))
    typer.echo(f"added {account.address}")


@email_app.command("update")
def email_update(address: str,
                 password: Annotated[str | None, typer.Argument()] = None) -> None:
    """Change an account's password."""
    secret = read_password(password)
    run_with_store(lambda accounts, _: accounts.update_password(address, secret))
    typer.echo(f"updated {address}")


@email_app.command("del")
def email_del(address: str,
              yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False
              ) -> None:
    """Delete an account and all its mail."""
    if not yes and not typer.confirm(f"Delete {address} and all its mail?"):
        raise fail("not deleted")
    run_with_store(lambda accounts, _: accounts.delete_account(address))
    typer.echo(f"deleted {address}")


@email_app.command("list")
def email_list() -> None:
    """List accounts with their message count and size."""
    summaries = run_with_store(lambda accounts, _: accounts.list_accounts())
    print_table(("address", "messages", "size"),
                [(s.address, s.message_count, human_size(s.total_size)) for s in summaries])


# -- alias -------------------------------------------------------------------------------
@alias_app.command("add")
def alias_add(alias: str, target: str) -> None:
    """Add ALIAS → TARGET (ALIAS may be @domain for a catch-all)."""
    added = run_with_store(lambda accounts, _: accounts.add_alias(alias, target))
    typer.echo(f"added alias {added.source} -> {added.target}")


@alias_app.command("del")
def alias_del(alias: str, target: Annotated[str | None, typer.Argument()] = None) -> None:
    """Delete ALIAS → TARGET, or every target of ALIAS."""
    removed = run_with_store(lambda accounts, _: accounts.delete_alias(alias, target))
    typer.echo(f"deleted {removed} alias entr{'y' if removed == 1 else 'ies'}")


@alias_app.command("list")
def alias_list() -> None:
    """List aliases."""
    aliases = run_with_store(lambda accounts, _: accounts.list_aliases())
    print_table(("alias", "target"), [(a.source, a.target) for a in aliases])


# -- dkim --------------------------------------------------------------------------------
def dkim_dir(config: Config) -> Path:
    return config.data_dir / "dkim"


@dkim_app.command("generate")
def dkim_generate(
    domain: str,
    selector: Annotated[str, typer.Option(help="DKIM selector")] = "mail",
    keysize: Annotated[int, typer.Option(help="RSA key size in bits")] = 2048,
    ed25519: Annotated[bool, typer.Option(
        "--ed25519", help="make an Ed25519 key (RFC 8463) instead of RSA")] = False,
    force: Annotated[bool, typer.Option(help="replace an existing key")] = False,
) -> None:
    """Generate a signing key for DOMAIN and print the DNS record to publish."""
    from postroom.mail.address import normalize_domain
    from postroom.mailauth.keys import KeyAlgorithm, generate_key, key_paths

    config = current_config()
    try:
        domain = normalize_domain(domain)
        private_path, _ = key_paths(dkim_dir(config), domain, selector)
    except (PostroomError, ValueError) as error:
        raise fail(str(error)) from None
    if private_path.exists() and not force:
        raise fail(f"a key for {domain} selector {selector} exists; use --force to replace it")
    algorithm = KeyAlgorithm.ED25519 if ed25519 else KeyAlgorithm.RSA
    try:
        key = generate_key(dkim_dir(config), domain, selector, algorithm=algorithm,
                           bits=keysize)
    except ValueError as error:
        raise fail(str(error)) from None
    typer.echo(f"; DKIM key written to {key.private_path}; publish this record in the "
               f"zone of {domain}:", err=True)
    typer.echo(key.txt_path.read_text().rstrip())


@dkim_app.command("list")
def dkim_list() -> None:
    """List the domains and selectors that have signing keys."""
    from postroom.mailauth.keys import list_keys

    keys = list_keys(dkim_dir(current_config()))
    print_table(("domain", "selector", "algorithm", "key file"),
                [(k.domain, k.selector, k.algorithm.value, k.private_path) for k in keys])


@dkim_app.command("show")
def dkim_show(domain: str) -> None:
    """Print the DNS record(s) for DOMAIN's keys."""
    from postroom.mailauth.keys import dns_record_text, list_keys

    keys = [k for k in list_keys(dkim_dir(current_config())) if k.domain == domain.lower()]
    if not keys:
        raise fail(f"no DKIM key for {domain}; run `postroom dkim generate {domain}`")
    for key in keys:
        typer.echo(dns_record_text(key.domain, key.selector, key.private_path.read_bytes()))


# -- dns ---------------------------------------------------------------------------------
def zone_input(domain: str, ip: str | None, ipv6: str | None) -> ZoneInput:
    from postroom.dns.records import ZoneInput, configured_srv_ports
    from postroom.mail.address import normalize_domain

    config = current_config()
    try:
        domain = normalize_domain(domain)
        for value, version in ((ip, 4), (ipv6, 6)):
            if value and ipaddress.ip_address(value).version != version:
                raise ValueError(f"{value} is not an IPv{version} address")
    except (PostroomError, ValueError) as error:
        raise fail(str(error)) from None
    return ZoneInput(domain=domain, hostname=config.hostname, ipv4=ip, ipv6=ipv6,
                     dkim_dir=dkim_dir(config), postmaster=f"postmaster@{domain}",
                     srv_ports=configured_srv_ports(config))


@dns_app.command("records")
def dns_records(
    domain: str,
    ip: Annotated[str | None, typer.Option("--ip", help="the server's IPv4 address")] = None,
    ipv6: Annotated[str | None, typer.Option("--ipv6", help="the server's IPv6 address")
                    ] = None,
) -> None:
    """Print every record DOMAIN needs, as a BIND zone snippet."""
    from postroom.dns.records import render_zone

    typer.echo(render_zone(zone_input(domain, ip, ipv6)), nl=False)


@dns_app.command("check")
def dns_check(
    domain: str,
    ip: Annotated[str | None, typer.Option("--ip", help="the server's IPv4 address")] = None,
    ipv6: Annotated[str | None, typer.Option("--ipv6", help="the server's IPv6 address")
                    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Query DNS and check every record; exit 1 when a required one is missing or wrong."""
    import json

    from postroom.dns.live import LiveResolver
    from postroom.dns.records import check_domain

    spec = zone_input(domain, ip, ipv6)
    resolver = LiveResolver(current_config().nameservers)
    findings = run_cli(check_domain(resolver, spec))
    if as_json:
        typer.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        print_table(("record", "status", "found", "fix"),
                    [(f.record, f.status.value, f.found, f.fix) for f in findings])
    if any(f.is_failure for f in findings):
        raise typer.Exit(1)


# -- selftest ----------------------------------------------------------------------------
@app.command()
def selftest(
    domain: str,
    to: Annotated[str | None, typer.Option(
        "--to", help="also send the signed message to this address (e.g. an online tester)")
    ] = None,
    sender: Annotated[str | None, typer.Option(
        "--from", help="From and envelope sender (default: postmaster@DOMAIN)")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="the server's public IPv4")] = None,
    ipv6: Annotated[str | None, typer.Option("--ipv6", help="the server's public IPv6")
                    ] = None,
    smtp_host: Annotated[str | None, typer.Option(
        "--smtp-host", help="where to probe STARTTLS (default: LISTEN_ADDRESS)")] = None,
    smtp_port: Annotated[int | None, typer.Option(
        "--smtp-port", help="the SMTP port to probe (default: SMTP_PORT)")] = None,
    dnsbl: Annotated[list[str] | None, typer.Option(
        "--dnsbl", help="a DNSBL zone to look the server's address up in (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Judge DOMAIN's setup as a receiving provider would, scored out of 10; exit 1 when a
    check fails."""
    import json

    from postroom.dns.live import LiveResolver
    from postroom.selftest import SelftestOptions, run_selftest

    spec = zone_input(domain, ip, ipv6)
    config = current_config()
    from_address = (sender or f"postmaster@{spec.domain}").strip()
    for address in (from_address, to):
        if address is not None and "@" not in address:
            raise fail(f"{address!r} is not an email address")
    options = SelftestOptions(
        domain=spec.domain, sender=from_address, recipient=to, ipv4=ip, ipv6=ipv6,
        smtp_host=smtp_host, smtp_port=smtp_port, dnsbl_zones=tuple(dnsbl or ()))
    report = run_cli(run_selftest(config, LiveResolver(config.nameservers), options))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        print_selftest(report)
    if report.is_failure:
        raise typer.Exit(1)


def print_selftest(report: SelftestReport) -> None:
    for note in report.notes:
        typer.echo(f"postroom: {note}", err=True)
    print_table(("check", "status", "points", "detail", "fix"),
                [(c.name, c.status.value, f"{c.earned:g}/{c.points:g}", c.detail, c.fix)
                 for c in report.checks])
    typer.echo(report.score_text)
    if report.sent is not None:
        sent = report.sent
        outcome = "delivered" if sent.is_delivered else "NOT delivered"
        typer.echo(f"sent to {sent.recipient}: {outcome}: {sent.reply}"
                   + (f" (by {sent.server})" if sent.server else ""))
        if sent.is_delivered:
            typer.echo(f"look for the subject ending ({report.queue_id}) in that mailbox, "
                       "or open the tester's result page")


# -- queue -------------------------------------------------------------------------------
@queue_app.command("list")
def queue_list() -> None:
    """Queued messages: id, sender, recipients, attempts, next try, last error."""
    from postroom.queue.admin import list_queued

    queued = run_with_store(lambda _, store: list_queued(store))
    print_table(("id", "sender", "recipients", "attempts", "next try", "last error"),
                [(q.message_id, q.sender or "<>", ", ".join(q.recipients), q.attempts,
                  human_time(q.next_attempt), q.last_error)
                 for q in queued])


@queue_app.command("flush")
def queue_flush() -> None:
    """Retry everything waiting now (mail a node is delivering right now is left to it)."""
    from postroom.clock import SystemClock
    from postroom.queue.admin import flush_queue

    count = run_with_store(lambda _, store: flush_queue(store, SystemClock()))
    typer.echo(f"{count} recipient(s) due now")
    wake_server(current_config())


def wake_server(config: Config) -> None:
    """Tell a running `serve` (its pid file in DATA_DIR) to look at the queue now."""
    import os
    import signal

    from postroom.app import pid_path

    try:
        pid = int(pid_path(config).read_text().strip())
        os.kill(pid, signal.SIGUSR1)
    except (OSError, ValueError):
        typer.echo("postroom: no running server found; the queue runs when serve starts",
                   err=True)


@queue_app.command("delete")
def queue_delete(message_id: str) -> None:
    """Drop a queued message (every recipient) without sending a bounce."""
    from postroom.queue.admin import delete_queued

    removed = run_with_store(lambda _, store: delete_queued(store, message_id))
    if removed == 0:
        raise fail(f"no queued message {message_id}")
    typer.echo(f"deleted {message_id} ({removed} recipient(s))")


# -- import / export -------------------------------------------------------------------
def run_with_blobs(config: Config, action: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Like run_with_store, but the action also gets the blob store."""
    from postroom.app import open_store

    async def main() -> T:
        store, blobs = await open_store(config, ChangeFeed())
        try:
            return await action(store, blobs)
        finally:
            await store.close()

    return run_cli(main())


@import_app.command("docker-mailserver")
def import_docker_mailserver(
    directory: Annotated[Path, typer.Argument(
        help="docker-mailserver's data folder (holding config/ and mail-data/)")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="report what would be imported; change nothing")] = False,
) -> None:
    """Import accounts (with their passwords), aliases, DKIM keys and Maildirs."""
    import dataclasses
    import tempfile

    from postroom.accounts.dms_import import import_docker_mailserver as run_import
    from postroom.accounts.mailboxlimits import MailboxLimits

    config = current_config()
    keys_dir = dkim_dir(config)  # a dry run only reads it
    with tempfile.TemporaryDirectory(prefix="postroom-dry-run-") as scratch:
        if dry_run and not config.db_path.exists():
            # Nothing to compare against: plan against an empty scratch store instead of
            # creating the real database.
            config = config.model_copy(update={"data_dir": Path(scratch)})
        report = run_with_blobs(config, lambda store, blobs: run_import(
            directory, store, blobs, keys_dir, dry_run=dry_run,
            limits=MailboxLimits.from_config(config)))
    if dry_run:
        typer.echo("dry run: nothing was changed; an import would give:")
    print_table(("item", "new", "already present"),
                [(f.name, getattr(report, f.name).new, getattr(report, f.name).present)
                 for f in dataclasses.fields(report) if f.name not in {"is_dry_run", "skipped"}])
    if report.skipped:
        typer.echo(f"skipped ({len(report.skipped)}):")
        for item in report.skipped:
            typer.echo(f"  {item.where}: {item.reason}")


@export_app.command("maildir")
def export_maildir(address: str, directory: Path) -> None:
    """Write ADDRESS's mailboxes to DIRECTORY as a Dovecot Maildir++ tree."""
    from postroom.accounts.maildir_export import export_maildir as run_export

    config = current_config()
    report = run_with_blobs(config, lambda store, blobs: run_export(
        store, blobs, address.strip().lower(), directory, config.hostname))
    typer.echo(f"exported {report.folders} folders, {report.messages} messages to {directory}")
    for item in report.skipped:
        typer.echo(f"  skipped {item.where}: {item.reason}")



# -- ban ---------------------------------------------------------------------------------
def ban_key(address: str) -> str:
    from postroom.security.peer import address_key

    try:
        return address_key(address)
    except ValueError:
        raise fail(f"{address!r} is not an IP address or network") from None


@ban_app.command("list")
def ban_list() -> None:
    """List the addresses banned now (IPv6 clients are banned by /64)."""
    now = dt.datetime.now(dt.UTC)
    bans = run_with_store(lambda _, store: store.list_bans(now))
    print_table(("address", "banned until", "failures", "reason"),
                [(b.address, human_time(b.expires), b.failures, b.reason)
                 for b in bans])


@ban_app.command("del")
def ban_del(address: str) -> None:
    """Lift the ban on ADDRESS now (a running `serve` sees it at the next connection)."""
    key = ban_key(address)
    removed = run_with_store(lambda _, store: store.delete_ban(key))
    if not removed:
        raise fail(f"no ban for {key}")
    typer.echo(f"unbanned {key}")


@ban_app.command("add")
def ban_add(
    address: str,
    duration: Annotated[str | None, typer.Option(
        "--time", help="how long, e.g. 30m, 12h, 7d (default: AUTH_BAN_TIME)")] = None,
) -> None:
    """Ban ADDRESS (or a network) by hand."""
    from postroom.config import parse_duration
    from postroom.store.api import Ban

    key = ban_key(address)
    config = current_config()
    try:
        seconds = parse_duration(duration) if duration else config.auth_ban_time
    except ValueError as error:
        raise fail(f"--time: {error}") from None
    now = dt.datetime.now(dt.UTC)
    ban = Ban(key, now, now + dt.timedelta(seconds=seconds), 0, "banned by hand")
    run_with_store(lambda _, store: store.add_ban(ban))
    typer.echo(f"banned {key} until {human_time(ban.expires)}")


# -- migrate ------------------------------------------------------------------------------
@migrate_app.command("sqlite-to-postgresql")
def migrate_sqlite_to_postgresql(
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="target database (default: DATABASE_URL from the config)")
    ] = None,
) -> None:
    """Copy DATA_DIR's SQLite store and blobs into an empty PostgreSQL database, keeping
    UIDVALIDITY and UIDs; then set STORAGE=postgresql."""
    config = current_config()
    url = database_url or config.database_url
    if not url:
        raise fail("no target: set DATABASE_URL in the config or pass --database-url", 2)
    if not config.db_path.is_file():
        raise fail(f"no SQLite store at {config.db_path}")
    report = run_cli(_migrate_with_progress(config, url))
    typer.echo(f"copied {report.accounts} accounts, {report.mailboxes} mailboxes, "
               f"{report.messages} messages ({report.blobs} bodies), {report.aliases} "
               f"aliases, {report.queue_entries} queued recipients; now set "
               "STORAGE=postgresql and DATABASE_URL, and start serve")


async def _migrate_with_progress(config: Config, url: str) -> TransferReport:
    from postroom.store.pgblobs import PgBlobStore
    from postroom.store.postgres import PostgresStore, new_pool
    from postroom.store.sqlite import sqlite_store
    from postroom.store.transfer import Progress, transfer

    source, source_blobs = sqlite_store(config.db_path, config.data_dir / "blobs", ChangeFeed())
    pool = new_pool(url)
    target_blobs = PgBlobStore(pool, config.data_dir / "blob-cache", is_caching_writes=False)
    target = PostgresStore(url, target_blobs, ChangeFeed(), pool=pool)
    await source.open()
    try:
        await target.open()
        try:
            if not sys.stdout.isatty():
                return await transfer(source, source_blobs, target, target_blobs)
            from rich.progress import Progress as Bar

            with Bar() as bar:
                task = bar.add_task("messages", total=None)

                def draw(step: Progress) -> None:
                    bar.update(task, description=step.stage, completed=step.done,
                               total=step.total)

                return await transfer(source, source_blobs, target, target_blobs, draw)
        finally:
            await target.close()
    finally:
        await source.close()


def main() -> None:
    try:
        app()
    except Exception as error:
        # Last resort: a bug must still be one line for the user; details go to the log.
        logging.getLogger("postroom").debug("unexpected error", exc_info=True)
        typer.echo(f"postroom: internal error: {error!r}", err=True)
        sys.exit(70)
