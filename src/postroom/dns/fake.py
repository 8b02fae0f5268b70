"""An in-memory `Resolver` for unit tests.

Owns: answering from a dict of records with the same semantics as `LiveResolver`
(NXDOMAIN versus NODATA, temporary failures, null MX, PTR by IP address).

Records: `{"example.com": {"A": ["192.0.2.1"], "MX": [(10, "mx.example.com")],
"TXT": ["v=spf1 -all"], "SRV": ["0 1 993 mx.example.com"]},
"192.0.2.1": {"PTR": ["mx.example.com"]}}`. PTR records are keyed by the IP address or by
its reverse name. A name exists when it has records or a
descendant has (an empty non-terminal, RFC 8020), so `_domainkey.example.com` exists once
`sel._domainkey.example.com` does. `fail(name)` makes lookups of that name raise
`DnsTemporaryError`. `queries` records every (name, type) asked, for assertions.
`secure(zone)` marks answers for the zone and the names below it DNSSEC-validated (the
AD bit, `Answer.is_secure`); TLSA data is a `TlsaRecord` or "3 1 1 <hex>" text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from postroom.dns.resolver import (
    Answer,
    DnsTemporaryError,
    MxRecord,
    NxDomain,
    Record,
    RecordType,
    SrvRecord,
    TlsaRecord,
    normalize_name,
)

RecordValue = str | MxRecord | SrvRecord | TlsaRecord | tuple[int, str]


class FakeResolver:
    def __init__(self, records: Mapping[str, Mapping[str, Iterable[RecordValue]]] | None = None
                 ) -> None:
        self._records: dict[str, dict[str, list[RecordValue]]] = {}
        self._failing: set[str] = set()
        self._secure: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        for name, by_type in (records or {}).items():
            for rdtype, values in by_type.items():
                for value in values:
                    self.add(name, rdtype, value)

    def add(self, name: str, rdtype: str, value: RecordValue) -> None:
        key = _key(name)
        self._records.setdefault(key, {}).setdefault(rdtype.upper(), []).append(value)

    def remove(self, name: str, rdtype: str | None = None) -> None:
        key = _key(name)
        if rdtype is None:
            self._records.pop(key, None)
        else:
            self._records.get(key, {}).pop(rdtype.upper(), None)

    def fail(self, name: str) -> None:
        self._failing.add(_key(name))

    def heal(self, name: str) -> None:
        self._failing.discard(_key(name))

    def secure(self, zone: str) -> None:
        self._secure.add(_key(zone))

    def _is_secure(self, key: str) -> bool:
        return any(key == zone or key.endswith("." + zone) for zone in self._secure)

    def _lookup(self, name: str, rdtype: str) -> list[RecordValue]:
        key = _key(name)
        self.queries.append((key, rdtype))
        if key in self._failing:
            raise DnsTemporaryError(f"simulated failure for {key}")
        if not self._exists(key):
            raise NxDomain(key)
        return list(self._records.get(key, {}).get(rdtype, []))

    def _exists(self, key: str) -> bool:
        suffix = "." + key
        return any(name == key or name.endswith(suffix)
                   for name, by_type in self._records.items() if by_type)

    def sync_a(self, name: str) -> list[str]:
        return [str(value) for value in self._lookup(name, "A")]

    def sync_aaaa(self, name: str) -> list[str]:
        return [str(value) for value in self._lookup(name, "AAAA")]

    def sync_mx(self, name: str) -> list[MxRecord]:
        return [_mx(value) for value in self._lookup(name, "MX")]

    def sync_txt(self, name: str) -> list[str]:
        return [str(value) for value in self._lookup(name, "TXT")]

    def sync_ptr(self, ip: str) -> list[str]:
        reverse = ipaddress.ip_address(ip).reverse_pointer
        return [normalize_name(str(value)) for value in self._lookup(reverse, "PTR")]

    def sync_srv(self, name: str) -> list[SrvRecord]:
        return [_srv(value) for value in self._lookup(name, "SRV")]

    def cached_a(self, name: str) -> list[str] | None:
        return None  # every lookup is asked (and recorded in `queries`)

    def cached(self, name: str, rdtype: RecordType) -> Answer | None:
        return None  # every lookup is asked (and recorded in `queries`)

    async def a(self, name: str) -> list[str]:
        return self.sync_a(name)

    async def aaaa(self, name: str) -> list[str]:
        return self.sync_aaaa(name)

    async def mx(self, name: str) -> list[MxRecord]:
        return self.sync_mx(name)

    async def txt(self, name: str) -> list[str]:
        return self.sync_txt(name)

    async def ptr(self, ip: str) -> list[str]:
        return self.sync_ptr(ip)

    async def srv(self, name: str) -> list[SrvRecord]:
        return self.sync_srv(name)

    async def answer(self, name: str, rdtype: RecordType) -> Answer:
        try:
            values = self._lookup(name, rdtype.value)
        except NxDomain:
            return Answer((), 60, is_nxdomain=True, is_secure=self._is_secure(_key(name)))
        return Answer(tuple(_record(rdtype, value) for value in values), 60,
                      is_secure=self._is_secure(_key(name)))


def _key(name: str) -> str:
    """IP addresses become their reverse names so PTR records can be keyed either way."""
    try:
        return ipaddress.ip_address(name).reverse_pointer
    except ValueError:
        return normalize_name(name)


def _record(rdtype: RecordType, value: RecordValue) -> Record:
    if rdtype is RecordType.MX:
        return _mx(value)
    if rdtype is RecordType.SRV:
        return _srv(value)
    if rdtype is RecordType.TLSA:
        return _tlsa(value)
    return str(value)


def _tlsa(value: RecordValue) -> TlsaRecord:
    """`TlsaRecord` or "usage selector mtype hex" text."""
    if isinstance(value, TlsaRecord):
        return value
    usage, selector, mtype, data = str(value).split(maxsplit=3)
    return TlsaRecord(int(usage), int(selector), int(mtype), bytes.fromhex(data))


def _srv(value: RecordValue) -> SrvRecord:
    """`SrvRecord` or "priority weight port target" text."""
    if isinstance(value, SrvRecord):
        return value
    priority, weight, port, target = str(value).split()
    target = normalize_name(target)
    return SrvRecord(int(priority), int(weight), int(port), target)


def _mx(value: RecordValue) -> MxRecord:
    if isinstance(value, MxRecord):
        return value
    if isinstance(value, SrvRecord | TlsaRecord):
        raise TypeError("an SRV or TLSA record given as MX data")
    if isinstance(value, tuple):
        preference, host = value
        return MxRecord(preference, normalize_name(host))
    preference_text, _, host = value.partition(" ")
    return MxRecord(int(preference_text), normalize_name(host))
