"""The `TlsStore` role: certificates postroom ordered itself (SSL_TYPE=acme), the ACME
account key, and the lease that lets one node at a time order (issue 20).

Owns the Protocol and its rows; both backends implement it once in `store/sql/tls.py`.

Invariants: one account key per installation (the first one stored wins; a racing node
gets the winner back); a lease has one holder, taken over only once it has expired, so
several nodes sharing a PostgreSQL database do not all ask the CA for the same names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    name: str  # the certificate's folder under DATA_DIR/acme/certs/ (host or domain)
    chain_pem: str
    key_pem: str
    updated: dt.datetime


class TlsStore(Protocol):
    async def list_tls_certificates(self) -> list[StoredCertificate]: ...
    async def put_tls_certificate(self, name: str, chain_pem: str, key_pem: str,
                                  now: dt.datetime) -> None:
        """Create or replace."""
        ...
    async def acme_account_key(self, candidate_pem: str) -> str:
        """The installation's account key: `candidate_pem` stored if there was none."""
        ...
    async def claim_tls_lease(self, name: str, holder: str, now: dt.datetime,
                              until: dt.datetime) -> bool:
        """Take or extend the lease `name` for `holder` until `until`; False while
        another holder's lease has not expired."""
        ...
    async def release_tls_lease(self, name: str, holder: str) -> None: ...
