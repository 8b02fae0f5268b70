"""Import a docker-mailserver installation: accounts, aliases, DKIM keys and Maildirs.

Owns reading docker-mailserver's host folder (`docker-data/dms`: `config/` and
`mail-data/`, formats in reference/anchors.md §2.3) and Dovecot's Maildir++ layout, and
turning them into store rows. Nothing here prints: the CLI renders the `ImportReport`.

Decisions and invariants:
- Passwords: the `{SHA512-CRYPT}$6$…` hash is stored as is (accounts/passwords.py verifies
  it; the first login upgrades it to argon2id), so users keep their password.
- Idempotence: an already-imported message is recognised by its folder plus its Maildir
  *base name* (the file name before the `:2,` info), recorded by `Store.import_message`
  in the same transaction as the message. The base name is unique per message and stays
  the same when Dovecot moves a file from new/ to cur/ or changes its flags (only the info
  part changes), so it also holds for folders without a dovecot-uidlist, where content
  hashes would wrongly merge identical copies. A message expunged in postroom after an
  import keeps its record, so a later import does not bring it back. Accounts, aliases and
  keys already present are left untouched (passwords are never overwritten).
- UIDs: where a folder has a dovecot-uidlist and its postroom mailbox is empty (or has
  the uidlist's UIDVALIDITY already), the mailbox takes that UIDVALIDITY, every listed
  message keeps its UID, UIDNEXT rises to the uidlist's, and files Dovecot had not listed
  yet follow from there (RFC 9051 §2.3.1.1), so IMAP clients keep their caches. If the
  mailbox holds messages under another UIDVALIDITY, new UIDs are given and the summary
  says so.
- Internal dates come from the file's mtime (Dovecot's convention: it sets the mtime to
  the received date), else from the leading timestamp of the file name.
- Message bytes: Dovecot stores LF line ends; they become CRLF (RFC 9051 §2.3.4: sizes
  and FETCH data are those of the CRLF form), as Dovecot's W= virtual size assumes.
- Dry run: the same plan is computed against the store's current state and reported with
  the same counts, but nothing is written (no store row, blob or key file).
- Bad lines are reported with `file:line` and skipped; the import never stops for one.
- Limits (issue 25, `MailboxLimits`): a folder whose name is too long or too deep is
  reported and left out with its messages (importers/maildir.py); once an account holds
  MAX_MAILBOXES_PER_ACCOUNT mailboxes, each further folder is reported and left out, and
  once it holds as many subscriptions, further subscriptions are reported and not made.
- Sieve (issue 19, importers/dms_sieve.py): each user's scripts and the active one, and
  the global before/after scripts; a script that does not compile is reported, not kept.
- Quotas (issue 17, importers/dms_quotas.py): `config/dovecot-quotas.cf` lines become the
  accounts' own quotas; mail is imported whatever the quota, and an account left over it
  is reported.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from postroom.accounts.mailboxlimits import MailboxLimits
from postroom.errors import BadSyntax, Refused
from postroom.importers.dms_quotas import (
    QUOTAS_FILE,
    SourceQuota,
    import_quota,
    note_over_quota,
    parse_quotas,
)
from postroom.importers.dms_sieve import SieveLimits, import_account_sieve, import_global_sieve
from postroom.importers.maildir import (
    MaildirFolder,
    MaildirMessage,
    normalise_line_ends,
    read_maildir,
)
from postroom.mail.address import normalize_domain, parse_address, parse_alias_source
from postroom.mail.mimetree import message_meta
from postroom.mailauth.keys import key_algorithm, key_paths, write_key
from postroom.store.api import DEFAULT_MAILBOXES, Mailbox, NewMessage, SpecialUse, Store
from postroom.store.blobs import BlobStore

OPENDKIM_CONTAINER_DIR = "/etc/opendkim/keys/"

SPECIAL_FOLDERS = {"Archive": SpecialUse.ARCHIVE, **{
    name: use for name, use in DEFAULT_MAILBOXES if use is not None}}

# Dovecot password schemes accounts/passwords.py verifies, with the shape of each digest.
_HASH_SHAPES = {
    "SHA512-CRYPT": re.compile(r"\$6\$(rounds=\d+\$)?[./0-9A-Za-z]{0,16}\$[./0-9A-Za-z]{86}"),
    "SHA256-CRYPT": re.compile(r"\$5\$(rounds=\d+\$)?[./0-9A-Za-z]{0,16}\$[./0-9A-Za-z]{43}"),
    "BLF-CRYPT": re.compile(r"\$2[abxy]\$\d\d\$[./0-9A-Za-z]{53}"),
    "ARGON2ID": re.compile(r"\$argon2id\$\S+"),
    "ARGON2I": re.compile(r"\$argon2i\$\S+"),
}
_RSPAMD_KEY_NAME = re.compile(r"(?:rsa|ed25519)-\d+-([A-Za-z0-9_]+)-(.+)\.private\.txt")
_SCHEME = re.compile(r"\{([A-Z0-9-]+)\}(.*)", re.DOTALL)
_NOT_IMPORTED = {
    "postfix-regexp.cf": "regular-expression aliases are not imported; add them with "
                         "`postroom alias add`",
    "dovecot-masters.cf": "Dovecot master users are not supported",
    "postfix-relaymap.cf": "per-domain relay hosts are not imported",
}


# -- report --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Skipped:
    where: str  # "config/postfix-virtual.cf:7", "mail-data/example.com/bob/.Foo", …
    reason: str


@dataclass(slots=True)
class Tally:
    new: int = 0
    present: int = 0


@dataclass(slots=True)
class ImportReport:
    is_dry_run: bool
    accounts: Tally = field(default_factory=Tally)
    aliases: Tally = field(default_factory=Tally)
    keys: Tally = field(default_factory=Tally)
    folders: Tally = field(default_factory=Tally)
    messages: Tally = field(default_factory=Tally)
    quotas: Tally = field(default_factory=Tally)  # issue 17: dovecot-quotas.cf
    sieve_scripts: Tally = field(default_factory=Tally)  # issue 19: users' and global
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append(Skipped(where, reason))


# -- what the source folder holds -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SourceAccount:
    address: str
    password_hash: str
    where: str


@dataclass(frozen=True, slots=True)
class SourceAlias:
    source: str
    target: str
    where: str


@dataclass(frozen=True, slots=True)
class SourceKey:
    domain: str
    selector: str
    private_pem: bytes
    where: str


def iter_lines(path: Path, where: str) -> Iterator[tuple[str, str]]:
    """(`where:line`, stripped line) for every line that is not blank or a # comment."""
    text = path.read_bytes().decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield f"{where}:{number}", stripped


def parse_password_hash(text: str) -> str:
    """A Dovecot `{SCHEME}digest` postroom can verify; raises BadSyntax otherwise."""
    match = _SCHEME.fullmatch(text)
    if match is None:
        raise BadSyntax("the password hash has no {SCHEME} prefix")
    shape = _HASH_SHAPES.get(match.group(1))
    if shape is None:
        raise BadSyntax(f"password scheme {{{match.group(1)}}} is not supported")
    if not shape.fullmatch(match.group(2)):
        raise BadSyntax(f"malformed {{{match.group(1)}}} hash")
    return text


def parse_accounts(config_dir: Path, report: ImportReport) -> list[SourceAccount]:
    """`postfix-accounts.cf`: `user@domain|{SCHEME}hash[|userdb extra fields]`."""
    path = config_dir / "postfix-accounts.cf"
    accounts: dict[str, SourceAccount] = {}
    for where, line in iter_lines(path, "config/postfix-accounts.cf"):
        fields = line.split("|")
        try:
            if len(fields) < 2:
                raise BadSyntax("expected user@domain|{SCHEME}hash")
            address = str(parse_address(fields[0]))
            password_hash = parse_password_hash(fields[1].strip())
        except BadSyntax as error:
            report.skip(where, str(error))
            continue
        if address in accounts:
            report.skip(where, f"{address} appears again (first at {accounts[address].where})")
            continue
        if len(fields) > 2 and any(f.strip() for f in fields[2:]):
            report.skip(where, f"{address}: extra userdb fields ignored: {'|'.join(fields[2:])}")
        accounts[address] = SourceAccount(address, password_hash, where)
    return list(accounts.values())


def parse_aliases(config_dir: Path, report: ImportReport) -> list[SourceAlias]:
    """`postfix-virtual.cf`: `alias target[,target…]`; `@domain target` is a catch-all."""
    path = config_dir / "postfix-virtual.cf"
    if not path.is_file():
        return []
    aliases: list[SourceAlias] = []
    seen: dict[tuple[str, str], str] = {}
    for where, line in iter_lines(path, "config/postfix-virtual.cf"):
        source_text, _, rest = line.partition(" ") if " " in line else line.partition("\t")
        targets = [t.strip() for t in rest.replace(" ", ",").replace("\t", ",").split(",")]
        try:
            if not any(targets):
                raise BadSyntax("expected `alias target[,target…]`")
            source = parse_alias_source(source_text)
            parsed = [str(parse_address(t)) for t in targets if t]
        except BadSyntax as error:
            report.skip(where, str(error))
            continue
        for target in parsed:
            if first := seen.get((source, target)):
                report.skip(where, f"{source} -> {target} appears again (first at {first})")
            else:
                seen[(source, target)] = where
                aliases.append(SourceAlias(source, target, where))
    return aliases


def note_unimported_files(config_dir: Path, report: ImportReport) -> None:
    for name, reason in _NOT_IMPORTED.items():
        path = config_dir / name
        if path.is_file() and any(True for _ in iter_lines(path, name)):
            report.skip(f"config/{name}", reason)


# -- DKIM ---------------------------------------------------------------------------------

def parse_dkim_keys(config_dir: Path, report: ImportReport) -> list[SourceKey]:
    """The keys docker-mailserver signs with: OpenDKIM's (those in KeyTable, else every
    one), then Rspamd's; a second key for the same domain and selector is reported."""
    keys: dict[tuple[str, str], SourceKey] = {}
    for key in _opendkim_keys(config_dir, report) + _rspamd_keys(config_dir, report):
        if first := keys.get((key.domain, key.selector)):
            report.skip(key.where, f"a second key for {key.domain} selector {key.selector} "
                                   f"(first: {first.where})")
        else:
            keys[(key.domain, key.selector)] = key
    return list(keys.values())


def _opendkim_keys(config_dir: Path, report: ImportReport) -> list[SourceKey]:
    keys_root = config_dir / "opendkim" / "keys"
    table = config_dir / "opendkim" / "KeyTable"
    if table.is_file():
        found = _keys_from_table(table, keys_root, report)
        listed = {k.where.split(" ")[0] for k in found}
        for path in sorted(keys_root.glob("*/*.private")):
            rel = f"config/opendkim/keys/{path.parent.name}/{path.name}"
            if rel not in listed:
                report.skip(rel, "not in opendkim/KeyTable, so docker-mailserver did not "
                                 "sign with it")
        return found
    keys = []
    for path in sorted(keys_root.glob("*/*.private")):
        key = _read_key(path, path.parent.name, path.name.removesuffix(".private"),
                        f"config/opendkim/keys/{path.parent.name}/{path.name}", report)
        keys.extend([key] if key else [])
    return keys


def _rspamd_keys(config_dir: Path, report: ImportReport) -> list[SourceKey]:
    # `setup config dkim` with Rspamd: rspamd/dkim/<type>-<size>-<selector>-<domain>.private.txt
    keys = []
    for path in sorted((config_dir / "rspamd" / "dkim").glob("*.private.txt")):
        where = f"config/rspamd/dkim/{path.name}"
        match = _RSPAMD_KEY_NAME.fullmatch(path.name)
        if match is None:
            report.skip(where, "name is not <type>-<size>-<selector>-<domain>.private.txt")
            continue
        key = _read_key(path, match.group(2), match.group(1), where, report)
        keys.extend([key] if key else [])
    return keys


def _keys_from_table(table: Path, keys_root: Path, report: ImportReport) -> list[SourceKey]:
    # KeyTable lines: `mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/…`.
    keys = []
    for where, line in iter_lines(table, "config/opendkim/KeyTable"):
        parts = line.split(None, 1)
        spec = parts[1].split(":", 2) if len(parts) == 2 else []
        if len(spec) != 3:
            report.skip(where, "expected `name domain:selector:/path/to/key.private`")
            continue
        domain, selector, container_path = (s.strip() for s in spec)
        relative = container_path.removeprefix(OPENDKIM_CONTAINER_DIR)
        if relative == container_path or ".." in Path(relative).parts:
            relative = f"{domain}/{selector}.private"  # a path outside the keys volume
        key = _read_key(keys_root / relative, domain, selector,
                        f"config/opendkim/keys/{relative} ({where})", report)
        keys.extend([key] if key else [])
    return keys


def _read_key(path: Path, domain: str, selector: str, where: str,
              report: ImportReport) -> SourceKey | None:
    try:
        domain = normalize_domain(domain)
        key_paths(Path("."), domain, selector)  # checks the selector as a path component
        pem = path.read_bytes()
        key_algorithm(pem)
    except (BadSyntax, ValueError, OSError) as error:
        report.skip(where, f"DKIM key not usable: {error}")
        return None
    return SourceKey(domain, selector, pem, where)


# -- Maildir ------------------------------------------------------------------------------

def note_orphan_maildirs(source: Path, accounts: set[str], report: ImportReport) -> None:
    for domain_dir in sorted(p for p in (source / "mail-data").glob("*") if p.is_dir()):
        for user_dir in sorted(p for p in domain_dir.iterdir() if p.is_dir()):
            if f"{user_dir.name}@{domain_dir.name}".lower() not in accounts:
                report.skip(f"mail-data/{domain_dir.name}/{user_dir.name}",
                            "no account for this Maildir in postfix-accounts.cf")


@dataclass(frozen=True, slots=True)
class Source:
    accounts: list[SourceAccount]
    aliases: list[SourceAlias]
    keys: list[SourceKey]


def read_source(source: Path, report: ImportReport) -> Source:
    """Everything under `config/`, with bad lines and unused files noted in `report`."""
    config_dir = source / "config"
    if not (config_dir / "postfix-accounts.cf").is_file():
        raise BadSyntax(f"{source} is not a docker-mailserver data folder "
                        "(no config/postfix-accounts.cf)")
    accounts = parse_accounts(config_dir, report)
    aliases = parse_aliases(config_dir, report)
    keys = parse_dkim_keys(config_dir, report)
    note_unimported_files(config_dir, report)
    note_orphan_maildirs(source, {a.address for a in accounts}, report)
    return Source(accounts, aliases, keys)


def _read_if_present(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


# -- applying --------------------------------------------------------------------------------

@dataclass(slots=True)
class _Room:
    """How many mailboxes and subscriptions an account holds, counted as folders come."""

    mailboxes: int
    subscriptions: int


@dataclass(slots=True)
class Importer:
    """Applies what the source holds to `store` (or only counts it, in a dry run)."""

    source: Path
    store: Store
    blobs: BlobStore
    keys_dir: Path
    report: ImportReport
    limits: MailboxLimits = field(default_factory=MailboxLimits)
    quotas: dict[str, SourceQuota] = field(default_factory=dict)
    sieve: SieveLimits = field(default_factory=SieveLimits)

    @property
    def is_dry_run(self) -> bool:
        return self.report.is_dry_run

    async def run(self) -> ImportReport:
        source = await asyncio.to_thread(read_source, self.source, self.report)
        quotas_path = self.source / "config" / QUOTAS_FILE
        if quotas_path.is_file():
            self.quotas = await asyncio.to_thread(lambda: parse_quotas(
                iter_lines(quotas_path, f"config/{QUOTAS_FILE}"), self.report.skip))
        for account in source.accounts:
            await self.import_account(account)
        for quota in self.quotas.values():  # the lines no account took
            self.report.skip(quota.where, f"{quota.address}: no such account")
        await self.import_aliases(source.aliases, {a.address for a in source.accounts})
        for key in source.keys:
            await self.import_key(key)
        new, present = await import_global_sieve(self.source, self.store, self.report.skip,
                                                 self.sieve, is_dry_run=self.is_dry_run)
        self.report.sieve_scripts.new += new
        self.report.sieve_scripts.present += present
        return self.report

    async def import_account(self, account: SourceAccount) -> None:
        existing = await self.store.get_account(account.address)
        account_id = existing.id if existing else None
        if existing is not None:
            self.report.accounts.present += 1
        else:
            self.report.accounts.new += 1
            if not self.is_dry_run:
                created = await self.store.create_account(account.address, account.password_hash)
                account_id = created.id
        local, _, domain = account.address.partition("@")
        maildir = await asyncio.to_thread(
            read_maildir, self.source / "mail-data" / domain / local,
            f"mail-data/{domain}/{local}", self.report.skip, self.limits)
        if maildir is not None:
            await self.import_folders(account_id, *maildir)
        await self.import_quota(account.address, account_id)
        new, present = await import_account_sieve(  # issue 19
            self.source, self.store, account.address, account_id, self.report.skip,
            self.sieve, is_dry_run=self.is_dry_run)
        self.report.sieve_scripts.new += new
        self.report.sieve_scripts.present += present

    async def import_quota(self, address: str, account_id: int | None) -> None:
        """dovecot-quotas.cf's line for the account, then a note if it is over (issue 17)."""
        quota = self.quotas.pop(address, None)
        if quota is not None:
            done = await import_quota(self.store, self.limits.quota, quota, account_id,
                                      self.report.skip, is_dry_run=self.is_dry_run)
            if done is not None:
                self.report.quotas.new += done
                self.report.quotas.present += not done
        if account_id is not None and not self.is_dry_run:
            local, _, domain = address.partition("@")
            await note_over_quota(self.store, self.limits.quota, account_id,
                                  f"mail-data/{domain}/{local}", self.report.skip)

    async def import_folders(self, account_id: int | None, folders: list[MaildirFolder],
                             subscribed: set[str] | None) -> None:
        room = await self.room(account_id)
        for folder in folders:
            try:
                mailbox = await self.folder_mailbox(account_id, folder, subscribed, room)
            except Refused as refusal:  # a limit: this folder only, the import goes on
                self.report.skip(folder.where, f"folder not imported, nor its "
                                 f"{len(folder.messages)} messages: {refusal}")
                continue
            await self.import_messages(mailbox, folder)

    async def room(self, account_id: int | None) -> _Room:
        """What the account holds now (a new account: the default set, all subscribed)."""
        if account_id is None:
            return _Room(len(DEFAULT_MAILBOXES), len(DEFAULT_MAILBOXES))
        return _Room(len(await self.store.list_mailboxes(account_id)),
                     len(await self.store.list_subscriptions(account_id)))  # fmt: skip

    async def folder_mailbox(self, account_id: int | None, folder: MaildirFolder,
                             subscribed: set[str] | None, room: _Room) -> Mailbox | None:
        """The folder's mailbox, created if needed (None in a dry run when it would be).
        Raises Refused when the account has no room for one more mailbox."""
        mailbox = await self.store.get_mailbox(account_id, folder.name) if account_id else None
        is_default = folder.name in {name for name, _ in DEFAULT_MAILBOXES}
        if mailbox is not None or (account_id is None and is_default):
            self.report.folders.present += 1  # a new account comes with the default set
            return mailbox
        if room.mailboxes >= self.limits.mailboxes:
            raise Refused(f"the account holds {room.mailboxes} mailboxes, the limit "
                          "(MAX_MAILBOXES_PER_ACCOUNT)", code="LIMIT")  # fmt: skip
        room.mailboxes += 1
        self.report.folders.new += 1
        if self.is_dry_run or account_id is None:
            return None
        mailbox = await self.store.create_mailbox(account_id, folder.name,
                                                  SPECIAL_FOLDERS.get(folder.name))
        if subscribed is None or folder.name in subscribed:
            await self.subscribe(account_id, folder, room)
        return mailbox

    async def subscribe(self, account_id: int, folder: MaildirFolder, room: _Room) -> None:
        if room.subscriptions >= self.limits.mailboxes:
            self.report.skip(folder.where, f"not subscribed: the account holds "
                             f"{room.subscriptions} subscriptions, the limit "
                             "(MAX_MAILBOXES_PER_ACCOUNT)")  # fmt: skip
            return
        await self.store.set_subscribed(account_id, folder.name, True)
        room.subscriptions += 1

    async def import_messages(self, mailbox: Mailbox | None, folder: MaildirFolder) -> None:
        done = await self.store.imported_keys(mailbox.id) if mailbox else set()
        todo = [m for m in folder.messages if m.base not in done]
        self.report.messages.present += len(folder.messages) - len(todo)
        uidlist = folder.uidlist if await self.keeps_uids(mailbox, folder) else None
        uids = uidlist.uids if uidlist else {}
        # Listed messages in UID order (UIDs only ascend); then UIDNEXT rises to the
        # uidlist's, and messages Dovecot had not listed yet follow, by arrival.
        listed = sorted((m for m in todo if m.base in uids), key=lambda m: uids[m.base])
        unlisted = sorted((m for m in todo if m.base not in uids),
                          key=lambda m: (m.internal_date, m.base))
        if self.is_dry_run or mailbox is None:
            self.report.messages.new += len(todo)
            return
        renumbered = 0
        for message in listed:
            renumbered += not await self.import_message(mailbox, folder, message,
                                                        uids[message.base])
        if uidlist is not None:
            await self.store.set_mailbox_uids(mailbox.id, uidlist.uidvalidity, uidlist.uidnext)
        for message in unlisted:
            await self.import_message(mailbox, folder, message, None)
        if renumbered:
            self.report.skip(folder.where, f"{renumbered} messages got new UIDs: their old "
                             "UIDs were already used in this mailbox")

    async def keeps_uids(self, mailbox: Mailbox | None, folder: MaildirFolder) -> bool:
        """Whether the uidlist's UIDs can be kept; adopts its UIDVALIDITY when they can."""
        uidlist = folder.uidlist
        if uidlist is None:
            return False
        if mailbox is None or mailbox.uidvalidity == uidlist.uidvalidity:
            return True
        if (await self.store.mailbox_counts(mailbox.id)).messages == 0:
            if not self.is_dry_run:  # a fresh UID space, starting below the listed UIDs
                await self.store.set_mailbox_uids(mailbox.id, uidlist.uidvalidity, 1)
            return True
        self.report.skip(folder.where, "UIDs not kept: the mailbox already holds messages "
                         "under another UIDVALIDITY, so clients download new ones again")
        return False

    async def import_message(self, mailbox: Mailbox, folder: MaildirFolder,
                             message: MaildirMessage, uid: int | None) -> bool:
        """Import one message; False when it wanted a UID it could not keep."""
        try:
            raw, meta = await read_message(message.path)
        except OSError as error:
            self.report.skip(f"{folder.where}/{message.path.parent.name}/{message.path.name}",
                             f"unreadable: {error.strerror or error}")
            return True
        blob_id = await self.blobs.put(raw)
        row = await self.store.import_message(
            mailbox.id, NewMessage(blob_id, len(raw), message.internal_date, message.flags,
                                   meta), source_key=message.base, uid=uid)
        if row is None:  # imported meanwhile by a concurrent run
            await self.store.release_blob_if_unused(blob_id)
            self.report.messages.present += 1
            return True
        self.report.messages.new += 1
        return uid is None or row.uid == uid

    async def import_aliases(self, aliases: list[SourceAlias], accounts: set[str]) -> None:
        for alias in aliases:
            if alias.source == alias.target:
                self.report.skip(alias.where, f"{alias.source} -> itself: not needed, "
                                 "postroom's catch-all never overrides an account")
            elif alias.source in accounts or await self.store.get_account(alias.source):
                self.report.skip(alias.where, f"{alias.source} is an account; postroom "
                                 "delivers to it rather than to the alias")
            elif alias.target in await self.store.alias_targets(alias.source):
                self.report.aliases.present += 1
            else:
                self.report.aliases.new += 1
                if not self.is_dry_run:
                    await self.store.add_alias(alias.source, alias.target)

    async def import_key(self, key: SourceKey) -> None:
        private_path, _ = key_paths(self.keys_dir, key.domain, key.selector)
        current = await asyncio.to_thread(_read_if_present, private_path)
        if current == key.private_pem:
            self.report.keys.present += 1
        elif current is not None:
            self.report.skip(key.where, f"{private_path} holds a different key for "
                             f"{key.domain} selector {key.selector}; not replaced")
        else:
            self.report.keys.new += 1
            if not self.is_dry_run:
                await asyncio.to_thread(write_key, self.keys_dir, key.domain, key.selector,
                                        key.private_pem)



async def import_docker_mailserver(source: Path, store: Store, blobs: BlobStore,
                                   keys_dir: Path, *, dry_run: bool = False,
                                   limits: MailboxLimits | None = None,
                                   sieve: SieveLimits | None = None) -> ImportReport:
    """Import everything under `source` (docker-mailserver's `docker-data/dms`);
    `limits`: the server's mailbox limits (`MailboxLimits.from_config`), default ones
    when not given."""
    importer = Importer(source, store, blobs, keys_dir, ImportReport(is_dry_run=dry_run),
                        limits or MailboxLimits(), sieve=sieve or SieveLimits())
    return await importer.run()


async def read_message(path: Path) -> tuple[bytes, str]:
    """The message in CRLF form and its MIME meta (both CPU/IO work, off the loop)."""

    def read() -> tuple[bytes, str]:
        raw = normalise_line_ends(path.read_bytes())
        return raw, message_meta(raw)

    return await asyncio.to_thread(read)
