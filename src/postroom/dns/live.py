"""The production resolver: dnspython against DNS_NAMESERVERS or the system resolver.

Owns: turning dnspython answers and exceptions into the `Resolver` contract
(dns/resolver.py), and the answer cache.

Invariants: every query uses an absolute name and `search=False`, so a host's search list
can never turn `example.com` into `example.com.corp.lan`; the sync and async resolvers
share one thread-safe LRU cache (dnspython's `LRUCache` locks internally), which honours
record TTLs and negative-answer TTLs from the SOA; exceptions are mapped in one place
(`_mapped_errors`): NXDOMAIN → NxDomain, NoAnswer → [], everything else → temporary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from postroom.config import Nameserver
from postroom.dns.resolver import DnsTemporaryError, MxRecord, NxDomain, SrvRecord

DEFAULT_CACHE_SIZE = 10_000
# dnspython retries a silent server after the per-attempt timeout until the lifetime ends;
# two attempts within the lifetime ride out one lost UDP packet.
_ATTEMPTS = 2


class LiveResolver:
    """dnspython-backed `Resolver`. With no nameservers it reads /etc/resolv.conf."""

    def __init__(self, nameservers: Sequence[Nameserver] = (), timeout: float = 5.0,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.nameservers = list(nameservers)
        self.timeout = timeout
        self._cache = dns.resolver.LRUCache(max(cache_size, 1))
        self._sync = dns.resolver.Resolver(configure=not self.nameservers)
        self._async = dns.asyncresolver.Resolver(configure=not self.nameservers)
        for resolver in (self._sync, self._async):
            self._configure(resolver)

    def _configure(self, resolver: dns.resolver.BaseResolver) -> None:
        if self.nameservers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.host, ns.port)
                                    for ns in self.nameservers]
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout / _ATTEMPTS
        resolver.cache = self._cache

    def clear_cache(self) -> None:
        self._cache.flush()

    # -- async -----------------------------------------------------------------------

    async def _resolve(self, name: str | dns.name.Name, rdtype: str) -> list[Any]:
        qname = name if isinstance(name, dns.name.Name) else _absolute(name)
        with _mapped_errors():
            try:
                answer = await self._async.resolve(qname, rdtype, search=False)
            except dns.resolver.NoAnswer:
                return []
        return list(answer)

    async def a(self, name: str) -> list[str]:
        return [rdata.address for rdata in await self._resolve(name, "A")]

    async def aaaa(self, name: str) -> list[str]:
        return [rdata.address for rdata in await self._resolve(name, "AAAA")]

    async def mx(self, name: str) -> list[MxRecord]:
        return [_mx_record(rdata) for rdata in await self._resolve(name, "MX")]

    async def txt(self, name: str) -> list[str]:
        return [_txt_text(rdata) for rdata in await self._resolve(name, "TXT")]

    async def ptr(self, ip: str) -> list[str]:
        return [_host(rdata.target) for rdata in await self._resolve(_reverse(ip), "PTR")]

    async def srv(self, name: str) -> list[SrvRecord]:
        return [_srv_record(rdata) for rdata in await self._resolve(name, "SRV")]

    # -- sync (worker threads only) ----------------------------------------------------

    def _resolve_sync(self, name: str | dns.name.Name, rdtype: str) -> list[Any]:
        qname = name if isinstance(name, dns.name.Name) else _absolute(name)
        with _mapped_errors():
            try:
                answer = self._sync.resolve(qname, rdtype, search=False)
            except dns.resolver.NoAnswer:
                return []
        return list(answer)

    def sync_a(self, name: str) -> list[str]:
        return [rdata.address for rdata in self._resolve_sync(name, "A")]

    def sync_aaaa(self, name: str) -> list[str]:
        return [rdata.address for rdata in self._resolve_sync(name, "AAAA")]

    def sync_mx(self, name: str) -> list[MxRecord]:
        return [_mx_record(rdata) for rdata in self._resolve_sync(name, "MX")]

    def sync_txt(self, name: str) -> list[str]:
        return [_txt_text(rdata) for rdata in self._resolve_sync(name, "TXT")]

    def sync_ptr(self, ip: str) -> list[str]:
        return [_host(rdata.target) for rdata in self._resolve_sync(_reverse(ip), "PTR")]

    def sync_srv(self, name: str) -> list[SrvRecord]:
        return [_srv_record(rdata) for rdata in self._resolve_sync(name, "SRV")]


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except dns.resolver.NXDOMAIN as exc:
        raise NxDomain(str(exc)) from exc
    except dns.resolver.NoAnswer:
        raise
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
