"""The `JunkStore` role: the per-account learning junk filter's token counts (issue 18).

Owns the Protocol the services above `store/` use (junk/ is its one user) and its rows:
per account, how many messages were trained as spam and as ham, per token in how many of
each it appeared, which messages were trained as what (so a message trained again with
the other judgement is first untrained, as mox does), and the addresses the account's
user has written to (known-good senders). Both backends implement it once in
`store/sql/junk.py`.

Invariants: counts never go below zero; a message (keyed by its content, the blob id) is
counted at most once per account, under its latest judgement; a training is one
transaction (the totals, the tokens and the record of the message change together).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class JunkTotals:
    spam: int  # messages trained as spam
    ham: int
    tokens: int = 0  # distinct tokens known (for `postroom junk stats`)
    senders: int = 0  # known-good senders


@dataclass(frozen=True, slots=True)
class TokenCounts:
    spam: int  # spam messages the token appeared in
    ham: int


class JunkStore(Protocol):
    async def junk_totals(self, account_id: int) -> JunkTotals:
        """The trained message counts only (`tokens`, `senders` 0): one point read, asked
        at every delivery."""
        ...

    async def junk_stats(self, account_id: int) -> JunkTotals:
        """The counts with `tokens` and `senders` (counting them reads the account's rows:
        for `postroom junk stats`)."""
        ...

    async def junk_token_counts(self, account_id: int, tokens: Sequence[str]
                                ) -> dict[str, TokenCounts]:
        """The counts of those of `tokens` the account has seen (absent: never seen)."""
        ...

    async def junk_train(self, account_id: int, message_key: str, tokens: Sequence[str], *,
                         is_spam: bool) -> bool:
        """Count `tokens` (distinct) as one message of the judgement; a message already
        trained the same way is not counted again (False), one trained the other way is
        moved from the other count to this one."""
        ...

    async def junk_note_senders(self, account_id: int, addresses: Sequence[str]) -> None:
        """Remember addresses (canonical, lowercased) as known-good senders."""
        ...

    async def junk_known_senders(self, account_id: int, addresses: Sequence[str]
                                 ) -> set[str]:
        """Those of `addresses` that are known-good senders of the account."""
        ...
