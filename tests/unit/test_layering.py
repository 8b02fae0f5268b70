"""ARCHITECTURE.md rules 1 and 2, checked on the source: sans-IO modules import no I/O,
and each third-party protocol library is imported by exactly one module."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "postroom"

SANS_IO = [
    "imap/wire", "smtp/wire.py", "smtp/paths.py", "pop3/wire.py", "sasl.py", "mail",
    "smtp/policy.py",
    "queue/schedule.py", "mailauth/dmarc.py", "smtp/replyparse.py",
    "security/proxy_protocol.py",
]
FORBIDDEN_IN_SANS_IO = {"asyncio", "ssl", "socket", "postroom.store", "aiosqlite"}

# library → the one module allowed to import it
OWNED_LIBRARIES = {
    "dkim": "mailauth/dkim.py",
    "spf": "mailauth/spf.py",
    "aiosqlite": "store/sqlite.py",
    "rich": "cli.py",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(relative: str) -> list[Path]:
    target = SRC / relative
    if target.is_dir():
        return sorted(target.rglob("*.py"))
    return [target] if target.exists() else []


def test_sans_io_modules_import_no_io() -> None:
    checked = 0
    for relative in SANS_IO:
        for path in python_files(relative):
            checked += 1
            for name in imported_modules(path):
                bad = {f for f in FORBIDDEN_IN_SANS_IO if name == f or name.startswith(f + ".")}
                assert not bad, f"{path.relative_to(SRC)} imports {name}"
    assert checked > 0


def test_each_library_lives_in_one_module() -> None:
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        for name in imported_modules(path):
            top = name.split(".")[0]
            owner = OWNED_LIBRARIES.get(top)
            assert owner is None or owner == relative, (
                f"{relative} imports {top}; only {owner} may")
