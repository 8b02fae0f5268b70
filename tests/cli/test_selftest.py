"""Issue 24, "Beyond the online tester": `postroom selftest DOMAIN` signs a message with the
real outbound signer and judges it as a receiving provider would, against the test DNS
server and a real `postroom serve` on 127.0.0.1; `--to` delivers it.

The certificate check trusts the test CA through SSL_CERT_FILE (OpenSSL's default verify
paths), exactly as it would trust a public CA from the system store."""

from __future__ import annotations

import asyncio
import json
import os
import poplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from postroom.dns.live import LiveResolver
from postroom.mailauth.dkim import DkimVerdict, verify_dkim
from postroom.selftest import WEIGHTS
from tests.support.dnsserver import DnsTestServer
from tests.support.server import ServeProcess, local_serve_env, write_env

DOMAIN = "example.test"
HOST = "mail.example.test"
IP = "127.0.0.1"
USER = "user@example.test"


@dataclass
class Setup:
    dns: DnsTestServer
    server: ServeProcess
    env_file: Path  # the settled config: SMTP_PORT is the port serve bound
    ca_file: Path

    def run(self, *args: str, trust_ca: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ}
        env.pop("SSL_CERT_FILE", None)
        if trust_ca:
            env["SSL_CERT_FILE"] = str(self.ca_file)
        return subprocess.run(
            [sys.executable, "-m", "postroom", "--config", str(self.env_file), "selftest",
             DOMAIN, *args], capture_output=True, text=True, timeout=120, env=env)

    def judged(self, *args: str, trust_ca: bool = True) -> tuple[int, dict[str, object]]:
        result = self.run("--json", *args, trust_ca=trust_ca)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, json.loads(result.stdout)


def cli(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          capture_output=True, text=True, timeout=120)


def by_name(report: dict[str, object]) -> dict[str, dict[str, object]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {str(item["name"]): item for item in checks}


@pytest.fixture
def setup(tmp_path: Path, trustme_ca: trustme.CA, server_cert: tuple[Path, Path]
          ) -> Iterator[Setup]:
    ca_file = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(str(ca_file))
    with DnsTestServer() as dns:
        values = local_serve_env(tmp_path / "data", server_cert,
                                 DNS_NAMESERVERS=dns.address)
        serve_env = write_env(tmp_path / "serve.env", values)
        assert cli(serve_env, "dkim", "generate", DOMAIN, "--keysize", "1024").returncode == 0
        assert cli(serve_env, "email", "add", USER, "pw").returncode == 0
        records = cli(serve_env, "dns", "records", DOMAIN, "--ip", IP)
        assert records.returncode == 0, records.stderr
        dns.load_zone(records.stdout, origin=DOMAIN)
        dns.replace(f"_dmarc.{DOMAIN}.", "TXT",
                    f"v=DMARC1; p=reject; rua=mailto:postmaster@{DOMAIN}")
        dns.add("1.0.0.127.in-addr.arpa.", "PTR", f"{HOST}.")
        with ServeProcess(serve_env) as server:
            port = server.ports["smtp"]
            settled = write_env(tmp_path / "postroom.env", {
                **values, "SMTP_PORT": port, "OUTBOUND_SMTP_PORT": port})
            yield Setup(dns, server, settled, ca_file)


def expected_score(passing: set[str], skipped: set[str] = frozenset({"DNSBL"}),
                   warned: set[str] = frozenset()) -> float:
    available = sum(points for name, points in WEIGHTS.items() if name not in skipped)
    earned = sum(WEIGHTS[name] for name in passing) + sum(WEIGHTS[n] / 2 for n in warned)
    return round(earned / available * 10, 1)


def test_points_sum_to_ten() -> None:
    assert sum(WEIGHTS.values()) == 10


def test_correct_setup_scores_ten(setup: Setup) -> None:
    code, report = setup.judged()
    checks = by_name(report)
    assert code == 0, checks
    assert {name: item["status"] for name, item in checks.items()} == {
        "DKIM": "pass", "SPF": "pass", "DMARC": "pass", "PTR/HELO": "pass", "MX": "pass",
        "TLS": "pass", "DNSBL": "skip"}
    assert report["score"] == 10 and report["addresses"] == [IP]
    assert "d=example.test s=mail" in str(checks["DKIM"]["detail"])
    assert "p=reject" in str(checks["DMARC"]["detail"])
    assert f"valid for {HOST}" in str(checks["TLS"]["detail"])
    assert all(item["fix"] == "" for name, item in checks.items() if name != "DNSBL")
    table = setup.run()
    assert table.returncode == 0
    assert "score 10/10" in table.stdout.splitlines()
    assert "DKIM\tpass\t2.5/2.5\t" in table.stdout


def test_missing_dkim_and_wrong_spf_score_lower_and_name_both_fixes(setup: Setup) -> None:
    setup.dns.remove(f"mail._domainkey.{DOMAIN}.", "TXT")
    setup.dns.replace(f"{DOMAIN}.", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    code, report = setup.judged()
    checks = by_name(report)
    assert code == 1
    assert checks["DKIM"]["status"] == "fail" and checks["SPF"]["status"] == "fail"
    assert "no key at mail._domainkey.example.test" in str(checks["DKIM"]["detail"])
    assert str(checks["DKIM"]["fix"]).startswith(
        f'publish: mail._domainkey.{DOMAIN}. IN TXT "v=DKIM1; h=sha256; k=rsa; p=')
    assert "fail for 127.0.0.1" in str(checks["SPF"]["detail"])
    assert checks["SPF"]["fix"] == (f'authorize {IP}: add: {DOMAIN}. IN TXT '
                                    f'"v=spf1 mx ip4:{IP} -all"')
    assert checks["DMARC"]["status"] == "fail"  # nothing left to align with
    assert report["score"] == expected_score({"PTR/HELO", "MX", "TLS"}) < 10
    plain = setup.run()
    assert plain.returncode == 1 and f"score {report['score']:g}/10" in plain.stdout
    assert "v=spf1 mx ip4:127.0.0.1 -all" in plain.stdout and "mail._domainkey" in plain.stdout


def test_json_matches_the_table(setup: Setup) -> None:
    setup.dns.replace(f"_dmarc.{DOMAIN}.", "TXT", "v=DMARC1; p=none")
    code, report = setup.judged()
    plain = setup.run()
    assert code == plain.returncode == 0  # a warning is not a failure
    checks = by_name(report)
    assert checks["DMARC"]["status"] == "warn"
    assert str(checks["DMARC"]["fix"]).startswith("p=quarantine or reject once reports look right")
    assert report["score"] == expected_score(
        {"DKIM", "SPF", "PTR/HELO", "MX", "TLS"}, warned={"DMARC"})
    rows = [line.split("\t") for line in plain.stdout.splitlines() if "\t" in line]
    assert [row[0] for row in rows] == list(checks)
    for name, status, points, detail, fix in rows:
        item = checks[name]
        assert (status, detail, fix) == (item["status"], item["detail"], item["fix"])
        assert points == f"{item['earned']:g}/{item['points']:g}"
    assert f"score {report['score']:g}/10" in plain.stdout


def test_untrusted_certificate_warns_and_closed_port_fails(setup: Setup) -> None:
    code, report = setup.judged(trust_ca=False)
    tls = by_name(report)["TLS"]
    assert code == 0 and tls["status"] == "warn"
    assert "not trusted" in str(tls["detail"]) and "SSL_TYPE=letsencrypt" in str(tls["fix"])
    code, report = setup.judged("--smtp-port", "1")  # nothing listens there
    tls = by_name(report)["TLS"]
    assert code == 1 and tls["status"] == "fail"
    assert "cannot talk SMTP to 127.0.0.1:1" in str(tls["detail"])


def test_dnsbl_listing_fails_and_refusal_warns(setup: Setup) -> None:
    setup.dns.add("1.0.0.127.bl.test.", "A", "127.0.0.2")
    setup.dns.add("1.0.0.127.bl.test.", "TXT", "listed for testing: see bl.test/lookup")
    setup.dns.add("1.0.0.127.refusing.test.", "A", "127.255.255.254")
    setup.dns.add("clean.test.", "NS", "ns.clean.test.")
    code, report = setup.judged("--dnsbl", "clean.test")
    assert code == 0 and by_name(report)["DNSBL"]["status"] == "pass"
    assert report["score"] == 10
    code, report = setup.judged("--dnsbl", "refusing.test")
    dnsbl = by_name(report)["DNSBL"]
    assert code == 0 and dnsbl["status"] == "warn" and "refused" in str(dnsbl["detail"])
    code, report = setup.judged("--dnsbl", "clean.test", "--dnsbl", "bl.test")
    dnsbl = by_name(report)["DNSBL"]
    assert code == 1 and dnsbl["status"] == "fail"
    assert "LISTED in bl.test" in str(dnsbl["detail"])
    assert "listed for testing: see bl.test/lookup" in str(dnsbl["fix"])
    assert report["score"] == expected_score(
        {"DKIM", "SPF", "DMARC", "PTR/HELO", "MX", "TLS"}, skipped=set())


def test_to_delivers_the_signed_message(setup: Setup, client_tls: ssl.SSLContext) -> None:
    result = setup.run("--to", USER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sent to {USER}: delivered: 250" in result.stdout
    code, report = setup.judged("--to", USER)
    sent = report["sent"]
    assert code == 0
    assert isinstance(sent, dict) and sent["delivered"] is True
    pop = poplib.POP3_SSL(IP, setup.server.ports["pop3s"], context=client_tls, timeout=20)
    try:
        pop.user(USER)
        pop.pass_("pw")
        messages = [b"\r\n".join(pop.retr(n)[1]) + b"\r\n"
                    for n in range(1, pop.stat()[0] + 1)]
    finally:
        pop.quit()
    assert len(messages) == 2
    arrived = messages[1]
    assert f"postroom selftest for {DOMAIN} ({report['queue_id']})".encode() in arrived
    assert b"DKIM-Signature:" in arrived and b"d=example.test" in arrived

    async def verify() -> list[DkimVerdict]:
        resolver = LiveResolver([setup.dns.nameserver])
        return [r.result for r in await verify_dkim(resolver, arrived)]

    assert asyncio.run(verify()) == [DkimVerdict.PASS]


def test_bad_arguments(setup: Setup) -> None:
    result = setup.run("--to", "nobody")
    assert result.returncode == 1 and "not an email address" in result.stderr
    assert setup.run("--ip", "::1").returncode == 1


def test_dns_failures_fail_the_checks_with_a_reason(setup: Setup) -> None:
    for name in (f"{DOMAIN}.", f"_dmarc.{DOMAIN}.", f"mail._domainkey.{DOMAIN}.",
                 "1.0.0.127.in-addr.arpa."):
        setup.dns.fail(name, "servfail")
    code, report = setup.judged()
    checks = by_name(report)
    assert code == 1
    for name in ("DKIM", "SPF", "DMARC", "PTR/HELO", "MX"):
        assert checks[name]["status"] == "fail", name
        assert str(checks[name]["fix"]).startswith("DNS did not answer"), name
    assert checks["TLS"]["status"] == "pass"  # the port still answers
    assert report["score"] == expected_score({"TLS"})
