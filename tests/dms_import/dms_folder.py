"""A realistic docker-mailserver data folder (`docker-data/dms`) built in a test's tmp_path.

Everything foreign is made by the tools docker-mailserver and Dovecot use, not by
postroom: password hashes by OpenSSL's SHA512-CRYPT (`openssl passwd -6`, what
`doveadm pw -s SHA512-CRYPT` writes), the DKIM key by `openssl genrsa -traditional`
(PKCS#1, as opendkim-genkey writes it), its DNS record from `openssl rsa -pubout`.
Maildir files are named and laid out as Dovecot writes them: LF line ends, S=/W= sizes,
`:2,` info, dovecot-uidlist v3, dovecot-keywords, Maildir++ `.A.B` folders.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ALICE, ALICE_PW = "alice@example.com", "Wonderland-1865"
BOB, BOB_PW = "bob@example.com", "builder bob"
INBOX_UIDVALIDITY = 1699999999
HOST = "mailhost"


def sha512_crypt(password: str, salt: str) -> str:
    result = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, password],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def rsa_key_pkcs1() -> bytes:
    result = subprocess.run(["openssl", "genrsa", "-traditional", "2048"],
                            capture_output=True, check=True)
    return result.stdout


def dkim_txt_value(private_pem: bytes) -> str:
    """The p= value as opendkim-genkey publishes it, derived by OpenSSL."""
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=private_pem,
                         capture_output=True, check=True).stdout
    return f"v=DKIM1; h=sha256; k=rsa; p={base64.b64encode(der).decode()}"


def message(subject: str, sender: str = "Carol <carol@example.net>",
            to: str = ALICE, body: str = "Hello.") -> bytes:
    """A message as Dovecot stores it: LF line ends."""
    return (f"Return-Path: <carol@example.net>\nFrom: {sender}\nTo: {to}\n"
            f"Subject: {subject}\nDate: Tue, 14 Nov 2023 22:13:20 +0000\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.net>\nMIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\n\n{body}\n").encode()


@dataclass(frozen=True)
class Mail:
    """One Maildir message: where it lives and what postroom must make of it."""

    folder: str  # postroom name
    subject: str
    flags: frozenset[str]
    info: str  # the `:2,` letters ("" for new/)
    mtime: int
    uid: int | None  # in dovecot-uidlist, else None


@dataclass
class Maildir:
    root: Path
    uidlists: dict[str, tuple[int, int]] = field(default_factory=dict)  # folder → (V, N)
    mails: list[Mail] = field(default_factory=list)
    counter: int = 0

    def folder_path(self, folder: str, dirname: str) -> Path:
        path = self.root if folder == "INBOX" else self.root / dirname
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if folder != "INBOX":
            (path / "maildirfolder").touch()
        return path

    def add(self, folder: str, dirname: str, mail: Mail, raw: bytes) -> str:
        path = self.folder_path(folder, dirname)
        self.counter += 1
        vsize = len(raw) + raw.count(b"\n")  # Dovecot's W=: the size with CRLF line ends
        base = f"{mail.mtime}.M{100000 + self.counter}P4567.{HOST},S={len(raw)},W={vsize}"
        name = base + (f":2,{mail.info}" if mail.uid is not None or mail.info else "")
        target = path / ("cur" if ":2," in name else "new") / name
        target.write_bytes(raw)
        os.utime(target, (mail.mtime, mail.mtime))
        self.mails.append(mail)
        return base


def write_uidlist(path: Path, uidvalidity: int, uidnext: int, entries: list[tuple[int, str]]
                  ) -> None:
    lines = [f"3 V{uidvalidity} N{uidnext} G3085f01b7f11094c501100008c4a11c1"]
    lines += [f"{uid} W{1000 + uid} :{base}" for uid, base in entries]
    (path / "dovecot-uidlist").write_text("\n".join(lines) + "\n")


@dataclass
class DmsFolder:
    root: Path
    dkim_pem: bytes
    alice: Maildir
    bob: Maildir


def build_alice(root: Path) -> Maildir:
    maildir = Maildir(root)
    maildir.folder_path("INBOX", "")
    (root / "dovecot-keywords").write_text("0 $Forwarded\n1 Work\n")
    inbox = [
        Mail("INBOX", "first", frozenset({"\\Seen"}), "S", 1700000000, 1),
        Mail("INBOX", "answered", frozenset({"\\Answered", "\\Seen", "$Forwarded", "Work"}),
             "RSab", 1700000100, 2),
        Mail("INBOX", "flagged unread", frozenset({"\\Flagged"}), "F", 1700000200, 5),
        Mail("INBOX", "arrived later", frozenset(), "", 1700000300, None),  # not yet listed
    ]
    entries = [(m.uid, maildir.add("INBOX", "", m, message(m.subject)))
               for m in inbox if m.uid is not None]
    maildir.add("INBOX", "", inbox[3], message(inbox[3].subject))
    write_uidlist(root, INBOX_UIDVALIDITY, 7, entries)
    maildir.uidlists["INBOX"] = (INBOX_UIDVALIDITY, 7)
    folders = [
        ("Sent", ".Sent", 1700000001, [Mail("Sent", "my reply", frozenset({"\\Seen"}), "S",
                                            1700000110, 1)]),
        ("Drafts", ".Drafts", 1700000002, [Mail("Drafts", "unfinished",
                                                frozenset({"\\Draft", "\\Seen"}), "DS",
                                                1700000120, 3)]),
        ("Trash", ".Trash", 1700000003, [Mail("Trash", "deleted", frozenset(
            {"\\Deleted", "\\Seen"}), "ST", 1700000130, 9)]),
        ("Archive/2024", ".Archive.2024", 1700000004, [
            Mail("Archive/2024", "old one", frozenset({"\\Seen"}), "S", 1690000000, 1),
            Mail("Archive/2024", "old two", frozenset({"\\Seen", "\\Flagged"}), "FS",
                 1690000100, 2)]),
        ("Été", ".&AMk-t&AOk-", 1700000005, [Mail("Été", "accents", frozenset(), "",
                                                  1700000140, 1)]),
    ]
    for name, dirname, uidvalidity, mails in folders:
        path = maildir.folder_path(name, dirname)
        entries = [(m.uid, maildir.add(name, dirname, m, message(m.subject)))
                   for m in mails if m.uid is not None]
        uidnext = max(uid for uid, _ in entries) + 1
        write_uidlist(path, uidvalidity, uidnext, entries)
        maildir.uidlists[name] = (uidvalidity, uidnext)
    (root / ".Junk" / "cur").mkdir(parents=True)  # an empty folder
    for sub in ("new", "tmp"):
        (root / ".Junk" / sub).mkdir()
    (root / "tmp" / "1700000999.M1P9.mailhost").write_bytes(b"half a delivery")
    (root / "subscriptions").write_text("V\t2\n\nSent\nDrafts\nTrash\nJunk\nArchive\t2024\n")
    return maildir


def build_bob(root: Path) -> Maildir:
    """No dovecot-uidlist: postroom gives UIDs itself."""
    maildir = Maildir(root)
    for index, subject in enumerate(("to bob one", "to bob two")):
        mail = Mail("INBOX", subject, frozenset({"\\Seen"}) if index else frozenset(),
                    "S" if index else "", 1700001000 + index, None)
        maildir.add("INBOX", "", mail, message(subject, to=BOB))
    return maildir


def build_dms(root: Path) -> DmsFolder:
    config = root / "config"
    config.mkdir(parents=True)
    (config / "postfix-accounts.cf").write_text(
        "# accounts (setup email add)\n"
        f"{ALICE}|{{SHA512-CRYPT}}{sha512_crypt(ALICE_PW, 'Ab3dE6gH')}\n"
        f"{BOB}|{{SHA512-CRYPT}}{sha512_crypt(BOB_PW, 'xYz09876')}\n"
        "\n"
        "broken-line-without-a-hash\n"
        "carol@example.com|{PLAIN}secret\n")
    (config / "postfix-virtual.cf").write_text(
        "# aliases (setup alias add)\n"
        f"info@example.com {ALICE},{BOB}\n"
        f"postmaster@example.com {ALICE}\n"
        f"@example.org {ALICE}\n"
        f"{ALICE} {ALICE}\n"
        "nonsense\n")
    (config / "postfix-regexp.cf").write_text("/^sales-.*@example\\.com$/ alice@example.com\n")
    keys = config / "opendkim" / "keys" / "example.com"
    keys.mkdir(parents=True)
    pem = rsa_key_pkcs1()
    (keys / "mail.private").write_bytes(pem)
    (keys / "mail.txt").write_text(f'mail._domainkey IN TXT ( "{dkim_txt_value(pem)}" )\n')
    (config / "opendkim" / "KeyTable").write_text(
        "mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/example.com/"
        "mail.private\n")
    (config / "opendkim" / "SigningTable").write_text("*@example.com mail._domainkey.example.com\n")
    mail_data = root / "mail-data" / "example.com"
    alice = build_alice(mail_data / "alice")
    bob = build_bob(mail_data / "bob")
    (mail_data / "ghost" / "cur").mkdir(parents=True)
    return DmsFolder(root, pem, alice, bob)
