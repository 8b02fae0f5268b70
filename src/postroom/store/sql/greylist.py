"""Greylisting triplets and auto-whitelisted clients (postgrey semantics, issue 18).

`GreylistSql`: the `GreylistStore` methods, written once for both backends.
"""

from __future__ import annotations

from postroom.store.sql.base import SqlBackend


class GreylistSql(SqlBackend):
    """Statements of the `GreylistStore` role."""
