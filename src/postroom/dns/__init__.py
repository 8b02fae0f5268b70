"""DNS access for postroom: the `Resolver` protocol (resolver.py), the dnspython-backed
`LiveResolver` (live.py), the shared answer cache in front of it (cache.py) and the
in-memory `FakeResolver` for unit tests (fake.py).

Every module that needs DNS takes a `Resolver`; only `app.py` picks the implementation.
A floor at the bottom of the house: it imports config and errors only (the DNS helper that
judges records with SPF/DKIM/DMARC is selftest/records.py, above mailauth/).
"""

from __future__ import annotations

from postroom.dns.resolver import DnsError, DnsTemporaryError, MxRecord, NxDomain, Resolver

__all__ = ["DnsError", "DnsTemporaryError", "MxRecord", "NxDomain", "Resolver"]
