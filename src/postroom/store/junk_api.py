"""The `JunkStore` role: The per-account learning junk filter's token counts (issue 18).

Owns the Protocol the services above `store/` use; both backends implement it once in
`store/sql/junk.py`.
"""

from __future__ import annotations

from typing import Protocol


class JunkStore(Protocol):
    """Filled in by the issue's work: one method per question the services ask."""
