"""A user's Sieve scripts, as ManageSieve and the CLI manage them (issue 19).

Owns the rules every way of changing scripts shares: script names (RFC 5804 §1.6),
the quotas (SIEVE_MAX_SCRIPTS scripts, SIEVE_MAX_SCRIPT_SIZE bytes each; RFC 5804 §1.3
QUOTA/MAXSCRIPTS and QUOTA/MAXSIZE), that a script is stored only when it compiles
(PUTSCRIPT's rule, §2.6), that the active script cannot be deleted (§2.10), and a
bounded cache of compiled scripts shared with delivery.

Invariants: errors are `Refused` with the ManageSieve response code as `code`
(NONEXISTENT, ALREADYEXISTS, ACTIVE, QUOTA/MAXSIZE, QUOTA/MAXSCRIPTS) and, for a script
that does not compile, the compiler's "line L, column C: error: …" text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import weakref
from collections import OrderedDict

from postroom.accounts.settingscache import AccountCache
from postroom.config import Config
from postroom.errors import Refused
from postroom.sieve.compile import Script, compile_script
from postroom.sieve.lexer import SieveSyntaxError
from postroom.store.api import Store
from postroom.store.sieve_api import SieveScriptInfo

MAX_NAME_LENGTH = 128
COMPILED_CACHE_SIZE = 512


def check_name(name: str) -> None:
    """RFC 5804 §1.6: non-empty UTF-8 without controls; ours: at most 128 characters
    and no "/" (names become file names in exports)."""
    if not name or len(name) > MAX_NAME_LENGTH or "/" in name or any(
            ord(char) < 32 or 0x7F <= ord(char) <= 0x9F or char in "\u2028\u2029"
            for char in name):
        raise Refused(f"invalid script name {name[:MAX_NAME_LENGTH]!r}", "BADNAME")


class CompiledScripts:
    """Compiled scripts by the SHA-256 of their text, least recently used dropped."""

    def __init__(self, size: int = COMPILED_CACHE_SIZE) -> None:
        self._size = size
        self._cache: OrderedDict[bytes, Script] = OrderedDict()

    def get(self, text: str) -> Script:
        """The compiled script; SieveSyntaxError when it does not compile."""
        key = hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()
        script = self._cache.get(key)
        if script is not None:
            self._cache.move_to_end(key)
            return script
        script = compile_script(text)
        self._cache[key] = script
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return script


COMPILED = CompiledScripts()
# Each account's active script as delivery last read it (delivery/sieving.py), per
# store: changes made here are seen by the next delivery at once, other processes'
# within the cache's ttl.
_ACTIVE: weakref.WeakKeyDictionary[object, AccountCache[tuple[str, str] | None]] = (
    weakref.WeakKeyDictionary())


def active_scripts(store: Store) -> AccountCache[tuple[str, str] | None]:
    cache = _ACTIVE.get(store)
    if cache is None:
        cache = _ACTIVE[store] = AccountCache(ttl=5.0)
    return cache


class SieveScripts:
    def __init__(self, config: Config, store: Store, compiled: CompiledScripts = COMPILED
                 ) -> None:  # fmt: skip
        self._store = store
        self._max_scripts = config.sieve_max_scripts
        self._max_size = config.sieve_max_script_size
        self.compiled = compiled

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def max_scripts(self) -> int:
        return self._max_scripts

    async def list_scripts(self, account_id: int) -> list[SieveScriptInfo]:
        return await self._store.list_sieve_scripts(account_id)

    async def get(self, account_id: int, name: str) -> str:
        content = await self._store.get_sieve_script(account_id, name)
        if content is None:
            raise Refused(f"there is no script named {name!r}", "NONEXISTENT")
        return content

    def check(self, content: str) -> Script:
        """The compiled script, or Refused with the compiler's error (CHECKSCRIPT)."""
        if "\0" in content:  # RFC 5228 §2: a script is UTF-8 text
            raise Refused("a Sieve script must not contain NUL characters")
        if len(content.encode("utf-8", "surrogateescape")) > self._max_size:
            raise Refused(f"script is larger than {self._max_size} bytes", "QUOTA/MAXSIZE")
        try:
            return self.compiled.get(content)
        except SieveSyntaxError as error:
            raise Refused(str(error)) from None

    async def have_space(self, account_id: int, name: str, size: int) -> None:
        """HAVESPACE (RFC 5804 §2.5): Refused with the quota code when it would not fit."""
        check_name(name)
        if size > self._max_size:
            raise Refused(f"a script may hold at most {self._max_size} bytes",
                          "QUOTA/MAXSIZE")  # fmt: skip
        existing = await self._store.list_sieve_scripts(account_id)
        if name not in {info.name for info in existing} and len(existing) >= self._max_scripts:
            raise Refused(f"at most {self._max_scripts} scripts", "QUOTA/MAXSCRIPTS")

    async def put(self, account_id: int, name: str, content: str) -> None:
        check_name(name)
        await self.have_space(account_id, name, len(content.encode("utf-8", "replace")))
        self.check(content)
        await self._store.put_sieve_script(account_id, name, content, dt.datetime.now(dt.UTC))
        active_scripts(self._store).forget(account_id)

    async def activate(self, account_id: int, name: str) -> None:
        """SETACTIVE (§2.8): "" deactivates; the script must exist."""
        found = await self._store.activate_sieve_script(account_id, name or None)
        active_scripts(self._store).forget(account_id)
        if not found:
            raise Refused(f"there is no script named {name!r}", "NONEXISTENT")

    async def delete(self, account_id: int, name: str) -> None:
        scripts = {info.name: info for info in await self._store.list_sieve_scripts(account_id)}
        info = scripts.get(name)
        if info is None:
            raise Refused(f"there is no script named {name!r}", "NONEXISTENT")
        if info.is_active:
            raise Refused("the active script cannot be deleted; deactivate it first",
                          "ACTIVE")  # fmt: skip
        await self._store.delete_sieve_script(account_id, name)
        active_scripts(self._store).forget(account_id)

    async def rename(self, account_id: int, old: str, new: str) -> None:
        check_name(new)
        names = {info.name for info in await self._store.list_sieve_scripts(account_id)}
        if old not in names:
            raise Refused(f"there is no script named {old!r}", "NONEXISTENT")
        if new in names:
            raise Refused(f"a script named {new!r} exists", "ALREADYEXISTS")
        await self._store.rename_sieve_script(account_id, old, new)
        active_scripts(self._store).forget(account_id)
