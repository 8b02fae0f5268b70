"""IMAP METADATA (RFC 5464): per-mailbox and server annotations (issue 17).

`MetadataSql`: the `MetadataStore` methods, written once for both backends.
"""

from __future__ import annotations

from postroom.store.sql.base import SqlBackend


class MetadataSql(SqlBackend):
    """Statements of the `MetadataStore` role."""
