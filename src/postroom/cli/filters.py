"""The verbs of spam filtering (issue 18): `filter check|set|list` and `greylist list|del`.

Owns argument handling and printing; the work is in checks/ (the symbols),
delivery/spamfiling.py (the verdict) and the store's `GreylistStore` role.
`filter check` judges a message the way delivery would, offline as `rspamc` does: the
content checks of `offline_checks` (DNS lists only with --dns), an account's own
thresholds and scorers with --account, and prints each symbol and the verdict.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postroom.cli.console import app, current_config, fail, print_table, run_cli, run_with_store
from postroom.config import Config

if TYPE_CHECKING:
    from postroom.checks.api import Check
    from postroom.delivery.spamverdict import Judgement
    from postroom.delivery.transit import ReceivedMessage
    from postroom.dns.resolver import Resolver

filter_app = typer.Typer(no_args_is_help=True, help="Spam verdicts: test a message, thresholds.")
greylist_app = typer.Typer(no_args_is_help=True, help="Greylisting (ENABLE_POSTGREY) state.")
app.add_typer(filter_app, name="filter")
app.add_typer(greylist_app, name="greylist")

_MAX_MESSAGE = 64 * 1024 * 1024


def offline_checks(config: Config, resolver: Resolver | None) -> list[Check]:
    """The content checks `filter check` runs, one line each (DNS ones need --dns)."""
    from postroom.checks.dnsbl import DnsblCheck
    from postroom.checks.gtube import GtubeCheck

    checks: list[Check] = [GtubeCheck()]
    if resolver is not None:
        checks.append(DnsblCheck(config, resolver))
    return checks


# -- filter check --------------------------------------------------------------------------
@filter_app.command("check")
def filter_check(
    file: Annotated[str, typer.Argument(help="the message (RFC 5322), or - for stdin")],
    dns: Annotated[bool, typer.Option("--dns", help="also ask the DNS lists")] = False,
    ip: Annotated[str, typer.Option(help="client address for the DNS lists (default: "
                                          "domains only)")] = "",
    sender: Annotated[str, typer.Option(help="envelope sender")] = "",
    account: Annotated[str, typer.Option(
        help="judge for this account: its thresholds and learning filter")] = "",
) -> None:
    """Print the symbols and spam verdict of a message, as delivery would decide it."""
    data = _read_message(file)
    config = current_config()
    if dns:  # the lists would skip a private or absent address: ask about it anyway
        config = config.model_copy(update={"dnsbl_query_private": True})
    judgement, action = run_cli(_judge(config, data, dns=dns, ip=ip, sender=sender,
                                       account=account))
    _print_judgement(judgement, action)


def _read_message(file: str) -> bytes:
    try:
        if file == "-":
            data = sys.stdin.buffer.read(_MAX_MESSAGE + 1)
        else:
            with Path(file).open("rb") as source:
                data = source.read(_MAX_MESSAGE + 1)
    except OSError as error:
        raise fail(f"{error.strerror or error}: {file}") from None
    if len(data) > _MAX_MESSAGE:
        raise fail(f"{file}: larger than {_MAX_MESSAGE} bytes")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # as SMTP delivers it


async def _judge(config: Config, data: bytes, *, dns: bool, ip: str, sender: str,
                 account: str) -> tuple[Judgement, str]:
    from postroom.checks import Pipeline
    from postroom.dns.live import LiveResolver

    resolver = LiveResolver(config.nameservers) if dns else None
    message = _message(config, data, ip, sender)
    verdict = await Pipeline(offline_checks(config, resolver)).on_message(message)
    if verdict.is_refusal:
        assert verdict.reply is not None  # refuse() always names one
        judgement, _ = _global_judgement(config, verdict.symbols)
        reply = verdict.reply
        return judgement, f"refused by a check: {reply.code} {reply.status} {reply.text}"
    if not account:
        return _global_judgement(config, verdict.symbols)
    return await _account_judgement(config, message, verdict.symbols, account)


def _message(config: Config, data: bytes, ip: str, sender: str) -> ReceivedMessage:
    from postroom.delivery.transit import ClientInfo, ReceivedMessage
    from postroom.mail.esmtp import MailParams
    from postroom.mailauth.headerscan import scan_header

    client = ClientInfo(ip, "filter-check", is_esmtp=True)
    message = ReceivedMessage("CHECK", client, sender, MailParams(), [], Path(), len(data),
                              dt.datetime.now(dt.UTC), body=data)
    with message.open_body() as source:
        message.header = scan_header(source, config.hostname)
    return message


def _global_judgement(config: Config, symbols: Any) -> tuple[Judgement, str]:
    from postroom.delivery.spamfiling import JUNK, Level
    from postroom.delivery.spamverdict import Thresholds, judge

    judgement = judge(symbols, Thresholds(config.sa_tag, config.sa_tag2, config.sa_kill))
    return judgement, _action(config, judgement.level, Level, JUNK)


async def _account_judgement(config: Config, message: ReceivedMessage, symbols: Any,
                             address: str) -> tuple[Judgement, str]:
    from postroom.app import account_scorers
    from postroom.delivery.recipients import LocalTarget
    from postroom.delivery.spamfiling import JUNK, Level, SpamFiling
    from postroom.delivery.transit import AcceptedRecipient
    from postroom.mail.esmtp import RcptParams
    from postroom.store import open_store
    from postroom.store.changes import ChangeFeed

    store, _ = await open_store(config, ChangeFeed())
    try:
        found = await store.get_account(address)
        if found is None:
            raise fail(f"no account {address}")
        message.recipients = [AcceptedRecipient(address, RcptParams(), local=(
            LocalTarget(found.id, found.address),))]
        filing = SpamFiling(config, store, account_scorers(config, store))
        plan = await filing.plan(message, symbols)
    finally:
        await store.close()
    judgement = plan.accounts[found.id].judgement
    action = "reject (554 5.7.1)" if plan.is_refused else _action(
        config, judgement.level, Level, JUNK)
    return judgement, action


def _action(config: Config, level: Any, levels: Any, junk: str) -> str:
    """What delivery does at this level, in words (delivery/spamfiling.py)."""
    if level is levels.KILL and not config.spam_to_inbox:
        return "reject (554 5.7.1)"
    if level >= levels.SPAM:
        where = junk if config.move_spam_to_junk else "INBOX"
        subject = f", subject marked {config.spam_subject.strip()!r}" if config.spam_subject \
            else ""
        return f"spam: file into {where}{subject}" + (", \\Seen" if config.mark_spam_as_read
                                                     else "")
    if level is levels.TAG:
        return "add X-Spam headers"
    return "no action"


def _print_judgement(judgement: Judgement, action: str) -> None:
    from postroom.delivery.spamverdict import render_number

    rows = [(symbol.name, render_number(symbol.score), symbol.detail)
            for symbol in sorted(judgement.symbols, key=lambda s: -abs(s.score))]
    if rows:
        print_table(["symbol", "score", "detail"], rows)
    limits = judgement.thresholds
    typer.echo(f"score: {render_number(judgement.score)} (tag {render_number(limits.tag)}, "
               f"tag2 {render_number(limits.tag2)}, kill {render_number(limits.kill)})")
    typer.echo(f"spam: {'yes' if judgement.is_spam else 'no'}")
    typer.echo(f"action: {action}")


# -- filter set / list ---------------------------------------------------------------------
@filter_app.command("set")
def filter_set(
    address: str,
    tag: Annotated[float | None, typer.Option(help="SA_TAG for this account")] = None,
    tag2: Annotated[float | None, typer.Option(help="SA_TAG2 for this account")] = None,
    kill: Annotated[float | None, typer.Option(help="SA_KILL for this account")] = None,
    clear: Annotated[bool, typer.Option(
        "--clear", help="forget the account's own thresholds")] = False,
) -> None:
    """Set an account's own spam thresholds (options left out: the global value)."""
    from postroom.store.api import SpamThresholds

    if clear and (tag, tag2, kill) != (None, None, None):
        raise fail("--clear takes no thresholds")
    if not clear and (tag, tag2, kill) == (None, None, None):
        raise fail("give --tag, --tag2 or --kill (or --clear)")
    given = [value for value in (tag, tag2, kill) if value is not None]
    if given != sorted(given):
        raise fail("thresholds must be ordered: --tag <= --tag2 <= --kill")
    thresholds = SpamThresholds(tag, tag2, kill)

    async def store_them(_: Any, store: Any) -> None:
        found = await store.get_account(address)
        if found is None:
            raise fail(f"no account {address}")
        await store.set_spam_thresholds(found.id, thresholds)

    run_with_store(store_them)
    typer.echo(f"{address}: thresholds cleared" if clear else f"{address}: thresholds set")


@filter_app.command("list")
def filter_list() -> None:
    """Accounts with their own spam thresholds."""
    from postroom.delivery.spamverdict import render_number

    rows = run_with_store(lambda _, store: store.list_spam_thresholds())

    def shown(value: float | None) -> str:
        return "-" if value is None else render_number(value)

    print_table(["account", "tag", "tag2", "kill"],
                [(address, shown(t.tag), shown(t.tag2), shown(t.kill)) for address, t in rows])


# -- greylist ------------------------------------------------------------------------------
@greylist_app.command("list")
def greylist_list() -> None:
    """Greylisted triplets and the clients' successful retries."""
    async def read(_: Any, store: Any) -> tuple[Any, Any]:
        return await store.list_greylist(), await store.list_greylist_clients()

    entries, clients = run_with_store(read)
    print_table(["client", "sender", "recipient", "first seen", "last seen", "passes"],
                [(e.client, e.sender or "<>", e.recipient, _when(e.first_seen),
                  _when(e.last_seen), e.passes) for e in entries])
    if clients:
        typer.echo("")
        print_table(["client", "passes", "last seen"],
                    [(c.client, c.passes, _when(c.last_seen)) for c in clients])


@greylist_app.command("del")
def greylist_del(client: Annotated[str, typer.Argument(
        help="a client address or its network key as `greylist list` shows it")]) -> None:
    """Forget a client network's triplets and auto-whitelist entry."""
    from postroom.checks.greylist import client_network

    try:
        key = client_network(client)
    except ValueError:
        key = client  # a key as listed: 192.0.2 or 2001:db8:0:1
    removed = run_with_store(lambda _, store: store.delete_greylist(key))
    if not removed:
        raise fail(f"nothing greylisted for {key}")
    typer.echo(f"{key}: {removed} entries removed")


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
