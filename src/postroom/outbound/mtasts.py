"""Recipient domains' MTA-STS policies (RFC 8461), as outbound delivery honours them.

Owns: the `_mta-sts` TXT record's reading (§3.1), the strict policy parser (§3.2), MX
pattern matching (§4.1), fetching the policy over HTTPS (§3.3) and its durable cache in
the store (`MtaStsStore`, §5.1). outbound/tlspolicy.py decides what a policy means for
one delivery.

Invariants:
- a policy is fetched only from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (port
  MTA_STS_FETCH_PORT), over TLS whose certificate verifies against SMTP_TLS_CAFILE (else
  the system store) and names `mta-sts.DOMAIN`; only a 200 counts (no redirects, §3.3),
  the body is at most `MAX_POLICY_SIZE` and the whole fetch at most `FETCH_TIMEOUT`;
- the parser accepts exactly one version `STSv1`, one known mode, one max_age of at most
  `MAX_AGE_LIMIT`, and (unless mode is none) at least one valid mx pattern; at most
  `MAX_LINES` lines and `MAX_MX` patterns; unknown fields are ignored (§3.2); anything
  else makes the whole policy invalid;
- §5.1 caching: a policy is refetched only when the TXT id differs from the cached one or
  the cached policy has expired; while the TXT record is missing or the fetch fails, an
  unexpired cached policy stays in force; a domain with neither has no policy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import ssl
from dataclasses import dataclass

from postroom.checks import httpclient
from postroom.checks.scanning import ScannerError
from postroom.clock import Clock
from postroom.dns.resolver import DnsError, DnsTemporaryError, Resolver
from postroom.store.mtasts_api import CachedMtaStsPolicy, MtaStsStore

log = logging.getLogger(__name__)

WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_SIZE = 64 * 1024  # RFC 8461 §3.3 suggests a limit; 64 KiB (Postfix' mta-sts)
MAX_LINES = 200
MAX_MX = 64
MAX_AGE_LIMIT = 31557600  # RFC 8461 §3.2: about one year
FETCH_TIMEOUT = 30.0  # seconds for DNS, connect, TLS and the whole body (§3.3: a minute+)
_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # §3.1 sts-id
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_MX_PATTERN = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})+")
_FIELD = re.compile(r"([A-Za-z0-9_-]{1,32}):[ \t]*(.*?)[ \t]*")  # §3.2 sts-field
_MODES = ("enforce", "testing", "none")


class PolicyError(ValueError):
    """The policy text or TXT record breaks RFC 8461's grammar."""


@dataclass(frozen=True, slots=True)
class MtaStsPolicy:
    mode: str  # "enforce", "testing" or "none"
    mx: tuple[str, ...]  # lower-cased patterns: host names or "*.domain"
    max_age: int
    lines: tuple[str, ...]  # the policy's lines, TLS-RPT's policy-string (RFC 8460 §4.4)

    def matches(self, host: str) -> bool:
        """§4.1: the MX host equals a pattern, or a "*." pattern covers exactly its
        leftmost label."""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                if "." in host and host.split(".", 1)[1] == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_txt_id(records: list[str]) -> str | None:
    """The id of the one `v=STSv1` TXT record (§3.1), or None when there is none, there
    are several, or it is malformed (§3.1: then as if there were none)."""
    found = [record for record in records if record.startswith("v=STSv1")]
    if len(found) != 1:
        return None
    fields: dict[str, str] = {}
    for part in found[0].split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key not in fields:
            fields[key] = value.strip()
    if fields.get("v") != "STSv1" or not _ID.fullmatch(fields.get("id", "")):
        return None
    return fields["id"]


def parse_policy(text: str) -> MtaStsPolicy:
    """The policy file (§3.2); PolicyError for anything not strictly valid."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_LINES:
        raise PolicyError(f"more than {MAX_LINES} lines")
    single: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(lines, 1):
        match = _FIELD.fullmatch(line)
        if match is None or not line.isascii() or any(ord(c) < 32 and c != "\t" for c in line):
            raise PolicyError(f"line {number} is not a 'name: value' field")
        name, value = match.group(1), match.group(2)
        if name == "mx":
            mx.append(_mx_pattern(value, number))
            if len(mx) > MAX_MX:
                raise PolicyError(f"more than {MAX_MX} mx patterns")
        elif name in ("version", "mode", "max_age"):
            if name in single:
                raise PolicyError(f"{name} given twice")
            single[name] = value
    return _policy(single, tuple(mx), tuple(lines))


def _policy(fields: dict[str, str], mx: tuple[str, ...], lines: tuple[str, ...]
            ) -> MtaStsPolicy:
    if fields.get("version") != "STSv1":
        raise PolicyError("version is not STSv1")
    mode = fields.get("mode", "")
    if mode not in _MODES:
        raise PolicyError(f"mode {mode!r} is not enforce, testing or none")
    age = fields.get("max_age", "")
    if not (age.isdigit() and len(age) <= 10) or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {age!r} is not a number up to {MAX_AGE_LIMIT}")
    if mode != "none" and not mx:
        raise PolicyError("no mx pattern")
    return MtaStsPolicy(mode, mx, int(age), lines)


def _mx_pattern(value: str, number: int) -> str:
    pattern = value.rstrip(".").lower()
    if not _MX_PATTERN.fullmatch(pattern) or len(pattern) > 253:
        raise PolicyError(f"line {number}: {value!r} is not an mx pattern")
    return pattern


@dataclass(frozen=True, slots=True)
class PolicyLookup:
    """What `MtaStsPolicies.lookup` found: the policy in force (None: no policy) and, when
    a fetch failed, the TLS-RPT result type and reason (RFC 8460 §4.3.2.3)."""

    policy: MtaStsPolicy | None
    failure: str | None = None  # "sts-policy-fetch-error" or "sts-policy-invalid"
    detail: str = ""


class MtaStsPolicies:
    """Fetches and caches recipient domains' policies (the module docstring's rules)."""

    def __init__(self, store: MtaStsStore, resolver: Resolver, clock: Clock, *,
                 port: int = 443, cafile: str = "", timeout: float = FETCH_TIMEOUT) -> None:
        self.store = store
        self.resolver = resolver
        self.clock = clock
        self.port = port
        self.cafile = cafile
        self.timeout = timeout

    async def lookup(self, domain: str) -> PolicyLookup:
        domain = domain.rstrip(".").lower()
        now = self.clock.now()
        cached = await self.store.mta_sts_policy(domain)
        fresh = cached if cached is not None and cached.expires > now else None
        try:
            policy_id = parse_txt_id(await self.resolver.txt(f"_mta-sts.{domain}"))
        except DnsTemporaryError as error:
            log.info("MTA-STS: TXT lookup for %s failed: %s", domain, error)
            policy_id = None
        except DnsError:
            policy_id = None
        if policy_id is None or (fresh is not None and fresh.policy_id == policy_id):
            return PolicyLookup(_parsed(fresh))  # §5.1: keep an unexpired policy
        try:
            text = await self._fetch(domain)
            policy = parse_policy(text)
        except PolicyError as error:
            return self._failed(domain, fresh, "sts-policy-invalid", str(error))
        except (OSError, TimeoutError, ssl.SSLError, ScannerError, DnsError,
                UnicodeDecodeError, ValueError) as error:
            return self._failed(domain, fresh, "sts-policy-fetch-error",
                                str(error) or type(error).__name__)
        expires = now + dt.timedelta(seconds=policy.max_age)
        await self.store.put_mta_sts_policy(CachedMtaStsPolicy(domain, policy_id, text,
                                                               now, expires))
        return PolicyLookup(policy)

    def _failed(self, domain: str, fresh: CachedMtaStsPolicy | None, failure: str,
                detail: str) -> PolicyLookup:
        log.warning("MTA-STS: policy of %s could not be fetched (%s: %s)%s", domain,
                    failure, detail, "; the cached policy stays in force" if fresh else "")
        return PolicyLookup(_parsed(fresh), failure, detail)

    async def _fetch(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=self.cafile or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        async with asyncio.timeout(self.timeout):
            addresses = await self.resolver.a(host) or await self.resolver.aaaa(host)
            if not addresses:
                raise ValueError(f"{host} has no address")
            response = await httpclient.get(host, self.port, WELL_KNOWN_PATH,
                                            address=addresses[0], context=context,
                                            max_size=MAX_POLICY_SIZE)
        if response.status != 200:  # §3.3: redirects are not followed
            raise ValueError(f"https://{host}{WELL_KNOWN_PATH} answered {response.status}")
        media = dict(response.headers).get("content-type", "").split(";")[0].strip()
        if media.lower() != "text/plain":
            raise ValueError(f"the policy's media type is {media!r}, not text/plain")
        return response.body.decode("utf-8")


def _parsed(cached: CachedMtaStsPolicy | None) -> MtaStsPolicy | None:
    if cached is None:
        return None
    try:
        return parse_policy(cached.policy_text)
    except PolicyError:
        return None
