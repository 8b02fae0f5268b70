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
  is decidedly not available) is "";
- every query asks for the AD bit (RFC 6840 §5.7) and every `Answer` carries it as
  `is_secure`: DNSSEC-validated by the resolver, which DANE trusts only when
  DNSSEC_VALIDATION=resolver (decision 0046). A cache keeps the flag with the answer, so a
  secure and an insecure answer are never confused (one key, one answer, one flag).

It also owns the lower contract a cache needs (`AnswerSource`): one lookup per record type
that returns the converted records with their TTL, NXDOMAIN included as an `Answer` rather
than an exception, so the caller can keep it (RFC 2308).

This module imports no I/O library, so sans-IO modules (mailauth/dmarc.py) may use it.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Any, Protocol

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


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """RFC 6698 §2.1 TLSA data: certificate usage, selector, matching type, data."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    def __str__(self) -> str:
        """Presentation form (RFC 6698 §2.2), as TLS-RPT policy strings quote it."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


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

    def cached_a(self, name: str) -> list[str] | None:
        """A records answered from a cache without a query ([] for NXDOMAIN), or None
        when the resolver has none (then `a` asks)."""
        ...

    def cached(self, name: str, rdtype: RecordType) -> Answer | None:
        """The answer a cache holds for (name, type), without a query and without
        blocking (safe on the event loop), or None when it holds none."""
        ...

    async def answer(self, name: str, rdtype: RecordType) -> Answer:
        """The whole answer: records, TTL, NXDOMAIN as a flag and the AD bit
        (`is_secure`); for DANE, which must know whether the answer was validated."""
        ...


class RecordType(enum.Enum):
    """The record types postroom asks for; the value is the RR type mnemonic."""

    A = "A"
    AAAA = "AAAA"
    MX = "MX"
    TXT = "TXT"
    PTR = "PTR"
    SRV = "SRV"
    TLSA = "TLSA"


Record = str | MxRecord | SrvRecord | TlsaRecord  # str for A, AAAA, TXT and PTR


@dataclass(frozen=True, slots=True)
class Answer:
    """One lookup's outcome with how long it may be reused.

    `ttl` is the smallest TTL on the answer's CNAME chain and RRset; for a negative answer
    (NXDOMAIN, or NODATA: no records) it is min(SOA TTL, SOA MINIMUM) from the authority
    section (RFC 2308 §5), and 0 when the reply carried no SOA: such an answer SHOULD NOT
    be cached (RFC 2308 §5).
    """

    records: tuple[Record, ...]
    ttl: int
    is_nxdomain: bool = False
    is_secure: bool = False  # the resolver set the AD bit (DNSSEC-validated)


class AnswerSource(Protocol):
    """What a cache wraps: lookups that report TTLs (for PTR, `name` is the IP address).

    NXDOMAIN comes back as `Answer(is_nxdomain=True)`; temporary failures raise
    `DnsTemporaryError`; a name that cannot exist may raise `NxDomain`. `timeout` bounds
    one lookup, in seconds.
    """

    timeout: float

    async def lookup(self, name: str, rdtype: RecordType) -> Answer: ...

    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer: ...


def normalize_name(name: str) -> str:
    """The lookup key every implementation uses: lower case, no trailing dot."""
    return name.rstrip(".").lower()


def records_or_raise(name: str, answer: Answer) -> list[Any]:
    """The records of an answer; NxDomain for a name that does not exist."""
    if answer.is_nxdomain:
        raise NxDomain(f"{name}: NXDOMAIN")
    return list(answer.records)


class TypedLookups(abc.ABC):
    """The `Resolver` contract over two primitives, `lookup` and `sync_lookup` (an
    `AnswerSource`'s): what LiveResolver and CachingResolver share."""

    @abc.abstractmethod
    async def lookup(self, name: str, rdtype: RecordType) -> Answer: ...

    @abc.abstractmethod
    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer: ...

    async def answer(self, name: str, rdtype: RecordType) -> Answer:
        return await self.lookup(name, rdtype)

    async def _records(self, name: str, rdtype: RecordType) -> list[Any]:
        return records_or_raise(name, await self.lookup(name, rdtype))

    async def a(self, name: str) -> list[str]:
        return await self._records(name, RecordType.A)

    async def aaaa(self, name: str) -> list[str]:
        return await self._records(name, RecordType.AAAA)

    async def mx(self, name: str) -> list[MxRecord]:
        return await self._records(name, RecordType.MX)

    async def txt(self, name: str) -> list[str]:
        return await self._records(name, RecordType.TXT)

    async def ptr(self, ip: str) -> list[str]:
        return await self._records(ip, RecordType.PTR)

    async def srv(self, name: str) -> list[SrvRecord]:
        return await self._records(name, RecordType.SRV)

    def _sync_records(self, name: str, rdtype: RecordType) -> list[Any]:
        return records_or_raise(name, self.sync_lookup(name, rdtype))

    def cached(self, name: str, rdtype: RecordType) -> Answer | None:
        return None  # no cache of its own: every lookup asks

    def cached_a(self, name: str) -> list[str] | None:
        answer = self.cached(name, RecordType.A)
        if answer is None:
            return None
        return [] if answer.is_nxdomain else [str(record) for record in answer.records]

    def sync_a(self, name: str) -> list[str]:
        return self._sync_records(name, RecordType.A)

    def sync_aaaa(self, name: str) -> list[str]:
        return self._sync_records(name, RecordType.AAAA)

    def sync_mx(self, name: str) -> list[MxRecord]:
        return self._sync_records(name, RecordType.MX)

    def sync_txt(self, name: str) -> list[str]:
        return self._sync_records(name, RecordType.TXT)

    def sync_ptr(self, ip: str) -> list[str]:
        return self._sync_records(ip, RecordType.PTR)

    def sync_srv(self, name: str) -> list[SrvRecord]:
        return self._sync_records(name, RecordType.SRV)
