"""The production resolver: dnspython against DNS_NAMESERVERS or the system resolver.

Owns: turning dnspython answers and exceptions into the `Resolver` contract and into
`Answer`s with TTLs (`lookup` / `sync_lookup`, the `AnswerSource` that dns/cache.py wraps).

Invariants: every query uses an absolute name and `search=False`, so a host's search list
can never turn `example.com` into `example.com.corp.lan`; NXDOMAIN and NODATA are answers
carrying the negative TTL from the SOA (RFC 2308 §5), everything else dnspython raises is
mapped in one place (`_mapped_errors`) to a temporary error. With `cache_size` > 0 the
sync and async resolvers share dnspython's thread-safe LRU cache (CLI tools and tests use
that); `serve` passes 0 and wraps this resolver in dns/cache.py's `CachingResolver`
instead, so answers are not kept twice (an inner cache would stretch the outer TTLs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from postroom.config import Nameserver
from postroom.dns.resolver import (
    Answer,
    DnsTemporaryError,
    MxRecord,
    NxDomain,
    Record,
    RecordType,
    SrvRecord,
    TlsaRecord,
    TypedLookups,
)

DEFAULT_CACHE_SIZE = 10_000
# dnspython retries a silent server after the per-attempt timeout until the lifetime ends;
# two attempts within the lifetime ride out one lost UDP packet.
_ATTEMPTS = 2


class LiveResolver(TypedLookups):
    """dnspython-backed `Resolver`. With no nameservers it reads /etc/resolv.conf."""

    def __init__(self, nameservers: Sequence[Nameserver] = (), timeout: float = 5.0,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.nameservers = list(nameservers)
        self.timeout = timeout
        self._cache = dns.resolver.LRUCache(cache_size) if cache_size > 0 else None
        self._sync = dns.resolver.Resolver(configure=not self.nameservers)
        self._async = dns.asyncresolver.Resolver(configure=not self.nameservers)
        for resolver in (self._sync, self._async):
            self._configure(resolver)

    def _configure(self, resolver: dns.resolver.BaseResolver) -> None:
        if self.nameservers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.host, ns.port)
                                    for ns in self.nameservers]
        # RFC 6840 §5.7: ask for the AD bit, so a validating resolver reports validation.
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout / _ATTEMPTS
        resolver.cache = self._cache

    def clear_cache(self) -> None:
        if self._cache is not None:
            self._cache.flush()

    # -- lookups with TTLs (AnswerSource, what dns/cache.py wraps) -----------------------

    async def lookup(self, name: str, rdtype: RecordType) -> Answer:
        qname = _query_name(name, rdtype)
        with _mapped_errors():
            try:
                answer = await self._async.resolve(qname, rdtype.value, search=False,
                                                   raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN as exc:
                return _nxdomain(exc)
        return _converted(answer, rdtype)

    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer:
        """Blocking twin of `lookup`: worker threads only."""
        qname = _query_name(name, rdtype)
        with _mapped_errors():
            try:
                answer = self._sync.resolve(qname, rdtype.value, search=False,
                                            raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN as exc:
                return _nxdomain(exc)
        return _converted(answer, rdtype)


def _query_name(name: str, rdtype: RecordType) -> dns.name.Name:
    return _reverse(name) if rdtype is RecordType.PTR else _absolute(name)


def _converted(answer: dns.resolver.Answer, rdtype: RecordType) -> Answer:
    is_secure = _is_secure(answer.response)
    if answer.rrset is None:  # NODATA: the name exists without records of this type
        return Answer((), _negative_ttl(answer.response), is_secure=is_secure)
    convert = _CONVERTERS[rdtype]
    return Answer(tuple(convert(rdata) for rdata in answer.rrset),
                  int(answer.chaining_result.minimum_ttl), is_secure=is_secure)


def _is_secure(response: dns.message.Message | None) -> bool:
    return response is not None and bool(response.flags & dns.flags.AD)


def _nxdomain(exc: dns.resolver.NXDOMAIN) -> Answer:
    responses = exc.responses()
    response = next(iter(responses.values()), None) if responses else None
    return Answer((), _negative_ttl(response) if response is not None else 0,
                  is_nxdomain=True, is_secure=_is_secure(response))


def _negative_ttl(response: dns.message.Message) -> int:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) from the authority section; 0 (do not
    cache) when there is no SOA. A CNAME chain before the negative answer lowers it."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            ttl = min(int(rrset.ttl), int(rrset[0].minimum))
            return min([ttl, *(int(cname.ttl) for cname in response.answer)])
    return 0


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except dns.exception.DNSException as exc:
        # Timeout, NoNameservers (SERVFAIL/REFUSED from every server), YXDOMAIN, bad
        # replies: all worth retrying later rather than judging the sender on.
        raise DnsTemporaryError(f"{type(exc).__name__}: {exc}") from exc


def _absolute(name: str) -> dns.name.Name:
    try:
        return dns.name.from_text(name.rstrip(".") + ".")
    except dns.exception.DNSException as exc:
        # An empty label or one over 63 octets names nothing that can exist.
        raise NxDomain(f"invalid name {name!r}: {exc}") from exc


def _reverse(ip: str) -> dns.name.Name:
    try:
        return dns.reversename.from_address(ip)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"not an IP address: {ip!r}") from exc


def _host(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _mx_record(rdata: Any) -> MxRecord:
    exchange: dns.name.Name = rdata.exchange
    host = "" if exchange == dns.name.root else _host(exchange)
    return MxRecord(int(rdata.preference), host)


def _srv_record(rdata: Any) -> SrvRecord:
    target: dns.name.Name = rdata.target
    host = "" if target == dns.name.root else _host(target)
    return SrvRecord(int(rdata.priority), int(rdata.weight), int(rdata.port), host)


def _txt_text(rdata: Any) -> str:
    return b"".join(rdata.strings).decode("utf-8", "replace")


def _address(rdata: Any) -> str:
    return str(rdata.address)


def _ptr_host(rdata: Any) -> str:
    return _host(rdata.target)


def _tlsa_record(rdata: Any) -> TlsaRecord:
    return TlsaRecord(int(rdata.usage), int(rdata.selector), int(rdata.mtype),
                      bytes(rdata.cert))


_CONVERTERS: dict[RecordType, Callable[[Any], Record]] = {
    RecordType.A: _address, RecordType.AAAA: _address, RecordType.MX: _mx_record,
    RecordType.TXT: _txt_text, RecordType.PTR: _ptr_host, RecordType.SRV: _srv_record,
    RecordType.TLSA: _tlsa_record,
}
