"""Issue 6: `dns records` output loads into a DNS server and `dns check` passes; then each
record is broken in turn and the check names exactly that record and exits non-zero.
Issue 24: SRV records carry the configured ports, and `dns check` verifies every record
`dns records` prints (SRV, MTA-STS, TLS-RPT too: optional, so named but not failing), and
says plainly that the MTA-STS policy file is not fetched."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsTestServer

DOMAIN = "example.test"
HOST = "mail.example.test"
IP = "127.0.0.1"


SRV_LABELS = ("_submissions._tcp", "_submission._tcp", "_imaps._tcp", "_pop3s._tcp")
OPTIONAL_OK = {**{f"SRV {label}": "ok" for label in SRV_LABELS}, "MTA-STS": "ok",
               "MTA-STS policy": "not checked", "TLS-RPT": "ok"}


def postroom(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def env_file(tmp_path: Path, dns_server: DnsTestServer) -> Path:
    path = tmp_path / "postroom.env"
    path.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME={HOST}\n"
                    f"DNS_NAMESERVERS={dns_server.address}\n"
                    "MTA_STS_PORT=0\n")  # another web server serves the policy (not fetched)
    return path


@pytest.fixture
def published(env_file: Path, dns_server: DnsTestServer) -> str:
    generated = postroom(env_file, "dkim", "generate", DOMAIN, "--keysize", "1024")
    assert generated.returncode == 0, generated.stderr
    assert re.match(r'mail._domainkey\s+IN\s+TXT\s+\( "v=DKIM1; h=sha256; k=rsa; "\s+"p=',
                    generated.stdout)
    records = postroom(env_file, "dns", "records", DOMAIN, "--ip", IP)
    assert records.returncode == 0, records.stderr
    dns_server.load_zone(records.stdout, origin=DOMAIN)
    dns_server.add("1.0.0.127.in-addr.arpa.", "PTR", f"{HOST}.")
    dns_server.add(f"mta-sts.{DOMAIN}.", "A", IP)  # the web server of the policy file
    return records.stdout


def check(env_file: Path) -> tuple[int, dict[str, dict[str, object]]]:
    result = postroom(env_file, "dns", "check", DOMAIN, "--ip", IP, "--json")
    assert "Traceback" not in result.stderr
    findings = {str(item["record"]): item for item in json.loads(result.stdout)}
    return result.returncode, findings


def test_records_have_a_comment_before_each_record(published: str) -> None:
    lines = [line for line in published.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if not line.startswith(";"):
            assert lines[index - 1].startswith(";"), line
    for expected in (f"{HOST}.\t3600\tIN\tA\t{IP}", f"{DOMAIN}.\t3600\tIN\tMX\t10 {HOST}.",
                     '"v=spf1 mx ip4:127.0.0.1 -all"', f"mail._domainkey.{DOMAIN}.",
                     f"_dmarc.{DOMAIN}.", f"_submissions._tcp.{DOMAIN}.", "_imaps._tcp",
                     "_pop3s._tcp", f"_mta-sts.{DOMAIN}.", f"_smtp._tls.{DOMAIN}.",
                     f"1.0.0.127.in-addr.arpa.\tIN\tPTR\t{HOST}."):
        assert expected in published


def test_everything_published_passes(env_file: Path, published: str) -> None:
    status, findings = check(env_file)
    assert status == 0, findings
    assert {name: item["status"] for name, item in findings.items()} == {
        "MX": "ok", f"A {HOST}": "ok", "SPF": "ok", "DKIM mail": "ok", "DMARC": "ok",
        f"PTR {IP}": "ok", **OPTIONAL_OK}
    policy = findings["MTA-STS policy"]
    assert "not fetched" in str(policy["found"]) and "postroom does not serve" in str(
        policy["fix"]) and f"mx: {HOST}" in str(policy["fix"])
    table = postroom(env_file, "dns", "check", DOMAIN, "--ip", IP)
    assert table.returncode == 0 and "MX\tok" in table.stdout


def break_mx(dns: DnsTestServer) -> None:
    dns.remove(f"{DOMAIN}.", "MX")


def break_a(dns: DnsTestServer) -> None:
    dns.remove(f"{HOST}.", "A")


def break_spf(dns: DnsTestServer) -> None:
    dns.replace(f"{DOMAIN}.", "TXT", "v=spf1 ip4:192.0.2.1 -all")


def break_dkim(dns: DnsTestServer) -> None:
    other = subprocess.run(["openssl", "genrsa", "1024"], capture_output=True, check=True)
    public = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"],
                            input=other.stdout, capture_output=True, check=True).stdout
    import base64

    dns.replace(f"mail._domainkey.{DOMAIN}.", "TXT",
                "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode())


def drop_dmarc(dns: DnsTestServer) -> None:
    dns.remove(f"_dmarc.{DOMAIN}.", "TXT")


def malform_dmarc(dns: DnsTestServer) -> None:
    dns.replace(f"_dmarc.{DOMAIN}.", "TXT", "v=DMARC1; p=bogus; rua=mailto:postmaster@x.test")


@pytest.mark.parametrize(("breaker", "record", "status"), [
    (break_mx, "MX", "missing"),
    (break_a, f"A {HOST}", "missing"),
    (break_spf, "SPF", "wrong"),
    (break_dkim, "DKIM mail", "wrong"),
    (drop_dmarc, "DMARC", "missing"),
    (malform_dmarc, "DMARC", "wrong"),
])
def test_each_broken_record_is_named(env_file: Path, published: str, dns_server: DnsTestServer,
                                     breaker: object, record: str, status: str) -> None:
    assert callable(breaker)
    breaker(dns_server)
    code, findings = check(env_file)
    assert code == 1
    assert findings[record]["status"] == status
    assert findings[record]["fix"]
    failing = {name for name, item in findings.items()
               if item["status"] in {"missing", "wrong"} and item["is_required"]}
    assert failing == {record}


def test_records_without_key_or_ip_say_what_to_do(env_file: Path) -> None:
    result = postroom(env_file, "dns", "records", DOMAIN)
    assert result.returncode == 0
    assert "postroom dkim generate example.test" in result.stdout
    assert re.search(r"needs an A record; rerun with --ip", result.stdout)


def test_bad_arguments(env_file: Path) -> None:
    assert "not an IPv4" in postroom(env_file, "dns", "records", DOMAIN, "--ip", "::1").stderr
    assert postroom(env_file, "dns", "check", "not a domain").returncode == 1


# -- issue 24: SRV ports, MTA-STS, TLS-RPT ---------------------------------------------------
def test_srv_records_carry_the_configured_ports(env_file: Path) -> None:
    standard = postroom(env_file, "dns", "records", DOMAIN, "--ip", IP).stdout
    for label, port in zip(SRV_LABELS, (465, 587, 993, 995), strict=True):
        assert f"{label}.{DOMAIN}.\t3600\tIN\tSRV\t0 1 {port} {HOST}." in standard
    assert "not the standard" not in standard
    assert "configured with" in standard  # says whose ports these are
    env_file.write_text(env_file.read_text() + "IMAPS_PORT=2993\nSUBMISSIONS_PORT=2465\n"
                        "ENABLE_POP3=0\n")
    moved = postroom(env_file, "dns", "records", DOMAIN, "--ip", IP).stdout
    assert f"_imaps._tcp.{DOMAIN}.\t3600\tIN\tSRV\t0 1 2993 {HOST}." in moved
    assert f"_submissions._tcp.{DOMAIN}.\t3600\tIN\tSRV\t0 1 2465 {HOST}." in moved
    assert "IMAPS_PORT=2993, not the standard 993" in moved
    assert f"_submission._tcp.{DOMAIN}.\t3600\tIN\tSRV\t0 1 587 {HOST}." in moved
    assert "_pop3s" not in moved  # POP3 is off: nothing to announce


def test_srv_published_for_other_ports_is_named(env_file: Path, published: str) -> None:
    env_file.write_text(env_file.read_text() + "IMAPS_PORT=2993\n")
    code, findings = check(env_file)
    assert code == 0  # optional records never fail the check
    imaps = findings["SRV _imaps._tcp"]
    assert imaps["status"] == "wrong" and not imaps["is_required"]
    assert "993" in str(imaps["found"]) and "port 2993" in str(imaps["fix"])
    assert findings["SRV _submissions._tcp"]["status"] == "ok"


def drop_srv(dns: DnsTestServer) -> None:
    dns.remove(f"_imaps._tcp.{DOMAIN}.", "SRV")


def bad_sts_id(dns: DnsTestServer) -> None:
    dns.replace(f"_mta-sts.{DOMAIN}.", "TXT", "v=STSv1; id=not-valid!")


def two_sts(dns: DnsTestServer) -> None:
    dns.add(f"_mta-sts.{DOMAIN}.", "TXT", "v=STSv1; id=2")


def drop_sts(dns: DnsTestServer) -> None:
    dns.remove(f"_mta-sts.{DOMAIN}.", "TXT")


def drop_tlsrpt(dns: DnsTestServer) -> None:
    dns.remove(f"_smtp._tls.{DOMAIN}.", "TXT")


def bad_tlsrpt(dns: DnsTestServer) -> None:
    dns.replace(f"_smtp._tls.{DOMAIN}.", "TXT", "v=TLSRPTv1; rua=postmaster@example.test")


def no_policy_host(dns: DnsTestServer) -> None:
    dns.remove(f"mta-sts.{DOMAIN}.", "A")


@pytest.mark.parametrize(("breaker", "record", "status"), [
    (drop_srv, "SRV _imaps._tcp", "missing"),
    (bad_sts_id, "MTA-STS", "wrong"),
    (two_sts, "MTA-STS", "wrong"),
    (drop_sts, "MTA-STS", "missing"),
    (drop_tlsrpt, "TLS-RPT", "missing"),
    (bad_tlsrpt, "TLS-RPT", "wrong"),
    (no_policy_host, "MTA-STS policy", "missing"),
])
def test_each_broken_optional_record_is_named(
        env_file: Path, published: str, dns_server: DnsTestServer, breaker: object,
        record: str, status: str) -> None:
    assert callable(breaker)
    breaker(dns_server)
    code, findings = check(env_file)
    assert code == 0
    assert findings[record]["status"] == status and findings[record]["fix"]
    assert not findings[record]["is_required"]
    changed = {name for name, item in findings.items()
               if name in OPTIONAL_OK and item["status"] != OPTIONAL_OK[name]}
    # Without a valid announcement there is no policy to speak of.
    assert changed - {"MTA-STS policy"} == ({record} - {"MTA-STS policy"})
