"""The `postroom` command line: docker-mailserver's `setup` verbs plus `serve`.

The verbs live by group: cli/console.py (the app, config discovery, output), this module
(serve, email, alias, queue, import/export, ban, migrate), cli/domain.py (dkim, dns,
selftest), cli/quota.py (quota), cli/filters.py (filter, greylist), cli/junk.py (junk) and
cli/sieve.py (sieve), cli/tls.py (tls). rich is imported in this package only.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from postroom.cli import (
    admin,  # registers the admin, audit verbs; email add --admin
    apppasswords,  # noqa: F401  (registers email app-password, email 2fa-off)
    domain,  # noqa: F401  (registers the dkim, dns, selftest verbs)
    filters,  # noqa: F401  (registers the filter, greylist verbs)
    junk,  # noqa: F401  (registers the junk verbs)
    quota,  # registers the quota verbs; email list's quota columns
    reports,  # noqa: F401  (registers the reports verbs)
    sieve,  # noqa: F401  (registers the sieve verbs)
)
from postroom.cli import tls as tls_verbs  # noqa: F401  (registers the tls verbs)
from postroom.cli.console import (
    alias_app,
    app,
    ban_app,
    current_config,
    dkim_dir,
    email_app,
    export_app,
    fail,
    human_size,
    human_time,
    import_app,
    migrate_app,
    print_table,
    queue_app,
    read_password,
    run_cli,
    run_with_blobs,
    run_with_store,
)
from postroom.config import Config, ConfigError, check_serve_files
from postroom.logsetup import announce, setup_logging
from postroom.loops import fast_loop_factory

if TYPE_CHECKING:
    from postroom.accounts.service import AccountService
    from postroom.store.api import Store
    from postroom.store.transfer import TransferReport


@app.command()
def serve() -> None:
    """Run every listener (SMTP, submission, IMAP, POP3) until SIGTERM."""
    from postroom.app import App
    from postroom.collector import settle_collector

    config = current_config()
    try:
        check_serve_files(config)
    except ConfigError as error:
        raise fail(str(error), status=2) from None
    setup_logging(config.log_level, timezone=config.timezone)

    async def main() -> None:
        server = App(config)
        await server.start()
        settle_collector()  # start-up's objects out of the collector's sight (collector.py)
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
def email_add(address: str, password: Annotated[str | None, typer.Argument()] = None,
              is_admin: Annotated[bool, typer.Option(
                  "--admin", help="with the web console's admin role")] = False) -> None:
    """Add an account (prompts for the password when it is not given)."""
    secret = read_password(password)
    account = run_with_store(lambda accounts, _: accounts.add_account(address, secret))
    if is_admin:
        run_with_store(lambda _, store: admin.set_role(store, account.address, True))
    typer.echo(f"added {account.address}{' (admin)' if is_admin else ''}")


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


@email_app.command("disable")
def email_disable(address: str) -> None:
    """Refuse every login of ADDRESS (its mail is kept and still delivered)."""
    run_with_store(lambda accounts, store: set_disabled(accounts, store, address, True))
    typer.echo(f"disabled {address}")


@email_app.command("enable")
def email_enable(address: str) -> None:
    """Let a disabled ADDRESS log in again."""
    run_with_store(lambda accounts, store: set_disabled(accounts, store, address, False))
    typer.echo(f"enabled {address}")


async def set_disabled(accounts: AccountService, store: Store, address: str,
                       is_disabled: bool) -> None:
    """Issue 21 (decision 0054): the flag, its web sessions ended, an audit entry."""
    from postroom.web.audit import audit_cli

    await accounts.set_disabled(address, is_disabled)
    canonical = address.strip().lower()
    if is_disabled:
        await store.delete_web_sessions_of(canonical)
    await audit_cli(store, "account.disable" if is_disabled else "account.enable", canonical)


@email_app.command("list")
def email_list() -> None:
    """List accounts with their message count, size, quota and its use (issue 17)."""
    from postroom.accounts.quota import QuotaPolicy

    config = current_config()
    policy = QuotaPolicy.from_config(config)
    usages = run_with_blobs(config, lambda store, _: store.list_quotas())
    print_table(("address", "messages", "size", "quota", "used"),
                [(u.address, u.messages, human_size(u.size), *quota.quota_columns(u, policy))
                 for u in usages])  # fmt: skip


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


# -- queue -------------------------------------------------------------------------------
@queue_app.command("list")
def queue_list() -> None:
    """Queued messages: id, sender, recipients, attempts, next try, last error."""
    from postroom.outbound.admin import list_queued

    queued = run_with_store(lambda _, store: list_queued(store))
    print_table(("id", "sender", "recipients", "attempts", "next try", "last error"),
                [(q.message_id, q.sender or "<>", ", ".join(q.recipients), q.attempts,
                  human_time(q.next_attempt), q.last_error)
                 for q in queued])


@queue_app.command("flush")
def queue_flush() -> None:
    """Retry everything waiting now (mail a node is delivering right now is left to it)."""
    from postroom.clock import SystemClock
    from postroom.outbound.admin import flush_queue

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
    from postroom.outbound.admin import delete_queued

    removed = run_with_store(lambda _, store: delete_queued(store, message_id))
    if removed == 0:
        raise fail(f"no queued message {message_id}")
    typer.echo(f"deleted {message_id} ({removed} recipient(s))")


# -- import / export -------------------------------------------------------------------
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

    from postroom.accounts.mailboxlimits import MailboxLimits
    from postroom.importers.dms_import import import_docker_mailserver as run_import
    from postroom.importers.dms_sieve import SieveLimits

    config = current_config()
    keys_dir = dkim_dir(config)  # a dry run only reads it
    with tempfile.TemporaryDirectory(prefix="postroom-dry-run-") as scratch:
        if dry_run and not config.db_path.exists():
            # Nothing to compare against: plan against an empty scratch store instead of
            # creating the real database.
            config = config.model_copy(update={"data_dir": Path(scratch)})
        report = run_with_blobs(config, lambda store, blobs: run_import(
            directory, store, blobs, keys_dir, dry_run=dry_run,
            limits=MailboxLimits.from_config(config),
            sieve=SieveLimits(config.sieve_max_scripts, config.sieve_max_script_size)))
    if dry_run:
        typer.echo("dry run: nothing was changed; an import would give:")
    print_table(("item", "new", "already present"),
                [(f.name, getattr(report, f.name).new, getattr(report, f.name).present)
                 for f in dataclasses.fields(report)
                 if f.name not in {"is_dry_run", "skipped", "quotas"}])
    if report.quotas.new or report.quotas.present:  # issue 17: dovecot-quotas.cf
        typer.echo(f"quotas: {report.quotas.new} new, {report.quotas.present} already set")
    if report.skipped:
        typer.echo(f"skipped ({len(report.skipped)}):")
        for item in report.skipped:
            typer.echo(f"  {item.where}: {item.reason}")


@export_app.command("maildir")
def export_maildir(address: str, directory: Path) -> None:
    """Write ADDRESS's mailboxes to DIRECTORY as a Dovecot Maildir++ tree."""
    from postroom.importers.maildir_export import export_maildir as run_export

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
    from postroom.store.transfer import Progress, sqlite_to_postgresql

    ends = (config.db_path, config.data_dir / "blobs", config.data_dir / "blob-cache", url)
    if not sys.stdout.isatty():
        return await sqlite_to_postgresql(*ends)
    from rich.progress import Progress as Bar

    with Bar() as bar:
        task = bar.add_task("messages", total=None)

        def draw(step: Progress) -> None:
            bar.update(task, description=step.stage, completed=step.done, total=step.total)

        return await sqlite_to_postgresql(*ends, draw)


def main() -> None:
    try:
        app()
    except Exception as error:
        # Last resort: a bug must still be one line for the user; details go to the log.
        logging.getLogger("postroom").debug("unexpected error", exc_info=True)
        typer.echo(f"postroom: internal error: {error!r}", err=True)
        sys.exit(70)
