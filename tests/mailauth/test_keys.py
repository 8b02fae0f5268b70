"""DKIM key generation, files, the opendkim-genkey record form and key matching."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from postroom.dns.fake import FakeResolver
from postroom.mailauth.dkim import DkimVerdict, sign_message, verify_dkim
from postroom.mailauth.keys import (
    KeyAlgorithm,
    dns_record_text,
    generate_key,
    generate_private_key,
    key_algorithm,
    list_keys,
    load_key,
    load_private_key,
    public_key_matches,
    public_txt_value,
    write_key,
)

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return generate_private_key()  # the 2048-bit default


@pytest.fixture(scope="module")
def ed_pem() -> bytes:
    return generate_private_key(KeyAlgorithm.ED25519)


def test_rsa_default_is_2048_pkcs1(rsa_pem: bytes) -> None:
    assert rsa_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    key = load_private_key(rsa_pem)
    assert key.key_size == 2048  # type: ignore[union-attr]
    assert key_algorithm(rsa_pem) is KeyAlgorithm.RSA


def test_small_rsa_keys_refused() -> None:
    with pytest.raises(ValueError, match="1024"):
        generate_private_key(bits=512)


def test_public_txt_value(rsa_pem: bytes, ed_pem: bytes) -> None:
    assert re.fullmatch(r"v=DKIM1; h=sha256; k=rsa; p=MIIB[A-Za-z0-9+/=]+",
                        public_txt_value(rsa_pem))
    ed_value = public_txt_value(ed_pem)
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", ed_value)


def test_dns_record_text_is_opendkim_form(rsa_pem: bytes) -> None:
    text = dns_record_text("example.com", "mail", rsa_pem)
    lines = text.split("\n")
    assert lines[0] == 'mail._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "'
    assert lines[1].startswith('\t  "p=MIIB') and len(lines[1]) == len('\t  "p="') + 250
    assert lines[2].startswith('\t  "') and lines[2].endswith(
        '" )  ; ----- DKIM key mail for example.com')
    assert text.endswith("\n") and len(lines) == 4 and lines[3] == ""
    # The quoted strings, joined, are the TXT value a resolver returns.
    assert "".join(re.findall(r'"([^"]*)"', text)) == public_txt_value(rsa_pem)


def test_public_key_matches(rsa_pem: bytes, ed_pem: bytes) -> None:
    value = public_txt_value(rsa_pem)
    assert public_key_matches(value, rsa_pem)
    spaced = value.replace("p=", "p= ").replace(";", " ; ")
    assert public_key_matches(spaced, rsa_pem)
    assert not public_key_matches(value, generate_private_key(bits=1024))
    assert not public_key_matches(value.replace("k=rsa", "k=ed25519"), rsa_pem)
    assert not public_key_matches("v=DKIM1; p=", rsa_pem)
    assert not public_key_matches("v=DKIM1; p=!!!", rsa_pem)
    assert public_key_matches(public_txt_value(ed_pem), ed_pem)
    assert not public_key_matches(public_txt_value(ed_pem), rsa_pem)
    assert not public_key_matches(value, b"not a key")


def test_generate_key_files(tmp_path: Path) -> None:
    key = generate_key(tmp_path, "Example.COM", "mail", bits=1024)
    assert key.private_path == tmp_path / "example.com" / "mail.private"
    assert stat.S_IMODE(key.private_path.stat().st_mode) == 0o600
    pem = load_key(tmp_path, "example.com", "mail")
    assert key.txt_path.read_text() == dns_record_text("example.com", "mail", pem)
    generate_key(tmp_path, "example.org", "ed", algorithm=KeyAlgorithm.ED25519)
    listed = [(k.domain, k.selector, k.algorithm) for k in list_keys(tmp_path)]
    assert listed == [("example.com", "mail", KeyAlgorithm.RSA),
                      ("example.org", "ed", KeyAlgorithm.ED25519)]
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_rewrite_keeps_0600_even_if_file_was_open(tmp_path: Path, rsa_pem: bytes) -> None:
    first = write_key(tmp_path, "example.com", "mail", rsa_pem)
    first.private_path.chmod(0o644)
    second = write_key(tmp_path, "example.com", "mail", rsa_pem)
    assert stat.S_IMODE(second.private_path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("domain", "selector"), [
    ("../etc", "mail"), ("example.com", "../x"), ("example.com", "a/b"),
    ("exa mple.com", "mail"), ("example.com", ""), ("", "mail")])
def test_unsafe_names_refused(tmp_path: Path, domain: str, selector: str) -> None:
    with pytest.raises(ValueError):
        generate_key(tmp_path, domain, selector)


def test_list_keys_on_missing_dir(tmp_path: Path) -> None:
    assert list_keys(tmp_path / "nope") == []


async def test_pkcs8_rsa_key_signs(rsa_pem: bytes) -> None:
    """Keys from OpenSSL 3's opendkim-genkey are PKCS#8; signing converts them."""
    pkcs8 = load_private_key(rsa_pem).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    assert pkcs8.startswith(b"-----BEGIN PRIVATE KEY-----")
    fake = FakeResolver({"mail._domainkey.example.com": {"TXT": [public_txt_value(pkcs8)]}})
    header = await sign_message(MESSAGE, "example.com", "mail", pkcs8)
    [result] = await verify_dkim(fake, header + MESSAGE)
    assert result.result == DkimVerdict.PASS
