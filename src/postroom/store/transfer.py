"""Moving an installation from one store to PostgreSQL (`postroom migrate sqlite-to-postgresql`).

Owns the copy order and what "the same installation" means: domains and accounts (password
hashes as they are, so every login keeps working), aliases, mailboxes with their
UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, every message with its UID, MODSEQ, flags,
internal and saved dates and stored metadata, expunge records (as VANISHED candidates),
subscriptions, importers' source keys, the outbound queue, bans in force, and each body
once (a body shared by COPY stays shared).
Clients therefore keep their caches: same UIDVALIDITY, same UIDs (RFC 9051 §2.3.1.1).

The source is read through the `Store` protocol only, so any backend can be the source;
the target is a `PostgresStore` and must be empty (a half-done run is redone on a fresh
database, never merged). Expunged UIDs are recorded at the mailbox's HIGHESTMODSEQ: their
original MODSEQs are not part of the Store protocol, and reporting them as vanished
"since" any older MODSEQ is the safe superset (RFC 7162 §3.2.5.2). Progress goes to a
callback; the CLI draws it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from postroom.errors import Refused
from postroom.store.api import Mailbox, MessageRow, Store
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.postgres import PostgresStore

_BATCH = 500


@dataclass(frozen=True, slots=True)
class Progress:
    """`done` of `total` messages copied; `stage` says what is being copied now."""

    stage: str
    done: int
    total: int


ProgressCallback = Callable[[Progress], None]


@dataclass(slots=True)
class TransferReport:
    accounts: int = 0
    aliases: int = 0
    mailboxes: int = 0
    messages: int = 0
    blobs: int = 0
    queue_entries: int = 0
    bans: int = 0


@dataclass(slots=True)
class _Transfer:
    source: Store
    source_blobs: BlobStore
    target: PostgresStore
    target_blobs: BlobStore
    progress: ProgressCallback
    total: int
    report: TransferReport = field(default_factory=TransferReport)
    blob_ids: dict[str, str] = field(default_factory=dict)  # source id → target id

    def tell(self, stage: str) -> None:
        self.progress(Progress(stage, self.report.messages, self.total))

    async def copy_blob(self, blob_id: str) -> str:
        if blob_id not in self.blob_ids:
            data = await self.source_blobs.read(blob_id)
            self.blob_ids[blob_id] = await self.target_blobs.put(data)
            self.report.blobs += 1
        return self.blob_ids[blob_id]


async def transfer(
    source: Store,
    source_blobs: BlobStore,
    target: PostgresStore,
    target_blobs: BlobStore,
    progress: ProgressCallback = lambda _: None,
) -> TransferReport:
    """Copy everything from `source` into the empty `target`; both must be open."""
    if not await target.is_empty():
        raise Refused("the PostgreSQL database already holds accounts, aliases or queued "
                      "mail; migrate into an empty database")
    summaries = await source.list_accounts()
    run = _Transfer(source, source_blobs, target, target_blobs, progress,
                    total=sum(summary.message_count for summary in summaries))
    for summary in summaries:
        await _copy_account(run, summary.address)
    run.tell("aliases")
    for alias in await source.list_aliases():
        await target.add_alias(alias.source, alias.target)
        run.report.aliases += 1
    run.tell("queue")
    await _copy_queue(run)
    run.tell("bans")
    for ban in await source.list_bans(dt.datetime.now(dt.UTC)):
        await target.add_ban(ban)
        run.report.bans += 1
    run.tell("done")
    return run.report


async def _copy_account(run: _Transfer, address: str) -> None:
    account = await run.source.get_account(address)
    if account is None:  # deleted while we ran
        return
    run.tell(f"account {address}")
    new_id = await run.target.import_account(account.address, account.password_hash)
    run.report.accounts += 1
    for mailbox in await run.source.list_mailboxes(account.id):
        await _copy_mailbox(run, new_id, mailbox)
    # Subscriptions are kept by name and may name mailboxes that do not exist (§6.3.7).
    for name in await run.source.list_subscriptions(account.id):
        await run.target.set_subscribed(new_id, name, True)
    await _copy_account_settings(run, account.id, new_id, account.address)
    await _copy_credentials(run, account.id, new_id)


async def _copy_account_settings(run: _Transfer, old_id: int, new_id: int,
                                 address: str) -> None:  # fmt: skip
    """Its quota (issue 17), server METADATA, Sieve scripts with the active one
    (issue 19), and the web console's admin role and the disabled flag (issue 21)."""
    if await run.source.is_admin(address):
        await run.target.set_admin(address, True)
    if await run.source.is_account_disabled(old_id):
        await run.target.set_account_disabled(new_id, True)
    setting = (await run.source.account_quota(old_id)).setting
    if setting.storage is not None or setting.messages is not None:
        await run.target.set_quota(address, setting.storage, setting.messages)
    entries = await run.source.list_metadata(old_id, None)
    if entries:
        await run.target.set_metadata(new_id, None, [(e.name, e.value) for e in entries])
    now = dt.datetime.now(dt.UTC)
    for info in await run.source.list_sieve_scripts(old_id):
        text = await run.source.get_sieve_script(old_id, info.name)
        if text is not None:
            await run.target.put_sieve_script(new_id, info.name, text, now)
            if info.is_active:
                await run.target.activate_sieve_script(new_id, info.name)


async def _copy_credentials(run: _Transfer, old_id: int, new_id: int) -> None:
    """App passwords (hashes and tags as they are: devices keep working), the TOTP
    secret with its last used step and the unused recovery codes, and the login history
    (issue 21)."""
    for app in await run.source.list_app_passwords(old_id):
        await run.target.add_app_password(new_id, app.name, app.tag, app.password_hash,
                                          app.created)
    state = await run.source.totp_state(old_id)
    if state is not None:
        await run.target.put_totp_secret(new_id, state.secret, dt.datetime.now(dt.UTC))
        if state.is_confirmed:
            await run.target.confirm_totp(new_id, state.last_step)
            await run.target.put_recovery_codes(
                new_id, [code for _, code in await run.source.unused_recovery_codes(old_id)])
    history = await run.source.recent_logins(old_id, 1000)
    if history:
        await run.target.record_logins([replace(login, account_id=new_id)
                                        for login in reversed(history)], len(history))


async def _copy_mailbox(run: _Transfer, account_id: int, mailbox: Mailbox) -> None:
    new_id = await run.target.import_mailbox(account_id, mailbox)
    run.report.mailboxes += 1
    entries = await run.source.list_metadata(mailbox.account_id, mailbox.id)
    if entries:  # RFC 5464 annotations travel with their mailbox
        await run.target.set_metadata(account_id, new_id, [(e.name, e.value) for e in entries])
    rows = await run.source.list_messages(mailbox.id)
    for start in range(0, len(rows), _BATCH):
        batch: list[tuple[MessageRow, str]] = []
        for row in rows[start : start + _BATCH]:
            meta = await run.source.get_meta(mailbox.id, row.uid)
            batch.append((replace(row, blob_id=await run.copy_blob(row.blob_id)), meta))
        await run.target.import_messages(new_id, batch)
        run.report.messages += len(batch)
        run.tell(f"mailbox {mailbox.name}")
    vanished = await run.source.expunged_since(mailbox.id, 0)
    if vanished:
        await run.target.import_expunged(new_id, vanished, mailbox.highest_modseq)
    keys = await run.source.imported_keys(mailbox.id)
    if keys:  # so a later `postroom import` run does not bring these messages in twice
        await run.target.import_source_keys(new_id, keys)


async def _copy_queue(run: _Transfer) -> None:
    entries = await run.source.list_queue()
    copied = [replace(entry, blob_id=await run.copy_blob(entry.blob_id)) for entry in entries]
    if copied:
        await run.target.enqueue(copied)
    run.report.queue_entries = len(copied)


async def sqlite_to_postgresql(db_path: Path, blob_root: Path, cache_dir: Path, url: str,
                               progress: ProgressCallback = lambda _: None,
                               ) -> TransferReport:  # fmt: skip
    """Open the SQLite store at `db_path` (bodies under `blob_root`) and the empty
    PostgreSQL database at `url`, copy the one into the other, close both. The target's
    blob cache under `cache_dir` takes no copies: this node may never serve them."""
    from postroom.store.pgblobs import PgBlobStore
    from postroom.store.postgres import new_pool
    from postroom.store.sqlite import sqlite_store

    source, source_blobs = sqlite_store(db_path, blob_root, ChangeFeed())
    pool = new_pool(url)
    target_blobs = PgBlobStore(pool, cache_dir, is_caching_writes=False)
    target = PostgresStore(url, target_blobs, ChangeFeed(), pool=pool)
    await source.open()
    try:
        await target.open()
        try:
            return await transfer(source, source_blobs, target, target_blobs, progress)
        finally:
            await target.close()
    finally:
        await source.close()
