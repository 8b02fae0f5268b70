"""What every `postroom` verb shares: the typer app and its verb groups, config discovery
(`--config FILE`, else $POSTROOM_CONFIG, else ./postroom.env, else defaults), running a
coroutine with the store open, and output a human reads (rich tables on a terminal only;
piped output is plain tab-separated text for scripts).

Invariant: errors are one line on stderr naming the problem, with exit status 1 (2 for bad
config); never a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from postroom.accounts.service import AccountService
from postroom.config import Config, ConfigError, load_config
from postroom.errors import PostroomError
from postroom.store.changes import ChangeFeed

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
    from postroom.store import open_store

    config = current_config()

    async def main() -> T:
        store, _ = await open_store(config, ChangeFeed())
        try:
            return await action(AccountService(store), store)
        finally:
            await store.close()

    return run_cli(main())


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


def run_with_blobs(config: Config, action: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Like run_with_store, but the action also gets the blob store."""
    from postroom.store import open_store

    async def main() -> T:
        store, blobs = await open_store(config, ChangeFeed())
        try:
            return await action(store, blobs)
        finally:
            await store.close()

    return run_cli(main())


def dkim_dir(config: Config) -> Path:
    return config.data_dir / "dkim"
