"""Issue 9 end to end: `postroom import docker-mailserver DIR` and `postroom export maildir`
run as a user runs them (subprocess, real env file), then the imported data checked over
POP3, SMTP and the store, a DKIM signature checked against the DNS record the user
already published, re-runs and dry runs checked to change nothing, and an export
re-imported into a fresh DATA_DIR compared with the original."""

from __future__ import annotations

import asyncio
import datetime as dt
import imaplib
import poplib
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postroom.config import Config, load_config
from postroom.dns.live import LiveResolver
from postroom.mail.utf7 import decode_utf7, encode_utf7
from postroom.mailauth.dkim import DkimVerdict, sign_message, verify_dkim
from postroom.store import open_store
from postroom.store.changes import ChangeFeed
from tests.dms_import.dms_folder import (
    ALICE,
    ALICE_PW,
    BOB,
    BOB_PW,
    INBOX_UIDVALIDITY,
    DmsFolder,
    build_dms,
    dkim_txt_value,
    message,
)
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread, local_serve_env, write_env

Snapshot = dict[str, Any]


@pytest.fixture(scope="module")
def dms(tmp_path_factory: pytest.TempPathFactory) -> DmsFolder:
    return build_dms(tmp_path_factory.mktemp("docker-data") / "dms")


@pytest.fixture(scope="module")
def dns_server(dms: DmsFolder) -> Iterator[DnsTestServer]:
    """The zone as the user published it for docker-mailserver (record from mail.txt)."""
    with DnsTestServer("$TTL 60\nexample.com. A 192.0.2.1\n") as server:
        server.add("mail._domainkey.example.com", "TXT", dkim_txt_value(dms.dkim_pem))
        yield server


def make_env(folder: Path, server_cert: tuple[Path, Path], dns_server: DnsTestServer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_env(folder / "postroom.env", local_serve_env(
        folder / "data", server_cert, ENABLE_POP3=1, DNS_NAMESERVERS=dns_server.address))


@dataclass(frozen=True)
class Imported:
    env_file: Path
    dry_run_output: str  # `--dry-run` into a DATA_DIR that did not exist yet
    output: str  # the real import that followed


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, server_cert: tuple[Path, Path],
             dns_server: DnsTestServer, dms: DmsFolder) -> Imported:
    """One import shared by the module's tests (each import is a 1.5 s subprocess)."""
    env_file = make_env(tmp_path_factory.mktemp("postroom"), server_cert, dns_server)
    dry_run = import_dms(env_file, dms.root, "--dry-run")
    assert not config_of(env_file).data_dir.exists()  # not even an empty database
    return Imported(env_file, dry_run.stdout, import_dms(env_file, dms.root).stdout)


def postroom(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                            capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def import_dms(env_file: Path, source: Path, *options: str) -> subprocess.CompletedProcess[str]:
    result = postroom(env_file, "import", "docker-mailserver", str(source), *options)
    assert result.returncode == 0, result.stderr
    return result


def counts(output: str) -> dict[str, tuple[int, int]]:
    """The summary table (tab-separated when piped): item → (new, already present)."""
    rows = [line.split("\t") for line in output.splitlines() if line.count("\t") == 2]
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def config_of(env_file: Path) -> Config:
    return load_config(env_file).config


def snapshot(env_file: Path) -> Snapshot:
    """Everything an import can change: store rows, blob bytes, DKIM files."""

    async def read() -> Snapshot:
        config = config_of(env_file)
        store, blobs = await open_store(config, ChangeFeed())
        try:
            state: Snapshot = {"aliases": await store.list_aliases(), "mailboxes": {},
                               "modseq": {}}
            for summary in await store.list_accounts():
                account = await store.get_account(summary.address)
                assert account is not None
                state[summary.address] = account.password_hash
                for box in await store.list_mailboxes(account.id):
                    rows = await store.list_messages(box.id)
                    state["mailboxes"][(summary.address, box.name)] = (
                        box.uidvalidity, box.uidnext, box.special_use, box.is_subscribed,
                        [(m.uid, m.flags, m.internal_date, m.size, await blobs.read(m.blob_id))
                         for m in rows])
                    state["modseq"][(summary.address, box.name)] = box.highest_modseq
            dkim = config.data_dir / "dkim"
            state["dkim"] = {p.relative_to(dkim): p.read_bytes() for p in dkim.rglob("*")
                             if p.is_file()}
            blob_root = config.data_dir / "blobs"
            state["blob files"] = sorted(p.name for p in blob_root.rglob("*") if p.is_file())
            return state
        finally:
            await store.close()

    return asyncio.run(read())


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\n", b"\r\n")


def test_import_brings_everything_over(imported: Imported, dms: DmsFolder,
                                       client_tls: ssl.SSLContext) -> None:
    env_file = imported.env_file
    assert counts(imported.output) == {"accounts": (2, 0), "aliases": (4, 0), "keys": (1, 0),
                                     "folders": (3, 6), "messages": (12, 0),
                                     "sieve_scripts": (0, 0)}
    state = snapshot(env_file)
    assert state[ALICE].startswith("{SHA512-CRYPT}$6$Ab3dE6gH$")  # kept as is
    assert {(a.source, a.target) for a in state["aliases"]} == {
        ("info@example.com", ALICE), ("info@example.com", BOB),
        ("postmaster@example.com", ALICE), ("@example.org", ALICE)}
    boxes = {name: box for (owner, name), box in state["mailboxes"].items() if owner == ALICE}
    assert sorted(boxes) == ["Archive", "Archive/2024", "Drafts", "INBOX", "Junk", "Sent",
                             "Trash", "Été"]
    # Every message with its UID, flags and internal date (the file's mtime).
    for name, (uidvalidity, uidnext) in dms.alice.uidlists.items():
        box_uidvalidity, box_uidnext, _, _, rows = boxes[name]
        assert box_uidvalidity == uidvalidity
        expected = sorted((m.uid or uidnext, m.flags, m.mtime, message(m.subject))
                          for m in dms.alice.mails if m.folder == name)
        found = [(uid, flags, int(when.timestamp()), raw) for uid, flags, when, _, raw in rows]
        assert found == [(uid, flags, mtime, crlf(raw)) for uid, flags, mtime, raw in expected]
        assert box_uidnext == max(uid for uid, *_ in expected) + 1
    assert boxes["INBOX"][0] == INBOX_UIDVALIDITY and boxes["INBOX"][1] == 8
    assert [row[3] for row in boxes["INBOX"][4]] == [len(row[4]) for row in boxes["INBOX"][4]]
    assert boxes["Archive"][2] == "\\Archive" and boxes["Archive"][4] == []
    assert boxes["Archive/2024"][3] and not boxes["Été"][3]  # as the subscriptions file says
    bob_inbox = state["mailboxes"][(BOB, "INBOX")][4]
    assert [(uid, flags) for uid, flags, *_ in bob_inbox] == [(1, set()), (2, {"\\Seen"})]
    assert (state["dkim"][Path("example.com/mail.private")] == dms.dkim_pem)

    with AppThread(config_of(env_file)) as server:
        # The users log in with the passwords they had on docker-mailserver.
        alice_mail = pop3_messages(server.port("pop3s"), client_tls, ALICE, ALICE_PW)
        assert alice_mail == [crlf(message(s)) for s in
                              ("first", "answered", "flagged unread", "arrived later")]
        assert len(pop3_messages(server.port("pop3s"), client_tls, BOB, BOB_PW)) == 2
        with pytest.raises(poplib.error_proto):
            pop3_messages(server.port("pop3s"), client_tls, ALICE, "wrong")
        # An IMAP client finds every folder, UIDVALIDITY, UID, flag and internal date.
        listed, view = imap_view(server.port("imaps"), client_tls, sorted(boxes))
        assert listed == set(boxes)
        for name, (uidvalidity, _, _, _, rows) in boxes.items():
            assert view[name] == (uidvalidity, [(uid, flags, when.replace(microsecond=0))
                                                for uid, flags, when, _, _ in rows]), name
        # Aliases deliver: several targets, and a catch-all.
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as smtp:
            smtp.sendmail("carol@example.net", ["info@example.com"],
                          crlf(message("via alias", to="info@example.com")))
            smtp.sendmail("carol@example.net", ["anyone@example.org"],
                          crlf(message("via catch-all", to="anyone@example.org")))
        assert len(server.inbox_messages(ALICE)) == 6
        assert server.inbox_messages(BOB)[-1].endswith(b"Hello.\r\n")
        assert len(server.inbox_messages(BOB)) == 3
    # The first login upgraded the imported hash to argon2id.
    assert snapshot(env_file)[ALICE].startswith("{ARGON2ID}")


_FETCH = re.compile(rb'UID (\d+) FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)"')


def imap_view(port: int, tls: ssl.SSLContext, names: list[str]
              ) -> tuple[set[str], dict[str, tuple[int, list[tuple[int, set[str], dt.datetime]]]]]:
    """(LISTed names, {name: (UIDVALIDITY, [(UID, FLAGS, INTERNALDATE)])}) over IMAPS."""
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls, timeout=10)
    try:
        client.login(ALICE, ALICE_PW)
        _, listing = client.list()
        listed = {decode_utf7(line.decode().rsplit(' "/" ', 1)[1].strip('"'))
                  for line in listing if isinstance(line, bytes)}
        view = {}
        for name in names:
            status, _ = client.select(f'"{encode_utf7(name)}"', readonly=True)
            assert status == "OK", name
            uidvalidity = int(client.response("UIDVALIDITY")[1][0])
            _, data = client.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE)")
            found = [_FETCH.search(item) for item in data if isinstance(item, bytes)]
            view[name] = (uidvalidity, [
                # \Recent is the session's, not the message's (EXAMINE shows it, RFC 3501
                # §6.3.2): compared without it.
                (int(m.group(1)), set(m.group(2).decode().split()) - {"\\Recent"},
                 dt.datetime.strptime(m.group(3).decode(), "%d-%b-%Y %H:%M:%S %z"))
                for m in found if m])
        return listed, view
    finally:
        client.logout()


def pop3_messages(port: int, tls: ssl.SSLContext, user: str, password: str) -> list[bytes]:
    pop = poplib.POP3_SSL("127.0.0.1", port, context=tls, timeout=10)
    try:
        pop.user(user)
        pop.pass_(password)
        count, _ = pop.stat()
        return [b"\r\n".join(pop.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
    finally:
        pop.close()


def test_reimport_and_dry_runs_change_nothing(imported: Imported, dms: DmsFolder) -> None:
    # The dry run into an empty DATA_DIR reported exactly what the real import then did.
    assert "dry run: nothing was changed" in imported.dry_run_output
    assert counts(imported.dry_run_output) == counts(imported.output)
    assert skipped_lines(imported.dry_run_output) == skipped_lines(imported.output)
    before = snapshot(imported.env_file)
    again = import_dms(imported.env_file, dms.root)
    assert counts(again.stdout) == {"accounts": (0, 2), "aliases": (0, 4), "keys": (0, 1),
                                    "folders": (0, 9), "messages": (0, 12),
                                    "sieve_scripts": (0, 0)}
    dry_again = import_dms(imported.env_file, dms.root, "--dry-run")
    assert counts(dry_again.stdout) == counts(again.stdout)
    assert snapshot(imported.env_file) == before


def skipped_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  ")]


def test_bad_lines_and_skips_are_reported(imported: Imported) -> None:
    lines = skipped_lines(imported.output)
    expected_prefixes = [
        "config/postfix-accounts.cf:5: expected user@domain|{SCHEME}hash",
        "config/postfix-accounts.cf:6: password scheme {PLAIN} is not supported",
        "config/postfix-virtual.cf:5: alice@example.com -> itself: not needed",
        "config/postfix-virtual.cf:6: expected `alias target",
        "config/postfix-regexp.cf: regular-expression aliases are not imported",
        "mail-data/example.com/alice/tmp: 1 unfinished deliveries are not imported",
        "mail-data/example.com/ghost: no account for this Maildir",
    ]
    for prefix in expected_prefixes:
        assert any(line.startswith(prefix) for line in lines), (prefix, lines)


def test_not_a_docker_mailserver_folder(imported: Imported, tmp_path: Path) -> None:
    result = postroom(imported.env_file, "import", "docker-mailserver",
                      str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "is not a docker-mailserver data folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_imported_dkim_key_signs_for_the_published_record(
        imported: Imported, dms: DmsFolder, dns_server: DnsTestServer) -> None:
    keys_dir = config_of(imported.env_file).data_dir / "dkim"
    key = (keys_dir / "example.com" / "mail.private").read_bytes()
    raw = crlf(message("signed", sender="Alice <alice@example.com>", to="x@example.net"))
    signed = await sign_message(raw, "example.com", "mail", key) + raw
    results = await verify_dkim(LiveResolver([dns_server.nameserver], timeout=2.0), signed)
    assert [(r.result, r.domain, r.selector) for r in results] == [
        (DkimVerdict.PASS, "example.com", "mail")]


def test_export_then_import_round_trips(imported: Imported, dms: DmsFolder, tmp_path: Path,
                                        server_cert: tuple[Path, Path],
                                        dns_server: DnsTestServer) -> None:
    env_file = imported.env_file
    exported = tmp_path / "export" / "alice"
    result = postroom(env_file, "export", "maildir", ALICE, str(exported))
    assert result.returncode == 0, result.stderr
    alice_boxes = {k: v for k, v in snapshot(env_file)["mailboxes"].items() if k[0] == ALICE}
    total = sum(len(box[4]) for box in alice_boxes.values())
    assert f"exported 8 folders, {total} messages" in result.stdout
    refused = postroom(env_file, "export", "maildir", ALICE, str(exported))
    assert refused.returncode == 1 and "not an empty directory" in refused.stderr
    assert (exported / ".Archive.2024" / "maildirfolder").is_file()
    assert (exported / ".&AMk-t&AOk-" / "dovecot-uidlist").is_file()
    # A fresh docker-mailserver-shaped folder holding only the export, into a fresh DATA_DIR.
    second_source = tmp_path / "second-dms"
    shutil.copytree(dms.root / "config", second_source / "config")
    shutil.copytree(exported, second_source / "mail-data" / "example.com" / "alice")
    second_env = make_env(tmp_path / "second", server_cert, dns_server)
    import_dms(second_env, second_source)
    copy = snapshot(second_env)
    assert {k: v for k, v in copy["mailboxes"].items() if k[0] == ALICE} == alice_boxes


def test_export_of_an_unknown_account(imported: Imported, tmp_path: Path) -> None:
    result = postroom(imported.env_file, "export", "maildir", "nobody@example.com",
                      str(tmp_path / "x"))
    assert result.returncode == 1 and "no account nobody@example.com" in result.stderr


def test_internal_dates_are_utc_aware(imported: Imported) -> None:
    rows = snapshot(imported.env_file)["mailboxes"][(ALICE, "INBOX")][4]
    assert all(when.tzinfo is not None and when.utcoffset() == dt.timedelta(0)
               for _, _, when, _, _ in rows)
