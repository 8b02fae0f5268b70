"""The `MtaStsStore` role: recipient domains' MTA-STS policies as last fetched (RFC 8461
§5.1, issue 20), so outbound delivery keeps honouring a policy across restarts and while
the domain's policy server is unreachable.

Owns the Protocol and its row; both backends implement it once in `store/sql/mtasts.py`.

Invariants: one row per domain (lower case), replaced whole by each successful fetch; the
row keeps the policy text as fetched (outbound/mtasts.py parses it again on use, so a
stricter parser never trusts an old row blindly) and the TXT id it was fetched for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CachedMtaStsPolicy:
    domain: str
    policy_id: str  # the id= of the `_mta-sts` TXT record the policy was fetched for
    policy_text: str  # the policy file as served
    fetched: dt.datetime
    expires: dt.datetime  # fetched + max_age (RFC 8461 §3.2)


class MtaStsStore(Protocol):
    async def mta_sts_policy(self, domain: str) -> CachedMtaStsPolicy | None:
        """The cached policy of `domain` (expired ones too: the caller decides)."""
        ...

    async def put_mta_sts_policy(self, policy: CachedMtaStsPolicy) -> None:
        """Create or replace the policy of `policy.domain`."""
        ...
