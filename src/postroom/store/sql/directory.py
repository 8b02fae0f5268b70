"""Domains, accounts and aliases: `Directory`. Addresses and domains are stored
lower-cased (store/api.py); a domain row lives while an account of it does."""

from __future__ import annotations

from postroom.store.api import DEFAULT_MAILBOXES, Account, AccountSummary, Alias
from postroom.store.errors import AlreadyExists, NotFound
from postroom.store.sql.base import SqlBackend
from postroom.store.sql.mailboxes import insert_mailbox, subscribe
from postroom.store.sql.rows import domain_of

_SELECT_ACCOUNT = "SELECT id, address, password_hash FROM accounts"


class DirectorySql(SqlBackend):
    async def list_domains(self) -> list[str]:
        rows = await self._rows("SELECT name FROM (SELECT name FROM domains UNION"
                                " SELECT source_domain FROM aliases) AS d ORDER BY name"
                                + self.dialect.collate)  # fmt: skip
        return [row[0] for row in rows]

    async def is_local_domain(self, domain: str) -> bool:
        row = await self._point_row(
            "SELECT EXISTS (SELECT 1 FROM accounts a JOIN domains d ON d.id = a.domain_id"
            " WHERE d.name = ?) OR EXISTS (SELECT 1 FROM aliases WHERE source_domain = ?)",
            (domain.lower(), domain.lower()),
        )
        return bool(row[0])

    async def create_account(self, address: str, password_hash: str) -> Account:
        address = address.lower()
        try:
            async with self._tx() as tx:
                await tx.fetch("INSERT INTO domains (name) VALUES (?)"
                               " ON CONFLICT (name) DO NOTHING", (domain_of(address),))  # fmt: skip
                if await tx.fetch("SELECT 1 FROM accounts WHERE address = ?", (address,)):
                    raise AlreadyExists(f"account {address} already exists")
                row = await tx.fetch_one(
                    "INSERT INTO accounts (address, domain_id, password_hash)"
                    " SELECT ?, id, ? FROM domains WHERE name = ? RETURNING id",
                    (address, password_hash, domain_of(address)),
                )
                for name, special_use in DEFAULT_MAILBOXES:
                    await insert_mailbox(tx, self.dialect, row[0], name, special_use)
                    await subscribe(tx, row[0], name, True)
        except self.dialect.unique_violation:  # created meanwhile on another node
            raise AlreadyExists(f"account {address} already exists") from None
        return Account(row[0], address, password_hash)

    async def get_account(self, address: str) -> Account | None:
        row = await self._point_row(_SELECT_ACCOUNT + " WHERE address = ?", (address.lower(),))
        return Account(*row) if row else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._point_row(_SELECT_ACCOUNT + " WHERE id = ?", (account_id,))
        return Account(*row) if row else None

    async def set_password(self, address: str, password_hash: str) -> None:
        async with self._tx() as tx:
            if not await tx.fetch("UPDATE accounts SET password_hash = ? WHERE address = ?"
                                  " RETURNING id", (password_hash, address.lower())):  # fmt: skip
                raise NotFound(f"no account {address}")

    async def delete_account(self, address: str) -> None:
        # Aliases pointing at the account stay: whether to drop them is the CLI's decision.
        lock = self.dialect.for_update
        async with self._tx() as tx:
            row = await tx.fetch_one("SELECT id, domain_id FROM accounts WHERE address = ?"
                                     + lock, (address.lower(),))  # fmt: skip
            if row is None:
                raise NotFound(f"no account {address}")
            account_id, domain_id = row
            for (mailbox_id,) in await tx.fetch("SELECT id FROM mailboxes WHERE account_id = ?"
                                                " ORDER BY id" + lock, (account_id,)):  # fmt: skip
                tx.changed(account_id, mailbox_id, "mailbox")
            tx.blobs.update(r[0] for r in await tx.fetch(
                "SELECT DISTINCT m.blob_id FROM messages m JOIN mailboxes b"
                " ON b.id = m.mailbox_id WHERE b.account_id = ?", (account_id,)))  # fmt: skip
            # ON DELETE CASCADE removes mailboxes, messages, expunge records, subscriptions.
            await tx.fetch("DELETE FROM accounts WHERE id = ?", (account_id,))
            await tx.fetch("DELETE FROM domains WHERE id = ? AND NOT EXISTS"
                           " (SELECT 1 FROM accounts WHERE domain_id = ?)",
                           (domain_id, domain_id))  # fmt: skip

    async def list_accounts(self) -> list[AccountSummary]:
        rows = await self._rows(
            "SELECT a.address, COUNT(m.uid), COALESCE(SUM(m.size), 0) FROM accounts a"
            " LEFT JOIN mailboxes b ON b.account_id = a.id"
            " LEFT JOIN messages m ON m.mailbox_id = b.id"
            " GROUP BY a.id, a.address ORDER BY a.address" + self.dialect.collate,
        )
        return [AccountSummary(row[0], int(row[1]), int(row[2])) for row in rows]

    async def count_accounts(self) -> int:
        row = await self._row("SELECT COUNT(*) FROM accounts")
        return int(row[0])

    async def add_alias(self, source: str, target: str) -> None:
        source, target = source.lower(), target.lower()
        try:
            async with self._tx() as tx:
                await tx.fetch("INSERT INTO aliases (source, source_domain, target)"
                               " VALUES (?, ?, ?)", (source, domain_of(source), target))
        except self.dialect.unique_violation:
            raise AlreadyExists(f"alias {source} -> {target} already exists") from None

    async def delete_alias(self, source: str, target: str | None = None) -> int:
        async with self._tx() as tx:
            if target is None:
                rows = await tx.fetch("DELETE FROM aliases WHERE source = ? RETURNING id",
                                      (source.lower(),))  # fmt: skip
            else:
                rows = await tx.fetch("DELETE FROM aliases WHERE source = ? AND target = ?"
                                      " RETURNING id", (source.lower(), target.lower()))
        return len(rows)

    async def list_aliases(self) -> list[Alias]:
        collate = self.dialect.collate
        rows = await self._rows(f"SELECT source, target FROM aliases"
                                f" ORDER BY source{collate}, target{collate}")  # fmt: skip
        return [Alias(*row) for row in rows]

    async def alias_targets(self, source: str) -> list[str]:
        rows = await self._point_rows("SELECT target FROM aliases WHERE source = ? ORDER BY id",
                                      (source.lower(),))  # fmt: skip
        return [row[0] for row in rows]
