"""Per-account quotas (RFC 9208, docker-mailserver `setup quota`, issue 17).

`QuotaSql`: the `QuotaStore` methods, written once for both backends.
"""

from __future__ import annotations

from postroom.store.sql.base import SqlBackend


class QuotaSql(SqlBackend):
    """Statements of the `QuotaStore` role."""
