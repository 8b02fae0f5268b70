"""The DNS helper: every record a mail domain needs, and a record-by-record live check.

Owns what postroom tells users to publish. `render_zone()` prints a BIND zone snippet
(absolute names, a comment before each record saying what it is for) that loads with any
zone parser; `check_domain()` asks DNS (through the Resolver, so DNS_NAMESERVERS applies)
and returns one `Finding` per record with what was found and the fix. SPF is *evaluated*
for the server's IP with the real SPF engine, not string-matched; the DKIM key in DNS is
compared with the private key on disk.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from postroom.dns.resolver import DnsError, Resolver
from postroom.mailauth import dmarc
from postroom.mailauth.keys import list_keys, public_key_matches, public_txt_value
from postroom.mailauth.spf import SpfVerdict, check_spf

# RFC 6186 / RFC 8314 §5.1: implicit TLS services clients should find first.
T = TypeVar("T")
RecordWriter = Callable[[str, str, str, str], None]

_SRV_SERVICES = (("_submissions._tcp", 465, "mail submission over implicit TLS"),
                 ("_submission._tcp", 587, "mail submission with STARTTLS"),
                 ("_imaps._tcp", 993, "IMAP over implicit TLS"),
                 ("_pop3s._tcp", 995, "POP3 over implicit TLS"))


@dataclass(frozen=True, slots=True)
class ZoneInput:
    domain: str
    hostname: str
    ipv4: str | None
    ipv6: str | None
    dkim_dir: Path
    postmaster: str


def _txt(value: str) -> str:
    """A TXT rdata: quoted character-strings of at most 255 octets (RFC 1035 §3.3)."""
    chunks = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
    quoted = [f'"{chunk}"' for chunk in chunks]
    return quoted[0] if len(quoted) == 1 else "( " + " ".join(quoted) + " )"


def spf_value(ipv4: str | None, ipv6: str | None) -> str:
    mechanisms = ["mx"]
    if ipv4:
        mechanisms.append(f"ip4:{ipv4}")
    if ipv6:
        mechanisms.append(f"ip6:{ipv6}")
    return "v=spf1 " + " ".join(mechanisms) + " -all"


def dmarc_value(postmaster: str) -> str:
    # Quarantine is a safe start: DKIM and SPF are both set up by the records above;
    # move to p=reject once the aggregate reports (rua) look clean.
    return f"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:{postmaster}"


def render_zone(spec: ZoneInput, today: dt.date | None = None) -> str:
    domain, host = spec.domain + ".", spec.hostname + "."
    lines = [f"; DNS records for mail at {spec.domain}, served by {spec.hostname}",
             f"; paste into the zone of {spec.domain}; names are absolute", ""]

    def record(comment: str, name: str, rtype: str, data: str) -> None:
        lines.extend([f"; {comment}", f"{name}\t3600\tIN\t{rtype}\t{data}", ""])

    if spec.ipv4:
        record("A: the address of the mail host", host, "A", spec.ipv4)
    if spec.ipv6:
        record("AAAA: the IPv6 address of the mail host", host, "AAAA", spec.ipv6)
    if not spec.ipv4 and not spec.ipv6:
        lines += [f"; A: the mail host {host} needs an A record; rerun with --ip IPV4", ""]
    record(f"MX: mail for {spec.domain} is delivered to {spec.hostname}", domain, "MX",
           f"10 {host}")
    record("SPF: only the MX hosts (and the addresses given) may send for the domain",
           domain, "TXT", _txt(spf_value(spec.ipv4, spec.ipv6)))
    _render_dkim(spec, record, lines)
    record("DMARC: what receivers do with mail that fails SPF and DKIM alignment",
           f"_dmarc.{domain}", "TXT", _txt(dmarc_value(spec.postmaster)))
    for service, port, what in _SRV_SERVICES:
        record(f"SRV (RFC 6186): {what}, for mail client autoconfiguration",
               f"{service}.{domain}", "SRV", f"0 1 {port} {host}")
    stamp = (today or dt.datetime.now(dt.UTC).date()).strftime("%Y%m%d")
    record("MTA-STS (RFC 8461): announces a policy served at "
           f"https://mta-sts.{spec.domain}/.well-known/mta-sts.txt (publish that file too)",
           f"_mta-sts.{domain}", "TXT", _txt(f"v=STSv1; id={stamp}01"))
    record("TLS-RPT (RFC 8460): where senders report TLS delivery problems",
           f"_smtp._tls.{domain}", "TXT", _txt(f"v=TLSRPTv1; rua=mailto:{spec.postmaster}"))
    lines += _ptr_advice(spec)
    return "\n".join(lines).rstrip() + "\n"


def _render_dkim(spec: ZoneInput, record: RecordWriter, lines: list[str]) -> None:
    keys = [key for key in list_keys(spec.dkim_dir) if key.domain == spec.domain]
    if not keys:
        lines += ["; DKIM: no key yet for this domain; run "
                  f"`postroom dkim generate {spec.domain}` and rerun this command", ""]
        return
    for key in keys:
        value = public_txt_value(key.private_path.read_bytes())
        record(f"DKIM (selector {key.selector}): the public key receivers verify "
               "signatures with", f"{key.selector}._domainkey.{spec.domain}.", "TXT",
               _txt(value))


def _ptr_advice(spec: ZoneInput) -> list[str]:
    lines = ["; PTR: reverse DNS is set by whoever owns the IP address (your hosting",
             "; provider's control panel); ask for these, they are not part of this zone:"]
    for address in (spec.ipv4, spec.ipv6):
        if address:
            reverse = ipaddress.ip_address(address).reverse_pointer
            lines.append(f";   {reverse}.\tIN\tPTR\t{spec.hostname}.")
    if not spec.ipv4 and not spec.ipv6:
        lines.append(f";   <reverse name of your IP>\tIN\tPTR\t{spec.hostname}.")
    return lines


# -- checking -------------------------------------------------------------------------
class Status(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    record: str
    status: Status
    found: str
    fix: str
    is_required: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def is_failure(self) -> bool:
        return self.is_required and self.status in {Status.MISSING, Status.WRONG}


async def _lookup(query: Awaitable[Sequence[T]]) -> tuple[list[T], str]:
    """Run one resolver call; DNS errors become a description instead of an exception."""
    try:
        return list(await query), ""
    except DnsError as error:
        return [], f"{type(error).__name__}: {error}"


async def check_mx(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    answers, error = await _lookup(resolver.mx(spec.domain))
    records = sorted(answers, key=lambda mx: mx.preference)
    fix = f"add: {spec.domain}. IN MX 10 {spec.hostname}."
    if not records:
        return [Finding("MX", Status.MISSING, error or "no MX record", fix)]
    if any(mx.is_null for mx in records):
        return [Finding("MX", Status.WRONG, "null MX: the domain accepts no mail", fix)]
    hosts = [mx.host for mx in records]
    found = ", ".join(f"{mx.preference} {mx.host}" for mx in records)
    if spec.hostname not in hosts:
        return [Finding("MX", Status.WRONG, found, f"point the MX at {spec.hostname}: {fix}")]
    return [Finding("MX", Status.OK, found, "")]


async def check_host_address(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    v4, error4 = await _lookup(resolver.a(spec.hostname))
    v6, _ = await _lookup(resolver.aaaa(spec.hostname))
    addresses = [str(a) for a in v4 + v6]
    fix = f"add: {spec.hostname}. IN A {spec.ipv4 or '<your IPv4>'}"
    if not addresses:
        return [Finding(f"A {spec.hostname}", Status.MISSING, error4 or "no A/AAAA record", fix)]
    wanted = [ip for ip in (spec.ipv4, spec.ipv6) if ip]
    missing = [ip for ip in wanted if ip not in addresses]
    if missing:
        return [Finding(f"A {spec.hostname}", Status.WRONG, ", ".join(addresses),
                        f"the mail host must resolve to {', '.join(missing)}: {fix}")]
    return [Finding(f"A {spec.hostname}", Status.OK, ", ".join(addresses), "")]


async def check_spf_record(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    texts, error = await _lookup(resolver.txt(spec.domain))
    spf_records = [str(t) for t in texts if str(t).lower().startswith("v=spf1")]
    fix = f'add: {spec.domain}. IN TXT "{spf_value(spec.ipv4, spec.ipv6)}"'
    if not spf_records:
        return [Finding("SPF", Status.MISSING, error or "no v=spf1 TXT record", fix)]
    if len(spf_records) > 1:
        return [Finding("SPF", Status.WRONG, " | ".join(spf_records),
                        "publish exactly one v=spf1 record (RFC 7208 §3.2): merge them")]
    ip = spec.ipv4 or spec.ipv6
    if ip is None:
        return [Finding("SPF", Status.OK, spf_records[0], "")]
    verdict = await check_spf(resolver, ip, f"postmaster@{spec.domain}", spec.hostname)
    if verdict.result is SpfVerdict.PASS:
        return [Finding("SPF", Status.OK, spf_records[0], "")]
    return [Finding("SPF", Status.WRONG, f"{spf_records[0]} (result for {ip}: "
                    f"{verdict.result.value})", f"authorize {ip}: {fix}")]


async def check_dkim(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    keys = [key for key in list_keys(spec.dkim_dir) if key.domain == spec.domain]
    if not keys:
        return [Finding("DKIM", Status.MISSING, "no DKIM key on this server",
                        f"run `postroom dkim generate {spec.domain}`, publish its record")]
    findings = []
    for key in keys:
        name = f"{key.selector}._domainkey.{spec.domain}"
        private = key.private_path.read_bytes()
        fix = f"publish: {name}. IN TXT {_txt(public_txt_value(private))}"
        texts, error = await _lookup(resolver.txt(name))
        dkim_records = [str(t) for t in texts if "p=" in str(t)]
        if not dkim_records:
            findings.append(Finding(f"DKIM {key.selector}", Status.MISSING,
                                    error or f"no TXT record at {name}", fix))
        elif not any(public_key_matches(text, private) for text in dkim_records):
            findings.append(Finding(f"DKIM {key.selector}", Status.WRONG,
                                    "the public key in DNS does not match the key on disk",
                                    fix))
        else:
            findings.append(Finding(f"DKIM {key.selector}", Status.OK, name, ""))
    return findings


async def check_dmarc_record(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    name = f"_dmarc.{spec.domain}"
    texts, error = await _lookup(resolver.txt(name))
    candidates = [str(t) for t in texts if str(t).lower().lstrip().startswith("v=dmarc1")]
    fix = f'add: {name}. IN TXT "{dmarc_value(spec.postmaster)}"'
    if not candidates:
        return [Finding("DMARC", Status.MISSING, error or f"no v=DMARC1 record at {name}", fix)]
    if len(candidates) > 1:
        return [Finding("DMARC", Status.WRONG, " | ".join(candidates),
                        "publish exactly one DMARC record (RFC 7489 §6.6.3)")]
    try:
        record = dmarc.parse_dmarc_record(candidates[0])
    except dmarc.DmarcSyntaxError as problem:
        return [Finding("DMARC", Status.WRONG, f"{candidates[0]} ({problem})", fix)]
    if record.errors:
        return [Finding("DMARC", Status.WRONG, f"{candidates[0]} ({'; '.join(record.errors)})",
                        fix)]
    if record.policy is dmarc.Policy.NONE:
        return [Finding("DMARC", Status.WARNING, candidates[0],
                        "p=none only monitors; move to p=quarantine, then p=reject",
                        is_required=False)]
    return [Finding("DMARC", Status.OK, candidates[0], "")]


async def check_ptr(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    findings = []
    for ip in (spec.ipv4, spec.ipv6):
        if not ip:
            continue
        names, error = await _lookup(resolver.ptr(ip))
        found = ", ".join(str(n) for n in names) or error or "no PTR record"
        if spec.hostname in [str(n).rstrip(".").lower() for n in names]:
            findings.append(Finding(f"PTR {ip}", Status.OK, found, "", is_required=False))
        else:
            findings.append(Finding(f"PTR {ip}", Status.WARNING, found,
                                    f"ask your provider to set the reverse DNS of {ip} "
                                    f"to {spec.hostname}", is_required=False))
    return findings


async def check_domain(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    findings: list[Finding] = []
    for check in (check_mx, check_host_address, check_spf_record, check_dkim,
                  check_dmarc_record, check_ptr):
        findings += await check(resolver, spec)
    return findings
