"""Certificate files on disk: what a certificate says, and writing pairs safely.

Owns the layout of a certificate folder (`fullchain.pem` + `privkey.pem`, as Certbot,
SSL_DOMAIN_CERT_DIR and DATA_DIR/acme/certs use it), reading the facts `tls status`, SNI
and renewal need (names, issuer, validity), and writing files atomically: a reader (the
hot reload of tls/contexts.py, another process) sees the old file or the new one, never
half of one.

Invariants: private keys are created 0600 and never exist with wider permissions, even
for an instant (the temporary file is made 0600 before a byte is written); the key of a
pair is renamed into place before its certificate, so a reload triggered by the new
certificate finds the matching key (a reload that sees the new key with the old
certificate fails its scratch load and keeps the old context: tls/contexts.py).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

CHAIN_FILE = "fullchain.pem"
KEY_FILE = "privkey.pem"


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    names: tuple[str, ...]  # the DNS names of subjectAltName (lower case)
    issuer: str  # the issuer's common name, else its whole distinguished name
    not_before: dt.datetime  # UTC
    not_after: dt.datetime  # UTC
    serial: int
    is_self_signed: bool

    @property
    def lifetime(self) -> dt.timedelta:
        return self.not_after - self.not_before


def read_facts(chain_pem: bytes) -> CertificateFacts:
    """The facts of the first (leaf) certificate of a PEM chain; ValueError if none."""
    leaf = x509.load_pem_x509_certificate(chain_pem)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(name.lower() for name in san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateFacts(names=names, issuer=_common_name(leaf.issuer),
                            not_before=leaf.not_valid_before_utc,
                            not_after=leaf.not_valid_after_utc, serial=leaf.serial_number,
                            is_self_signed=leaf.issuer == leaf.subject)


def read_facts_file(path: Path) -> CertificateFacts:
    return read_facts(path.read_bytes())


def _common_name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def certificate_folders(root: Path) -> list[Path]:
    """The subfolders of `root` holding a complete pair, sorted by name."""
    if not root.is_dir():
        return []
    return sorted(folder for folder in root.iterdir()
                  if (folder / CHAIN_FILE).is_file() and (folder / KEY_FILE).is_file())


def write_atomically(path: Path, data: bytes, *, is_secret: bool) -> None:
    """Temp file in the same folder (0600 for secrets, else 0644), fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600 if is_secret else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_pair(folder: Path, chain_pem: bytes, key_pem: bytes) -> None:
    """Key first, then the chain: see the module's invariants."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(folder / KEY_FILE, key_pem, is_secret=True)
    write_atomically(folder / CHAIN_FILE, chain_pem, is_secret=False)
