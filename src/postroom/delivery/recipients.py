"""Recipient resolution: which local accounts (and remote addresses) an address reaches.

Owns alias expansion. Rules (the Postfix virtual-alias model docker-mailserver users know):
- an exact account is itself (an account shadows any alias of the same name);
- an exact alias expands to its targets, recursively, up to MAX_ALIAS_DEPTH, with loop
  detection and de-duplication; targets in non-local domains come back as remote;
- a catch-all `@domain` applies only when the address has no account and no exact alias;
- a non-local domain is remote; a local domain with nothing found is unknown (550 5.1.1).
Addresses that mail/address.py refuses for local use (quoted local parts, `%`, `!`,
IP literals) are never resolved locally: in a local domain they are unknown users.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from postroom.errors import BadSyntax
from postroom.mail.address import normalize_domain, parse_address
from postroom.store.api import Store

log = logging.getLogger("postroom.delivery")

MAX_ALIAS_DEPTH = 10


@dataclass(frozen=True, slots=True)
class LocalTarget:
    account_id: int
    address: str  # the account's canonical address


@dataclass(frozen=True, slots=True)
class Resolution:
    address: str
    is_local_domain: bool
    local: tuple[LocalTarget, ...] = ()
    remote: tuple[str, ...] = ()

    @property
    def is_unknown(self) -> bool:
        return self.is_local_domain and not self.local and not self.remote

    @property
    def is_remote(self) -> bool:
        return not self.is_local_domain


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


async def _is_local_domain(store: Store, domain: str) -> bool:
    try:
        return await store.is_local_domain(normalize_domain(domain))
    except BadSyntax:
        return False  # an IP literal or junk: never one of ours


async def resolve_recipient(store: Store, address: str) -> Resolution:
    """Resolve an RCPT address (`local@domain` as sent)."""
    if not await _is_local_domain(store, _domain_of(address)):
        return Resolution(address, is_local_domain=False, remote=(address,))
    try:
        canonical = str(parse_address(address))
    except BadSyntax:
        return Resolution(address, is_local_domain=True)
    expansion = _Expansion(store)
    await expansion.expand(canonical, depth=0, is_local=True)  # the domain was just checked
    return Resolution(canonical, True, tuple(expansion.local.values()),
                      tuple(expansion.remote))


class _Expansion:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen: set[str] = set()
        self.local: dict[int, LocalTarget] = {}
        self.remote: list[str] = []

    async def expand(self, address: str, depth: int, *, is_local: bool | None = None) -> None:
        """Resolve `address` into local accounts and remote addresses; `is_local` says
        whether its domain is ours when the caller knows already."""
        if address in self._seen:
            log.warning("alias loop through %s", address)
            return
        if depth > MAX_ALIAS_DEPTH:
            log.warning("alias expansion of %s deeper than %d", address, MAX_ALIAS_DEPTH)
            return
        self._seen.add(address)
        if is_local is None:
            is_local = await _is_local_domain(self._store, _domain_of(address))
        if not is_local:
            if address not in self.remote:
                self.remote.append(address)
            return
        account = await self._store.get_account(address)
        if account is not None:
            self.local.setdefault(account.id, LocalTarget(account.id, account.address))
            return
        targets = await self._store.alias_targets(address)
        if not targets:
            targets = await self._store.alias_targets("@" + _domain_of(address))
        for target in targets:
            await self.expand(target, depth + 1)
