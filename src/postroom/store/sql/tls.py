"""ACME certificates, account key and ordering lease (issue 20): the `TlsStore` methods,
written once for both backends.

Claiming a lease is one upsert whose update only applies to an expired lease or the
holder's own, with RETURNING: two nodes claiming at once cannot both get a row back.
"""

from __future__ import annotations

import datetime as dt

from postroom.store.sql.base import SqlBackend
from postroom.store.tls_api import StoredCertificate

_CLAIM = (
    "INSERT INTO tls_leases (name, holder, expires) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
    " WHERE tls_leases.expires <= ? OR tls_leases.holder = excluded.holder"
    " RETURNING holder"
)


class TlsSql(SqlBackend):
    """Statements of the `TlsStore` role."""

    async def list_tls_certificates(self) -> list[StoredCertificate]:
        rows = await self._rows("SELECT name, chain_pem, key_pem, updated FROM tls_certificates"
                                " ORDER BY name" + self.dialect.collate)
        read = self.dialect.read_time
        return [StoredCertificate(row[0], row[1], row[2], read(row[3])) for row in rows]

    async def put_tls_certificate(self, name: str, chain_pem: str, key_pem: str,
                                  now: dt.datetime) -> None:
        async with self._tx() as tx:
            await tx.fetch(
                "INSERT INTO tls_certificates (name, chain_pem, key_pem, updated)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " chain_pem = excluded.chain_pem, key_pem = excluded.key_pem,"
                " updated = excluded.updated",
                (name, chain_pem, key_pem, self.dialect.time(now)))

    async def acme_account_key(self, candidate_pem: str) -> str:
        async with self._tx() as tx:
            await tx.fetch("INSERT INTO tls_acme_account (id, key_pem) VALUES (1, ?)"
                           " ON CONFLICT (id) DO NOTHING", (candidate_pem,))
            row = await tx.fetch_one("SELECT key_pem FROM tls_acme_account WHERE id = 1")
        return str(row[0])

    async def claim_tls_lease(self, name: str, holder: str, now: dt.datetime,
                              until: dt.datetime) -> bool:
        time = self.dialect.time
        async with self._tx() as tx:
            rows = await tx.fetch(_CLAIM, (name, holder, time(until), time(now)))
        return bool(rows)

    async def release_tls_lease(self, name: str, holder: str) -> None:
        async with self._tx() as tx:
            await tx.fetch("DELETE FROM tls_leases WHERE name = ? AND holder = ?",
                           (name, holder))
