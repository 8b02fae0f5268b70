"""SPF (RFC 7208) checks through pyspf, with DNS answered by our `Resolver`.

Owns: `check_spf` and its `SpfResult`, and the bridge from pyspf's DNS hook to a Resolver.

pyspf is synchronous and resolves through the module-level function `spf.DNSLookup`.
We replace that function once, at import, with a dispatcher that reads the resolver from a
`ContextVar`. `check_spf` runs pyspf with `asyncio.to_thread`, which runs the function in
a copy of the caller's context, and sets the variable inside that copy; so two checks with
two different resolvers, concurrently in one process, each see only their own resolver
(tests/mailauth/test_spf.py proves it). Outside a check the dispatcher falls back to
pyspf's own lookup, so other users of the module keep working.

The event loop first (issue 22): when the resolver's cache holds every answer the
evaluation needs (a sender seen within the TTLs), pyspf runs on the loop with `_CacheOnly`
answering, in a copy of the context, and no thread hop is paid. The first answer the cache
does not hold raises `_NotCached`, which pyspf does not catch, and the whole evaluation
runs again on a worker thread, asking. On the loop nothing can block: `_CacheOnly` never
queries, pyspf's own limits bound the lookups, and ON_LOOP_TEXT the record text parsed.

Invariants: pyspf enforces the RFC 7208 §4.6.4 limits (10 DNS-querying terms, 10 MX and
PTR names, 2 void lookups); NXDOMAIN and NODATA are both "no answer" to pyspf (void
lookups); a temporary DNS error becomes pyspf's TempError, hence `temperror`. A bug in
pyspf is logged and reported as `temperror`, never as a verdict against the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import spf

from postroom.dns.resolver import (
    Answer,
    DnsTemporaryError,
    NxDomain,
    RecordType,
    Resolver,
    TypedLookups,
)

log = logging.getLogger(__name__)

# RFC 7208 §4.6.4 recommends at least 20 seconds for the whole evaluation.
SPF_TIME_LIMIT = 20.0
# Characters of TXT records pyspf may parse on the event loop in one evaluation; a sender
# whose records (with their includes) are longer is evaluated on a worker thread. Real
# policies are a few hundred characters each; a hostile one may be tens of kilobytes.
ON_LOOP_TEXT = 8 * 1024

_current_resolver: contextvars.ContextVar[Resolver | None] = contextvars.ContextVar(
    "postroom_spf_resolver", default=None)
_pyspf_lookup = spf.DNSLookup

# RFC 7208 §4.3: a domain made of labels; an IP literal or empty name gets "none".
_DOMAIN_RE = re.compile(r"(?=.{1,253}\.?$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                        r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?")


class SpfVerdict(StrEnum):
    """RFC 7208 §2.6 results."""

    PASS = "pass"  # noqa: S105 (a result name, not a password)
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: SpfVerdict
    domain: str  # the checked identity's domain: MAIL FROM's, or HELO's for a null sender
    explanation: str
    property_name: str  # "smtp.mailfrom" or "smtp.helo" (RFC 8601 §2.7.2)
    property_value: str  # the MAIL FROM address, or the HELO name


async def check_spf(resolver: Resolver, ip: str, mail_from: str, helo: str) -> SpfResult:
    """Evaluate SPF for a client `ip` sending MAIL FROM:<mail_from> after HELO `helo`.

    A null reverse-path ("" or "<>") checks the HELO identity (RFC 7208 §2.3, §2.4).
    """
    sender = mail_from.strip().strip("<>")
    helo = helo.strip()
    if sender:
        domain = sender.rpartition("@")[2]
        prop_name, prop_value = "smtp.mailfrom", sender
    else:
        domain = helo
        prop_name, prop_value = "smtp.helo", helo
    domain = domain.rstrip(".").lower()
    if not _DOMAIN_RE.fullmatch(domain):
        return SpfResult(SpfVerdict.NONE, domain, "no valid domain to check",
                         prop_name, prop_value)
    cached = _CacheOnly(resolver)
    outcome = (SpfVerdict.TEMPERROR, "")
    with contextlib.suppress(_NotCached):
        outcome = contextvars.copy_context().run(_run_pyspf, cached, ip, sender, helo)
    if cached.missed:  # also when pyspf swallowed the miss (its exp= lookup does)
        outcome = await asyncio.to_thread(_run_pyspf, resolver, ip, sender, helo)
    verdict, explanation = outcome
    return SpfResult(verdict, domain, explanation, prop_name, prop_value)


def _run_pyspf(resolver: Resolver, ip: str, sender: str, helo: str
               ) -> tuple[SpfVerdict, str]:
    """Runs in a context copy of its own: asyncio.to_thread's on a worker thread, or
    check_spf's on the loop (then `resolver` is a _CacheOnly and may raise _NotCached)."""
    _current_resolver.set(resolver)
    try:
        query = spf.query(i=ip, s=sender, h=helo, strict=True, querytime=SPF_TIME_LIMIT)
        result, _code, explanation = query.check()
    except _NotCached:
        raise
    except spf.PermError as exc:  # raised by the constructor for a malformed IP
        return SpfVerdict.PERMERROR, str(exc)
    except Exception:
        log.exception("pyspf failed on ip=%s sender=%s helo=%s", ip, sender, helo)
        return SpfVerdict.TEMPERROR, "internal error evaluating SPF"
    return SpfVerdict(result), str(explanation)


def _dispatch_lookup(name: str, qtype: str, strict: Any = True, timeout: Any = 20
                     ) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNS hook: answers in pyspf's shape, [((name, qtype), value), ...]."""
    resolver = _current_resolver.get()
    if resolver is None:
        return _pyspf_lookup(name, qtype, strict, timeout)  # type: ignore[no-any-return]
    try:
        values = _lookup_values(resolver, name, qtype)
    except NxDomain:
        return []
    except DnsTemporaryError as exc:
        raise spf.TempError(f"DNS {exc}") from exc
    return [((name, qtype), value) for value in values]


class _NotCached(Exception):
    """An answer the cache does not hold: evaluate again on a worker thread."""


class _CacheOnly(TypedLookups):
    """A resolver answering from another's cache only: a miss raises _NotCached."""

    __slots__ = ("_resolver", "_text_left", "missed")

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._text_left = ON_LOOP_TEXT
        self.missed = False

    def sync_lookup(self, name: str, rdtype: RecordType) -> Answer:
        answer = self._resolver.cached(name, rdtype)
        if answer is not None and rdtype is RecordType.TXT:
            self._text_left -= sum(len(str(record)) for record in answer.records)
        if answer is None or self._text_left < 0:
            self.missed = True  # not held, or more text than the loop parses: a thread
            raise _NotCached(name)
        return answer

    async def lookup(self, name: str, rdtype: RecordType) -> Answer:
        return self.sync_lookup(name, rdtype)  # never blocks


def _lookup_values(resolver: Resolver, name: str, qtype: str) -> list[Any]:
    if qtype == "A":
        return resolver.sync_a(name)
    if qtype == "AAAA":
        return resolver.sync_aaaa(name)
    if qtype == "MX":
        return [(mx.preference, mx.host) for mx in resolver.sync_mx(name)]
    if qtype == "TXT":
        # pyspf joins each record's character-strings itself; ours are joined already.
        return [[text.encode("utf-8")] for text in resolver.sync_txt(name)]
    if qtype == "PTR":
        ip = reverse_name_to_ip(name)
        return resolver.sync_ptr(ip) if ip else []
    return []  # type SPF (99) is obsolete (RFC 7208 §3.1) and only asked in harsh mode


def reverse_name_to_ip(name: str) -> str | None:
    """`4.3.2.1.in-addr.arpa` → `1.2.3.4`; nibble `ip6.arpa` names → IPv6 text."""
    labels = name.rstrip(".").lower().split(".")
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        return ".".join(reversed(labels[:4]))
    if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        return ":".join(nibbles[i:i + 4] for i in range(0, 32, 4))
    return None


spf.DNSLookup = _dispatch_lookup
