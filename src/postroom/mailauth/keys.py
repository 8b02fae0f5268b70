"""DKIM keys: generation, files on disk, and the DNS TXT record that publishes them.

Owns: the key file layout, shared with docker-mailserver's OpenDKIM setup so imported
keys work unchanged: `<keys_dir>/<domain>/<selector>.private` (PEM, mode 0600) and
`<selector>.txt` (the zone-file TXT record, in opendkim-genkey's exact form); the public
TXT value (RFC 6376 §3.6.1; RFC 8463 §4.2 for Ed25519, whose p= is the raw 32-byte key);
and converting keys into the forms dkimpy wants (mailauth/dkim.py calls those).

Invariants: private keys are created 0600 and written atomically (temp file, fsync,
rename); domain and selector are checked before they become path components; RSA keys are
written as PKCS#1 ("RSA PRIVATE KEY", what opendkim-genkey wrote for years and dkimpy
parses), Ed25519 keys as PKCS#8; either PEM form is accepted when loading.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

DEFAULT_SELECTOR = "mail"
DEFAULT_RSA_BITS = 2048
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must accept 1024..4096, signers use >= 1024
_TXT_CHUNK = 250  # opendkim-genkey splits p= into 250-character strings (<= 255, RFC 1035)

_DOMAIN_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
_SELECTOR_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,62})")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class KeyAlgorithm(StrEnum):
    RSA = "rsa"
    ED25519 = "ed25519"


@dataclass(frozen=True, slots=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: KeyAlgorithm
    private_path: Path
    txt_path: Path


def generate_private_key(algorithm: KeyAlgorithm = KeyAlgorithm.RSA,
                         bits: int = DEFAULT_RSA_BITS) -> bytes:
    """A new private key as PEM bytes."""
    if algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
    if bits < MIN_RSA_BITS:
        raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def load_private_key(private_pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a usable PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("DKIM keys are RSA or Ed25519")
    return key


def key_algorithm(private_pem: bytes) -> KeyAlgorithm:
    key = load_private_key(private_pem)
    return KeyAlgorithm.ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) \
        else KeyAlgorithm.RSA


def _public_bytes(key: PrivateKey) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _txt_prefix(key: PrivateKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "v=DKIM1; k=ed25519; "  # RFC 8463 §4.2 example form
    return "v=DKIM1; h=sha256; k=rsa; "


def public_txt_value(private_pem: bytes) -> str:
    """The TXT record value: "v=DKIM1; h=sha256; k=rsa; p=MIIB..." (RFC 6376 §3.6.1)."""
    key = load_private_key(private_pem)
    return _txt_prefix(key) + "p=" + base64.b64encode(_public_bytes(key)).decode()


def dns_record_text(domain: str, selector: str, private_pem: bytes) -> str:
    """The `<selector>.txt` file content exactly as opendkim-genkey writes it."""
    key = load_private_key(private_pem)
    encoded = base64.b64encode(_public_bytes(key)).decode()
    chunks = [encoded[i:i + _TXT_CHUNK] for i in range(0, len(encoded), _TXT_CHUNK)]
    chunks[0] = "p=" + chunks[0]
    body = "\n\t  ".join(f'"{chunk}"' for chunk in [_txt_prefix(key), *chunks])
    return (f"{selector}._domainkey\tIN\tTXT\t( {body} )  "
            f"; ----- DKIM key {selector} for {domain}\n")


def parse_key_tags(txt_value: str) -> dict[str, str]:
    """Tag=value pairs of a key record (RFC 6376 §3.2); names lower-cased, values stripped."""
    tags: dict[str, str] = {}
    for part in txt_value.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = value.strip()
    return tags


def public_key_matches(txt_value: str, private_pem: bytes) -> bool:
    """Does the published TXT value carry the public half of `private_pem`?"""
    try:
        key = load_private_key(private_pem)
    except ValueError:
        return False
    tags = parse_key_tags(txt_value)
    expected = KeyAlgorithm.ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) \
        else KeyAlgorithm.RSA
    if tags.get("k", "rsa").lower() != expected or tags.get("v", "DKIM1") != "DKIM1":
        return False
    try:
        published = base64.b64decode(re.sub(r"\s+", "", tags.get("p", "")), validate=True)
    except ValueError:
        return False
    return published == _public_bytes(key)


def rsa_pkcs1_pem(private_pem: bytes) -> bytes:
    """The RSA key as PKCS#1 PEM, the only form dkimpy's signer parses."""
    key = load_private_key(private_pem)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def ed25519_seed_base64(private_pem: bytes) -> bytes:
    """The Ed25519 key as base64 of its 32-byte seed, the form dkimpy's signer takes."""
    key = load_private_key(private_pem)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("expected an Ed25519 private key")
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw)


# -- files -------------------------------------------------------------------------------

def key_paths(keys_dir: Path, domain: str, selector: str) -> tuple[Path, Path]:
    """(private key path, TXT record path); rejects names that could escape keys_dir."""
    domain = domain.rstrip(".").lower()
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"not a domain name: {domain!r}")
    if not _SELECTOR_RE.fullmatch(selector) or ".." in selector:
        raise ValueError(f"not a DKIM selector: {selector!r}")
    folder = keys_dir / domain
    return folder / f"{selector}.private", folder / f"{selector}.txt"


def write_key(keys_dir: Path, domain: str, selector: str, private_pem: bytes) -> DkimKey:
    """Store a key (0600) and its TXT record file, replacing any previous pair."""
    algorithm = key_algorithm(private_pem)
    private_path, txt_path = key_paths(keys_dir, domain, selector)
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    _write_atomic(private_path, private_pem, 0o600)
    record = dns_record_text(domain.rstrip(".").lower(), selector, private_pem)
    _write_atomic(txt_path, record.encode(), 0o644)
    return DkimKey(private_path.parent.name, selector, algorithm, private_path, txt_path)


def generate_key(keys_dir: Path, domain: str, selector: str = DEFAULT_SELECTOR, *,
                 algorithm: KeyAlgorithm = KeyAlgorithm.RSA,
                 bits: int = DEFAULT_RSA_BITS) -> DkimKey:
    """Generate and store a key. CPU-heavy for RSA: call it off the event loop."""
    key_paths(keys_dir, domain, selector)  # validate before spending CPU
    return write_key(keys_dir, domain, selector, generate_private_key(algorithm, bits))


def load_key(keys_dir: Path, domain: str, selector: str = DEFAULT_SELECTOR) -> bytes:
    private_path, _ = key_paths(keys_dir, domain, selector)
    return private_path.read_bytes()


def list_keys(keys_dir: Path) -> list[DkimKey]:
    """Every `<domain>/<selector>.private` under keys_dir, sorted; unreadable keys skipped."""
    found: list[DkimKey] = []
    if not keys_dir.is_dir():
        return found
    for private_path in sorted(keys_dir.glob("*/*.private")):
        try:
            algorithm = key_algorithm(private_path.read_bytes())
        except (OSError, ValueError):
            continue
        selector = private_path.name.removesuffix(".private")
        found.append(DkimKey(private_path.parent.name, selector, algorithm, private_path,
                             private_path.with_name(f"{selector}.txt")))
    return found


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # O_CREAT's mode is filtered by umask and ignored if it exists
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
