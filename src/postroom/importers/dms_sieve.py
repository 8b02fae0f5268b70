"""docker-mailserver's Sieve scripts, for the importer (issue 19).

Owns finding them in the host folder and storing them:
- per user, ManageSieve's storage `mail-data/<domain>/<local>/home/sieve/*.sieve` with
  the active one named by the `home/.dovecot.sieve` symlink; a `home/.dovecot.sieve`
  that is a plain file, or `config/<address>.dovecot.sieve` (docker-mailserver copies
  that one into place), becomes the active script `main` when nothing else is;
- globally, `config/before.dovecot.sieve` and `config/after.dovecot.sieve`, stored as
  the global scripts `before` and `after`.

Invariants: a script is stored only when it compiles (as PUTSCRIPT would); one that does
not, or that is over SIEVE_MAX_SCRIPT_SIZE / SIEVE_MAX_SCRIPTS, is reported with its path
and left out; a script already present is left untouched (imports are idempotent); an
account that has an active script keeps it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from postroom.sieve.compile import compile_script
from postroom.sieve.lexer import SieveSyntaxError
from postroom.store.api import Store

Skip = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class SieveLimits:
    """SIEVE_MAX_SCRIPTS and SIEVE_MAX_SCRIPT_SIZE (configsieve.py's defaults)."""

    scripts: int = 20
    script_size: int = 1 << 20
GLOBAL_FILES = {"before": "before.dovecot.sieve", "after": "after.dovecot.sieve"}


@dataclass(slots=True)
class SourceScripts:
    scripts: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (text, where)
    active: str | None = None


def _read(path: Path, where: str, skip: Skip, max_size: int) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as error:
        skip(where, f"Sieve script not readable: {error.strerror or error}")
        return None
    if len(data) > max_size:
        skip(where, f"Sieve script larger than SIEVE_MAX_SCRIPT_SIZE ({max_size} bytes)")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        skip(where, "Sieve script is not UTF-8")
        return None
    try:
        compile_script(text)
    except SieveSyntaxError as error:
        skip(where, f"Sieve script not imported: {error}")
        return None
    return text


def read_user_scripts(source: Path, address: str, skip: Skip, max_size: int
                      ) -> SourceScripts:  # fmt: skip
    local, _, domain = address.partition("@")
    home = source / "mail-data" / domain / local / "home"
    where = f"mail-data/{domain}/{local}/home"
    found = SourceScripts()
    folder = home / "sieve"
    if folder.is_dir():
        for path in sorted(folder.glob("*.sieve")):
            text = _read(path, f"{where}/sieve/{path.name}", skip, max_size)
            if text is not None:
                found.scripts[path.stem] = (text, f"{where}/sieve/{path.name}")
    link = home / ".dovecot.sieve"
    if link.is_symlink():
        target = Path(link.readlink()).name
        if target.endswith(".sieve") and target[:-6] in found.scripts:
            found.active = target[:-6]
    elif link.is_file():
        _add_main(found, link, f"{where}/.dovecot.sieve", skip, max_size)
    copied = source / "config" / f"{address}.dovecot.sieve"
    if found.active is None and copied.is_file():
        _add_main(found, copied, f"config/{copied.name}", skip, max_size)
    return found


def _add_main(found: SourceScripts, path: Path, where: str, skip: Skip, max_size: int) -> None:
    text = _read(path, where, skip, max_size)
    if text is not None:
        found.scripts.setdefault("main", (text, where))
        found.active = "main"


def read_global_scripts(source: Path, skip: Skip, max_size: int) -> dict[str, str]:
    scripts: dict[str, str] = {}
    for name, file_name in GLOBAL_FILES.items():
        path = source / "config" / file_name
        if path.is_file():
            text = _read(path, f"config/{file_name}", skip, max_size)
            if text is not None:
                scripts[name] = text
    return scripts


async def import_user_scripts(store: Store, account_id: int | None, found: SourceScripts,
                              skip: Skip, *, max_scripts: int, is_dry_run: bool
                              ) -> int:  # fmt: skip
    """Store what is missing; the number of scripts new to the account."""
    existing = ({info.name for info in await store.list_sieve_scripts(account_id)}
                if account_id is not None else set())  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    added = 0
    for name, (text, where) in found.scripts.items():
        if name in existing:
            continue
        if len(existing) + added >= max_scripts:
            skip(where, f"Sieve script not imported: over SIEVE_MAX_SCRIPTS ({max_scripts})")
            continue
        added += 1
        if not is_dry_run and account_id is not None:
            await store.put_sieve_script(account_id, name, text, now)
    if found.active and not is_dry_run and account_id is not None \
            and await store.active_sieve_script(account_id) is None:
        await store.activate_sieve_script(account_id, found.active)
    return added


async def import_global_scripts(store: Store, scripts: dict[str, str], *,
                                is_dry_run: bool) -> int:  # fmt: skip
    added = 0
    now = dt.datetime.now(dt.UTC)
    for name, text in scripts.items():
        if await store.get_global_sieve_script(name) is not None:
            continue
        added += 1
        if not is_dry_run:
            await store.put_global_sieve_script(name, text, now)
    return added


async def import_account_sieve(source: Path, store: Store, address: str,
                               account_id: int | None, skip: Skip, limits: SieveLimits, *,
                               is_dry_run: bool) -> tuple[int, int]:  # fmt: skip
    """An account's scripts: (new, already present)."""
    found = await asyncio.to_thread(read_user_scripts, source, address, skip,
                                    limits.script_size)  # fmt: skip
    added = await import_user_scripts(store, account_id, found, skip,
                                      max_scripts=limits.scripts, is_dry_run=is_dry_run)
    return added, len(found.scripts) - added


async def import_global_sieve(source: Path, store: Store, skip: Skip, limits: SieveLimits,
                              *, is_dry_run: bool) -> tuple[int, int]:  # fmt: skip
    """The global before/after scripts: (new, already present)."""
    scripts = await asyncio.to_thread(read_global_scripts, source, skip, limits.script_size)
    added = await import_global_scripts(store, scripts, is_dry_run=is_dry_run)
    return added, len(scripts) - added
