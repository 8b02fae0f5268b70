"""Issue 20 (part C): `dns records` prints our TLSA record (DANE-EE 3 1 1, RFC 7671/7672)
and the `_mta-sts` TXT whose id follows the served policy; `dns check`, against the test
DNS server, passes the right TLSA and flags a wrong one, compares the TXT id with the
policy we serve, and fetches the policy from a running listener as a sender would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import TEST_HOSTNAME, make_config
from tests.support.dnsserver import DnsTestServer
from tests.support.server import AppThread, write_env
from tests.tls_acme.pebble import free_port

DOMAIN = "example.test"
IP = "127.0.0.1"
TLSA_NAME = f"_25._tcp.{TEST_HOSTNAME}."


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def policy_cert_dir(tmp_path: Path, trustme_ca: trustme.CA) -> Path:
    """A certificate for the policy host, in SSL_DOMAIN_CERT_DIR's layout."""
    folder = tmp_path / "domain-certs" / DOMAIN
    folder.mkdir(parents=True)
    cert = trustme_ca.issue_cert(f"mta-sts.{DOMAIN}")
    cert.private_key_pem.write_to_path(folder / "privkey.pem")
    (folder / "fullchain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    return folder.parent


def settings(tmp_path: Path, server_cert: tuple[Path, Path], dns_server: DnsTestServer,
             policy_cert_dir: Path, **overrides: object) -> dict[str, object]:
    return {"OVERRIDE_HOSTNAME": TEST_HOSTNAME, "DATA_DIR": tmp_path / "data",
            "SSL_TYPE": "manual", "SSL_CERT_PATH": server_cert[0],
            "SSL_KEY_PATH": server_cert[1], "SSL_DOMAIN_CERT_DIR": policy_cert_dir,
            "DNS_NAMESERVERS": dns_server.address, **overrides}


def postroom(env_file: Path, *args: str, ca_file: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"SSL_CERT_FILE": str(ca_file)} if ca_file else {})}
    result = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file),
                             *args], capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def findings(env_file: Path, ca_file: Path | None = None) -> dict[str, dict[str, object]]:
    result = postroom(env_file, "dns", "check", DOMAIN, "--ip", IP, "--json", ca_file=ca_file)
    return {str(item["record"]): item for item in json.loads(result.stdout)}


def openssl_spki_sha256(cert_path: Path) -> str:
    """The digest computed by openssl, independently of postroom."""
    public = subprocess.run(["openssl", "x509", "-in", str(cert_path), "-noout", "-pubkey"],
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=public,
                         capture_output=True, check=True).stdout
    return subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=der,
                          capture_output=True, check=True).stdout.split()[0].decode()


def sts_id(zone: str) -> str:
    found = re.search(r'_mta-sts\.example\.test\.\t3600\tIN\tTXT\t"v=STSv1; id=(\w+)"', zone)
    assert found, zone
    return found.group(1)


def test_records_print_tlsa_and_an_id_that_follows_the_policy(
        tmp_path: Path, server_cert: tuple[Path, Path], dns_server: DnsTestServer,
        policy_cert_dir: Path) -> None:
    values = settings(tmp_path, server_cert, dns_server, policy_cert_dir, MTA_STS_PORT=443)
    env_file = write_env(tmp_path / "postroom.env", values)
    zone = postroom(env_file, "dns", "records", DOMAIN, "--ip", IP).stdout
    assert f"{TLSA_NAME}\t3600\tIN\tTLSA\t3 1 1 {openssl_spki_sha256(server_cert[0])}" in zone
    assert f"mta-sts.{DOMAIN}.\t3600\tIN\tA\t{IP}" in zone  # we serve it: point it here
    assert ";   mode: testing" in zone and "postroom does not serve" not in zone
    testing = sts_id(zone)
    again = sts_id(postroom(env_file, "dns", "records", DOMAIN, "--ip", IP).stdout)
    assert again == testing  # stable
    write_env(env_file, {**values, "MTA_STS_MODE": "enforce"})
    enforce_zone = postroom(env_file, "dns", "records", DOMAIN, "--ip", IP).stdout
    assert ";   mode: enforce" in enforce_zone and sts_id(enforce_zone) != testing
    write_env(env_file, {**values, "MTA_STS_MODE": "none"})
    assert sts_id(postroom(env_file, "dns", "records", DOMAIN).stdout) not in {
        testing, sts_id(enforce_zone)}
    # No certificate yet: no TLSA, and it says so.
    write_env(env_file, {**values, "SSL_TYPE": "self-signed", "SSL_CERT_PATH": "",
                         "SSL_KEY_PATH": ""})
    bare = postroom(env_file, "dns", "records", DOMAIN).stdout
    assert "TLSA\t" not in bare and "no certificate yet" in bare


def test_check_passes_the_right_tlsa_and_flags_a_wrong_one(
        tmp_path: Path, server_cert: tuple[Path, Path], dns_server: DnsTestServer,
        policy_cert_dir: Path) -> None:
    env_file = write_env(tmp_path / "postroom.env", settings(
        tmp_path, server_cert, dns_server, policy_cert_dir, MTA_STS_PORT=0))
    dns_server.load_zone(postroom(env_file, "dns", "records", DOMAIN, "--ip", IP).stdout,
                         origin=DOMAIN)
    dns_server.secure(TEST_HOSTNAME)  # as a DNSSEC-validating resolver would answer
    right = findings(env_file)["TLSA"]
    assert right["status"] == "ok" and openssl_spki_sha256(server_cert[0]) in str(
        right["found"])
    assert findings(env_file)["MTA-STS"]["status"] == "ok"  # the id of the served policy
    dns_server.replace(TLSA_NAME, "TLSA", "3 1 1 " + "00" * 32)
    wrong = findings(env_file)["TLSA"]
    assert wrong["status"] == "wrong" and not wrong["is_required"]
    assert openssl_spki_sha256(server_cert[0]) in str(wrong["fix"])
    dns_server.remove(TLSA_NAME, "TLSA")
    assert findings(env_file)["TLSA"]["status"] == "missing"
    dns_server.add(TLSA_NAME, "TLSA", f"3 1 1 {openssl_spki_sha256(server_cert[0])}")
    dns_server.secure(TEST_HOSTNAME, False)
    unsigned = findings(env_file)["TLSA"]
    assert unsigned["status"] == "warning" and "DNSSEC" in str(unsigned["fix"])


def test_check_fetches_the_policy_from_the_running_listener(
        tmp_path: Path, server_cert: tuple[Path, Path], dns_server: DnsTestServer,
        policy_cert_dir: Path, trustme_ca: trustme.CA) -> None:
    port = free_port()
    values = settings(tmp_path, server_cert, dns_server, policy_cert_dir, MTA_STS_PORT=port)
    env_file = write_env(tmp_path / "postroom.env", values)
    ca_file = tmp_path / "ca.pem"
    trustme_ca.cert_pem.write_to_path(ca_file)
    dns_server.load_zone(postroom(env_file, "dns", "records", DOMAIN, "--ip", IP).stdout,
                         origin=DOMAIN)
    config = make_config(tmp_path, server_cert, MTA_STS_PORT=port,
                         SSL_DOMAIN_CERT_DIR=policy_cert_dir)
    with AppThread(config) as app:
        app.add_account(f"admin@{DOMAIN}", "secret-pass-1")
        served = findings(env_file, ca_file)
        assert served["MTA-STS"]["status"] == "ok"
        assert served["MTA-STS policy"]["status"] == "ok", served["MTA-STS policy"]
        assert "mode: testing" in str(served["MTA-STS policy"]["found"])
        # Without trust in the certificate, a sender would not take the policy either.
        untrusted = findings(env_file)["MTA-STS policy"]
        assert untrusted["status"] == "wrong" and "certificate" in str(untrusted["found"])
        # The settings say enforce, the server still serves testing (not restarted) and
        # DNS still has the testing id: both are named.
        write_env(env_file, {**values, "MTA_STS_MODE": "enforce"})
        stale = findings(env_file, ca_file)
        assert stale["MTA-STS"]["status"] == "wrong" and "id" in str(stale["MTA-STS"]["fix"])
        assert stale["MTA-STS policy"]["status"] == "wrong"
        assert "mode: enforce" in str(stale["MTA-STS policy"]["fix"])
    # Listener gone: the policy is unreachable, and that is said.
    write_env(env_file, values)
    gone = findings(env_file, ca_file)["MTA-STS policy"]
    assert gone["status"] == "wrong" and "cannot connect" in str(gone["found"])
