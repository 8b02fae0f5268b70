"""DNS block and allow lists: the client's address, the sender's, From's and the body's
URL domains, looked up in parallel and scored (issue 18; postscreen's and rspamd's RBLs).

Owns the zone syntax (postscreen's `zone`, `zone*weight`, `zone=127.0.0.[2..11]*weight`:
`parse_zone`), the query names (RFC 5782 §2.1: IPv4 octets reversed, §2.4: IPv6 nibbles
reversed; §2.2 domains as they are), the reading of answers, the lookups
(`DnsLists`) and the MESSAGE-stage check (`DnsblCheck`) that turns listings into
symbols: an IP list's weight once per zone (`RBL_<ZONE>`), a domain list's once per zone
however many domains it lists (`RHSBL_<ZONE>`), an allow list's (negative) weight
(`DNSWL_<ZONE>`). A listing refuses nothing by itself: the total score meets SA_KILL.

Invariants:
- An answer outside 127.0.0.0/8 is no listing (RFC 5782 §2.1). 127.255.255.x (Spamhaus:
  query refused, public resolver, over quota), 127.0.0.1 (URIBL and SURBL: refused) and
  127.x.x.255 (DNSWL and DBL errors) say the list refused the query: ignored, logged once
  per zone and process, so an administrator learns the resolver is blocked.
- Every lookup of a message shares one deadline (DNSBL_TIMEOUT); one that has not
  answered by then, or failed, counts as not listed: a list never delays mail for longer.
- Work is bounded: at most `MAX_DOMAINS` distinct domains per message, URLs looked for in
  the first `BODY_SCAN_LIMIT` bytes after the header (raw and quoted-printable text).
- Authenticated, submission and TRUSTED_NETWORKS clients are not looked up, nor clients
  with a non-global address (no list holds them) unless DNSBL_QUERY_PRIVATE=1.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from postroom.checks.api import ACCEPT, ClientInfo, ReceivedMessage, Symbol, Verdict
from postroom.config import Config
from postroom.dns.resolver import DnsError, Resolver
from postroom.mailauth.dmarc import organizational_domain
from postroom.mailauth.headerscan import authors_of

log = logging.getLogger("postroom.filter")

MAX_DOMAINS = 20  # distinct domains looked up per message
BODY_SCAN_LIMIT = 256 * 1024  # bytes of body searched for URLs
_URL_HOST = re.compile(rb"(?i)\b(?:https?://|www\.)([a-z0-9][a-z0-9.-]{0,252}[a-z0-9])")
_OCTET = re.compile(r"\[([0-9.;]+)\]|([0-9]+)")
_WEIGHT = re.compile(r"\*(-?\d+(?:\.\d+)?)$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    weight: float
    codes: tuple[frozenset[int], ...] | None = None  # allowed values per octet; None: any

    def matches(self, answer: Address) -> bool:
        if self.codes is None:
            return True
        return all(int(octet) in allowed
                   for octet, allowed in zip(str(answer).split("."), self.codes, strict=True))


def parse_zone(text: str, default_weight: float = 1.0) -> Zone:
    """`zone`, `zone*weight`, `zone=127.0.0.2`, `zone=127.0.0.[2..11;20]*weight`
    (postscreen_dnsbl_sites). configfilter.py has already checked the characters."""
    weight = default_weight
    found = _WEIGHT.search(text)
    if found:
        weight = float(found.group(1))
        text = text[:found.start()]
    name, _, filter_text = text.partition("=")
    codes = _parse_codes(filter_text) if filter_text else None
    return Zone(name.strip(".").lower(), weight, codes)


def _parse_codes(text: str) -> tuple[frozenset[int], ...]:
    octets = _OCTET.findall(text)
    if len(octets) != 4:
        raise ValueError(f"{text!r}: expected four octets, as 127.0.0.[2..11]")
    return tuple(_parse_octet(listed or single) for listed, single in octets)


def _parse_octet(text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(";"):
        low, _, high = item.partition("..")
        values.update(range(int(low), int(high or low) + 1))
    return frozenset(values)


def ip_query_name(address: Address, zone: str) -> str:
    """RFC 5782 §2.1 (IPv4) and §2.4 (IPv6, 32 nibbles) reversed under the zone."""
    if isinstance(address, ipaddress.IPv4Address):
        return ".".join(reversed(str(address).split("."))) + "." + zone
    return ".".join(reversed(address.exploded.replace(":", ""))) + "." + zone


def is_refusal_answer(answer: Address) -> bool:
    """The codes lists use to refuse a query rather than to list (module docstring)."""
    text = str(answer)
    return (text.startswith("127.255.255.") or text == "127.0.0.1"
            or (text.startswith("127.") and text.endswith(".255")))


def symbol_part(zone: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", zone.upper())


class DnsLists:
    """The configured lists and the lookups, in parallel under one deadline."""

    def __init__(self, resolver: Resolver, config: Config) -> None:
        self._resolver = resolver
        self.ip_zones = [parse_zone(text) for text in config.dnsbl_zones]
        self.domain_zones = [parse_zone(text) for text in config.dnsbl_domain_zones]
        self.allow_zones = [parse_zone(text, -1.0) for text in config.dnswl_zones]
        self.timeout = config.dnsbl_timeout
        self.query_private = config.dnsbl_query_private
        self._refusing: set[str] = set()  # zones whose refusal was logged

    def is_exempt(self, client: ClientInfo) -> bool:
        """Clients whose mail the lists are not asked about (module docstring)."""
        if client.auth_user or client.is_submission or client.is_trusted:
            return True
        return not self.query_private and _is_local(client.ip)

    def should_query(self, client: ClientInfo) -> Address | None:
        """The client's address if lists are asked about it."""
        return None if self.is_exempt(client) else client_address(client)

    async def is_allowlisted(self, address: Address) -> bool:
        """Listed by any DNSWL (greylisting lets such clients through at once)."""
        queries = [(zone, ip_query_name(address, zone.name)) for zone in self.allow_zones]
        return bool(await self._listed(queries))

    async def symbols(self, address: Address | None, domains: Sequence[str]) -> list[Symbol]:
        """Listings of the address (None: none known) and the domains, as symbols."""
        queries = [] if address is None else [
            (zone, ip_query_name(address, zone.name))
            for zone in (*self.ip_zones, *self.allow_zones)]
        queries += [(zone, f"{domain}.{zone.name}")
                    for zone in self.domain_zones for domain in domains]
        hits = await self._listed(queries)
        found: list[Symbol] = []
        for zone, names in hits.items():
            if zone in self.domain_zones:
                listed = ",".join(name.removesuffix("." + zone.name) for name in names)
                found.append(Symbol("RHSBL_" + symbol_part(zone.name), zone.weight, listed))
            elif zone in self.allow_zones:
                found.append(Symbol("DNSWL_" + symbol_part(zone.name), zone.weight, str(address)))
            else:
                found.append(Symbol("RBL_" + symbol_part(zone.name), zone.weight, str(address)))
        return found

    async def _listed(self, queries: Sequence[tuple[Zone, str]]) -> dict[Zone, list[str]]:
        """Which queries are listed, by zone; unanswered by the deadline: not listed."""
        hits: dict[Zone, list[str]] = {}
        asked: list[tuple[Zone, str]] = []
        for zone, name in queries:  # answers the cache holds: judged now, no task each
            cached = self._resolver.cached_a(name)
            if cached is None:
                asked.append((zone, name))
            elif self._judge(zone, cached):
                hits.setdefault(zone, []).append(name)
        if not asked:
            return hits
        tasks = [asyncio.ensure_future(self._lookup(zone, name)) for zone, name in asked]
        done, pending = await asyncio.wait(tasks, timeout=self.timeout)
        for task in pending:
            task.cancel()
        if pending:  # gone before we return: no lookup outlives its message
            await asyncio.wait(pending)
        for (zone, name), task in zip(asked, tasks, strict=True):
            if task in done and not task.cancelled() and task.result():
                hits.setdefault(zone, []).append(name)
        return hits

    async def _lookup(self, zone: Zone, name: str) -> bool:
        try:
            answers = await self._resolver.a(name)
        except DnsError:  # NXDOMAIN: not listed; a temporary error: not known to be
            return False
        return self._judge(zone, answers)

    def _judge(self, zone: Zone, answers: Sequence[str]) -> bool:
        """Whether A answers mean "listed" in `zone` (refusal codes logged, ignored)."""
        listed = False
        for text in answers:
            try:
                answer = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not isinstance(answer, ipaddress.IPv4Address) or not answer.is_loopback:
                continue  # RFC 5782 §2.1: listings are 127.0.0.0/8
            if is_refusal_answer(answer):
                self._log_refusal(zone, text)
            elif zone.matches(answer):
                listed = True
        return listed

    def _log_refusal(self, zone: Zone, answer: str) -> None:
        if zone.name not in self._refusing:
            self._refusing.add(zone.name)
            log.warning("DNS list %s refused our queries (answer %s): its verdicts are "
                        "ignored; the resolver may be public or over the list's quota",
                        zone.name, answer)


def client_address(client: ClientInfo) -> Address | None:
    """The client's address (an IPv4-mapped one as IPv4), None if it is not one."""
    return _parse_address(client.ip)


# Parsing and classifying an address costs more than the rest of an exempt client's check;
# clients repeat, so both are remembered (bounded).
@functools.lru_cache(maxsize=4096)
def _parse_address(ip: str) -> Address | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _is_local(ip: str) -> bool:
    """A loopback or private address, which no list holds."""
    address = _parse_address(ip)
    return address is not None and not address.is_global


@functools.lru_cache(maxsize=4096)
def _organizational(name: str) -> str:
    """The Public Suffix List lookup, cached: the same senders and links come back."""
    return organizational_domain(name)


def url_domains(body: bytes) -> Iterator[str]:
    """Host names of URLs in the text after the header, in order of appearance."""
    start = body.find(b"\r\n\r\n")
    text = body[start + 4 if start >= 0 else 0:][:BODY_SCAN_LIMIT]
    text = text.replace(b"=\r\n", b"").replace(b"=3D", b"=").replace(b"=3d", b"=")
    seen: set[bytes] = set()
    for match in _URL_HOST.finditer(text):
        host = match.group(1)
        if host not in seen:
            seen.add(host)
            yield host.decode("ascii").lower().rstrip(".")


def message_domains(message: ReceivedMessage, body: bytes) -> list[str]:
    """Distinct organizational domains of the envelope sender, From and body URLs, at
    most MAX_DOMAINS, in that order."""
    candidates: list[str] = []
    if "@" in message.sender:
        candidates.append(message.sender.rpartition("@")[2])
    candidates.extend(author.domain for author in authors_of(message.header.from_fields) or [])
    return _distinct_domains(itertools.chain(candidates, url_domains(body)))


def _distinct_domains(candidates: Iterable[str]) -> list[str]:
    seen: list[str] = []
    names: set[str] = set()  # a body names the same host again and again: judged once
    for candidate in candidates:
        name = candidate.strip(".").lower()
        if name in names:
            continue
        names.add(name)
        if "." not in name or name.replace(".", "").isdigit() or name.startswith("["):
            continue  # not a domain (an address literal, a bare label)
        domain = _organizational(name)
        if domain not in seen:
            seen.append(domain)
            if len(seen) >= MAX_DOMAINS:
                break
    return seen


def _read_head(message: ReceivedMessage) -> bytes:
    """Enough of the message for the header and the scanned body (blocking on a spool)."""
    limit = BODY_SCAN_LIMIT + 1024 * 1024
    if message.body is not None:
        return message.body[:limit]
    with message.spool_path.open("rb") as spool:
        return spool.read(limit)


class DnsblCheck:
    """The lists' verdict on a message, after DATA, as symbols (ENABLE_DNSBL)."""

    name = "dnsbl"
    fail_open = True  # a list is an opinion: never a reason to delay mail

    def __init__(self, config: Config, resolver: Resolver) -> None:
        self.is_enabled = config.enable_dnsbl
        self.lists = DnsLists(resolver, config)
        # None: the lookups keep their own deadline (DNSBL_TIMEOUT, `DnsLists._listed`),
        # so no pipeline timer is armed for every message.
        self.timeout: float | None = None

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        if not self.is_enabled or self.lists.is_exempt(message.client):
            return ACCEPT
        body = (_read_head(message) if message.is_small
                else await asyncio.to_thread(_read_head, message))
        symbols = await self.lists.symbols(client_address(message.client),
                                           message_domains(message, body))
        if not symbols:
            return ACCEPT
        return Verdict.scored(*symbols, reason=" ".join(s.name for s in symbols))
