"""DANE for SMTP (RFC 7672): which TLSA records count, and whether a server's certificate
chain matches them. Pure functions over DER bytes and `cryptography`; the TLS session's
chain is read by `peer_chain`, the policy applied by outbound/tlspolicy.py.

Owns RFC 7672 §3.1's rules:
- only DANE-TA(2) and DANE-EE(3) are usable for SMTP; PKIX-TA(0) and PKIX-EE(1) are not
  (§3.1.3), nor unknown selectors (0 full certificate, 1 SubjectPublicKeyInfo) or matching
  types (0 exact, 1 SHA-256, 2 SHA-512), nor digests of the wrong length (RFC 7671 §5);
- DANE-EE(3) matches the server's own certificate; names and validity dates are ignored
  (§3.1.1);
- DANE-TA(2) matches a certificate of the chain the server sent, which must issue the
  server's certificate (signatures checked, link by link, with `cryptography`), and the
  server's certificate must be within its validity dates and name the MX host (§3.1.2,
  §3.2.2: SAN dNSNames, a wildcard only as a whole leftmost label).

Invariant: `mismatch` returns None only for a chain that one usable record authenticates;
any unparsable certificate is a mismatch, never an exception.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from postroom.dns.resolver import TlsaRecord

DANE_TA, DANE_EE = 2, 3
_DIGEST_SIZES = {0: None, 1: 32, 2: 64}
MAX_CHAIN = 10  # certificates of a peer chain looked at


def usable(records: Sequence[TlsaRecord]) -> list[TlsaRecord]:
    """The records RFC 7672 §3.1 lets an SMTP client use."""
    return [record for record in records
            if record.usage in (DANE_TA, DANE_EE) and record.selector in (0, 1)
            and record.mtype in _DIGEST_SIZES and record.data
            and _DIGEST_SIZES[record.mtype] in (None, len(record.data))]


def matches(record: TlsaRecord, certificate: x509.Certificate) -> bool:
    """RFC 6698 §2.1.2-§2.1.3: the selected part, hashed as the matching type says."""
    if record.selector == 0:
        selected = certificate.public_bytes(Encoding.DER)
    else:
        selected = certificate.public_key().public_bytes(Encoding.DER,
                                                         PublicFormat.SubjectPublicKeyInfo)
    if record.mtype == 1:
        selected = hashlib.sha256(selected).digest()
    elif record.mtype == 2:
        selected = hashlib.sha512(selected).digest()
    return selected == record.data


def mismatch(records: Sequence[TlsaRecord], chain_der: Sequence[bytes], host: str,
             now: dt.datetime) -> str | None:
    """Why the chain (the server's certificate first) fails every usable record, or None
    when one of them authenticates it."""
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der[:MAX_CHAIN]]
    except ValueError as error:
        return f"unreadable certificate: {error}"
    if not chain:
        return "no certificate"
    records = usable(records)
    if any(record.usage == DANE_EE and matches(record, chain[0]) for record in records):
        return None
    for index, anchor in enumerate(chain[1:], 1):
        if any(record.usage == DANE_TA and matches(record, anchor) for record in records):
            return _ta_problem(chain[: index + 1], host, now)
    return "matches no TLSA record"


def _ta_problem(path: list[x509.Certificate], host: str, now: dt.datetime) -> str | None:
    for child, issuer in itertools.pairwise(path):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as error:
            return f"chain to the TLSA trust anchor does not verify: {error or 'signature'}"
    leaf = path[0]
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        return "has expired or is not yet valid"
    if not names_host(leaf, host):
        return f"does not name {host}"
    return None


def names_host(certificate: x509.Certificate, host: str) -> bool:
    """RFC 6125 §6.4 as RFC 7672 §3.2.3 narrows it: a SAN dNSName equal to the host, or a
    "*." name whose rest equals the host minus its first label."""
    host = host.rstrip(".").lower()
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [name.lower() for name in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    parent = host.split(".", 1)[1] if "." in host else ""
    return any(name == host or (name.startswith("*.") and name[2:] == parent)
               for name in names)


def peer_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The certificates the server sent, its own first (DER). Python 3.13 names this
    `get_unverified_chain`; before, the same method exists only on the C object."""
    method = getattr(ssl_object, "get_unverified_chain", None)
    if method is None:
        method = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if method is not None:
        chain = method() or []
        return [_der(certificate) for certificate in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _der(certificate: object) -> bytes:
    if isinstance(certificate, bytes):
        return certificate
    return bytes(certificate.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]


def handshake_context() -> ssl.SSLContext:
    """TLS 1.2+ without the PKIX checks: DANE judges the chain itself (`mismatch`)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
