"""DKIM (RFC 6376, RFC 8463 Ed25519) verification and signing through dkimpy.

Owns: `verify_dkim` (every DKIM-Signature of a message, each with its own result),
`sign_message` (our outgoing signatures), and the mapping of dkimpy outcomes onto RFC 8601
results; and dkimpy's side of ARC (RFC 8617: `arc_verify_sync`, `arc_seal_sync`, run in
worker threads by mailauth/arc.py, which owns the chain's rules), so dkimpy stays in one
module (ARCHITECTURE.md rule 2).

How verification stays on our resolver, and off the loop when it is long: the
DKIM-Signature fields are parsed from the header block, each `s._domainkey.d` TXT record
is fetched concurrently through the async Resolver, then dkimpy runs with a `dnsfunc` that
only reads those prefetched answers (no DNS happens inside dkimpy, and it never sees the
system resolver). At most MAX_SIGNATURES signature fields are evaluated; one `policy`
result stands for the others. A message up to ON_LOOP_BYTES with at most
ON_LOOP_SIGNATURES signatures is verified on the event loop: about a millisecond of CPU,
less than the thread hop costs under load and shorter than the 5 ms the GIL lets a worker
thread hold the loop up anyway (issue 22); a larger one, whose canonicalization grows
with its size, on a worker thread.

Result mapping (RFC 6376 §6.1, RFC 8601 §2.7.1): valid → pass; bad signature or body hash
mismatch → fail; unparseable signature, missing or unusable key, expired signature →
permerror; temporary DNS failure fetching the key → temperror. Nothing raises: a broken
signature is a result, and an unexpected dkimpy error is logged and reported as permerror.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from postroom.dns.resolver import DnsTemporaryError, NxDomain, Resolver
from postroom.mailauth.keys import ed25519_seed_base64, rsa_pkcs1_pem

log = logging.getLogger(__name__)

# Signed when present; From is signed once more than it occurs so none can be added
# (RFC 6376 §8.15, "over-signing").
SIGNED_HEADERS = (
    "from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding",
)
_CANONICALIZATION = (b"relaxed", b"relaxed")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# Verified on the event loop up to this size (module doc): 16 KiB take about 1.2 ms here,
# 64 KiB about 3 ms.
ON_LOOP_BYTES = 16 * 1024
ON_LOOP_SIGNATURES = 2  # an RSA and an Ed25519 signature (RFC 8463 dual signing)
# DKIM-Signature fields evaluated per message, in header order (OpenDKIM's
# MaximumSignaturesToVerify is 3): each costs a key lookup, a verification and a result
# in Authentication-Results, and a hostile header could carry thousands. The rest get
# one `policy` result between them (RFC 8601 §2.7.1), unverified.
MAX_SIGNATURES = 5


class DkimVerdict(StrEnum):
    PASS = "pass"  # noqa: S105 (a result name, not a password)
    FAIL = "fail"
    NEUTRAL = "neutral"
    NONE = "none"
    POLICY = "policy"  # not evaluated by local policy (fields over MAX_SIGNATURES)
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: DkimVerdict
    domain: str  # d=
    selector: str  # s=
    reason: str
    signature_b: str = ""  # the b= value without whitespace (header.b uses a prefix)
    algorithm: str = ""  # a=

    @property
    def header_b(self) -> str:
        """RFC 6008 header.b: the first 8 characters of the signature."""
        return self.signature_b[:8]


@dataclass(frozen=True, slots=True)
class _Signature:
    index: int
    tags: Mapping[bytes, bytes]

    @property
    def domain(self) -> str:
        return self.tags.get(b"d", b"").decode("ascii", "replace").strip().lower()

    @property
    def selector(self) -> str:
        return self.tags.get(b"s", b"").decode("ascii", "replace").strip()

    @property
    def key_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}".lower()

    def result(self, verdict: DkimVerdict, reason: str) -> DkimResult:
        b_value = re.sub(rb"\s+", b"", self.tags.get(b"b", b"")).decode("ascii", "replace")
        algorithm = self.tags.get(b"a", b"").decode("ascii", "replace").strip()
        return DkimResult(verdict, self.domain, self.selector, reason, b_value, algorithm)


# A prefetched key: the TXT value, None for "no such record", or the temporary error text.
_KeyAnswer = str | None | DnsTemporaryError


async def verify_dkim(resolver: Resolver, raw: bytes) -> list[DkimResult]:
    """One result per DKIM-Signature header field, in header order, up to MAX_SIGNATURES
    of them and one `policy` result for the rest; [] when unsigned."""
    header_values = _signature_header_values(raw)
    results: list[DkimResult | None] = []
    signatures: list[_Signature] = []
    for index, value in enumerate(header_values):
        if index == MAX_SIGNATURES:  # RFC 6376 §6.1: verifiers MAY limit them
            left = len(header_values) - index
            results.append(DkimResult(DkimVerdict.POLICY, "", "",
                                      f"{left} more signatures not evaluated"))
            break
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList as exc:
            results.append(DkimResult(DkimVerdict.PERMERROR, "", "", f"bad tag list: {exc}"))
            continue
        signature = _Signature(index, tags)
        if not signature.domain or not signature.selector:
            results.append(signature.result(DkimVerdict.PERMERROR, "missing d= or s="))
            continue
        results.append(None)
        signatures.append(signature)
    if signatures:
        keys = await prefetch_keys(resolver, {sig.key_name for sig in signatures})
        if len(raw) <= ON_LOOP_BYTES and len(signatures) <= ON_LOOP_SIGNATURES:
            verified = _verify_all(raw, signatures, keys)
        else:
            verified = await asyncio.to_thread(_verify_all, raw, signatures, keys)
        for signature, result in zip(signatures, verified, strict=True):
            results[signature.index] = result
    return [result for result in results if result is not None]


def _signature_header_values(raw: bytes) -> list[bytes]:
    return [value for name, value in header_fields(raw) if name.lower() == b"dkim-signature"]


def header_fields(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The header section's fields as (name, value), in order, as dkimpy reads them."""
    match = _HEADER_END.search(raw)
    headers, _body = dkim.rfc822_parse(raw[:match.end()] if match else raw)
    return [(name, value) for name, value in headers]


def parse_tags(value: bytes) -> dict[bytes, bytes] | None:
    """A DKIM-style tag list (RFC 6376 §3.2), or None when it is malformed."""
    try:
        return dict(parse_tag_value(value))
    except InvalidTagValueList:
        return None


async def prefetch_keys(resolver: Resolver, names: set[str]) -> dict[str, _KeyAnswer]:
    async def fetch(name: str) -> _KeyAnswer:
        try:
            records = await resolver.txt(name)
        except NxDomain:
            return None
        except DnsTemporaryError as exc:
            return exc
        # RFC 6376 §3.6.2.2: several records are ambiguous; use the first, like dkimpy.
        return records[0] if records else None

    ordered = sorted(names)
    answers = await asyncio.gather(*(fetch(name) for name in ordered))
    return dict(zip(ordered, answers, strict=True))


def _verify_all(raw: bytes, signatures: list[_Signature], keys: Mapping[str, _KeyAnswer]
                ) -> list[DkimResult]:
    """dkimpy over the whole message, DNS answered from `keys` only (blocking: on the loop
    only up to ON_LOOP_BYTES)."""
    verifier = dkim.DKIM(raw, minkey=1024)
    dnsfunc = _answers_from(keys)
    return [_verify_one(verifier, signature, keys.get(signature.key_name), dnsfunc)
            for signature in signatures]


def _answers_from(keys: Mapping[str, _KeyAnswer]) -> Callable[..., bytes | None]:
    """A dkimpy `dnsfunc` that reads prefetched answers only (no DNS on the thread)."""
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        answer = keys.get(name.decode("ascii", "replace").rstrip(".").lower())
        return answer.encode() if isinstance(answer, str) else None

    return dnsfunc


def _verify_one(verifier: dkim.DKIM, signature: _Signature, key: _KeyAnswer,
                dnsfunc: object) -> DkimResult:
    if isinstance(key, DnsTemporaryError):
        return signature.result(DkimVerdict.TEMPERROR, f"key lookup failed: {key}")
    if key is None:
        return signature.result(DkimVerdict.PERMERROR, f"no key at {signature.key_name}")
    try:
        dkim.evaluate_pk(signature.key_name.encode(), key.encode())
    except dkim.DKIMException as exc:
        return signature.result(DkimVerdict.PERMERROR, f"unusable key: {exc}")
    except ValueError as exc:  # base64 errors from a malformed p=
        return signature.result(DkimVerdict.PERMERROR, f"unusable key: {exc}")
    try:
        is_valid = verifier.verify(idx=signature.index, dnsfunc=dnsfunc)
    except dkim.ValidationError as exc:
        verdict = DkimVerdict.FAIL if "body hash mismatch" in str(exc) \
            else DkimVerdict.PERMERROR
        return signature.result(verdict, str(exc))
    except dkim.DKIMException as exc:
        return signature.result(DkimVerdict.PERMERROR, str(exc))
    except Exception as exc:
        log.exception("dkimpy failed verifying signature %d", signature.index)
        return signature.result(DkimVerdict.PERMERROR, f"unverifiable: {exc}")
    if is_valid:
        return signature.result(DkimVerdict.PASS, "good signature")
    return signature.result(DkimVerdict.FAIL, "signature did not verify")


# -- signing -----------------------------------------------------------------------------

async def sign_message(raw: bytes, domain: str, selector: str, private_key_pem: bytes, *,
                       ed25519_selector: str | None = None,
                       ed25519_key: bytes | None = None) -> bytes:
    """DKIM-Signature header field(s), CRLF-terminated, to prepend to `raw`.

    rsa-sha256 with relaxed/relaxed canonicalization; with `ed25519_selector` and
    `ed25519_key` (PEM) an ed25519-sha256 signature follows (RFC 8463 §5 dual signing).
    Raises ValueError for a message without From or an unusable key.
    """
    return await asyncio.to_thread(_sign_sync, raw, domain, selector, private_key_pem,
                                   ed25519_selector, ed25519_key)


def _sign_sync(raw: bytes, domain: str, selector: str, private_key_pem: bytes,
               ed25519_selector: str | None, ed25519_key: bytes | None) -> bytes:
    signer = dkim.DKIM(raw, linesep=b"\r\n")
    include = _headers_to_sign([name for name, _ in signer.headers])
    lines = [_sign_with(signer, b"rsa-sha256", domain, selector,
                        rsa_pkcs1_pem(private_key_pem), include)]
    if ed25519_selector and ed25519_key:
        lines.append(_sign_with(signer, b"ed25519-sha256", domain, ed25519_selector,
                                ed25519_seed_base64(ed25519_key), include))
    return b"".join(lines)


def _headers_to_sign(present: list[bytes]) -> list[bytes]:
    names = [name.lower() for name in present
             if name.lower().decode("ascii", "replace") in SIGNED_HEADERS]
    if b"from" not in names:
        raise ValueError("a message without From cannot be DKIM-signed (RFC 6376 §5.4)")
    return [*names, b"from"]


def _sign_with(signer: dkim.DKIM, algorithm: bytes, domain: str, selector: str, key: bytes,
               include: list[bytes]) -> bytes:
    try:
        signature: bytes = signer.sign(selector.encode(), domain.encode(), key,
                                       signature_algorithm=algorithm,
                                       canonicalize=_CANONICALIZATION,
                                       include_headers=include)
    except dkim.DKIMException as exc:
        raise ValueError(f"DKIM signing failed: {exc}") from exc
    return signature


# -- ARC (RFC 8617): dkimpy's side ---------------------------------------------------------

# dkimpy logs every broken chain at ERROR; the reason comes back in the result and the
# DMARC stage logs it with the queue id, so a stranger's bad seal is not our error.
_ARC_QUIET = logging.getLogger("postroom.mailauth.dkimpy-arc")
_ARC_QUIET.setLevel(logging.CRITICAL)

def arc_verify_sync(raw: bytes, keys: Mapping[str, _KeyAnswer]) -> tuple[str, str]:
    """Worker thread: dkimpy's chain validation (RFC 8617 §5.2) as ("pass" | "fail" |
    "none", reason), keys answered from `keys` only. A chain that a seal marked failed
    (dkimpy's None) is "fail"; any dkimpy error is "fail" with its text."""
    try:
        cv, _results, reason = dkim.arc_verify(raw, logger=_ARC_QUIET,
                                               dnsfunc=_answers_from(keys), minkey=1024)
    except Exception as exc:  # dkimpy indexes fields a hostile header may not have
        log.info("dkimpy could not read an ARC chain: %r", exc)
        return "fail", f"unverifiable: {exc!r}"
    if cv is None:
        return "fail", str(reason)
    return cv.decode("ascii", "replace").lower(), str(reason)


def arc_seal_sync(raw: bytes, domain: str, selector: str, private_key_pem: bytes,
                  authserv_id: str) -> bytes:
    """Worker thread: the next ARC set (ARC-Seal, ARC-Message-Signature,
    ARC-Authentication-Results), CRLF-terminated, to prepend to `raw`; b"" when dkimpy
    ends the chain instead (no Authentication-Results of `authserv_id`, RFC 8617 §5.1).
    rsa-sha256, relaxed/relaxed (§4.1.2, §4.1.3). Raises ValueError when it cannot seal."""
    try:
        fields = dkim.arc_sign(raw, selector.encode(), domain.encode(),
                               rsa_pkcs1_pem(private_key_pem), authserv_id.encode(),
                               linesep=b"\r\n")
    except dkim.DKIMException as exc:
        raise ValueError(f"ARC sealing failed: {exc}") from exc
    return b"".join(field if field.endswith(b"\r\n") else field + b"\r\n"
                    for field in fields)
