"""Issue 25 on import: Maildir folders past the mailbox limits are reported and left out
(with their messages), never imported past the limits and never a crash."""

from __future__ import annotations

from pathlib import Path

from postroom.accounts.mailboxlimits import MailboxLimits
from postroom.importers.dms_import import import_docker_mailserver
from postroom.importers.maildir import read_maildir
from postroom.mail.utf7 import encode_utf7
from postroom.runtime import Runtime
from tests.dms_import.dms_folder import ALICE, ALICE_PW, message, sha512_crypt

LIMITS = MailboxLimits(name_length=40, depth=4, mailboxes=10)


def add_folder(maildir: Path, dirname: str, subject: str | None = None) -> None:
    for sub in ("cur", "new", "tmp"):
        (maildir / dirname / sub).mkdir(parents=True, exist_ok=True)
    if subject is not None:
        (maildir / dirname / "cur" / f"1700000000.M1P1Q{len(dirname)}.host:2,S").write_bytes(
            message(subject))


def build_source(root: Path, dirnames: list[str], subscribed: list[str]) -> Path:
    config = root / "config"
    config.mkdir(parents=True)
    (config / "postfix-accounts.cf").write_text(
        f"{ALICE}|{{SHA512-CRYPT}}{sha512_crypt(ALICE_PW, 'Ab3dE6gH')}\n")
    local, _, domain = ALICE.partition("@")
    maildir = root / "mail-data" / domain / local
    add_folder(maildir, ".")
    for dirname in dirnames:
        add_folder(maildir, dirname, f"in {dirname}")
    lines = "".join(f"{name}\n" for name in subscribed)
    (maildir / "subscriptions").write_text(f"V\t2\n\n{lines}")
    return root


def test_too_long_and_too_deep_folders_are_noted(tmp_path: Path) -> None:
    source = build_source(tmp_path, [".Fine", ".a.b.c.d", ".a.b.c.d.e", "." + "x" * 41,
                                     "." + encode_utf7("É" * 20),  # 40 UTF-8 bytes: fits
                                     "." + encode_utf7("É" * 21)], [])  # 42: too long
    notes: list[tuple[str, str]] = []
    maildir = source / "mail-data" / "example.com" / "alice"
    found = read_maildir(maildir, "here", lambda where, why: notes.append((where, why)),
                         LIMITS)  # fmt: skip
    assert found is not None
    names = [folder.name for folder in found[0]]
    assert names == ["INBOX", "Fine", "a", "a/b", "a/b/c", "a/b/c/d", "É" * 20]
    reasons = dict(notes)
    assert "levels" in reasons["here/.a.b.c.d.e"]
    assert "bytes" in reasons["here/." + "x" * 41]
    assert "bytes" in reasons["here/." + encode_utf7("É" * 21)]


async def test_import_stops_at_the_limits(tmp_path: Path, runtime: Runtime) -> None:
    dirnames = [f".F{index}" for index in range(8)] + [".Deep.a.b.c.d"]
    source = build_source(tmp_path / "dms", dirnames, [f"F{index}" for index in range(8)])
    report = await import_docker_mailserver(source, runtime.store, runtime.blobs,
                                            tmp_path / "keys", limits=LIMITS)  # fmt: skip
    account = await runtime.store.get_account(ALICE)
    assert account is not None
    names = {box.name for box in await runtime.store.list_mailboxes(account.id)}
    # 5 defaults + F0…F4 = 10; F5…F7 are refused, Deep/a/b/c/d (5 levels) too.
    assert names == {"INBOX", "Sent", "Drafts", "Trash", "Junk"} | {f"F{i}" for i in range(5)}
    assert report.folders.new == 5
    assert report.messages.new == 5  # the refused folders' messages are not counted as new
    skipped = {item.where.rsplit("/", 1)[1]: item.reason for item in report.skipped}
    for index in (5, 6, 7):
        assert "MAX_MAILBOXES_PER_ACCOUNT" in skipped[f".F{index}"]
        assert "1 messages" in skipped[f".F{index}"]
    assert "MAX_MAILBOX_DEPTH" in skipped[".Deep.a.b.c.d"]
    assert len(await runtime.store.list_subscriptions(account.id)) <= LIMITS.mailboxes
    # A second run changes nothing and still reports the same folders.
    again = await import_docker_mailserver(source, runtime.store, runtime.blobs,
                                           tmp_path / "keys", limits=LIMITS)  # fmt: skip
    assert again.folders.new == 0 and again.messages.new == 0
    assert len(await runtime.store.list_mailboxes(account.id)) == 10


async def test_dry_run_counts_within_the_limits(tmp_path: Path, runtime: Runtime) -> None:
    source = build_source(tmp_path / "dms", [f".F{index}" for index in range(8)], [])
    report = await import_docker_mailserver(source, runtime.store, runtime.blobs,
                                            tmp_path / "keys", dry_run=True,
                                            limits=LIMITS)  # fmt: skip
    assert report.folders.new == 5
    assert sum("MAX_MAILBOXES_PER_ACCOUNT" in item.reason for item in report.skipped) == 3
