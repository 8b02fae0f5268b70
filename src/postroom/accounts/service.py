"""Accounts and aliases: the one implementation of the `email` and `alias` verbs.

Owns validation and the rules around accounts (the CLI, the importer and the protocols all
come through here): addresses are canonicalised by mail/address.py, passwords hashed by
accounts/passwords.py off the event loop, and authentication never tells a caller whether
the user or the password was wrong. A login whose password was verified against the
account's current hash within AUTH_CACHE_TTL is answered from accounts/authcache.py
without hashing; failures always pay the full verification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from postroom.accounts.authcache import AuthCache
from postroom.accounts.passwords import hash_password, needs_rehash, verify_password
from postroom.errors import BadSyntax, Refused
from postroom.mail.address import parse_address, parse_alias_source
from postroom.store.api import Account, AccountSummary, Alias, Store

if TYPE_CHECKING:
    from postroom.security.bans import AuthGuard

T = TypeVar("T")

MIN_PASSWORD_LENGTH = 1
MAX_PASSWORD_LENGTH = 1024


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise BadSyntax("the password must not be empty (at most 1024 characters)")
    if any(ch in password for ch in "\r\n\0"):
        raise BadSyntax("the password must not contain line breaks or NUL")


class AccountService:
    def __init__(self, store: Store, guard: AuthGuard | None = None,
                 auth_cache: AuthCache | None = None) -> None:
        self._store = store
        # The brute-force guard (security/bans.py) `serve` installs: every protocol's
        # login passes through `authenticate`, so every protocol is protected by it.
        self._guard = guard
        # None (the CLI, most tests): every login is verified in full.
        self._auth_cache = auth_cache

    async def add_account(self, address: str, password: str) -> Account:
        canonical = str(parse_address(address))
        _check_password(password)
        if await self._store.get_account(canonical) is not None:
            raise Refused(f"{canonical} already exists", code="ALREADYEXISTS")
        password_hash = await self._hashing(hash_password, password)
        return await self._store.create_account(canonical, password_hash)

    async def update_password(self, address: str, password: str) -> None:
        canonical = await self._existing(address)
        _check_password(password)
        password_hash = await self._hashing(hash_password, password)
        await self._store.set_password(canonical, password_hash)
        self._forget(canonical)  # the new hash ends the entry anyway; drop it at once

    async def delete_account(self, address: str) -> None:
        canonical = await self._existing(address)
        await self._store.delete_account(canonical)
        self._forget(canonical)

    async def list_accounts(self) -> list[AccountSummary]:
        return await self._store.list_accounts()

    async def add_alias(self, source: str, target: str) -> Alias:
        alias = Alias(parse_alias_source(source), str(parse_address(target)))
        if alias.source == alias.target:
            raise BadSyntax(f"alias {alias.source} cannot point at itself")
        if await self._store.get_account(alias.source) is not None:
            raise Refused(f"{alias.source} is an account; an alias cannot shadow it",
                          code="ALREADYEXISTS")
        existing = await self._store.alias_targets(alias.source)
        if alias.target in existing:
            raise Refused(f"alias {alias.source} -> {alias.target} already exists",
                          code="ALREADYEXISTS")
        await self._store.add_alias(alias.source, alias.target)
        return alias

    async def delete_alias(self, source: str, target: str | None = None) -> int:
        canonical_source = parse_alias_source(source)
        canonical_target = str(parse_address(target)) if target else None
        removed = await self._store.delete_alias(canonical_source, canonical_target)
        if removed == 0:
            shown = f"{canonical_source} -> {canonical_target}" if target else canonical_source
            raise Refused(f"no alias {shown}", code="NONEXISTENT")
        return removed

    async def list_aliases(self) -> list[Alias]:
        return await self._store.list_aliases()

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account when the password matches, else None (also for unknown users, and
        for a client the guard has banned, whose password is then not even checked: the
        cache is consulted inside the guard, so a ban holds for cached passwords too)."""
        if self._guard is None:
            return await self._verify(username, password)
        return await self._guard.guarded(lambda: self._verify(username, password))

    async def _verify(self, username: str, password: str) -> Account | None:
        try:
            canonical = str(parse_address(username))
        except BadSyntax:
            return None
        account = await self._store.get_account(canonical)
        if account is None:
            return None
        cache = self._auth_cache
        if cache is not None and cache.is_verified(canonical, account.password_hash, password):
            return account
        if not await self._hashing(verify_password, password, account.password_hash):
            return None
        stored_hash = account.password_hash
        if needs_rehash(stored_hash):
            stored_hash = await self._hashing(hash_password, password)
            await self._store.set_password(canonical, stored_hash)
        if cache is not None:
            cache.remember(canonical, stored_hash, password)
        return account

    async def _hashing(self, work: Callable[..., T], *args: str) -> T:
        """A password hash off the loop, within the guard's bound on parallel hashes."""
        if self._guard is None:
            return await asyncio.to_thread(work, *args)
        async with self._guard.hashing_slot():
            return await asyncio.to_thread(work, *args)

    def _forget(self, canonical: str) -> None:
        if self._auth_cache is not None:
            self._auth_cache.forget(canonical)

    async def _existing(self, address: str) -> str:
        canonical = str(parse_address(address))
        if await self._store.get_account(canonical) is None:
            raise Refused(f"no account {canonical}", code="NONEXISTENT")
        return canonical
