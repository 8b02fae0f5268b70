"""The resolver contract every DNS consumer depends on, and its typed answers.

Owns: the `Resolver` protocol (async lookups for the event loop plus a blocking twin of
each, for libraries such as pyspf that run in a worker thread), `MxRecord`, and the
error vocabulary.

Invariants shared by every implementation:
- names are absolute (no search list); a trailing dot is optional and ignored;
- a name that does not exist raises `NxDomain`; an existing name without records of the
  asked type returns `[]` (NODATA), so callers can tell the two apart (RFC 7208 §4.6.4
  void lookups count both, DKIM and DMARC treat both as "no record");
- timeouts, SERVFAIL, REFUSED and unreachable servers raise `DnsTemporaryError`;
- TXT answers give one string per record, its character-strings joined (RFC 7208 §3.3,
  RFC 6376 §3.6.2.2), decoded as UTF-8 with undecodable bytes replaced;
- a null MX (RFC 7505, exchange ".") is `MxRecord(preference, "")`; other hosts carry no
  trailing dot and are lower-cased;
- `ptr` takes an IP address, the implementation builds the reverse name;
- an SRV target carries no trailing dot and is lower-cased; "." (RFC 2782: the service
  is decidedly not available) is "".

This module imports no I/O library, so sans-IO modules (mailauth/dmarc.py) may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from postroom.errors import PostroomError


class DnsError(PostroomError):
    """Base of resolver errors."""


class NxDomain(DnsError):
    """The name does not exist (RCODE 3)."""


class DnsTemporaryError(DnsError):
    """Timeout, SERVFAIL, REFUSED or no reachable server: the same query may work later."""


@dataclass(frozen=True, slots=True, order=True)
class MxRecord:
    """Sorts by preference, then host (RFC 5321 §5.1 tries lower preferences first)."""

    preference: int
    host: str  # "" for a null MX (RFC 7505)

    @property
    def is_null(self) -> bool:
        return self.host == ""


@dataclass(frozen=True, slots=True, order=True)
class SrvRecord:
    """RFC 2782 SRV data; sorts by priority first, as clients try them."""

    priority: int
    weight: int
    port: int
    target: str  # "" for "." (service not offered)


class Resolver(Protocol):
    """Async lookups for the loop, and `sync_*` twins for code already on a worker thread.

    The `sync_*` methods block; never call them on the event loop.
    """

    async def a(self, name: str) -> list[str]: ...

    async def aaaa(self, name: str) -> list[str]: ...

    async def mx(self, name: str) -> list[MxRecord]: ...

    async def txt(self, name: str) -> list[str]: ...

    async def ptr(self, ip: str) -> list[str]: ...

    async def srv(self, name: str) -> list[SrvRecord]: ...

    def sync_a(self, name: str) -> list[str]: ...

    def sync_aaaa(self, name: str) -> list[str]: ...

    def sync_mx(self, name: str) -> list[MxRecord]: ...

    def sync_txt(self, name: str) -> list[str]: ...

    def sync_ptr(self, ip: str) -> list[str]: ...

    def sync_srv(self, name: str) -> list[SrvRecord]: ...


def normalize_name(name: str) -> str:
    """The lookup key every implementation uses: lower case, no trailing dot."""
    return name.rstrip(".").lower()
