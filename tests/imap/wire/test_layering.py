"""imap/wire is sans-IO: it imports nothing from asyncio, ssl, socket or postroom.store."""

from __future__ import annotations

import ast
from pathlib import Path

import postroom.imap.wire as wire

FORBIDDEN = ("asyncio", "ssl", "socket", "postroom.store", "selectors")


def test_wire_imports_no_io() -> None:
    for path in Path(wire.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
