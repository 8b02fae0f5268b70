"""`postroom selftest`: the online mail tester's verdict, computed offline.

Owns `run_selftest`: build a message as a user of the domain sends it and sign it with
the real outbound signer (selftest/message.py), then judge it the way a receiving
provider does (selftest/checks.py, selftest/tls.py) — DKIM against the live key, SPF for
the server's public address, DMARC alignment and policy, PTR/HELO, MX, STARTTLS with a
valid certificate, DNSBL listings — and score it out of 10. With a recipient, the signed
message is also delivered there (an external tester then gives its own verdict).

The server's public address: `--ip`/`--ipv6`, else OUTBOUND_BIND_ADDRESS, else the A/AAAA
records of OVERRIDE_HOSTNAME (what a receiver would see only if they agree: the PTR/HELO
check says so when they do not).

Invariants: every network step is bounded (the resolver's lifetime, `CHECK_TIMEOUT` per
check, the probe's and the sender's timeouts), so an unreachable DNS server or port
gives failing checks with a reason, never a hang; nothing here writes to the store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from postroom.config import Config
from postroom.dns.resolver import DnsError, Resolver
from postroom.selftest import checks
from postroom.selftest.checks import WEIGHTS, CheckResult, CheckStatus
from postroom.selftest.message import (
    SendOutcome,
    SignedMessage,
    build_signed_message,
    send_direct,
)
from postroom.selftest.records import ZoneInput, configured_srv_ports, transport_inputs
from postroom.selftest.tls import TlsTarget, check_tls

__all__ = [
    "WEIGHTS",
    "CheckResult",
    "CheckStatus",
    "SelftestOptions",
    "SelftestReport",
    "public_addresses",
    "run_selftest",
    "smtp_probe_host",
]

T = TypeVar("T")

CHECK_TIMEOUT = 45.0  # above pyspf's own 20 s limit plus a few 5 s DNS lifetimes


@dataclass(frozen=True, slots=True)
class SelftestOptions:
    domain: str  # normalized
    sender: str  # the From and envelope sender; postmaster@domain by default
    recipient: str | None = None  # --to: also deliver the message there
    ipv4: str | None = None
    ipv6: str | None = None
    smtp_host: str | None = None  # default: the first LISTEN_ADDRESS
    smtp_port: int | None = None  # default: SMTP_PORT
    dnsbl_zones: tuple[str, ...] = ()
    probe_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class SelftestReport:
    domain: str
    sender: str
    addresses: tuple[str, ...]
    checks: tuple[CheckResult, ...]
    score: float
    queue_id: str
    sent: SendOutcome | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def is_failure(self) -> bool:
        return any(c.is_failure for c in self.checks) or (
            self.sent is not None and not self.sent.is_delivered)

    @property
    def score_text(self) -> str:
        return f"score {self.score:g}/10"

    def as_dict(self) -> dict[str, object]:
        sent = None if self.sent is None else {
            "recipient": self.sent.recipient, "delivered": self.sent.is_delivered,
            "reply": self.sent.reply, "server": self.sent.server}
        return {"domain": self.domain, "sender": self.sender,
                "addresses": list(self.addresses), "score": self.score, "max_score": 10,
                "queue_id": self.queue_id, "checks": [c.as_dict() for c in self.checks],
                "sent": sent, "notes": list(self.notes)}


async def public_addresses(config: Config, options: SelftestOptions, resolver: Resolver
                           ) -> tuple[list[str], str]:
    """The addresses receivers see mail from, and where they came from."""
    given = [ip for ip in (options.ipv4, options.ipv6) if ip]
    if given:
        return given, "--ip/--ipv6"
    if config.outbound_bind_address:
        return [config.outbound_bind_address], "OUTBOUND_BIND_ADDRESS"
    found: list[str] = []
    for lookup in (resolver.a, resolver.aaaa):
        try:
            found += await lookup(config.hostname)
        except DnsError:
            continue
    return found, f"the A/AAAA records of {config.hostname}"


def smtp_probe_host(config: Config, options: SelftestOptions) -> str:
    """--smtp-host, else the first LISTEN_ADDRESS (a wildcard means this machine)."""
    if options.smtp_host:
        return options.smtp_host
    listen = config.listen_addresses[0] if config.listen_addresses else "0.0.0.0"
    if listen in {"0.0.0.0", ""}:
        return "127.0.0.1"
    return "::1" if listen == "::" else listen


async def run_selftest(config: Config, resolver: Resolver, options: SelftestOptions,
                       now: dt.datetime | None = None) -> SelftestReport:
    addresses, source = await public_addresses(config, options, resolver)
    spec = _zone_input(config, options.domain, addresses, options.sender)
    recipient = options.recipient or options.sender
    message = await build_signed_message(config, options.domain, options.sender, recipient,
                                         now or dt.datetime.now(dt.UTC))
    results = await _judge(config, resolver, options, spec, addresses, message)
    sent = None
    if options.recipient:
        sent = await send_direct(config, resolver, message)
    notes = (f"server address {', '.join(addresses) or 'unknown'} (from {source})",)
    return SelftestReport(options.domain, options.sender, tuple(addresses), tuple(results),
                          checks.score(results), message.queue_id, sent, notes)


async def _judge(config: Config, resolver: Resolver, options: SelftestOptions,
                 spec: ZoneInput, addresses: list[str], message: SignedMessage
                 ) -> list[CheckResult]:
    """Every check at once (they are independent but for DMARC, which needs the DKIM and
    SPF verdicts), so a silent DNS server costs one timeout, not one per check."""
    probe = TlsTarget(smtp_probe_host(config, options), options.smtp_port or config.smtp_port,
                      config.hostname, options.probe_timeout)
    authentication, *rest = await asyncio.gather(
        _authentication(resolver, options, spec, addresses, message),
        _bounded_one("PTR/HELO", checks.check_ptr_helo(resolver, addresses, config.hostname)),
        _bounded_one("MX", checks.check_mx_host(resolver, spec)),
        _bounded_one("TLS", check_tls(probe)),
        _bounded_one("DNSBL", checks.check_dnsbl(resolver, addresses,
                                                 list(options.dnsbl_zones))))
    return [*authentication, *rest]


async def _authentication(resolver: Resolver, options: SelftestOptions, spec: ZoneInput,
                          addresses: list[str], message: SignedMessage) -> list[CheckResult]:
    (dkim_result, dkim), (spf_result, spf) = await asyncio.gather(
        _bounded("DKIM", checks.check_dkim_signature(resolver, message.raw, spec),
                 default=[]),
        _bounded("SPF", checks.check_spf_for(resolver, spec, addresses, options.sender),
                 default=None))
    from_domain = options.sender.rpartition("@")[2].lower()
    dmarc_result = await _bounded_one("DMARC", checks.check_dmarc_alignment(
        resolver, spec, from_domain, spf, dkim))
    return [dkim_result, spf_result, dmarc_result]


def _zone_input(config: Config, domain: str, addresses: list[str], sender: str) -> ZoneInput:
    v4 = next((ip for ip in addresses if ipaddress.ip_address(ip).version == 4), None)
    v6 = next((ip for ip in addresses if ipaddress.ip_address(ip).version == 6), None)
    return ZoneInput(domain=domain, hostname=config.hostname, ipv4=v4, ipv6=v6,
                     dkim_dir=config.data_dir / "dkim", postmaster=f"postmaster@{domain}",
                     srv_ports=configured_srv_ports(config),
                     **transport_inputs(config))


async def _bounded(name: str, work: Awaitable[tuple[CheckResult, T]], default: T
                      ) -> tuple[CheckResult, T]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await work
    except TimeoutError:
        return _timed_out(name), default


async def _bounded_one(name: str, work: Awaitable[CheckResult]) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await work
    except TimeoutError:
        return _timed_out(name)


def _timed_out(name: str) -> CheckResult:
    return checks.result(name, CheckStatus.FAIL, f"no answer within {CHECK_TIMEOUT:.0f} s",
                         "check that DNS_NAMESERVERS answer and the network is up")
