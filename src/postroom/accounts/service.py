"""Accounts and aliases: the one implementation of the `email` and `alias` verbs.

Owns validation and the rules around accounts (the CLI, the importer and the protocols all
come through here): addresses are canonicalised by mail/address.py, passwords hashed by
accounts/passwords.py off the event loop, and authentication never tells a caller whether
the user or the password was wrong. A login whose password was verified against the
account's current hash within AUTH_CACHE_TTL is answered from accounts/authcache.py
without hashing; failures always pay the full verification. A disabled account (issue 21)
is refused at every login, whatever the password.

App passwords (accounts/apppasswords.py, issue 21) open every protocol the main password
opens, except where the caller says otherwise (the web login takes the main password
only); revoking one deletes its row, so it fails from the next login on. Successful
logins go to the login history (accounts/logins.py), written in batches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from postroom.accounts import apppasswords
from postroom.accounts.authcache import AuthCache
from postroom.accounts.logins import LoginHistory
from postroom.accounts.passwords import hash_password, needs_rehash, verify_password
from postroom.errors import BadSyntax, Refused
from postroom.mail.address import parse_address, parse_alias_source
from postroom.metrics import note_login_failure
from postroom.store.api import Account, AccountSummary, Alias, Store
from postroom.store.credentials_api import AppPassword

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
                 auth_cache: AuthCache | None = None,
                 logins: LoginHistory | None = None) -> None:
        self._store = store
        # The brute-force guard (security/bans.py) `serve` installs: every protocol's
        # login passes through `authenticate`, so every protocol is protected by it.
        self._guard = guard
        # None (the CLI, most tests): every login is verified in full.
        self._auth_cache = auth_cache
        # None (the CLI, most tests): logins are not recorded.
        self.logins = logins

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
        # Issue 21: a new password logs every web session of the account out.
        await self._store.delete_web_sessions_of(canonical)

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

    async def set_disabled(self, address: str, is_disabled: bool) -> bool:
        """Disable (every login refused, mail still delivered) or enable an account;
        True when that changed something (store/accountstate_api.py)."""
        canonical = await self._existing(address)
        account = await self._store.get_account(canonical)
        if account is None:  # deleted in between
            raise Refused(f"no account {canonical}", code="NONEXISTENT")
        changed = await self._store.set_account_disabled(account.id, is_disabled)
        self._forget(canonical)
        return changed

    async def disabled_accounts(self) -> list[str]:
        return await self._store.list_disabled_accounts()

    async def authenticate(self, username: str, password: str, *,
                           app_passwords: bool = True) -> Account | None:
        """The account when the password (or, with `app_passwords`, one of the account's
        app passwords) matches, else None (also for unknown users, and for a client the
        guard has banned, whose password is then not even checked: the cache is
        consulted inside the guard, so a ban holds for cached passwords too)."""
        if self._guard is None:
            account = await self._verify(username, password, app_passwords)
        else:
            account = await self._guard.guarded(
                lambda: self._verify(username, password, app_passwords))
        if account is None:
            note_login_failure()
        return account

    async def _verify(self, username: str, password: str,
                      app_passwords: bool = True) -> Account | None:
        try:
            canonical = str(parse_address(username))
        except BadSyntax:
            return None
        account = await self._store.get_account(canonical)
        if account is None:
            return None
        typed = apppasswords.canonical(password) if app_passwords else None
        if typed is not None:
            used = await self._app_password(account, typed)
            if used is not None:
                return self._recorded(await self._enabled(account),
                                      apppasswords.describe(used), used.id)
        cache = self._auth_cache
        if cache is not None and cache.is_verified(canonical, account.password_hash, password):
            return self._recorded(await self._enabled(account), "password")
        if not await self._hashing(verify_password, password, account.password_hash):
            return None
        stored_hash = account.password_hash
        if needs_rehash(stored_hash):
            stored_hash = await self._hashing(hash_password, password)
            await self._store.set_password(canonical, stored_hash)
        if cache is not None:
            cache.remember(canonical, stored_hash, password)
        return self._recorded(await self._enabled(account), "password")

    async def _app_password(self, account: Account, typed: str) -> AppPassword | None:
        """The app password `typed` is, checked against the rows its tag names only."""
        cache = self._auth_cache
        for candidate in await self._store.app_passwords_tagged(
                account.id, apppasswords.tag_of(typed)):
            key = f"{account.address}\0app:{candidate.id}"  # its own cache entry
            if cache is not None and cache.is_verified(key, candidate.password_hash, typed):
                return candidate
            if await self._hashing(verify_password, typed, candidate.password_hash):
                if cache is not None:
                    cache.remember(key, candidate.password_hash, typed)
                return candidate
        return None

    def _recorded(self, account: Account | None, credential: str,
                  app_password_id: int | None = None) -> Account | None:
        if account is not None and self.logins is not None:
            self.logins.record(account.id, credential, app_password_id)
        return account

    # -- app passwords (issue 21) ----------------------------------------------------
    async def add_app_password(self, account: Account, name: str) -> tuple[AppPassword, str]:
        """A new app password named `name`: its row and the password itself, which is
        shown once (grouped for reading) and never stored."""
        clean = apppasswords.check_name(name)
        await apppasswords.check_room(self._store, account.id)
        password = apppasswords.generate()
        password_hash = await self._hashing(hash_password, password)
        row = await self._store.add_app_password(account.id, clean,
                                                 apppasswords.tag_of(password),
                                                 password_hash, dt.datetime.now(dt.UTC))
        if row is None:
            raise Refused(f"there is an app password named {clean!r} already",
                          code="ALREADYEXISTS")
        return row, apppasswords.grouped(password)

    async def list_app_passwords(self, account: Account) -> list[AppPassword]:
        return await self._store.list_app_passwords(account.id)

    async def revoke_app_password(self, account: Account, password_id: int) -> None:
        """Delete it: the next login with it fails (no cache entry outlives the row)."""
        if not await self._store.delete_app_password(account.id, password_id):
            raise Refused("no such app password", code="NONEXISTENT")
        if self._auth_cache is not None:
            self._auth_cache.forget(f"{account.address}\0app:{password_id}")

    async def _enabled(self, account: Account) -> Account | None:
        """A disabled account's right password is refused like a wrong one (issue 21);
        asked only after the password matched, so the answer costs the same either way."""
        if await self._store.is_account_disabled(account.id):
            return None
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
