"""Recipient resolution: which local accounts (and remote addresses) an address reaches.

Owns alias expansion. Rules (the Postfix virtual-alias model docker-mailserver users know):
- an exact account is itself (an account shadows any alias of the same name);
- an exact alias expands to its targets, recursively, up to MAX_ALIAS_DEPTH, with loop
  detection and de-duplication; targets in non-local domains come back as remote;
- a catch-all `@domain` applies only when the address has no account and no exact alias;
- a non-local domain is remote; a local domain with nothing found is unknown (550 5.1.1).
Addresses that mail/address.py refuses for local use (quoted local parts, `%`, `!`,
IP literals) are never resolved locally: in a local domain they are unknown users.

Role addresses (only when the caller passes `RoleRoutes`, as the SMTP session does; the
SPOOF_PROTECTION ownership check does not, so no login "owns" them by fallback):
- `postmaster@` every local domain is always deliverable (RFC 5321 §4.5.1; it is also
  the rua= of the DMARC and TLS-RPT records `dns records` prints). An account or exact
  alias of that name wins; else POSTMASTER_ADDRESS when it reaches a local account
  (directly or through aliases); else the first account (by address) of that domain;
  else the first account of all. A catch-all comes after all of these.
- `abuse@` every local domain (RFC 2142 §2) goes to ABUSE_ADDRESS when that is set (a
  local account, alias or a remote address) and an account or exact alias of that name
  does not exist; if ABUSE_ADDRESS reaches nothing, abuse@ is routed as postmaster@.
- An SRS0 address of ours that verifies (a bounce of mail a Sieve redirect forwarded)
  is routed back to the original sender it encodes; any other is resolved as usual.
- The bare `<Postmaster>` of RFC 5321 §4.1.1.3 is postmaster@ the server's hostname when
  that is a local domain, else routed as postmaster@ with no domain of its own.
The account list the fallback reads is cached for `ACCOUNT_LIST_TTL` seconds per store.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from postroom.config import Config
from postroom.delivery.srsroute import original_sender
from postroom.errors import BadSyntax
from postroom.mail.address import normalize_domain, parse_address
from postroom.store.api import Directory

log = logging.getLogger("postroom.delivery")

MAX_ALIAS_DEPTH = 10
# How long the postmaster fallback trusts its list of accounts: list_accounts also sums
# every mailbox, too costly to run for each RCPT TO:<postmaster@…> a stranger sends.
ACCOUNT_LIST_TTL = 60.0


@dataclass(frozen=True, slots=True)
class RoleRoutes:
    """Where postmaster@ and abuse@ go when no account or alias of that name exists."""

    postmaster: str = ""  # POSTMASTER_ADDRESS, "" when unset
    abuse: str = ""  # ABUSE_ADDRESS, "" when unset
    # The original sender behind an SRS0 address of ours (a bounce of mail a Sieve
    # redirect forwarded: delivery/srsroute.py), None when it is not one.
    srs_original: Callable[[str], str | None] | None = None

    @classmethod
    def from_config(cls, config: Config) -> RoleRoutes:
        return cls(config.postmaster_address.strip(), config.abuse_address.strip(),
                   partial(original_sender, config))


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


async def _is_local_domain(store: Directory, domain: str) -> bool:
    try:
        return await store.is_local_domain(normalize_domain(domain))
    except BadSyntax:
        return False  # an IP literal or junk: never one of ours


async def resolve_recipient(store: Directory, address: str,
                            roles: RoleRoutes | None = None) -> Resolution:
    """Resolve an RCPT address (`local@domain` as sent); `roles` turns on the routing of
    postmaster@ and abuse@ (module docstring)."""
    if roles is not None and roles.srs_original is not None \
            and address[:5].upper() == "SRS0=":
        original = roles.srs_original(address)
        if original is not None:  # forwarded back to where it came from
            return Resolution(address, is_local_domain=True, remote=(original,))
    if not await _is_local_domain(store, _domain_of(address)):
        return Resolution(address, is_local_domain=False, remote=(address,))
    try:
        canonical = str(parse_address(address))
    except BadSyntax:
        return Resolution(address, is_local_domain=True)
    local_part, _, domain = canonical.rpartition("@")
    expansion = _Expansion(store)
    if roles is not None and await _is_role(store, roles, local_part, canonical):
        expansion = await _route_role(store, roles, local_part, domain)
        if not expansion.local and not expansion.remote:
            expansion = _Expansion(store)  # no account at all: the catch-all, if any
    if not expansion.local and not expansion.remote:
        await expansion.expand(canonical, depth=0, is_local=True)  # domain just checked
    return expansion.resolution(canonical)


async def resolve_postmaster(store: Directory, roles: RoleRoutes, hostname: str) -> Resolution:
    """RFC 5321 §4.1.1.3: the bare `RCPT TO:<Postmaster>`, with no domain."""
    if await _is_local_domain(store, hostname):
        return await resolve_recipient(store, f"postmaster@{hostname}", roles)
    expansion = await _route_role(store, roles, "postmaster", "")
    return expansion.resolution("postmaster")


async def _is_role(store: Directory, roles: RoleRoutes, local_part: str, canonical: str) -> bool:
    """Is this a role address to route, i.e. one without its own account or alias?"""
    if local_part != "postmaster" and not (local_part == "abuse" and roles.abuse):
        return False
    if await store.get_account(canonical) is not None:
        return False
    return not await store.alias_targets(canonical)


async def _route_role(store: Directory, roles: RoleRoutes, local_part: str,
                      domain: str) -> _Expansion:
    if local_part == "abuse" and roles.abuse:
        expansion = await _expand_configured(store, roles.abuse)
        if expansion.local or expansion.remote:
            return expansion
    if roles.postmaster:
        expansion = await _expand_configured(store, roles.postmaster)
        if expansion.local:  # only a local mailbox: postmaster mail stays on this server
            return expansion
    expansion = _Expansion(store)
    fallback = await _first_account(store, domain)
    if fallback is not None:
        await expansion.expand(fallback, depth=1, is_local=True)
    return expansion


async def _expand_configured(store: Directory, address: str) -> _Expansion:
    """POSTMASTER_ADDRESS or ABUSE_ADDRESS, canonical as the store keeps addresses."""
    expansion = _Expansion(store)
    try:
        canonical = str(parse_address(address))
    except BadSyntax:
        log.warning("%r is not a usable address for a role mailbox", address)
        return expansion
    await expansion.expand(canonical, depth=1)
    return expansion


_account_lists: weakref.WeakKeyDictionary[Directory, tuple[float, list[str]]] = (
    weakref.WeakKeyDictionary())


async def _first_account(store: Directory, domain: str) -> str | None:
    """The first account (by address) of `domain`, else of all; None when there is none."""
    for is_refresh in (False, True):
        now = time.monotonic()
        cached = _account_lists.get(store)
        if is_refresh or cached is None or now - cached[0] > ACCOUNT_LIST_TTL:
            addresses = sorted(summary.address for summary in await store.list_accounts())
            _account_lists[store] = cached = (now, addresses)
        in_domain = [address for address in cached[1] if _domain_of(address) == domain]
        candidates = in_domain or cached[1]
        if not candidates:
            return None
        if await store.get_account(candidates[0]) is not None:
            return candidates[0]
        # deleted since the list was read: read it again, once
    return None


class _Expansion:
    def __init__(self, store: Directory) -> None:
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

    def resolution(self, address: str) -> Resolution:
        return Resolution(address, True, tuple(self.local.values()), tuple(self.remote))
