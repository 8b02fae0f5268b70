"""`postroom migrate sqlite-to-postgresql`: everything arrives, UIDVALIDITY and UIDs kept."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postroom.store.api import Ban, FlagMode, NewMessage, QueueEntry, SpecialUse, Store
from postroom.store.blobs import BlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.credentials_api import LoginRecord
from postroom.store.postgres import open_postgres
from postroom.store.sqlite import sqlite_store
from postroom.store.sqliteblobs import INLINE_LIMIT
from postroom.store.transfer import Progress, transfer
from tests.support.server import write_env

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


async def build_sqlite_install(data_dir: Path) -> None:
    """Two accounts with mail, a COPY (shared body), expunges, flags, a ghost subscription,
    aliases and a queued message. Bodies are small (rows of the database) but for one
    large enough to be a file (store/sqliteblobs.py)."""
    store, blobs = sqlite_store(data_dir / "postroom.sqlite3", data_dir / "blobs", ChangeFeed())
    await store.open()
    try:
        alice = await store.create_account("alice@example.org", "{ARGON2ID}hash-a")
        await store.create_account("bob@other.example", "$6$salt$hash-b")
        inbox = await store.get_mailbox(alice.id, "INBOX")
        assert inbox is not None
        lists = await store.create_mailbox(alice.id, "Lists/Python", SpecialUse.ARCHIVE)
        uids = []
        for index in range(5):
            padding = b"x" * (INLINE_LIMIT + 1) if index == 0 else b""
            body = f"Subject: m{index}\r\n\r\nbody {index}\r\n".encode() + padding
            row = await store.append_message(inbox.id, NewMessage(
                await blobs.put(body), len(body), WHEN, frozenset({"$Label"} if index else ()),
                meta=f'{{"n": {index}}}'))
            uids.append(row.uid)
        await store.expunge(inbox.id, [uids[1]])
        await store.store_flags(inbox.id, [uids[2]], frozenset({"\\Seen"}), FlagMode.ADD)
        await store.copy_messages(inbox.id, [uids[3]], lists.id)
        await store.set_subscribed(alice.id, "Ghost", True)
        imported = await blobs.put(b"Subject: old\r\n\r\nold\r\n")
        await store.import_message(lists.id, NewMessage(imported, 20, WHEN),
                                   source_key="1700000000.M1P2.host", uid=40)
        await store.add_ban(Ban("192.0.2.7", WHEN, dt.datetime.now(dt.UTC)
                                + dt.timedelta(hours=1), 5, "authentication failures"))
        await store.add_alias("team@example.org", "alice@example.org")
        await store.set_quota("alice@example.org", 5_000_000, 1000)  # issue 17
        await store.set_metadata(alice.id, None, [("/private/comment", b"server note")])
        await store.set_metadata(alice.id, lists.id, [("/shared/comment", b"the list")])
        await store.put_sieve_script(alice.id, "main", "keep;", WHEN)  # issue 19
        await store.put_sieve_script(alice.id, "spare", "discard;", WHEN)
        await store.activate_sieve_script(alice.id, "main")
        await store.set_admin("alice@example.org", True)  # issue 21
        await store.set_account_disabled(alice.id, True)  # issue 21 (decision 0054)
        await store.add_app_password(alice.id, "Phone", "abcd", "{ARGON2ID}app", WHEN)
        await store.put_totp_secret(alice.id, "SECRETBASE32", WHEN)  # issue 21 (0055)
        await store.confirm_totp(alice.id, 12345)
        await store.put_recovery_codes(alice.id, ["r1", "r2"])
        await store.record_logins([LoginRecord(alice.id, WHEN, "imaps", "192.0.2.1",
                                               "app password Phone")], 50)
        await store.add_alias("@other.example", "bob@other.example")
        queued = await blobs.put(b"Subject: out\r\n\r\nout\r\n")
        await store.enqueue([QueueEntry(0, "q1", "alice@example.org", "x@remote.example",
                                        "remote.example", queued, 21, WHEN, WHEN, 2, "451 later",
                                        "env", "FAILURE")])
    finally:
        await store.close()


async def snapshot(store: Store, blobs: BlobStore) -> dict[str, object]:
    """Everything a client or the queue can observe, with blob ids replaced by bodies."""
    seen: dict[str, object] = {"aliases": await store.list_aliases(),
                               "accounts": await store.list_accounts()}
    for summary in await store.list_accounts():
        account = await store.get_account(summary.address)
        assert account is not None
        seen[f"{summary.address}/hash"] = account.password_hash
        seen[f"{summary.address}/subs"] = await store.list_subscriptions(account.id)
        seen[f"{summary.address}/quota"] = (await store.account_quota(account.id)).setting
        seen[f"{summary.address}/metadata"] = await store.list_metadata(account.id, None)
        seen[f"{summary.address}/credentials"] = (
            [(a.name, a.tag, a.password_hash, a.created)
             for a in await store.list_app_passwords(account.id)],
            await store.totp_state(account.id),
            [code for _, code in await store.unused_recovery_codes(account.id)],
            [dataclasses.replace(login, account_id=0)
             for login in await store.recent_logins(account.id, 100)])
        seen[f"{summary.address}/sieve"] = [
            (info, await store.get_sieve_script(account.id, info.name))
            for info in await store.list_sieve_scripts(account.id)]
        for box in await store.list_mailboxes(account.id):
            key = f"{summary.address}/{box.name}"
            seen[key] = (box.uidvalidity, box.uidnext, box.highest_modseq, box.special_use,
                         box.is_subscribed, box.object_id)  # RFC 8474 MAILBOXID kept
            seen[key + "/vanished"] = await store.expunged_since(box.id, 0)
            seen[key + "/metadata"] = await store.list_metadata(account.id, box.id)
            seen[key + "/imported"] = await store.imported_keys(box.id)
            seen[key + "/messages"] = [
                (dataclasses.replace(row, mailbox_id=0, blob_id=""),
                 await blobs.read(row.blob_id), await store.get_meta(box.id, row.uid))
                for row in await store.list_messages(box.id)]
    seen["bans"] = await store.list_bans(dt.datetime.now(dt.UTC))
    seen["admins"] = await store.list_admins()
    seen["disabled"] = await store.list_disabled_accounts()
    seen["queue"] = [(dataclasses.replace(e, id=0, blob_id=""), await blobs.read(e.blob_id))
                     for e in await store.list_queue()]
    return seen


async def test_transfer_keeps_everything(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    await build_sqlite_install(data_dir)
    source, source_blobs = sqlite_store(data_dir / "postroom.sqlite3", data_dir / "blobs",
                                        ChangeFeed())  # fmt: skip
    await source.open()
    target, target_blobs = await open_postgres(database_url, ChangeFeed(), tmp_path / "cache")
    try:
        steps: list[Progress] = []
        report = await transfer(source, source_blobs, target, target_blobs, steps.append)
        assert (report.accounts, report.mailboxes, report.messages, report.aliases,
                report.queue_entries, report.bans) == (2, 11, 6, 2, 1, 1)
        # 4 delivered bodies left (one expunged), 1 imported, 1 queued; COPY shares one.
        assert report.blobs == 6
        assert steps[-1] == Progress("done", 6, 6)
        assert [s.done for s in steps] == sorted(s.done for s in steps)
        assert await snapshot(target, target_blobs) == await snapshot(source, source_blobs)
        # New mail continues the numbering; a new mailbox gets a fresh UIDVALIDITY.
        alice = await target.get_account("alice@example.org")
        assert alice is not None
        inbox = await target.get_mailbox(alice.id, "INBOX")
        assert inbox is not None
        row = await target.append_message(inbox.id, NewMessage(
            await target_blobs.put(b"x"), 1, WHEN))
        assert row.uid == 6
        old = {box.uidvalidity for box in await source.list_mailboxes(alice.id)}
        assert (await target.create_mailbox(alice.id, "New")).uidvalidity > max(old)
        with pytest.raises(Exception, match="empty database"):
            await transfer(source, source_blobs, target, target_blobs)
    finally:
        await target.close()
        await source.close()


def test_cli_migrate_command(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    asyncio.run(build_sqlite_install(data_dir))
    env = write_env(tmp_path / "postroom.env", {"DATA_DIR": data_dir,
                                                "DATABASE_URL": database_url})
    command = [sys.executable, "-m", "postroom", "--config", str(env), "migrate",
               "sqlite-to-postgresql"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "copied 2 accounts, 11 mailboxes, 6 messages" in result.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "empty database" in again.stderr and "Traceback" not in again.stderr
    listed = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env),
                             "email", "list"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "STORAGE": "postgresql"})
    assert listed.stdout.splitlines()[0].startswith("alice@example.org\t6\t")
