"""`postroom tls status`: the certificates `serve` hands out, with their names, issuer,
expiry and (SSL_TYPE=acme) when renewal is due.

Owns listing and printing only: which files are served is tls/contexts.py's rule (the
SSL_TYPE pair by default, the folders of DATA_DIR/acme/certs and SSL_DOMAIN_CERT_DIR by
SNI), the renewal schedule tls/acmemanager.py's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import typer

from postroom.cli.console import app, current_config, human_time, print_table
from postroom.config import Config
from postroom.tls.certfiles import CHAIN_FILE, CertificateFacts, certificate_folders, read_facts

tls_app = typer.Typer(no_args_is_help=True, help="TLS certificates (ACME, SNI).")
app.add_typer(tls_app, name="tls")


@dataclass(frozen=True, slots=True)
class ServedCertificate:
    role: str  # "default", "acme" or "sni"
    path: Path
    facts: CertificateFacts | None  # None: missing or unreadable
    problem: str = ""


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


def _read(role: str, path: Path) -> ServedCertificate:
    try:
        return ServedCertificate(role, path, read_facts(path.read_bytes()))
    except OSError as error:
        return ServedCertificate(role, path, None, error.strerror or str(error))
    except ValueError as error:
        return ServedCertificate(role, path, None, f"not a PEM certificate: {error}")


def _renewal(config: Config, served: ServedCertificate) -> str:
    from postroom.tls.acmemanager import renewal_time

    if config.ssl_type != "acme" or served.facts is None:
        return "-"
    if served.facts.is_self_signed:
        return "now (self-signed stand-in)"
    return human_time(renewal_time(served.facts))


@tls_app.command("status")
def status() -> None:
    """Each served certificate: names, issuer, expiry; exit 1 if one is missing, unreadable
    or expired."""
    config = current_config()
    now = dt.datetime.now(dt.UTC)
    rows, is_healthy = [], True
    for served in served_certificates(config):
        if served.facts is None:
            rows.append([served.role, "-", served.problem, "-", "-", served.path])
            is_healthy = False
            continue
        expired = " (EXPIRED)" if served.facts.not_after <= now else ""
        is_healthy = is_healthy and not expired
        rows.append([served.role, " ".join(served.facts.names) or "-", served.facts.issuer,
                     human_time(served.facts.not_after) + expired,
                     _renewal(config, served), served.path])
    print_table(["role", "names", "issuer", "expires", "renews", "file"], rows)
    if not is_healthy:
        raise typer.Exit(1)
