"""imap/wire is sans-IO: it imports nothing from asyncio, ssl, socket or postroom.store,
and nothing above it (handlers, the session): the command specs point down at the
parsers, never the other way (ARCHITECTURE.md rules 1 and 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import postroom.imap.wire as wire

FORBIDDEN = (
    "asyncio", "ssl", "socket", "postroom.store", "selectors",
    "postroom.imap.commands", "postroom.imap.session", "postroom.imap.selected",
)  # fmt: skip


def test_wire_imports_no_io_and_nothing_above_it() -> None:
    paths = sorted(Path(wire.__file__).parent.rglob("*.py"))
    assert any(path.parent.name == "commands" for path in paths)  # the family modules too
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
