"""mail/ is sans-IO (ARCHITECTURE.md rule 1): no asyncio, socket, ssl or store imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import postroom.mail

FORBIDDEN = ("asyncio", "socket", "ssl", "postroom.store")
MODULES = ["headers", "mimetree", "envelope", "bodystructure", "sections", "utf7"]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_nothing_that_does_io(module: str) -> None:
    path = Path(postroom.mail.__file__).parent / f"{module}.py"
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    assert imported, "the walk found no imports at all"
    for name in imported:
        assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), name
