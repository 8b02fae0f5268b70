"""The pure parts of ACME (plan, schedule, back-off, request parsing) and the challenge
listeners over real sockets; certificate files; `postroom tls status`."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from postroom.config import Config, ConfigError, check_serve_files
from postroom.tls.acmemanager import (
    RETRY_MAX,
    CertificatePlan,
    due_time,
    in_daemon_thread,
    plan_certificates,
    renewal_time,
    retry_delay,
)
from postroom.tls.certfiles import CertificateFacts, read_facts, write_pair
from postroom.tls.challenges import (
    ACME_IDENTIFIER_OID,
    ACME_TLS_ALPN,
    MAX_REQUEST,
    ChallengeBoard,
    ChallengeListeners,
    parse_challenge_request,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def facts(names: tuple[str, ...], days: int = 90, serial: int = 0,
          is_self_signed: bool = False) -> CertificateFacts:
    return CertificateFacts(names, "CA", NOW, NOW + dt.timedelta(days=days), serial,
                            is_self_signed)


def test_plan_has_the_host_then_one_certificate_per_domain() -> None:
    plans = plan_certificates("mail.example.com", ["example.net", "Example.com"],
                              ["mta-sts", "autoconfig"])
    assert plans == [
        CertificatePlan("mail.example.com", ("mail.example.com",)),
        CertificatePlan("example.com", ("mta-sts.example.com", "autoconfig.example.com")),
        CertificatePlan("example.net", ("mta-sts.example.net", "autoconfig.example.net")),
    ]
    # Prefixes off: the host name only; the host name is never ordered twice.
    assert plan_certificates("mail.example.com", ["example.com"], []) == plans[:1]
    assert plan_certificates("mail.example.com", ["example.com"], ["mail"]) == plans[:1]
    # A hosted domain that is the host name: its names join the host's certificate.
    assert plan_certificates("example.com", ["example.com"], ["mta-sts"]) == [
        CertificatePlan("example.com", ("example.com", "mta-sts.example.com"))]


async def test_daemon_thread_hands_back_results_and_errors() -> None:
    assert await in_daemon_thread(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await in_daemon_thread(divmod, 1, 0)


def test_renewal_is_at_two_thirds_less_a_bounded_jitter() -> None:
    for serial in (0, 1, 499, 999, 123456789):
        when = renewal_time(facts(("a.example",), serial=serial))
        assert NOW + dt.timedelta(days=60) - dt.timedelta(days=90) / 20 <= when
        assert when <= NOW + dt.timedelta(days=60)
    assert renewal_time(facts(("a",), serial=0)) != renewal_time(facts(("a",), serial=500))


def test_due_now_when_missing_self_signed_or_lacking_a_name() -> None:
    plan = CertificatePlan("example.com", ("mta-sts.example.com", "autoconfig.example.com"))
    later = NOW + dt.timedelta(days=1)
    assert due_time(plan, None, later) == later
    assert due_time(plan, facts(plan.names, is_self_signed=True), later) == later
    assert due_time(plan, facts(plan.names[:1]), later) == later
    current = facts(plan.names)
    assert due_time(plan, current, later) == renewal_time(current)


def test_retries_double_up_to_a_cap() -> None:
    base = dt.timedelta(minutes=5)
    assert [retry_delay(n, base) for n in (1, 2, 3)] == [base, base * 2, base * 4]
    assert retry_delay(30, base) == RETRY_MAX


@pytest.mark.parametrize(("head", "token"), [
    (b"GET /.well-known/acme-challenge/abc_DEF-1 HTTP/1.1\r\nHost: x\r\n\r\n", "abc_DEF-1"),
    (b"HEAD /.well-known/acme-challenge/tok HTTP/1.0\r\n\r\n", "tok"),
    (b"GET http://x.example/.well-known/acme-challenge/tok HTTP/1.1\r\n\r\n", "tok"),
    (b"POST /.well-known/acme-challenge/tok HTTP/1.1\r\n\r\n", None),
    (b"GET /.well-known/acme-challenge/../etc/passwd HTTP/1.1\r\n\r\n", None),
    (b"GET /.well-known/acme-challenge/ HTTP/1.1\r\n\r\n", None),
    (b"GET /index.html HTTP/1.1\r\n\r\n", None),
    (b"garbage\r\n\r\n", None),
])
def test_parse_challenge_request(head: bytes, token: str | None) -> None:
    assert parse_challenge_request(head) == token


async def http_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_http_listener_answers_published_tokens_only(tmp_path: Path) -> None:
    board = ChallengeBoard(tmp_path / "tmp")
    listeners = ChallengeListeners(board, ["127.0.0.1"])
    await listeners.start_http(0)
    port = listeners.ports[0]
    try:
        path = b"/.well-known/acme-challenge/tok1"
        get = b"GET " + path + b" HTTP/1.1\r\nHost: a.example\r\n\r\n"
        assert (await http_exchange(port, get)).startswith(b"HTTP/1.1 404 ")
        board.publish_http("tok1", "tok1.thumb")
        answer = await http_exchange(port, get)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\ntok1.thumb")
        assert board.answered == 1
        head = await http_exchange(port, get.replace(b"GET", b"HEAD"))
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        assert (await http_exchange(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 404 ")
        # A request past the size limit is closed unanswered.
        huge = b"GET " + path + b" HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST + b"\r\n\r\n"
        assert await http_exchange(port, huge) == b""
        board.withdraw_all()
        assert (await http_exchange(port, get)).startswith(b"HTTP/1.1 404 ")
    finally:
        await listeners.close()


async def alpn_handshake(port: int, name: str) -> x509.Certificate:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE  # RFC 8737: the CA checks the extension, not a chain
    client.set_alpn_protocols([ACME_TLS_ALPN])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                   server_hostname=name)
    ssl_object = writer.get_extra_info("ssl_object")
    assert ssl_object.selected_alpn_protocol() == ACME_TLS_ALPN
    der = ssl_object.getpeercert(binary_form=True)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closes at once
    writer.close()
    return x509.load_der_x509_certificate(der)


async def test_tls_alpn_listener_serves_the_rfc8737_certificate(tmp_path: Path) -> None:
    board = ChallengeBoard(tmp_path / "tmp")
    listeners = ChallengeListeners(board, ["127.0.0.1"])
    await listeners.start_alpn(0)
    port = listeners.ports[0]
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):  # nothing published for it
            await alpn_handshake(port, "mail.example.org")
        await asyncio.to_thread(board.publish_alpn, "mail.example.org", "tok.thumb")
        cert = await alpn_handshake(port, "mail.example.org")
        extension = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
        assert extension.critical
        digest = hashlib.sha256(b"tok.thumb").digest()
        assert extension.value.public_bytes() == b"\x04\x20" + digest
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.DNSName) == ["mail.example.org"]
        assert list((tmp_path / "tmp").iterdir()) == []  # throwaway key files are gone
        assert board.answered == 1
    finally:
        await listeners.close()


def test_write_pair_is_private_and_readable(tmp_path: Path) -> None:
    cert = trustme.CA().issue_cert("mail.example.org", "*.example.org")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    write_pair(tmp_path / "example.org", chain, cert.private_key_pem.bytes())
    assert (tmp_path / "example.org" / "privkey.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "example.org").stat().st_mode & 0o777 == 0o700
    read = read_facts((tmp_path / "example.org" / "fullchain.pem").read_bytes())
    assert read.names == ("mail.example.org", "*.example.org")
    assert not read.is_self_signed
    assert [p.name for p in (tmp_path / "example.org").iterdir()
            if p.name.startswith(".")] == []  # no temporary files left


def test_tls_status_lists_names_issuer_and_expiry(tmp_path: Path) -> None:
    ca = trustme.CA(organization_name="Status Test CA")
    certs = tmp_path / "certs"
    for name in ("example.org", "example.net"):
        issued = ca.issue_cert(f"mail.{name}")
        write_pair(certs / name, b"".join(b.bytes() for b in issued.cert_chain_pems),
                   issued.private_key_pem.bytes())
    env = tmp_path / "postroom.env"
    env.write_text(f"DATA_DIR={tmp_path / 'data'}\nOVERRIDE_HOSTNAME=mail.example.test\n"
                   f"SSL_TYPE=manual\nSSL_CERT_PATH={certs / 'example.org/fullchain.pem'}\n"
                   f"SSL_KEY_PATH={certs / 'example.org/privkey.pem'}\n"
                   f"SSL_DOMAIN_CERT_DIR={certs}\n")
    result = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), "tls",
                             "status"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(row[0], row[1]) for row in rows] == [
        ("default", "mail.example.org"), ("sni", "mail.example.net"),
        ("sni", "mail.example.org")]
    assert all(row[2].startswith("Status Test CA") or "Status Test CA" in row[2]
               for row in rows), rows
    (certs / "example.org" / "fullchain.pem").unlink()
    missing = subprocess.run([sys.executable, "-m", "postroom", "--config", str(env), "tls",
                              "status"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1


def test_serve_names_a_missing_ca_bundle_or_certificate_folder(tmp_path: Path) -> None:
    base = {"OVERRIDE_HOSTNAME": "mail.example.test", "DATA_DIR": str(tmp_path)}
    acme = Config.model_validate({**base, "SSL_TYPE": "acme",
                                  "ACME_CA_BUNDLE": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match=r"ACME_CA_BUNDLE: file .*nope\.pem does not exist"):
        check_serve_files(acme)
    folder = Config.model_validate({**base, "SSL_DOMAIN_CERT_DIR": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="SSL_DOMAIN_CERT_DIR: folder"):
        check_serve_files(folder)
    check_serve_files(Config.model_validate({**base, "SSL_TYPE": "acme"}))  # all defaults
    assert Config.model_validate({**base, "SSL_DOMAIN_CERT_DIR": ""}).ssl_domain_cert_dir is None
