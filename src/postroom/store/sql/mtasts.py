"""Recipient domains' MTA-STS policies (RFC 8461 §5.1, issue 20): the `MtaStsStore`
methods, written once for both backends. Domains are stored lower-cased."""

from __future__ import annotations

from postroom.store.mtasts_api import CachedMtaStsPolicy
from postroom.store.sql.base import SqlBackend


class MtaStsSql(SqlBackend):
    """Statements of the `MtaStsStore` role."""

    async def mta_sts_policy(self, domain: str) -> CachedMtaStsPolicy | None:
        row = await self._point_row(
            "SELECT domain, policy_id, policy_text, fetched, expires FROM mta_sts_policies"
            " WHERE domain = ?", (domain.lower(),))
        if row is None:
            return None
        read = self.dialect.read_time
        return CachedMtaStsPolicy(row[0], row[1], row[2], read(row[3]), read(row[4]))

    async def put_mta_sts_policy(self, policy: CachedMtaStsPolicy) -> None:
        time = self.dialect.time
        async with self._tx() as tx:
            await tx.fetch(
                "INSERT INTO mta_sts_policies (domain, policy_id, policy_text, fetched,"
                " expires) VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain) DO UPDATE SET"
                " policy_id = excluded.policy_id, policy_text = excluded.policy_text,"
                " fetched = excluded.fetched, expires = excluded.expires",
                (policy.domain.lower(), policy.policy_id, policy.policy_text,
                 time(policy.fetched), time(policy.expires)))
