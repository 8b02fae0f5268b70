"""`postroom sieve …`: users' Sieve scripts, the global before/after scripts, and
`sieve test` (Pigeonhole's sieve-test: a script and a message in, the actions out).

Owns argument handling and printing only; the rules on names, sizes and counts are
accounts/sievescripts.py's, the language is sieve/'s.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

from postroom.accounts.sievescripts import SieveScripts, check_name
from postroom.cli.console import app, current_config, fail, print_table, run_with_blobs
from postroom.errors import Refused
from postroom.sieve.actions import (
    Discard,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveResult,
    Vacation,
)
from postroom.sieve.compile import compile_script
from postroom.sieve.evaluate import SieveContext, SieveEnvelope, evaluate
from postroom.sieve.lexer import SieveSyntaxError
from postroom.sieve.message import SieveMessage
from postroom.store.api import Store

sieve_app = typer.Typer(no_args_is_help=True, help="Sieve filters (ManageSieve's scripts).")
global_app = typer.Typer(no_args_is_help=True, help="Global scripts: before, after, "
                         "and scripts `include :global` names.")  # fmt: skip
sieve_app.add_typer(global_app, name="global")
app.add_typer(sieve_app, name="sieve")


def _read(source: str) -> str:
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise fail(f"{source}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(f"{source}: a Sieve script must be UTF-8") from None


async def _account_id(store: Store, address: str) -> int:
    account = await store.get_account(address.lower())
    if account is None:
        raise Refused(f"no account {address.lower()}")
    return account.id


@sieve_app.command("list")
def sieve_list(address: str) -> None:
    """The scripts of ADDRESS; the active one is marked."""
    config = current_config()

    async def listed(store: Store, _: object) -> list[list[object]]:
        scripts = SieveScripts(config, store)
        infos = await scripts.list_scripts(await _account_id(store, address))
        return [[info.name, "active" if info.is_active else "", info.size] for info in infos]

    print_table(["script", "", "bytes"], run_with_blobs(config, listed))


@sieve_app.command("get")
def sieve_get(address: str, name: str) -> None:
    """Print script NAME of ADDRESS."""
    config = current_config()

    async def got(store: Store, _: object) -> str:
        return await SieveScripts(config, store).get(await _account_id(store, address), name)

    sys.stdout.write(run_with_blobs(config, got))


@sieve_app.command("put")
def sieve_put(
    address: str, name: str,
    source: Annotated[str, typer.Argument(help="a file, or - for standard input")],
    activate: Annotated[bool, typer.Option("--activate", help="make it the active script")
                        ] = False,
) -> None:
    """Store a script (it must compile), as ManageSieve's PUTSCRIPT."""
    config = current_config()
    content = _read(source)

    async def put(store: Store, _: object) -> None:
        scripts = SieveScripts(config, store)
        account_id = await _account_id(store, address)
        await scripts.put(account_id, name, content)
        if activate:
            await scripts.activate(account_id, name)

    run_with_blobs(config, put)
    typer.echo(f"stored {name}{' (active)' if activate else ''} for {address.lower()}")


@sieve_app.command("activate")
def sieve_activate(address: str, name: str) -> None:
    """Make NAME the active script of ADDRESS."""
    config = current_config()

    async def activated(store: Store, _: object) -> None:
        await SieveScripts(config, store).activate(await _account_id(store, address), name)

    run_with_blobs(config, activated)
    typer.echo(f"{name} is the active script of {address.lower()}")


@sieve_app.command("deactivate")
def sieve_deactivate(address: str) -> None:
    """No active script for ADDRESS (global scripts still run)."""
    config = current_config()

    async def deactivated(store: Store, _: object) -> None:
        await SieveScripts(config, store).activate(await _account_id(store, address), "")

    run_with_blobs(config, deactivated)
    typer.echo(f"{address.lower()} has no active script")


@sieve_app.command("del")
def sieve_del(address: str, name: str) -> None:
    """Delete script NAME (not the active one: deactivate it first)."""
    config = current_config()

    async def deleted(store: Store, _: object) -> None:
        await SieveScripts(config, store).delete(await _account_id(store, address), name)

    run_with_blobs(config, deleted)
    typer.echo(f"deleted {name} of {address.lower()}")


@sieve_app.command("check")
def sieve_check(
    source: Annotated[str, typer.Argument(help="a script file (- for standard input), "
                                               "or an ADDRESS followed by a NAME")],
    name: Annotated[str | None, typer.Argument()] = None,
) -> None:
    """Compile a script and report the first error with its line and column."""
    if name is None:
        content = _read(source)
    else:
        config = current_config()

        async def got(store: Store, _: object) -> str:
            return await SieveScripts(config, store).get(await _account_id(store, source),
                                                         name)  # fmt: skip

        content = run_with_blobs(config, got)
    try:
        compile_script(content)
    except SieveSyntaxError as error:
        raise fail(f"{source if name is None else name}: {error}") from None
    typer.echo("valid")


@sieve_app.command("test")
def sieve_test(
    script: Annotated[Path, typer.Argument(help="the Sieve script")],
    message: Annotated[Path, typer.Argument(help="the message (RFC 5322 file)")],
    sender: Annotated[str, typer.Option("--from", help="envelope sender")] = "",
    recipient: Annotated[str, typer.Option("--to", help="envelope recipient")] = "",
) -> None:
    """Run SCRIPT on MESSAGE offline and print the actions, as Pigeonhole's sieve-test."""
    try:
        compiled = compile_script(script.read_text(encoding="utf-8"))
        raw = message.read_bytes()
    except SieveSyntaxError as error:
        raise fail(f"{script}: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise fail(str(error)) from None
    parsed = SieveMessage.from_bytes(raw)
    envelope = SieveEnvelope(sender or _first_address(parsed, "from"),
                             recipient or _first_address(parsed, "to"))  # fmt: skip
    context = SieveContext(envelope, dt.datetime.now().astimezone(),
                           environment={"name": "postroom", "phase": "during"})  # fmt: skip
    typer.echo(render_result(evaluate(compiled, parsed, context)))


def _first_address(message: SieveMessage, field: str) -> str:
    found = message.addresses(field)
    return found[0] if found else ""


def render_result(result: SieveResult) -> str:
    """The actions as lines, in the order they would be carried out."""
    if result.error:
        return f"runtime error: {result.error}\nimplicit keep: store message in INBOX"
    lines = [_describe(action) for action in result.actions] or ["(no actions)"]
    if result.implicit_keep:
        flags = " ".join(result.implicit_keep_flags)
        lines.append("implicit keep: store message in INBOX" + (f" + flags {flags}"
                                                                 if flags else ""))
    return "\n".join(lines)


def _describe(action: object) -> str:
    if isinstance(action, Keep):
        return "keep: store message in INBOX" + _flags(action.flags)
    if isinstance(action, FileInto):
        extra = " (create)" if action.create else ""
        return f"fileinto: store message in {action.mailbox}{extra}" + _flags(action.flags)
    if isinstance(action, Redirect):
        return f"redirect: send to {action.address}" + (" (copy)" if action.copy else "")
    if isinstance(action, Discard):
        return "discard"
    if isinstance(action, Reject):
        return f"{'ereject' if action.is_ereject else 'reject'}: {action.reason}"
    if isinstance(action, Vacation):
        return (f"vacation: reply once per {action.seconds}s (handle {action.handle}): "
                f"{action.reason[:200]!r}")
    return repr(action)


def _flags(flags: tuple[str, ...]) -> str:
    return f" + flags {' '.join(flags)}" if flags else ""


@global_app.command("list")
def global_list() -> None:
    """The global scripts."""
    config = current_config()

    async def listed(store: Store, _: object) -> list[list[object]]:
        return [[info.name, info.size] for info in await store.list_global_sieve_scripts()]

    print_table(["script", "bytes"], run_with_blobs(config, listed))


@global_app.command("put")
def global_put(
    name: Annotated[str, typer.Argument(help="before, after, or a name to include")],
    source: Annotated[str, typer.Argument(help="a file, or - for standard input")],
) -> None:
    """Store a global script: `before` runs ahead of every user's script, `after` behind
    it (docker-mailserver's before.dovecot.sieve / after.dovecot.sieve)."""
    config = current_config()
    content = _read(source)
    try:
        check_name(name)
        compile_script(content)
    except Refused as error:
        raise fail(str(error)) from None
    except SieveSyntaxError as error:
        raise fail(f"{source}: {error}") from None

    async def put(store: Store, _: object) -> None:
        await store.put_global_sieve_script(name, content, dt.datetime.now(dt.UTC))

    run_with_blobs(config, put)
    typer.echo(f"stored global script {name}")


@global_app.command("del")
def global_del(name: str) -> None:
    """Delete a global script."""
    config = current_config()

    async def deleted(store: Store, _: object) -> bool:
        return await store.delete_global_sieve_script(name)

    if not run_with_blobs(config, deleted):
        raise fail(f"no global script {name}")
    typer.echo(f"deleted global script {name}")
