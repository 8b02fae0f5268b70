"""The per-account learning junk filter's token counts (issue 18).

`JunkSql`: the `JunkStore` methods, written once for both backends.
"""

from __future__ import annotations

from postroom.store.sql.base import SqlBackend


class JunkSql(SqlBackend):
    """Statements of the `JunkStore` role."""
