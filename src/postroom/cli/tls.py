"""`postroom tls status`: the certificates `serve` hands out, with their names, issuer,
expiry and (SSL_TYPE=acme) when renewal is due.

Owns listing and printing only: which files are served is tls/contexts.py's rule (the
SSL_TYPE pair by default, the folders of DATA_DIR/acme/certs and SSL_DOMAIN_CERT_DIR by
SNI), the renewal schedule tls/acmemanager.py's.
"""

from __future__ import annotations

import datetime as dt

import typer

from postroom.cli.console import app, current_config, human_time, print_table
from postroom.config import Config
from postroom.tls.served import ServedCertificate, renewal_due, served_certificates

tls_app = typer.Typer(no_args_is_help=True, help="TLS certificates (ACME, SNI).")
app.add_typer(tls_app, name="tls")


def _renewal(config: Config, served: ServedCertificate) -> str:
    if served.facts is not None and served.facts.is_self_signed and config.ssl_type == "acme":
        return "now (self-signed stand-in)"
    due = renewal_due(config, served)
    return "-" if due is None else human_time(due)


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
