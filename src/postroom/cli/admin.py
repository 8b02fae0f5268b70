"""`postroom admin grant|revoke|list` (the web console's admin role) and `postroom audit`
(the log of admin actions), issue 21.

Owns argument handling and printing only; the role and the log live in the store
(WebStore role, store/web_api.py), the entries' meaning in web/audit.py. Granting and
revoking from the CLI are audited too, with actor "cli".
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from postroom.cli.console import app, fail, human_time, print_table, run_with_store
from postroom.config import parse_duration
from postroom.errors import BadSyntax
from postroom.mail.address import parse_address
from postroom.store.api import Store

admin_app = typer.Typer(no_args_is_help=True,
                        help="The web console's admin role (README \"Web console\").")
app.add_typer(admin_app, name="admin")


def canonical(address: str) -> str:
    try:
        return str(parse_address(address))
    except BadSyntax as error:
        raise fail(f"{address!r} is not an address: {error}") from None


async def set_role(store: Store, address: str, is_admin: bool) -> bool:
    """Grant or revoke, audited; False when the account does not exist."""
    from postroom.web.audit import audit_cli  # the web stack: only when it is used

    changed = await store.set_admin(address, is_admin)
    if changed:
        await audit_cli(store, "admin.grant" if is_admin else "admin.revoke", address)
    return changed


@admin_app.command("grant")
def admin_grant(address: str) -> None:
    """Give ADDRESS (an existing account) the admin role of the web console."""
    target = canonical(address)
    if not run_with_store(lambda _, store: set_role(store, target, True)):
        raise fail(f"no account {target}")
    typer.echo(f"{target} is an admin")


@admin_app.command("revoke")
def admin_revoke(address: str) -> None:
    """Take the admin role from ADDRESS."""
    target = canonical(address)
    if not run_with_store(lambda _, store: set_role(store, target, False)):
        raise fail(f"no account {target}")
    typer.echo(f"{target} is no longer an admin")


@admin_app.command("list")
def admin_list() -> None:
    """The accounts with the admin role."""
    for address in run_with_store(lambda _, store: store.list_admins()):
        typer.echo(address)


@app.command("audit")
def audit(
    since: Annotated[str | None, typer.Option(
        "--since", help="only this recent: 30m, 12h, 7d")] = None,
    actor: Annotated[str | None, typer.Option(
        "--actor", help="only actions by this admin address (or cli)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                       help="at most this many, the newest")] = 1000,
) -> None:
    """The log of admin actions (web console and `postroom admin`), oldest first."""
    start = None
    if since is not None:
        try:
            start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=parse_duration(since))
        except ValueError as error:
            raise fail(f"--since: {error}") from None
    who = None if actor is None else actor.strip().lower()
    entries = run_with_store(lambda _, store: store.audit_entries(start, who, limit))
    print_table(("time", "actor", "action", "target", "detail", "client"),
                [(human_time(e.at), e.actor, e.action, e.target, e.detail, e.client)
                 for e in entries])
