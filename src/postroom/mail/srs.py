"""The Sender Rewriting Scheme (SRS0, as Postfix's postsrsd and docker-mailserver's
ENABLE_SRS write it), as pure functions: the envelope sender of mail we forward.

Owns `forward` (`user@example.org` → `SRS0=HHHH=TT=example.org=user@SRS_DOMAIN`) and
`reverse` (the other way, for a bounce that comes back to such an address). Forwarded
mail then leaves with a sender in our domain, so the sender's SPF is not checked against
our address at the destination and bounces still reach the original sender.

Invariants: HHHH is the first 4 characters of the base64 HMAC-SHA1 over the timestamp,
domain and local part, lower-cased (case-insensitive, as addresses may be re-cased on
the way); TT is the day number mod 1024 in base32; `reverse` refuses an address whose
hash does not verify or whose timestamp is older than `max_age_days` (21, postsrsd's
default), so we are not an open relay for forged SRS addresses. An address already in
SRS0 form is forwarded as is rather than nested (postsrsd's SRS1 is not needed then).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DAY = 86400
MAX_AGE_DAYS = 21


def _timestamp(now: float) -> str:
    day = int(now // _DAY) % 1024
    return _BASE32[day >> 5] + _BASE32[day & 31]


def _age_days(stamp: str, now: float) -> int | None:
    try:
        value = (_BASE32.index(stamp[0].upper()) << 5) | _BASE32.index(stamp[1].upper())
    except (ValueError, IndexError):
        return None
    today = int(now // _DAY) % 1024
    return (today - value) % 1024


def _hash(secret: bytes, *parts: str) -> str:
    digest = hmac.new(secret, "".join(parts).lower().encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()[:4]


def forward(sender: str, srs_domain: str, secret: bytes, now: float) -> str:
    """The rewritten envelope sender; the null sender stays null."""
    if not sender:
        return ""
    local, at, domain = sender.rpartition("@")
    if not at:
        return sender
    if local.upper().startswith("SRS0=") and domain.lower() == srs_domain.lower():
        return sender  # already ours
    stamp = _timestamp(now)
    return f"SRS0={_hash(secret, stamp, domain, local)}={stamp}={domain}={local}@{srs_domain}"


def reverse(address: str, secret: bytes, now: float, max_age_days: int = MAX_AGE_DAYS
            ) -> str | None:  # fmt: skip
    """The original sender of an SRS0 address of ours, or None when it is not one or does
    not verify (forged, or too old)."""
    local = address.rpartition("@")[0]
    if not local.upper().startswith("SRS0="):
        return None
    parts = local[5:].split("=", 3)
    if len(parts) != 4:
        return None
    given_hash, stamp, domain, original_local = parts
    if not hmac.compare_digest(given_hash.lower(),
                               _hash(secret, stamp, domain, original_local).lower()):
        return None
    age = _age_days(stamp, now)
    if age is None or age > max_age_days:
        return None
    return f"{original_local}@{domain}"
