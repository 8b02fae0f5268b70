"""Storage failures (issue 25, findings 7-9): a server whose database is missing, another
install's or damaged refuses to start with one line; a full disk or database is answered
with 452 4.3.1 / NO [OVERQUOTA] and one log line a minute; a write that finds the database
damaged is answered 451 and no further MAIL is accepted. Real `postroom serve` processes,
a real tmpfs filled to the last byte, a real SQLite size limit, real damaged pages."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import imaplib
import logging
import os
import shutil
import smtplib
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.store import errors as store_errors
from postroom.store import open_store
from postroom.store.api import NewMessage
from postroom.store.blobs import FileBlobStore
from postroom.store.changes import ChangeFeed
from postroom.store.errors import InstallMismatch, StorageFull, StorageLog
from postroom.store.migrate import InstallState, Where, install_verdict
from postroom.store.sqlite import sqlite_store
from tests.conftest import make_config
from tests.hardening.conftest import PASSWORD, USER, StartApp
from tests.support.server import (
    NO_DNS_CHECKS,
    AppThread,
    ServeProcess,
    local_serve_env,
    write_env,
)
from tests.support.storage import is_postgres_chosen, storage_settings

pytestmark = pytest.mark.timeout(120)
sqlite_only = pytest.mark.sqlite_only(reason="SQLite files, blob files and DATA_DIR as such")

BIG = 100 * 1024  # above the 64 KiB inline limit: the body is a file under blobs/


def mail(subject: str, size: int = 2000) -> bytes:
    return (f"From: a@example.org\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\n".encode()
            + b"x" * (size - 2) + b"\r\n")


def send(port: int, body: bytes) -> tuple[int, str]:
    """The reply to DATA (or the first refusal before it)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        try:
            client.sendmail("a@example.org", [USER], body)
        except smtplib.SMTPResponseException as error:
            return error.smtp_code, error.smtp_error.decode()
        except smtplib.SMTPRecipientsRefused as error:
            code, text = error.recipients[USER]
            return code, text.decode()
        except smtplib.SMTPSenderRefused as error:
            return error.smtp_code, error.smtp_error.decode()
    return 250, "ok"


# -- start-up: the install id, a missing or damaged database ------------------------------


def postroom(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def install(tmp_path: Path, server_cert: tuple[Path, Path]) -> Path:
    """An install that has received a large message (a body file in blobs/); its env."""
    env = write_env(tmp_path / "postroom.env", local_serve_env(
        tmp_path / "data", server_cert, **NO_DNS_CHECKS))
    assert postroom(env, "email", "add", USER, PASSWORD).returncode == 0
    with ServeProcess(env) as serve:
        assert send(serve.ports["smtp"], mail("big", BIG))[0] == 250
    assert any((tmp_path / "data" / "blobs").glob("??/*"))
    return env


def refused_start(env: Path) -> str:
    """Run serve, which must exit non-zero by itself; its output."""
    run = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), "serve"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, run.stderr
    return run.stderr


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@sqlite_only
def test_first_start_on_empty_data_dir_records_one_install_id(
        tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    data = tmp_path / "data"
    env = write_env(tmp_path / "postroom.env", local_serve_env(data, server_cert))
    with ServeProcess(env):
        pass
    recorded = (data / "install-id").read_text().strip()
    with sqlite3.connect(data / "postroom.sqlite3") as db:
        assert db.execute("SELECT id FROM install").fetchall() == [(recorded,)]
    with ServeProcess(env):  # and starts again with the same
        pass
    assert (data / "install-id").read_text().strip() == recorded


@sqlite_only
def test_missing_database_with_mail_in_data_dir_refuses_to_start(install: Path) -> None:
    data = install.parent / "data"
    for name in ("postroom.sqlite3", "postroom.sqlite3-wal", "postroom.sqlite3-shm"):
        (data / name).unlink(missing_ok=True)
    line = one_line(refused_start(install))
    assert "refusing to start" in line and "missing" in line
    assert "restore the database" in line and "move" in line
    assert not (data / "postroom.sqlite3").exists()  # no blank database left behind
    # An admin command must not create a blank one either.
    listed = postroom(install, "email", "list")
    assert listed.returncode != 0 and "refusing to start" in listed.stderr
    assert not (data / "postroom.sqlite3").exists()


@sqlite_only
def test_empty_database_file_refuses_to_start(install: Path) -> None:
    data = install.parent / "data"
    for name in ("postroom.sqlite3-wal", "postroom.sqlite3-shm"):
        (data / name).unlink(missing_ok=True)
    (data / "postroom.sqlite3").write_bytes(b"")
    assert "missing" in one_line(refused_start(install))


@sqlite_only
def test_database_of_another_install_refuses_to_start(
        install: Path, tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    other = tmp_path / "other"
    other_env = write_env(tmp_path / "other.env", local_serve_env(other, server_cert))
    assert postroom(other_env, "email", "add", "someone@example.test", "pw-1").returncode == 0
    data = install.parent / "data"
    for name in ("postroom.sqlite3-wal", "postroom.sqlite3-shm"):
        (data / name).unlink(missing_ok=True)
    shutil.copy(other / "postroom.sqlite3", data / "postroom.sqlite3")
    line = one_line(refused_start(install))
    assert "belongs to install" in line
    assert (other / "install-id").read_text().strip() in line


@sqlite_only
def test_damaged_pages_refuse_to_start(install: Path) -> None:
    database = install.parent / "data" / "postroom.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size, pages = (db.execute("PRAGMA page_size").fetchone()[0],
                            db.execute("PRAGMA page_count").fetchone()[0])
    assert pages > 8
    with open(database, "r+b") as handle:  # random bytes over every page but the header's
        for page in range(1, pages, 3):
            handle.seek(page * page_size)
            handle.write(os.urandom(page_size))
    line = one_line(refused_start(install))
    assert "damaged" in line and "quick_check" in line


@pytest.mark.parametrize(("state", "expected"), [
    (InstallState("a", "a", True, True), "a"),
    (InstallState("a", None, True, True), "a"),  # the id file was lost: written again
    (InstallState("a", None, False, False), "a"),  # a second node, a new DATA_DIR
    (InstallState(None, "a", True, False), "a"),  # a database from before migration 0009
    (InstallState(None, None, True, True), None),  # upgrading: a new id
    (InstallState(None, None, False, False), None),  # a first start
])
def test_install_verdict_accepts(state: InstallState, expected: str | None) -> None:
    verdict = install_verdict(state, Where("db", Path("/data")))
    assert verdict == expected if expected else len(verdict) == 32


@pytest.mark.parametrize("state", [
    InstallState("a", "b", True, True),  # another install's database
    InstallState(None, "a", False, False),  # blank database, DATA_DIR has an id
    InstallState(None, None, False, True),  # blank database over body files
    InstallState("a", None, False, True),  # the same, after a blank start recorded an id
])
def test_install_verdict_refuses(state: InstallState) -> None:
    with pytest.raises(InstallMismatch, match="refusing to start"):
        install_verdict(state, Where("db", Path("/data")))


# -- a full disk: a real tmpfs ---------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, mounted for this test (we run as root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """A file taking every free byte of `folder`'s file system."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError:
            pass
        with contextlib.suppress(OSError):
            handle.truncate(handle.tell())  # whatever was buffered
    with contextlib.suppress(OSError), open(filler, "ab") as handle:  # the last bytes
        while True:
            handle.write(b"\0" * 512)
            handle.flush()
    return filler


def storage_lines(output: list[str], kind: str) -> list[str]:
    return [line for line in output if f"storage: {kind}" in line]


@sqlite_only
def test_full_disk_answers_452_and_overquota_and_logs_once(
        small_disk: Path, tmp_path: Path, server_cert: tuple[Path, Path],
        client_tls: ssl.SSLContext) -> None:
    data = small_disk / "data"
    env = write_env(tmp_path / "postroom.env", local_serve_env(
        data, server_cert, SPOOF_PROTECTION=0, **NO_DNS_CHECKS))
    assert postroom(env, "email", "add", USER, PASSWORD).returncode == 0
    with ServeProcess(env) as serve:
        port = serve.ports["smtp"]
        for number in range(5):  # the WAL grows to its working size before the disk fills
            assert send(port, mail(f"before {number}"))[0] == 250
        filler = fill(small_disk)
        replies = [send(port, mail(f"full {number}", BIG)) for number in range(3)]
        # Past 256 KiB the body is spooled to a file during DATA: that write fails too.
        replies.append(send(port, mail("spooled", 400 * 1024)))
        assert all(code == 452 and text.startswith("4.3.1") for code, text in replies), replies
        with imaplib.IMAP4_SSL("127.0.0.1", serve.ports["imaps"], ssl_context=client_tls,
                               timeout=20) as imap:
            imap.login(USER, PASSWORD)
            status, answer = imap.append("INBOX", None, None, mail("append", BIG))
        assert status == "NO", answer
        assert b"[OVERQUOTA]" in answer[0] and b"SERVERBUG" not in answer[0]
        assert list((data / "blobs" / "tmp").iterdir()) == []  # no half-written bodies
        assert list((data / "spool").iterdir()) == []
        filler.unlink()
        assert send(port, mail("after", BIG))[0] == 250  # room again: accepted again
    output = "".join(serve.output)
    assert len(storage_lines(serve.output, "storage full")) == 1, output
    assert "Traceback" not in output


# -- a full database: SQLite's size limit, in process -------------------------------------


def limit_database(app: object, extra_pages: int = 0) -> None:
    """PRAGMA max_page_count = the pages in use (+ extra) on the group-commit connection,
    where appends and deliveries write: SQLite then answers "database or disk is full"."""
    store = app.runtime.store  # type: ignore[attr-defined]
    batch = store._batch

    def limit() -> None:
        (pages,) = batch._db.execute("PRAGMA page_count").fetchone()
        batch._db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")

    app.call(batch._in_thread(limit))  # type: ignore[attr-defined]


@sqlite_only
def test_full_database_answers_452_and_overquota(
        start_app: StartApp, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, client_tls: ssl.SSLContext) -> None:
    monkeypatch.setattr(store_errors, "STORAGE_LOG", StorageLog())
    caplog.set_level(logging.INFO)
    with start_app() as app:
        assert send(app.port("smtp"), mail("room"))[0] == 250
        limit_database(app)
        replies = [send(app.port("smtp"), mail(f"full {n}", 20_000)) for n in range(3)]
        assert all(code == 452 and text.startswith("4.3.1") for code, text in replies), replies
        with imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                               timeout=20) as imap:
            imap.login(USER, PASSWORD)
            status, answer = imap.append("INBOX", None, None, mail("append", 20_000))
        assert status == "NO" and b"[OVERQUOTA] Not enough disk space" in answer[0]
        assert len(app.inbox_messages(USER)) == 1
    full = [r for r in caplog.records if "storage: storage full" in r.getMessage()]
    assert len(full) == 1 and full[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info]


@sqlite_only
async def test_a_failed_batch_fails_every_waiter(tmp_path: Path) -> None:
    """Group commit: when SQLite rolls the shared transaction back, every caller of the
    batch gets the error — none a row that was never committed."""
    store, blobs = sqlite_store(tmp_path / "db.sqlite3", tmp_path / "blobs", ChangeFeed())
    await store.open()
    try:
        account = await store.create_account("a@example.test", "x")
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        batch = store._batch

        def limit() -> None:
            assert batch._db is not None
            (pages,) = batch._db.execute("PRAGMA page_count").fetchone()
            batch._db.execute(f"PRAGMA max_page_count = {pages}")

        await batch._in_thread(limit)

        async def append(number: int) -> object:
            body = b"x" * 30_000
            blob_id = blobs.new_id(len(body))
            message = NewMessage(blob_id, len(body), dt.datetime.now(dt.UTC))
            return await store.append_message(inbox.id, message, body=body)

        results = await asyncio.gather(*(append(n) for n in range(6)), return_exceptions=True)
        assert all(isinstance(result, StorageFull) for result in results), results
        assert await store.list_messages(inbox.id) == []
    finally:
        await store.close()


@sqlite_only
def test_failed_blob_writes_leave_no_temp_file_and_stale_ones_are_swept(
        tmp_path: Path) -> None:
    files = FileBlobStore(tmp_path / "blobs")
    files.prepare()
    stale = files.root / "tmp" / "deadbeef"
    stale.write_bytes(b"left by a crash")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    fresh = files.root / "tmp" / "cafe"  # another write in progress: kept
    fresh.write_bytes(b"in flight")
    (files.root / "ab").write_bytes(b"")  # where the fan-out folder should be: install fails
    with pytest.raises(OSError):
        files.write_now("ab1234", b"body")
    assert not (files.root / "tmp" / "ab1234").exists()
    files._last_sweep -= 3600  # the sweep is due
    files.write_now("cd1234", b"body")
    assert sorted(p.name for p in (files.root / "tmp").iterdir()) == ["cafe"]


# -- damage found while running ---------------------------------------------------------------


def damage_table(database: Path, table: str) -> None:
    """Random bytes over `table`'s root page in the file, then a write of our own so the
    server's connections drop their page caches (WAL index changed) and read the file."""
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                             (table,)).fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        with open(database, "r+b") as handle:
            handle.seek((root - 1) * page_size)
            handle.write(os.urandom(page_size))
        db.execute("UPDATE install SET created = created")


@sqlite_only
def test_damage_found_by_a_write_answers_451_and_refuses_mail(
        start_app: StartApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_errors, "STORAGE_LOG", StorageLog())
    with start_app() as app:
        port = app.port("smtp")
        assert send(port, mail("before"))[0] == 250
        damage_table(app.config.db_path, "blob_data")
        code, text = send(port, mail("while damaged"))
        assert (code, text[:5]) == (451, "4.3.0"), text
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:  # a new connection
            client.ehlo()
            code, text_bytes = client.mail("a@example.org")
        assert (code, text_bytes[:5]) == (451, b"4.3.0")
        assert b"damaged" in text_bytes
    assert isinstance(app.runtime.store.damage, store_errors.StorageCorrupt)  # type: ignore[attr-defined]


# -- PostgreSQL: the node's DATA_DIR against the database's install ---------------------------


@pytest.mark.skipif(not is_postgres_chosen(), reason="runs in the PostgreSQL pass")
@sqlite_only
def test_postgres_node_refuses_a_database_of_another_install(
        tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    data = tmp_path / "data"
    first = make_config(tmp_path, server_cert)
    with AppThread(first):
        pass
    recorded = (data / "install-id").read_text().strip()
    # The same DATA_DIR pointed at another (blank) database: refused, in one line.
    other = storage_settings(tmp_path / "elsewhere")
    moved = make_config(tmp_path, server_cert, **other)
    with pytest.raises(InstallMismatch, match=f"refusing to start.*{recorded}"):
        asyncio.run(open_store(moved, ChangeFeed()))
    with AppThread(first):  # its own database still opens
        pass
