"""ARC (RFC 8617): validating the chain a message arrives with, and sealing one we forward.

Owns: `verify_arc` (the chain validation status of §5.2 as none / pass / fail, with the
sealer of the newest set, which the DMARC stage may trust: checks/dmarc.py), the
structural rules checked before any cryptography, and `seal_message` (the next ARC set
for a message we forward, outbound/arcseal.py picks the key).

Structure first (§5.2 steps 1-3, §4.2.1, §5.1.1.1), so a hostile header costs no DNS and
no RSA: every ARC field must carry a readable tag list with an instance i= in 1..50; more
than `MAX_ARC_SETS` sets (50), a duplicate field of one instance, a set missing one of its
three fields (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results), a gap in the
instances or a newest seal with cv=fail make the chain `fail` at once. Fields beyond
`MAX_ARC_FIELDS` are not parsed: the chain is `fail`. Field sizes are bounded by the
header limits checked before (checks/headers.py). Then the keys of every seal and
message signature (at most 100 names) are fetched concurrently through our Resolver, and
dkimpy validates the chain in a worker thread from those answers only
(mailauth/dkim.py: dkimpy stays there).

Result vocabulary (RFC 8617 §4.4 cv, RFC 8601 registry "arc"): none (no ARC fields),
pass, fail. A temporary DNS failure fetching a key makes the chain fail: ARC only ever
relaxes a decision (a failed chain changes nothing), so failing is safe, never harsher.
Nothing here raises for a bad message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from enum import StrEnum

from postroom.dns.resolver import Resolver
from postroom.mailauth.dkim import (
    arc_seal_sync,
    arc_verify_sync,
    header_fields,
    parse_tags,
    prefetch_keys,
)

log = logging.getLogger(__name__)

MAX_ARC_SETS = 50  # RFC 8617 §4.2.1: i= is 1..50; a chain longer than that fails
MAX_ARC_FIELDS = 3 * MAX_ARC_SETS
_SEAL, _SIGNATURE, _RESULTS = b"arc-seal", b"arc-message-signature", \
    b"arc-authentication-results"
ARC_FIELD_NAMES = frozenset({"arc-seal", "arc-message-signature",
                             "arc-authentication-results"})
# The AAR's value starts with its instance tag (§4.1.1: "i=" instance ";" ...).
_AAR_INSTANCE = re.compile(rb"\s*i\s*=\s*([0-9]{1,3})\s*;")


class ArcVerdict(StrEnum):
    """RFC 8617 §4.4 chain validation status (an ARC-Seal's cv=, §4.1.3), as RFC 8601
    results."""

    NONE = "none"
    PASS = "pass"  # noqa: S105 (a result name, not a password)
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: ArcVerdict
    reason: str = ""
    instance: int = 0  # i= of the newest set (0: none)
    sealer: str = ""  # d= of the newest ARC-Seal, lower-case ("" when unreadable)

    def is_trusted(self, sealers: list[str]) -> bool:
        """A passing chain whose newest seal is by one of `sealers` (exact domains)."""
        return self.result is ArcVerdict.PASS and bool(self.sealer) \
            and self.sealer in sealers


NO_CHAIN = ArcResult(ArcVerdict.NONE, "no ARC header fields")


@dataclass(frozen=True, slots=True)
class _Set:
    seal: dict[bytes, bytes]
    signature: dict[bytes, bytes]


def has_arc_fields(field_names: frozenset[str]) -> bool:
    """Whether a header (headerscan.py's lower-cased field names) carries any ARC field."""
    return not ARC_FIELD_NAMES.isdisjoint(field_names)


async def verify_arc(resolver: Resolver, raw: bytes) -> ArcResult:
    """The chain validation status of `raw` (RFC 8617 §5.2)."""
    found = await asyncio.to_thread(chain_structure, raw)  # dkimpy's parser: off the loop
    if isinstance(found, ArcResult):
        return found
    sets = found
    newest = sets[-1]
    sealer = newest.seal.get(b"d", b"").decode("ascii", "replace").strip().lower()
    names = {_key_name(tags) for arc_set in sets for tags in (arc_set.seal, arc_set.signature)}
    keys = await prefetch_keys(resolver, {name for name in names if name})
    cv, reason = await asyncio.to_thread(arc_verify_sync, raw, keys)
    result = ArcVerdict.PASS if cv == "pass" else ArcVerdict.FAIL
    return ArcResult(result, reason, len(sets), sealer)


def chain_structure(raw: bytes) -> list[_Set] | ArcResult:
    """The sets, oldest first, when the chain is well formed (§5.2 steps 1-3); else the
    result (none or fail) that ends validation."""
    arc_fields = [(name.lower(), value) for name, value in header_fields(raw)
                  if name.lower() in (_SEAL, _SIGNATURE, _RESULTS)]
    if not arc_fields:
        return NO_CHAIN
    if len(arc_fields) > MAX_ARC_FIELDS:
        return _fail(f"{len(arc_fields)} ARC header fields, more than {MAX_ARC_SETS} sets")
    by_instance: dict[int, dict[bytes, dict[bytes, bytes]]] = {}
    for name, value in arc_fields:
        tags, problem = _instance_tags(name, value)
        if tags is None:
            return _fail(problem)
        instance = int(tags[b"i"])
        fields = by_instance.setdefault(instance, {})
        if name in fields:
            return _fail(f"duplicate {_display(name)} for i={instance}")
        fields[name] = tags
    return _complete_sets(by_instance)


def _instance_tags(name: bytes, value: bytes) -> tuple[dict[bytes, bytes] | None, str]:
    if name == _RESULTS:
        # The AAR is an A-R payload, not a tag list: only its leading i= is read.
        match = _AAR_INSTANCE.match(value)
        tags = {b"i": match.group(1)} if match else None
    else:
        tags = parse_tags(value)
    if tags is None or not tags.get(b"i", b"").strip().isdigit():
        return None, f"{_display(name)} without a readable i= tag"
    tags[b"i"] = tags[b"i"].strip()
    instance = int(tags[b"i"])
    if not 1 <= instance <= MAX_ARC_SETS:
        return None, f"{_display(name)} with i={instance} outside 1..{MAX_ARC_SETS}"
    return tags, ""


def _complete_sets(by_instance: dict[int, dict[bytes, dict[bytes, bytes]]]
                   ) -> list[_Set] | ArcResult:
    newest = max(by_instance)
    sets: list[_Set] = []
    for instance in range(1, newest + 1):
        fields = by_instance.get(instance)
        if fields is None:
            return _fail(f"no ARC set i={instance} below i={newest}")
        for name in (_RESULTS, _SIGNATURE, _SEAL):
            if name not in fields:
                return _fail(f"ARC set i={instance} has no {_display(name)}")
        sets.append(_Set(fields[_SEAL], fields[_SIGNATURE]))
    if sets[-1].seal.get(b"cv", b"").strip().lower() == b"fail":
        return _fail(f"ARC-Seal i={newest} says cv=fail")  # §5.2 step 2
    return sets


def _key_name(tags: dict[bytes, bytes]) -> str:
    domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
    selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
    return f"{selector}._domainkey.{domain}".lower() if domain and selector else ""


_DISPLAY = {_SEAL: "ARC-Seal", _SIGNATURE: "ARC-Message-Signature",
            _RESULTS: "ARC-Authentication-Results"}


def _display(name: bytes) -> str:
    return _DISPLAY[name]


def _fail(reason: str) -> ArcResult:
    return ArcResult(ArcVerdict.FAIL, reason)


# -- sealing -----------------------------------------------------------------------------

async def seal_message(raw: bytes, domain: str, selector: str, private_key_pem: bytes,
                       authserv_id: str) -> bytes:
    """The next ARC set for `raw` (i = n+1), to prepend; b"" when the message carries no
    Authentication-Results of `authserv_id` to seal (RFC 8617 §5.1.1: the AAR copies
    them). dkimpy runs in a worker thread. Raises ValueError when it cannot seal (no
    From, a chain already at i=50, an unusable key)."""
    return await asyncio.to_thread(arc_seal_sync, raw, domain, selector, private_key_pem,
                                   authserv_id)
