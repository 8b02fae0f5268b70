"""The verbs about a domain's public face: `dkim` (signing keys), `dns` (the records to
publish, and checking them live) and `selftest` (the verdict of a receiving provider).

Owns only argument handling and printing; the work is in mailauth/keys.py,
selftest/records.py and selftest/.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated

import typer

from postroom.cli.console import (
    app,
    current_config,
    dkim_app,
    dkim_dir,
    dns_app,
    fail,
    print_table,
    run_cli,
)
from postroom.errors import PostroomError

if TYPE_CHECKING:
    from postroom.selftest import SelftestReport
    from postroom.selftest.records import ZoneInput


# -- dkim --------------------------------------------------------------------------------
@dkim_app.command("generate")
def dkim_generate(
    domain: str,
    selector: Annotated[str, typer.Option(help="DKIM selector")] = "mail",
    keysize: Annotated[int, typer.Option(help="RSA key size in bits")] = 2048,
    ed25519: Annotated[bool, typer.Option(
        "--ed25519", help="make an Ed25519 key (RFC 8463) instead of RSA")] = False,
    force: Annotated[bool, typer.Option(help="replace an existing key")] = False,
) -> None:
    """Generate a signing key for DOMAIN and print the DNS record to publish."""
    from postroom.mail.address import normalize_domain
    from postroom.mailauth.keys import KeyAlgorithm, generate_key, key_paths

    config = current_config()
    try:
        domain = normalize_domain(domain)
        private_path, _ = key_paths(dkim_dir(config), domain, selector)
    except (PostroomError, ValueError) as error:
        raise fail(str(error)) from None
    if private_path.exists() and not force:
        raise fail(f"a key for {domain} selector {selector} exists; use --force to replace it")
    algorithm = KeyAlgorithm.ED25519 if ed25519 else KeyAlgorithm.RSA
    try:
        key = generate_key(dkim_dir(config), domain, selector, algorithm=algorithm,
                           bits=keysize)
    except ValueError as error:
        raise fail(str(error)) from None
    typer.echo(f"; DKIM key written to {key.private_path}; publish this record in the "
               f"zone of {domain}:", err=True)
    typer.echo(key.txt_path.read_text().rstrip())


@dkim_app.command("list")
def dkim_list() -> None:
    """List the domains and selectors that have signing keys."""
    from postroom.mailauth.keys import list_keys

    keys = list_keys(dkim_dir(current_config()))
    print_table(("domain", "selector", "algorithm", "key file"),
                [(k.domain, k.selector, k.algorithm.value, k.private_path) for k in keys])


@dkim_app.command("show")
def dkim_show(domain: str) -> None:
    """Print the DNS record(s) for DOMAIN's keys."""
    from postroom.mailauth.keys import dns_record_text, list_keys

    keys = [k for k in list_keys(dkim_dir(current_config())) if k.domain == domain.lower()]
    if not keys:
        raise fail(f"no DKIM key for {domain}; run `postroom dkim generate {domain}`")
    for key in keys:
        typer.echo(dns_record_text(key.domain, key.selector, key.private_path.read_bytes()))


# -- dns ---------------------------------------------------------------------------------
def zone_input(domain: str, ip: str | None, ipv6: str | None) -> ZoneInput:
    from postroom.mail.address import normalize_domain
    from postroom.reports.intake import rua_address  # where reports arrive (issue 20)
    from postroom.selftest.records import ZoneInput, configured_srv_ports, transport_inputs

    config = current_config()
    try:
        domain = normalize_domain(domain)
        for value, version in ((ip, 4), (ipv6, 6)):
            if value and ipaddress.ip_address(value).version != version:
                raise ValueError(f"{value} is not an IPv{version} address")
    except (PostroomError, ValueError) as error:
        raise fail(str(error)) from None
    return ZoneInput(domain=domain, hostname=config.hostname, ipv4=ip, ipv6=ipv6,
                     dkim_dir=dkim_dir(config), postmaster=rua_address(config, domain),
                     srv_ports=configured_srv_ports(config),
                     **transport_inputs(config))


@dns_app.command("records")
def dns_records(
    domain: str,
    ip: Annotated[str | None, typer.Option("--ip", help="the server's IPv4 address")] = None,
    ipv6: Annotated[str | None, typer.Option("--ipv6", help="the server's IPv6 address")
                    ] = None,
) -> None:
    """Print every record DOMAIN needs, as a BIND zone snippet."""
    from postroom.selftest.records import render_zone

    typer.echo(render_zone(zone_input(domain, ip, ipv6)), nl=False)


@dns_app.command("check")
def dns_check(
    domain: str,
    ip: Annotated[str | None, typer.Option("--ip", help="the server's IPv4 address")] = None,
    ipv6: Annotated[str | None, typer.Option("--ipv6", help="the server's IPv6 address")
                    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Query DNS and check every record; exit 1 when a required one is missing or wrong."""
    import json

    from postroom.dns.live import LiveResolver
    from postroom.selftest.records import check_domain

    spec = zone_input(domain, ip, ipv6)
    resolver = LiveResolver(current_config().nameservers)
    findings = run_cli(check_domain(resolver, spec))
    if as_json:
        typer.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        print_table(("record", "status", "found", "fix"),
                    [(f.record, f.status.value, f.found, f.fix) for f in findings])
    if any(f.is_failure for f in findings):
        raise typer.Exit(1)


# -- selftest ----------------------------------------------------------------------------
@app.command()
def selftest(
    domain: str,
    to: Annotated[str | None, typer.Option(
        "--to", help="also send the signed message to this address (e.g. an online tester)")
    ] = None,
    sender: Annotated[str | None, typer.Option(
        "--from", help="From and envelope sender (default: postmaster@DOMAIN)")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="the server's public IPv4")] = None,
    ipv6: Annotated[str | None, typer.Option("--ipv6", help="the server's public IPv6")
                    ] = None,
    smtp_host: Annotated[str | None, typer.Option(
        "--smtp-host", help="where to probe STARTTLS (default: LISTEN_ADDRESS)")] = None,
    smtp_port: Annotated[int | None, typer.Option(
        "--smtp-port", help="the SMTP port to probe (default: SMTP_PORT)")] = None,
    dnsbl: Annotated[list[str] | None, typer.Option(
        "--dnsbl", help="a DNSBL zone to look the server's address up in (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Judge DOMAIN's setup as a receiving provider would, scored out of 10; exit 1 when a
    check fails."""
    import json

    from postroom.dns.live import LiveResolver
    from postroom.selftest import SelftestOptions, run_selftest

    spec = zone_input(domain, ip, ipv6)
    config = current_config()
    from_address = (sender or f"postmaster@{spec.domain}").strip()
    for address in (from_address, to):
        if address is not None and "@" not in address:
            raise fail(f"{address!r} is not an email address")
    options = SelftestOptions(
        domain=spec.domain, sender=from_address, recipient=to, ipv4=ip, ipv6=ipv6,
        smtp_host=smtp_host, smtp_port=smtp_port, dnsbl_zones=tuple(dnsbl or ()))
    report = run_cli(run_selftest(config, LiveResolver(config.nameservers), options))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        print_selftest(report)
    if report.is_failure:
        raise typer.Exit(1)


def print_selftest(report: SelftestReport) -> None:
    for note in report.notes:
        typer.echo(f"postroom: {note}", err=True)
    print_table(("check", "status", "points", "detail", "fix"),
                [(c.name, c.status.value, f"{c.earned:g}/{c.points:g}", c.detail, c.fix)
                 for c in report.checks])
    typer.echo(report.score_text)
    if report.sent is not None:
        sent = report.sent
        outcome = "delivered" if sent.is_delivered else "NOT delivered"
        typer.echo(f"sent to {sent.recipient}: {outcome}: {sent.reply}"
                   + (f" (by {sent.server})" if sent.server else ""))
        if sent.is_delivered:
            typer.echo(f"look for the subject ending ({report.queue_id}) in that mailbox, "
                       "or open the tester's result page")
