"""What the admin DNS page needs of selftest/domainadvice.py's `DomainAdvisor`, as
Protocols (issue 21): selftest/ sits above the web's floor, so app.py hands the advisor
over in `WebContext.domains` and the web names only these methods.

Owns nothing but the two Protocols; imports nothing of the web (context.py names it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class DnsFinding(Protocol):
    """One record's live check (selftest/records.py `Finding`)."""

    @property
    def record(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def found(self) -> str: ...
    @property
    def fix(self) -> str: ...
    @property
    def is_required(self) -> bool: ...
    @property
    def is_failure(self) -> bool: ...


class DomainAdvice(Protocol):
    """What the DNS page needs of selftest/domainadvice.py's DomainAdvisor."""

    def zone(self, domain: str, ipv4: str | None = None, ipv6: str | None = None) -> str: ...
    async def check(self, domain: str, ipv4: str | None = None,
                    ipv6: str | None = None) -> Sequence[DnsFinding]: ...
