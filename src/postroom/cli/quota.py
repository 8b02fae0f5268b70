"""`postroom quota set|del` (docker-mailserver's `setup quota`) and the quota columns of
`postroom email list` (issue 17).

Owns argument handling and printing only; what a quota means and the checks on it are
accounts/quota.py's.
"""

from __future__ import annotations

from typing import Annotated

import typer

from postroom.accounts.quota import QuotaPolicy, Room, clear_quota, percent_used, set_quota
from postroom.cli.console import app, current_config, fail, human_size, run_with_blobs
from postroom.config import parse_size
from postroom.store.quota_api import QuotaUsage

quota_app = typer.Typer(no_args_is_help=True,
                        help="Per-account quotas (docker-mailserver's `setup quota`).")
app.add_typer(quota_app, name="quota")


@quota_app.command("set")
def quota_set(
    address: str,
    size: Annotated[str, typer.Argument(help="storage: 2G, 500M, bytes; 0 = no own limit")],
    messages: Annotated[int | None, typer.Option(
        "--messages", min=0, help="also limit the number of messages (0 = none)")] = None,
) -> None:
    """Give ADDRESS its own quota (above DEFAULT_QUOTA or below it)."""
    try:
        storage = parse_size(size)
    except ValueError as error:
        raise fail(str(error)) from None
    config = current_config()
    policy = QuotaPolicy.from_config(config)
    run_with_blobs(config, lambda store, _: set_quota(store, policy, address, storage,
                                                      messages))  # fmt: skip
    limits = [human_size(storage) if storage else "no own storage limit"]
    if messages:
        limits.append(f"{messages} messages")
    typer.echo(f"quota of {address.lower()}: {', '.join(limits)}")
    if not config.enable_quotas:
        typer.echo("postroom: warning: ENABLE_QUOTAS=0: per-account quotas are not "
                   "enforced", err=True)  # fmt: skip


@quota_app.command("del")
def quota_del(address: str) -> None:
    """Remove ADDRESS's own quota: DEFAULT_QUOTA applies again."""
    config = current_config()
    run_with_blobs(config, lambda store, _: clear_quota(store, address))
    typer.echo(f"quota of {address.lower()}: the default again")


def quota_columns(usage: QuotaUsage, policy: QuotaPolicy) -> tuple[str, str]:
    """`email list`'s quota and use columns: `2.0 GiB` (`, 1000 messages`) and `60%`, as
    docker-mailserver's `( 1.2M / 2G ) [60%]`; `-` where no limit applies."""
    room = Room(usage, policy)
    limits = [human_size(room.storage_limit)] if room.storage_limit else []
    if room.message_limit:
        limits.append(f"{room.message_limit} messages")
    if not limits:
        return "-", "-"
    used = max(percent_used(usage.size, room.storage_limit),
               percent_used(usage.messages, room.message_limit))
    return ", ".join(limits), f"{used}%"
