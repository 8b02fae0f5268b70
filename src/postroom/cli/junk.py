"""`postroom junk`: the per-account learning junk filter from the command line (issue 18).

Owns `junk train ADDRESS --spam PATH | --ham PATH` (bulk training from a Maildir folder —
its cur/ and new/ —, a directory of message files, or an mbox file) and `junk stats
ADDRESS`. Training goes through junk/service.py's `JunkFilter`, as IMAP moves do, so a
message trained twice counts once. Each message is read up to `junk.service.MAX_READ`.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from postroom.cli.console import app, current_config, fail, print_table, run_with_blobs

junk_app = typer.Typer(no_args_is_help=True, help="The per-account learning junk filter.")
app.add_typer(junk_app, name="junk")


def read_messages(path: Path) -> Iterator[bytes]:
    """Every message under `path`: an mbox file, a Maildir (cur/, new/) or a directory of
    one-message files (dot-files skipped), in name order."""
    from postroom.junk.service import MAX_READ

    if path.is_file():
        box = mailbox.mbox(path, create=False)
        try:
            for key in box.iterkeys():
                yield box.get_bytes(key)[:MAX_READ]
        finally:
            box.close()
        return
    folders = [path / "cur", path / "new"] if (path / "cur").is_dir() else [path]
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                with entry.open("rb") as source:
                    yield source.read(MAX_READ)


@junk_app.command("train")
def junk_train(
    address: str,
    spam: Annotated[Path | None, typer.Option(
        "--spam", help="Maildir folder, message directory or mbox file of spam")] = None,
    ham: Annotated[Path | None, typer.Option(
        "--ham", help="Maildir folder, message directory or mbox file of good mail")] = None,
) -> None:
    """Train ADDRESS's junk filter on spam or good mail (one of --spam, --ham)."""
    if (spam is None) == (ham is None):
        raise fail("give one of --spam DIR or --ham DIR")
    source = spam if spam is not None else ham
    assert source is not None
    if not source.exists():
        raise fail(f"{source}: no such file or directory")
    config = current_config()
    if not config.enable_junk_filter:
        raise fail("ENABLE_JUNK_FILTER=0: the junk filter is off")

    async def train(store: Any, blobs: Any) -> tuple[int, int]:
        from postroom.junk import JunkFilter

        account_id = await _account_id(store, address)
        junk = JunkFilter(store, blobs)
        seen = counted = 0
        for data in read_messages(source):
            seen += 1
            counted += await junk.train_message(account_id, data, is_spam=spam is not None)
        return seen, counted

    seen, counted = run_with_blobs(config, train)
    kind = "spam" if spam is not None else "ham"
    typer.echo(f"{address}: {counted} of {seen} messages trained as {kind}")


@junk_app.command("stats")
def junk_stats(address: str) -> None:
    """What ADDRESS's junk filter has learnt."""

    async def stats(store: Any, _: Any) -> Any:
        return await store.junk_stats(await _account_id(store, address))

    totals = run_with_blobs(current_config(), stats)
    print_table(("account", "spam trained", "ham trained", "tokens", "known senders"),
                [(address, totals.spam, totals.ham, totals.tokens, totals.senders)])


async def _account_id(store: Any, address: str) -> int:
    account = await store.get_account(address.lower())
    if account is None:
        raise fail(f"no account {address}")
    return int(account.id)
