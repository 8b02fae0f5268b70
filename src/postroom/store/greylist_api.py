"""The `GreylistStore` role: greylisting triplets and auto-whitelisted clients (issue 18).

Owns the Protocol the services above `store/` use; both backends implement it once in
`store/sql/greylist.py`.
"""

from __future__ import annotations

from typing import Protocol


class GreylistStore(Protocol):
    """Filled in by the issue's work: one method per question the services ask."""
