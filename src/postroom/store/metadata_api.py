"""The `MetadataStore` role: IMAP METADATA (RFC 5464) annotations (issue 17).

Owns the Protocol the services above `store/` use; both backends implement it once in
`store/sql/metadata.py`.
"""

from __future__ import annotations

from typing import Protocol


class MetadataStore(Protocol):
    """Filled in by the issue's work: one method per question the services ask."""
