"""The DNS helper (`postroom dns records`, `dns check`, and selftest's fixes): every
record a mail domain needs, and a record-by-record live check.

Owns what postroom tells users to publish. `render_zone()` prints a BIND zone snippet
(absolute names, a comment before each record saying what it is for) that loads with any
zone parser; `check_domain()` asks DNS (through the Resolver, so DNS_NAMESERVERS applies)
and returns one `Finding` per record with what was found and the fix. SPF is *evaluated*
for the server's IP with the real SPF engine, not string-matched; the DKIM key in DNS is
compared with the private key on disk. Every record `render_zone()` prints is checked: SRV
against the ports this server is configured with, TLS-RPT by its syntax, the `_mta-sts`
id against the policy postroom serves (tls/stspolicy.py: one id function for both), the
policy itself fetched over HTTPS when MTA_STS_PORT runs our listener (with MTA_STS_PORT=0
another web server serves it and the finding says "not checked" rather than pretending),
and our TLSA record (RFC 7671 DANE-EE 3 1 1: SHA-256 of the served certificate's
SubjectPublicKeyInfo) against the certificate `serve` uses.

It lives here, not in dns/, because it judges records with the mail-auth engines (SPF,
DKIM keys, DMARC): dns/ sits below mailauth/ and only answers queries.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postroom.config import Config
from postroom.dns.resolver import DnsError, RecordType, Resolver, TlsaRecord
from postroom.mailauth import dmarc
from postroom.mailauth.keys import list_keys, public_key_matches, public_txt_value
from postroom.mailauth.spf import SpfVerdict, check_spf
from postroom.selftest.policyfetch import PolicyFetchError, fetch_policy
from postroom.tls.stspolicy import StsPolicy, policy_for, policy_host, txt_value

T = TypeVar("T")
RecordWriter = Callable[[str, str, str, str], None]


@dataclass(frozen=True, slots=True)
class SrvService:
    label: str  # "_imaps._tcp"
    standard_port: int
    config_key: str  # the key that moves it
    what: str


# RFC 6186 / RFC 8314 §5.1: implicit TLS services clients should find first.
SRV_SERVICES = (
    SrvService("_submissions._tcp", 465, "SUBMISSIONS_PORT", "mail submission over implicit TLS"),
    SrvService("_submission._tcp", 587, "SUBMISSION_PORT", "mail submission with STARTTLS"),
    SrvService("_imaps._tcp", 993, "IMAPS_PORT", "IMAP over implicit TLS"),
    SrvService("_pop3s._tcp", 995, "POP3S_PORT", "POP3 over implicit TLS"),
)
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # RFC 8461 §3.1 sts-id


def standard_srv_ports() -> dict[str, int]:
    return {service.label: service.standard_port for service in SRV_SERVICES}


def configured_srv_ports(config: Config) -> dict[str, int]:
    """SRV label → the port `serve` listens on, for the services it offers (a disabled
    protocol, or port 0 — picked at start — has no record to publish)."""
    ports = {"_submissions._tcp": config.submissions_port,
             "_submission._tcp": config.submission_port,
             "_imaps._tcp": config.imaps_port if config.enable_imap else 0,
             "_pop3s._tcp": config.pop3s_port if config.enable_pop3 else 0}
    return {label: port for label, port in ports.items() if port}


@dataclass(frozen=True, slots=True)
class ZoneInput:
    domain: str
    hostname: str
    ipv4: str | None
    ipv6: str | None
    dkim_dir: Path
    postmaster: str
    srv_ports: Mapping[str, int] = field(default_factory=standard_srv_ports)
    sts_policy: StsPolicy | None = None  # what we serve; None: the default settings'
    policy_port: int = 0  # MTA_STS_PORT: our listener serves the policy there; 0: not us
    tlsa: TlsaRecord | None = None  # 3 1 1 of the served certificate; None: none yet
    web_port: int = 0  # WEB_PORT: autoconfig and autodiscover served by us; 0: not

    @property
    def policy(self) -> StsPolicy:
        return self.sts_policy or StsPolicy("testing", (self.hostname,), 604800)


class TransportInputs(TypedDict):
    sts_policy: StsPolicy
    policy_port: int
    tlsa: TlsaRecord | None
    web_port: int


def transport_inputs(config: Config) -> TransportInputs:
    """The ZoneInput fields that come from the server's settings and files."""
    return {"sts_policy": policy_for(config), "policy_port": config.mta_sts_port,
            "tlsa": served_tlsa(config.cert_path), "web_port": config.web_port}


def tlsa_of(certificate_pem: bytes) -> TlsaRecord:
    """DANE-EE SPKI SHA-256 (3 1 1, RFC 7671 §5.1) of the first certificate in a chain."""
    public = x509.load_pem_x509_certificate(certificate_pem).public_key()
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return TlsaRecord(3, 1, 1, hashlib.sha256(spki).digest())


def served_tlsa(cert_path: Path) -> TlsaRecord | None:
    try:
        return tlsa_of(cert_path.read_bytes())
    except (OSError, ValueError):
        return None


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


def tlsrpt_value(postmaster: str) -> str:
    return f"v=TLSRPTv1; rua=mailto:{postmaster}"


def render_zone(spec: ZoneInput) -> str:
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
    _render_srv(spec, record, lines)
    _render_autoconfig(spec, record, lines)
    _render_mta_sts(spec, record, lines)
    _render_tlsa(spec, record, lines)
    record("TLS-RPT (RFC 8460): where senders report TLS delivery problems",
           f"_smtp._tls.{domain}", "TXT", _txt(tlsrpt_value(spec.postmaster)))
    lines += _ptr_advice(spec)
    return "\n".join(lines).rstrip() + "\n"


def _served_by(spec: ZoneInput) -> str:
    if not spec.policy_port:
        return ("postroom does not serve it (MTA_STS_PORT=0): a web server with a "
                "certificate for that name must")
    if spec.policy_port == 443:
        return "postroom serves it (MTA_STS_PORT=443)"
    return f"postroom serves it on MTA_STS_PORT={spec.policy_port}: forward port 443 to it"


def _render_mta_sts(spec: ZoneInput, record: RecordWriter, lines: list[str]) -> None:
    """RFC 8461: the policy host's address (when we serve it), the policy, its TXT."""
    host = policy_host(spec.domain)
    lines += ["; MTA-STS (RFC 8461): the TXT record below announces the policy at",
              f"; https://{host}/.well-known/mta-sts.txt; {_served_by(spec)}.",
              "; It says (MTA_STS_MODE, MTA_STS_MAX_AGE; start with testing, then enforce):",
              *[f";   {line}" for line in spec.policy.lines], ""]
    if spec.policy_port:
        for rtype, address in (("A", spec.ipv4), ("AAAA", spec.ipv6)):
            if address:
                record(f"{rtype}: the MTA-STS policy host is this server", f"{host}.",
                       rtype, address)
    record("MTA-STS: the id is derived from the policy; a new policy prints a new id",
           f"_mta-sts.{spec.domain}.", "TXT", _txt(txt_value(spec.policy)))


def _render_tlsa(spec: ZoneInput, record: RecordWriter, lines: list[str]) -> None:
    """RFC 7671/7672: DANE-EE for our MX, pinned to the key (renewals keep it)."""
    if spec.tlsa is None:
        lines += ["; TLSA (DANE, RFC 7672): no certificate yet; rerun once `postroom serve` "
                  "has one", ""]
        return
    record(f"TLSA (DANE, RFC 7672): senders check port 25's certificate key; put it in the "
           f"zone of {spec.hostname}, signed with DNSSEC", f"_25._tcp.{spec.hostname}.",
           "TLSA", str(spec.tlsa))


def _render_srv(spec: ZoneInput, record: RecordWriter, lines: list[str]) -> None:
    """RFC 6186 records with the ports this server listens on (in production the
    standard ones), saying so where a port is not the standard one."""
    host = spec.hostname + "."
    lines += ["; SRV: these carry the ports this server is configured with (SUBMISSIONS_PORT,",
              "; SUBMISSION_PORT, IMAPS_PORT, POP3S_PORT); in production, the standard 465,",
              "; 587, 993 and 995.", ""]
    for service in SRV_SERVICES:
        port = spec.srv_ports.get(service.label)
        if port is None:
            continue
        moved = ("" if port == service.standard_port else
                 f" ({service.config_key}={port}, not the standard {service.standard_port})")
        record(f"SRV (RFC 6186): {service.what}, for mail client autoconfiguration{moved}",
               f"{service.label}.{spec.domain}.", "SRV", f"0 1 {port} {host}")


def _render_autoconfig(spec: ZoneInput, record: RecordWriter, lines: list[str]) -> None:
    """Issue 21: Thunderbird asks https://autoconfig.DOMAIN/mail/config-v1.1.xml (port
    443), Outlook finds autodiscover through _autodiscover._tcp (host and port); the web
    console (WEB_PORT) answers both (web/autoconfig.py)."""
    if not spec.web_port:
        return
    host = spec.hostname + "."
    forward = "" if spec.web_port == 443 else f"; forward port 443 to WEB_PORT={spec.web_port}"
    lines += ["; Client autoconfiguration: the web console answers Thunderbird at",
              f"; https://autoconfig.{spec.domain}/mail/config-v1.1.xml{forward}; its",
              "; certificate must name it (SSL_TYPE=acme: ACME_DOMAIN_PREFIXES has autoconfig).",
              ""]
    record("CNAME: Thunderbird's autoconfig host is this server", f"autoconfig.{spec.domain}.",
           "CNAME", host)
    record("SRV: Outlook's autodiscover (POX) is answered by the web console",
           f"_autodiscover._tcp.{spec.domain}.", "SRV", f"0 1 {spec.web_port} {host}")


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
    NOT_CHECKED = "not checked"  # exists outside DNS and is not fetched: said, not faked


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


async def check_srv(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    """RFC 6186 records: optional (clients fall back to asking the user), so never a
    failure, but each one checked against the port this server listens on."""
    findings = []
    for service in SRV_SERVICES:
        port = spec.srv_ports.get(service.label)
        if port is None:
            continue
        name = f"{service.label}.{spec.domain}"
        fix = f"add: {name}. IN SRV 0 1 {port} {spec.hostname}."
        records, error = await _lookup(resolver.srv(name))
        label = f"SRV {service.label}"
        found = ", ".join(f"{r.priority} {r.weight} {r.port} {r.target or '.'}"
                          for r in sorted(records))
        if not records:
            findings.append(Finding(label, Status.MISSING, error or f"no SRV record at {name}",
                                    fix, is_required=False))
        elif any(r.target == spec.hostname and r.port == port for r in records):
            findings.append(Finding(label, Status.OK, found, "", is_required=False))
        else:
            findings.append(Finding(label, Status.WRONG, found,
                                    f"point it at {spec.hostname} port {port}: {fix}",
                                    is_required=False))
    return findings


def parse_tag_list(text: str) -> dict[str, str]:
    """`k=v; k=v` (RFC 8461 §3.1, RFC 8460 §3): lower-cased keys, stripped values."""
    tags = {}
    for part in text.split(";"):
        key, equals, value = part.partition("=")
        if equals:
            tags[key.strip().lower()] = value.strip()
    return tags


async def _one_txt(resolver: Resolver, name: str, version: str
                   ) -> tuple[list[str], str]:
    """The TXT records at `name` that begin with `version` (case-sensitive, as RFC 8461
    §3.1 and RFC 8460 §3 say), or the lookup error."""
    texts, error = await _lookup(resolver.txt(name))
    return [str(t) for t in texts if str(t).startswith(version)], error


async def _the_one_record(resolver: Resolver, label: str, name: str, version: str,
                          fix: str) -> str | Finding:
    """The one `version` TXT record at `name`, or the finding that there is not exactly
    one: RFC 8461 §3.1 and RFC 8460 §3 read several records as none at all."""
    candidates, error = await _one_txt(resolver, name, version)
    if not candidates:
        return Finding(label, Status.MISSING, error or f"no {version} record at {name}", fix,
                       is_required=False)
    if len(candidates) > 1:
        return Finding(label, Status.WRONG, " | ".join(candidates),
                       f"publish exactly one {version} record", is_required=False)
    return candidates[0]


async def check_mta_sts(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    name = f"_mta-sts.{spec.domain}"
    fix = f'publish: {name}. IN TXT "{txt_value(spec.policy)}"'
    record = await _the_one_record(resolver, "MTA-STS", name, "v=STSv1", fix)
    if isinstance(record, Finding):
        return [record]
    sts_id = parse_tag_list(record).get("id", "")
    if not _STS_ID.fullmatch(sts_id):
        return [Finding("MTA-STS", Status.WRONG, record,
                        f"id must be 1-32 letters or digits: {fix}", is_required=False)]
    if sts_id != spec.policy.id:
        return [Finding("MTA-STS", Status.WRONG, record, "the id is not the one of the "
                        f"policy served (senders would keep an old policy): {fix}",
                        is_required=False), await _mta_sts_policy_finding(resolver, spec)]
    return [Finding("MTA-STS", Status.OK, record, "", is_required=False),
            await _mta_sts_policy_finding(resolver, spec)]


async def _mta_sts_policy_finding(resolver: Resolver, spec: ZoneInput) -> Finding:
    """The policy is HTTPS, not DNS: its host must resolve; when our listener serves it
    (MTA_STS_PORT), it is fetched as a sender would (certificate verified) and compared."""
    host = policy_host(spec.domain)
    v4, error = await _lookup(resolver.a(host))
    v6, _ = await _lookup(resolver.aaaa(host))
    addresses = [str(a) for a in v4 + v6]
    policy = " / ".join(spec.policy.lines)
    where = f"https://{host}/.well-known/mta-sts.txt"
    if not addresses:
        return Finding("MTA-STS policy", Status.MISSING, error or f"no address for {host}",
                       f"point {host} at the server serving {where} ({policy}); until "
                       "then senders ignore the record", is_required=False)
    if not spec.policy_port:
        return Finding("MTA-STS policy", Status.NOT_CHECKED, f"{host} is "
                       f"{', '.join(addresses)}; {where} was not fetched (MTA_STS_PORT=0)",
                       f"make sure it serves: {policy} (postroom does not serve it)",
                       is_required=False)
    try:
        text = await fetch_policy(addresses[0], spec.policy_port, host)
    except PolicyFetchError as problem:
        return Finding("MTA-STS policy", Status.WRONG, f"{where} (port {spec.policy_port} "
                       f"of {addresses[0]}): {problem}", f"serve it ({policy}): is "
                       "`postroom serve` running, with a certificate for " + host + "?",
                       is_required=False)
    if text != spec.policy.text:
        return Finding("MTA-STS policy", Status.WRONG, " / ".join(text.splitlines()[:6]),
                       f"{host} serves another policy than postroom's ({policy}): does "
                       f"{host} point at this server?", is_required=False)
    return Finding("MTA-STS policy", Status.OK, f"{where}: {policy}", "", is_required=False)


async def check_tlsa(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    """Our DANE-EE record against the certificate served (none printed, none checked)."""
    if spec.tlsa is None:
        return []
    name = f"_25._tcp.{spec.hostname}"
    fix = f"publish: {name}. IN TLSA {spec.tlsa}"
    try:
        answer = await resolver.answer(name, RecordType.TLSA)
    except DnsError as error:
        return [Finding("TLSA", Status.MISSING, f"{type(error).__name__}: {error}", fix,
                        is_required=False)]
    records = [r for r in answer.records if isinstance(r, TlsaRecord)]
    found = ", ".join(str(r) for r in records)
    if not records:
        return [Finding("TLSA", Status.MISSING, f"no TLSA record at {name}", fix,
                        is_required=False)]
    if spec.tlsa not in records:
        return [Finding("TLSA", Status.WRONG, found, "no record matches the certificate "
                        f"served (DANE senders would refuse to deliver): {fix}",
                        is_required=False)]
    if not answer.is_secure:
        return [Finding("TLSA", Status.WARNING, found, "the answer is not DNSSEC-validated "
                        "(no AD bit): sign the zone, or senders ignore the record",
                        is_required=False)]
    return [Finding("TLSA", Status.OK, found, "", is_required=False)]


async def check_tls_rpt(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    name = f"_smtp._tls.{spec.domain}"
    fix = f'add: {name}. IN TXT "{tlsrpt_value(spec.postmaster)}"'
    record = await _the_one_record(resolver, "TLS-RPT", name, "v=TLSRPTv1", fix)
    if isinstance(record, Finding):
        return [record]
    uris = [uri.strip() for uri in parse_tag_list(record).get("rua", "").split(",")]
    if not uris or not all(uri.startswith(("mailto:", "https:")) and len(uri) > 7
                           for uri in uris):
        return [Finding("TLS-RPT", Status.WRONG, record,
                        f"rua= must list mailto: or https: addresses: {fix}",
                        is_required=False)]
    return [Finding("TLS-RPT", Status.OK, record, "", is_required=False)]


async def check_domain(resolver: Resolver, spec: ZoneInput) -> list[Finding]:
    findings: list[Finding] = []
    for check in (check_mx, check_host_address, check_spf_record, check_dkim,
                  check_dmarc_record, check_ptr, check_srv, check_mta_sts, check_tlsa,
                  check_tls_rpt):
        findings += await check(resolver, spec)
    return findings
