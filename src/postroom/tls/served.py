"""The certificates this server presents, read from disk: what `postroom tls status` and
the admin console's TLS page show (issue 21).

Owns the list of served certificate files — the default pair (SSL_CERT_PATH), the ones
ACME ordered (DATA_DIR/acme/certs/, SSL_TYPE=acme) and the SNI folders
(SSL_DOMAIN_CERT_DIR) — and each one's facts or the problem reading it. Reads only; a
missing or unreadable file is a row with its problem, never an exception.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from postroom.config import Config
from postroom.tls.certfiles import CHAIN_FILE, CertificateFacts, certificate_folders, read_facts


@dataclass(frozen=True, slots=True)
class ServedCertificate:
    role: str  # "default", "acme" or "sni"
    path: Path
    facts: CertificateFacts | None  # None: missing or unreadable
    problem: str = ""

    def is_expired(self, now: dt.datetime) -> bool:
        return self.facts is not None and self.facts.not_after <= now


def served_certificates(config: Config) -> list[ServedCertificate]:
    found = [_read("default", config.cert_path)]
    if config.ssl_type == "acme":
        found += [_read("acme", folder / CHAIN_FILE)
                  for folder in certificate_folders(config.acme_dir / "certs")
                  if folder / CHAIN_FILE != config.cert_path]
    if config.ssl_domain_cert_dir is not None:
        found += [_read("sni", folder / CHAIN_FILE)
                  for folder in certificate_folders(config.ssl_domain_cert_dir)]
    return found


def renewal_due(config: Config, served: ServedCertificate) -> dt.datetime | None:
    """When ACME renews this certificate (None: not ACME-managed, or unreadable); a
    self-signed stand-in is due now (its own not_before)."""
    from postroom.tls.acmemanager import renewal_time  # only with SSL_TYPE=acme

    if config.ssl_type != "acme" or served.facts is None:
        return None
    if served.facts.is_self_signed:
        return served.facts.not_before
    return renewal_time(served.facts)


def _read(role: str, path: Path) -> ServedCertificate:
    try:
        return ServedCertificate(role, path, read_facts(path.read_bytes()))
    except OSError as error:
        return ServedCertificate(role, path, None, error.strerror or str(error))
    except ValueError as error:
        return ServedCertificate(role, path, None, f"not a PEM certificate: {error}")
