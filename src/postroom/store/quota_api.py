"""The `QuotaStore` role: Per-account quotas (RFC 9208, docker-mailserver `setup quota`, issue 17).

Owns the Protocol the services above `store/` use; both backends implement it once in
`store/sql/quota.py`.
"""

from __future__ import annotations

from typing import Protocol


class QuotaStore(Protocol):
    """Filled in by the issue's work: one method per question the services ask."""
