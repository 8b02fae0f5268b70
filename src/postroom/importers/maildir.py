"""Dovecot's Maildir++ format, both ways: names, flags, dovecot-uidlist, dovecot-keywords.

Owns reading and writing a Maildir as Dovecot keeps it
(cr.yp.to/proto/maildir.html plus Dovecot's extensions, doc.dovecot.org "Maildir Mailbox
Format"): file names `<base>:2,<info letters>`; folder directories `.A.B` whose levels are
modified UTF-7 (RFC 3501 §5.1.3); `dovecot-uidlist` (`3 V<uidvalidity> N<uidnext>
G<guid>` then `<uid> [ext…] :<base>`); `dovecot-keywords` (`<index> <keyword>`, index
0..25 being info letters a..z); the `subscriptions` file; LF line ends on disk.
importers/dms_import.py reads with it, importers/maildir_export.py writes with it. Reading a
tree (`read_maildir`) is blocking file I/O: callers on the event loop use a thread.

Invariants: every parser here accepts any text and raises only BadSyntax; each renderer's
output parses back to what was rendered (tests/dms_import/test_maildir_format.py); a
problem inside a tree is passed to the caller's `note(where, reason)` and never stops it.
A folder whose name goes past the mailbox-name limits (issue 25: MAX_MAILBOX_NAME_LENGTH
UTF-8 bytes, MAX_MAILBOX_DEPTH levels) is noted and left out, its messages too.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postroom.accounts.mailboxlimits import MailboxLimits, name_problem
from postroom.errors import BadSyntax
from postroom.mail.utf7 import Utf7Error, decode_utf7, encode_utf7
from postroom.store.api import Mailbox, MessageRow

INBOX = "INBOX"
SEPARATOR = "/"
# Maildir info letters (cr.yp.to/proto/maildir.html; Dovecot's Maildir docs) → IMAP flags.
INFO_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
              "T": "\\Deleted"}
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # dovecot-keywords index 0..25
_LETTER_FOR_FLAG = {flag: letter for letter, flag in INFO_FLAGS.items()}
_BARE_LF = re.compile(rb"(?<!\r)\n")
_NUMBER = re.compile(r"[0-9]{1,12}")
MAX_UID = 2**32 - 1  # RFC 9051 §9: uniqueid and UIDVALIDITY are nz-number, 32 bits
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@dataclass(frozen=True, slots=True)
class UidList:
    uidvalidity: int
    uidnext: int
    uids: dict[str, int]  # Maildir base name → UID


# -- reading ------------------------------------------------------------------------------

def _is_number(text: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return bool(_NUMBER.fullmatch(text))


def split_maildir_name(filename: str) -> tuple[str, str]:
    """(base, info letters): `123.M1P2.host,S=10:2,RS` → (`123.M1P2.host,S=10`, `RS`)."""
    base, sep, info = filename.partition(":2,")
    return base, info if sep else ""


def parse_info_flags(info: str, keywords: dict[str, str]) -> tuple[frozenset[str], str]:
    """IMAP flags for `:2,` info letters, and the letters that mean nothing known."""
    flags, unknown = set(), []
    for letter in info:
        if letter in INFO_FLAGS:
            flags.add(INFO_FLAGS[letter])
        elif letter in keywords:
            flags.add(keywords[letter])
        elif letter != "P":  # P (passed/forwarded) has no IMAP flag; Dovecot ignores it too
            unknown.append(letter)
    return frozenset(flags), "".join(unknown)


def parse_keywords(text: str) -> dict[str, str]:
    """dovecot-keywords: `<index> <keyword>` lines; index 0..25 is info letter a..z."""
    keywords = {}
    for line in text.splitlines():
        index, _, keyword = line.strip().partition(" ")
        if _is_number(index) and int(index) < len(KEYWORD_LETTERS) and keyword.strip():
            keywords[KEYWORD_LETTERS[int(index)]] = keyword.strip()
    return keywords


def parse_uidlist(text: str) -> UidList:
    """dovecot-uidlist, version 3 (`3 V<uidvalidity> N<nextuid> G<guid>`, then
    `<uid> [ext…] :<base>`) or version 1 (`1 <uidvalidity> <nextuid>`, then `<uid> <name>`).
    Raises BadSyntax for a header it cannot read."""
    lines = text.splitlines()
    header = lines[0].split() if lines else []
    if len(header) >= 3 and header[0] == "1" and _is_number(header[1]) and _is_number(header[2]):
        uidvalidity, uidnext = int(header[1]), int(header[2])
    elif header and header[0] == "3":
        fields = {item[0]: item[1:] for item in header[1:] if item}
        if not (_is_number(fields.get("V", "")) and _is_number(fields.get("N", ""))):
            raise BadSyntax("dovecot-uidlist header lacks V<uidvalidity> or N<nextuid>")
        uidvalidity, uidnext = int(fields["V"]), int(fields["N"])
    else:
        raise BadSyntax("unknown dovecot-uidlist version")
    if not 0 < uidvalidity <= MAX_UID or uidnext > MAX_UID + 1:
        raise BadSyntax("dovecot-uidlist UIDVALIDITY or UIDNEXT out of range")
    uids: dict[str, int] = {}
    for line in lines[1:]:
        uid, _, rest = line.partition(" ")
        name = rest.split(":", 1)[1] if ":" in rest and header[0] == "3" else rest.strip()
        if _is_number(uid) and 0 < int(uid) <= MAX_UID and name.strip():
            uids[split_maildir_name(name.strip())[0]] = int(uid)
    return UidList(uidvalidity, max(uidnext, max(uids.values(), default=0) + 1), uids)


def parse_folder_dir(dirname: str) -> str:
    """Maildir++ `.A.B` → `A/B`; each level is modified UTF-7 (RFC 3501 §5.1.3) on disk."""
    parts = dirname.removeprefix(".").split(".")
    if not all(parts):
        raise BadSyntax(f"empty level in Maildir++ folder name {dirname!r}")
    names = []
    for part in parts:
        try:
            names.append(decode_utf7(part))
        except Utf7Error:
            if part.isascii():
                raise
            names.append(part)  # already UTF-8 on disk (Dovecot's UTF-8 layout option)
    return SEPARATOR.join(names)


def parse_subscriptions(text: str) -> set[str]:
    """Dovecot's `subscriptions` file (version 2: `V\\t2` header, levels tab-separated;
    version 1: one name per line, levels dot-separated)."""
    lines = text.splitlines()
    is_v2 = bool(lines) and lines[0].startswith("V\t")
    names = set()
    for line in lines[1:] if is_v2 else lines:
        if line.strip():
            levels = line.split("\t") if is_v2 else line.strip().split(".")
            try:
                names.add(SEPARATOR.join(decode_utf7(level) for level in levels))
            except Utf7Error:
                names.add(SEPARATOR.join(levels))
    return names


def normalise_line_ends(raw: bytes) -> bytes:
    return _BARE_LF.sub(b"\r\n", raw)


# -- reading a tree -----------------------------------------------------------------------

Note = Callable[[str, str], None]  # (where, reason): something skipped


@dataclass(frozen=True, slots=True)
class MaildirMessage:
    path: Path
    base: str
    flags: frozenset[str]
    internal_date: dt.datetime


@dataclass(frozen=True, slots=True)
class MaildirFolder:
    name: str  # postroom name, "/" separated
    where: str
    messages: tuple[MaildirMessage, ...] = ()
    uidlist: UidList | None = None


def internal_date(path: Path, base: str) -> dt.datetime:
    """The mtime (to the microsecond, so an export round-trips), else the name's time."""
    mtime_ns = path.stat().st_mtime_ns
    if mtime_ns <= 0:
        leading = base.split(".", 1)[0]
        mtime_ns = int(leading) * 10**9 if _is_number(leading) else 0
    seconds = dt.datetime.fromtimestamp(mtime_ns // 10**9, dt.UTC)
    return seconds + dt.timedelta(microseconds=mtime_ns // 1000 % 10**6)


def scan_folder(path: Path, name: str, where: str, note: Note) -> MaildirFolder:
    keywords_file, uidlist_file = path / "dovecot-keywords", path / "dovecot-uidlist"
    keywords = parse_keywords(keywords_file.read_text("utf-8", "replace")) \
        if keywords_file.is_file() else {}
    uidlist = None
    if uidlist_file.is_file():
        try:
            uidlist = parse_uidlist(uidlist_file.read_text("utf-8", "replace"))
        except BadSyntax as error:
            note(f"{where}/dovecot-uidlist:1", f"{error}; UIDs are not kept")
    messages = []
    for sub in ("cur", "new"):
        for entry in sorted((path / sub).iterdir()) if (path / sub).is_dir() else ():
            if entry.name.startswith(".") or not entry.is_file():
                continue
            base, info = split_maildir_name(entry.name)
            flags, unknown = parse_info_flags(info, keywords)
            if unknown:
                note(f"{where}/{sub}/{entry.name}",
                            f"flag letters {unknown!r} not in dovecot-keywords; dropped")
            messages.append(MaildirMessage(entry, base, flags, internal_date(entry, base)))
    tmp = path / "tmp"
    if tmp.is_dir() and (pending := sum(1 for e in tmp.iterdir() if e.is_file())):
        note(f"{where}/tmp",  # noqa: S108 - the Maildir's own tmp/, not a temp file
                    f"{pending} unfinished deliveries are not imported")
    return MaildirFolder(name, where, tuple(messages), uidlist)


def scan_maildir(root: Path, where: str, note: Note,
                 limits: MailboxLimits | None = None) -> list[MaildirFolder]:
    """INBOX (the root) and every `.A.B` folder within `limits`, plus any missing parent
    levels (shorter and shallower than a folder within the limits, so within them too)."""
    limits = limits or MailboxLimits()
    folders = {INBOX: scan_folder(root, INBOX, where, note)}
    for entry in sorted(root.iterdir()):
        if not (entry.name.startswith(".") and entry.is_dir()) or entry.name in {".", ".."}:
            continue
        try:
            name = parse_folder_dir(entry.name)
        except BadSyntax as error:
            note(f"{where}/{entry.name}", f"folder not imported: {error}")
            continue
        if name.upper() == INBOX or name.upper().startswith(INBOX + SEPARATOR):
            note(f"{where}/{entry.name}", "a folder named INBOX under INBOX")
            continue
        if (problem := name_problem(name, limits)) is not None:
            note(f"{where}/{entry.name}", f"folder not imported, nor its messages: {problem}")
            continue
        folders[name] = scan_folder(entry, name, f"{where}/{entry.name}", note)
    for name in list(folders):
        levels = name.split(SEPARATOR)
        for depth in range(1, len(levels)):
            parent = SEPARATOR.join(levels[:depth])
            folders.setdefault(parent, MaildirFolder(parent, f"{where} (parent of {name})"))
    if (root / "home" / ".dovecot.sieve").exists():
        note(f"{where}/home/.dovecot.sieve", "Sieve scripts are not imported yet")
    return [folders[name] for name in sorted(folders, key=lambda n: (n != INBOX, n))]


def read_maildir(root: Path, where: str, note: Note, limits: MailboxLimits | None = None
                 ) -> tuple[list[MaildirFolder], set[str] | None] | None:
    """(folders, subscribed names or None when there is no subscriptions file); None when
    there is no Maildir at `root` or it cannot be read (noted). Folders past `limits`
    (default: MailboxLimits()) are noted and left out."""
    if not root.is_dir():
        return None
    subscriptions = root / "subscriptions"
    try:
        subscribed = parse_subscriptions(subscriptions.read_text("utf-8", "replace")) \
            if subscriptions.is_file() else None
        return scan_maildir(root, where, note, limits), subscribed
    except OSError as error:  # e.g. Dovecot's 0700 folders owned by uid 5000, read as another user
        note(where, f"Maildir not imported: {error.strerror or error}: {error.filename or ''}")
        return None


# -- writing ------------------------------------------------------------------------------

def render_folder_dir(name: str) -> str:
    """`A/B` → `.A.B` ("" for INBOX); raises BadSyntax for a level holding a dot."""
    if name == INBOX:
        return ""
    levels = name.split(SEPARATOR)
    if any("." in level for level in levels):
        raise BadSyntax(f"{name!r} has a '.', which Maildir++ uses as its separator")
    return "." + ".".join(encode_utf7(level) for level in levels)


def render_info(flags: frozenset[str], letters: dict[str, str]) -> str:
    """`:2,` plus the flag letters in ASCII order (the Maildir spec asks for it)."""
    found = [_LETTER_FOR_FLAG[f] for f in flags if f in _LETTER_FOR_FLAG]
    found += [letters[f] for f in flags if f in letters]
    return ":2," + "".join(sorted(found))


def keyword_letters(messages: list[MessageRow]) -> tuple[dict[str, str], list[str]]:
    """({keyword: letter}, keywords left over past the 26 letters Maildir has)."""
    keywords = sorted({f for m in messages for f in m.flags if not f.startswith("\\")})
    fitting = keywords[: len(KEYWORD_LETTERS)]
    return dict(zip(fitting, KEYWORD_LETTERS, strict=False)), keywords[len(fitting):]


def render_keywords(letters: dict[str, str]) -> str:
    by_index = sorted((KEYWORD_LETTERS.index(letter), kw) for kw, letter in letters.items())
    return "".join(f"{index} {keyword}\n" for index, keyword in by_index)


def render_uidlist(mailbox: Mailbox, entries: list[tuple[int, str]]) -> str:
    """Version 3 header `3 V<uidvalidity> N<uidnext> G<guid>`, then `<uid> :<base>`."""
    lines = [f"3 V{mailbox.uidvalidity} N{mailbox.uidnext} G{secrets.token_hex(16)}"]
    lines += [f"{uid} :{base}" for uid, base in entries]
    return "\n".join(lines) + "\n"


def render_subscriptions(names: list[str]) -> str:
    """Dovecot's version-2 subscriptions file: levels separated by tabs."""
    lines = ["\t".join(encode_utf7(level) for level in name.split(SEPARATOR))
             for name in names]
    return "V\t2\n\n" + "".join(f"{line}\n" for line in lines)


def maildir_data(raw: bytes) -> bytes:
    """LF line ends when every line end is CRLF; otherwise the bytes unchanged."""
    return raw if _BARE_CR_OR_LF.search(raw) else raw.replace(b"\r\n", b"\n")


def maildir_base(message: MessageRow, data: bytes, hostname: str) -> str:
    # Maildir unique names forbid "/" and ":" in the host part (cr.yp.to/proto/maildir.html).
    host = hostname.replace("/", "\\057").replace(":", "\\072")
    when = message.internal_date
    return (f"{int(when.timestamp())}.M{when.microsecond}P{os.getpid()}Q{message.uid}.{host}"
            f",S={len(data)},W={message.size}")
