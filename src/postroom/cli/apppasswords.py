"""`postroom email app-password …` and `postroom email 2fa-off` (issue 21): an admin's
view of what users manage on the self-service pages — list, make or revoke a user's app
passwords, and turn off a user's two-factor login when they lost both the device and the
recovery codes.

Owns argument handling and printing only; the rules are accounts/apppasswords.py's and
accounts/totp.py's, through AccountService and TwoFactor.
"""

from __future__ import annotations

from typing import Annotated

import typer

from postroom.accounts.service import AccountService
from postroom.accounts.totp import TwoFactor
from postroom.cli.console import email_app, fail, human_time, print_table, run_with_store
from postroom.errors import Refused
from postroom.store.api import Account, Store

apppassword_app = typer.Typer(no_args_is_help=True,
                              help="App passwords: per-device passwords for mail apps.")
email_app.add_typer(apppassword_app, name="app-password")


async def _account(store: Store, address: str) -> Account:
    account = await store.get_account(address.strip().lower())
    if account is None:
        raise Refused(f"no account {address.strip().lower()}")
    return account


@apppassword_app.command("list")
def app_password_list(address: str) -> None:
    """ADDRESS's app passwords: name, created, last used."""

    async def listed(accounts: AccountService, store: Store) -> list[tuple[str, str, str]]:
        rows = await accounts.list_app_passwords(await _account(store, address))
        return [(row.name, human_time(row.created),
                 human_time(row.last_used) if row.last_used else "never") for row in rows]

    print_table(("name", "created", "last used"), run_with_store(listed))


@apppassword_app.command("add")
def app_password_add(address: str, name: str) -> None:
    """Make an app password named NAME for ADDRESS; it is printed once."""

    async def made(accounts: AccountService, store: Store) -> str:
        _, password = await accounts.add_app_password(await _account(store, address), name)
        return password

    typer.echo(run_with_store(made))


@apppassword_app.command("revoke")
def app_password_revoke(address: str, name: str) -> None:
    """Revoke ADDRESS's app password NAME: logins with it fail from now on."""

    async def revoked(accounts: AccountService, store: Store) -> None:
        account = await _account(store, address)
        for row in await accounts.list_app_passwords(account):
            if row.name == name:
                await accounts.revoke_app_password(account, row.id)
                return
        raise fail(f"{account.address} has no app password named {name!r}")

    run_with_store(revoked)
    typer.echo(f"revoked {name}")


@email_app.command("2fa-off")
def email_2fa_off(address: str,
                  yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False
                  ) -> None:
    """Turn off ADDRESS's two-factor web login (the secret and recovery codes go)."""
    if not yes and not typer.confirm(f"Turn off two-factor login for {address}?"):
        raise fail("not changed")

    async def off(_: AccountService, store: Store) -> None:
        await TwoFactor(store).disable((await _account(store, address)).id)

    run_with_store(off)
    typer.echo(f"two-factor login off for {address}")
