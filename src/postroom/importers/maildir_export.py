"""Export one account as a Dovecot Maildir++ tree, so no user is locked in.

Owns writing the Maildir side of the format importers/dms_import.py reads: INBOX is the
root; every other mailbox is a `.A.B` folder (levels in modified UTF-7, RFC 3501 §5.1.3)
holding an empty `maildirfolder` file; messages are `cur/<base>:2,<letters>` files with the
base written as Dovecot does (`<secs>.M<usecs>P<pid>Q<uid>.<host>,S=<size>,W=<vsize>`);
each folder gets a version-3 `dovecot-uidlist` (its UIDVALIDITY, UIDNEXT and every
message's UID) and, when keywords are used, a `dovecot-keywords`; the root gets a
version-2 `subscriptions` file.

Invariants: export into an existing non-empty directory is refused (nothing is
overwritten); each message file is written in tmp/ and renamed into cur/ (the Maildir
delivery protocol), with its mtime set to the internal date (Dovecot's convention);
messages whose line ends are all CRLF are written with LF, as Dovecot stores them (the
import turns them back into the same CRLF bytes). Anything Maildir++ cannot represent (a
`.` inside a mailbox name, more than 26 keywords in a folder) is reported, not guessed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from postroom.errors import BadSyntax, Refused
from postroom.importers.dms_import import Skipped
from postroom.importers.maildir import (
    INBOX,
    keyword_letters,
    maildir_base,
    maildir_data,
    render_folder_dir,
    render_info,
    render_keywords,
    render_subscriptions,
    render_uidlist,
)
from postroom.store.api import Mailbox, Store
from postroom.store.blobs import BlobStore


@dataclass(slots=True)
class ExportReport:
    folders: int = 0
    messages: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def _write_message(folder: Path, name: str, data: bytes, when: dt.datetime) -> None:
    temp = folder / "tmp" / name.partition(":")[0]
    temp.write_bytes(data)
    mtime_ns = int(when.replace(microsecond=0).timestamp()) * 10**9 + when.microsecond * 1000
    os.utime(temp, ns=(mtime_ns, mtime_ns))
    os.replace(temp, folder / "cur" / name)


def _make_folder(folder: Path, is_root: bool) -> None:
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if not is_root:
        (folder / "maildirfolder").touch()  # marks a Maildir++ subfolder


def _is_occupied(directory: Path) -> bool:
    return directory.exists() and (not directory.is_dir() or any(directory.iterdir()))


@dataclass(slots=True)
class Exporter:
    store: Store
    blobs: BlobStore
    root: Path
    hostname: str
    report: ExportReport = field(default_factory=ExportReport)

    async def export_mailbox(self, mailbox: Mailbox) -> None:
        try:
            folder = self.root / render_folder_dir(mailbox.name)
        except BadSyntax as error:
            self.report.skipped.append(Skipped(mailbox.name, f"not exported: {error}"))
            return
        await asyncio.to_thread(_make_folder, folder, mailbox.name == INBOX)
        messages = await self.store.list_messages(mailbox.id)
        letters, left_over = keyword_letters(messages)
        if left_over:
            self.report.skipped.append(Skipped(mailbox.name, "Maildir has 26 keyword letters; "
                                               f"dropped: {' '.join(left_over)}"))
        entries = []
        for message in messages:
            data = maildir_data(await self.blobs.read(message.blob_id))
            base = maildir_base(message, data, self.hostname)
            await asyncio.to_thread(_write_message, folder, base + render_info(
                message.flags, letters), data, message.internal_date)
            entries.append((message.uid, base))
        await asyncio.to_thread((folder / "dovecot-uidlist").write_text,
                                render_uidlist(mailbox, entries))
        if letters:
            await asyncio.to_thread((folder / "dovecot-keywords").write_text,
                                    render_keywords(letters))
        self.report.folders += 1
        self.report.messages += len(messages)


async def export_maildir(store: Store, blobs: BlobStore, address: str, directory: Path,
                         hostname: str) -> ExportReport:
    """Write `address`'s mailboxes under `directory` (which must be absent or empty)."""
    account = await store.get_account(address)
    if account is None:
        raise Refused(f"no account {address}", code="NONEXISTENT")
    if await asyncio.to_thread(_is_occupied, directory):
        raise Refused(f"{directory} exists and is not an empty directory", code="ALREADYEXISTS")
    exporter = Exporter(store, blobs, directory, hostname)
    for mailbox in await store.list_mailboxes(account.id):
        await exporter.export_mailbox(mailbox)
    subscriptions = await store.list_subscriptions(account.id)
    await asyncio.to_thread((directory / "subscriptions").write_text,
                            render_subscriptions(subscriptions))
    return exporter.report
