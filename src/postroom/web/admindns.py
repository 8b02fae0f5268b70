"""Admin page of a domain's public face (issue 21): its DKIM keys, the DNS records to
publish, and the live check of each record — green when right, red with the fix.

Owns the page and the key-generation action. The records and the check are
selftest/records.py's (`dns records` / `dns check`), reached through `DomainAdvice`
(web/dnsadvice.py), which app.py hands over in WebContext.domains (selftest/ sits above
this floor); keys are mailauth/keys.py's, generated off the event loop. The signer reads
keys from disk at each signature (outbound/signing.py), so a new key signs the next
message.

Invariants: the live check is bounded by CHECK_TIMEOUT (a slow DNS server gives a
message, not a hung page); an existing key is replaced only when asked to explicitly.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from postroom.errors import BadSyntax, PostroomError
from postroom.mail.address import normalize_domain
from postroom.mailauth.keys import (
    DEFAULT_SELECTOR,
    KeyAlgorithm,
    generate_key,
    key_paths,
    list_keys,
)
from postroom.web.adminkit import ActionRefused, AdminForm, admin_action, admin_page, done
from postroom.web.context import WebContext
from postroom.web.dnsadvice import DnsFinding
from postroom.web.render import render

DNS = "/admin/dns"
CHECK_TIMEOUT = 30.0  # seconds for every record's live query together
MAX_KEYS_SHOWN = 20


def routes() -> list[BaseRoute]:
    return [admin_page(DNS, dns_page),
            admin_action(DNS + "/dkim", generate_dkim, domain_page)]


def domain_page(form: AdminForm) -> str:
    """Where a refused key generation goes back to: its domain's page."""
    try:
        return f"{DNS}?{urllib.parse.urlencode({'domain': form.text('domain')})}"
    except ActionRefused:  # no domain, or one too long
        return DNS


def colour(finding: DnsFinding) -> str:
    """The CSS class of a finding: ok (green), bad (red), warn (amber), unknown (grey)."""
    if finding.status == "ok":
        return "ok"
    if finding.is_failure:
        return "bad"
    return "unknown" if finding.status == "not checked" else "warn"


async def dns_page(request: Request, ctx: WebContext) -> Response:
    domains = sorted(set(await ctx.runtime.store.list_domains()))
    raw = request.query_params.get("domain", "")[:255]
    if not raw:
        return render(request, "admin_dns.html", section="dns", domains=domains, domain="")
    ipv4 = request.query_params.get("ipv4", "")[:45].strip() or None
    ipv6 = request.query_params.get("ipv6", "")[:45].strip() or None
    values: dict[str, Any] = {"domains": domains, "ipv4": ipv4 or "", "ipv6": ipv6 or ""}
    try:
        domain = normalize_domain(raw)
    except BadSyntax as error:
        return render(request, "admin_dns.html", section="dns", domain="", error=str(error),
                      **values)
    keys = [(key, key.txt_path.read_text(errors="replace") if key.txt_path.exists() else "")
            for key in list_keys(ctx.config.data_dir / "dkim") if key.domain == domain]
    zone, findings, problem = await _advice(ctx, domain, ipv4, ipv6)
    return render(request, "admin_dns.html", section="dns", domain=domain,
                  keys=keys[:MAX_KEYS_SHOWN], zone=zone, findings=findings,
                  colour=colour, error=problem, default_selector=DEFAULT_SELECTOR,
                  **values)


async def _advice(ctx: WebContext, domain: str, ipv4: str | None, ipv6: str | None,
                  ) -> tuple[str, Sequence[DnsFinding], str]:
    """(zone text, live findings, problem) — the problem in words when there is one."""
    if ctx.domains is None:
        return "", [], "DNS advice is not available in this process."
    try:
        zone = ctx.domains.zone(domain, ipv4, ipv6)
        async with asyncio.timeout(CHECK_TIMEOUT):
            findings = await ctx.domains.check(domain, ipv4, ipv6)
    except (PostroomError, ValueError) as error:
        return "", [], str(error)
    except TimeoutError:
        return zone, [], f"The DNS check took longer than {CHECK_TIMEOUT:.0f} s; try again."
    return zone, findings, ""


async def generate_dkim(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    domain = normalize_domain(form.text("domain"))
    selector = form.text("selector", required=False) or DEFAULT_SELECTOR
    try:
        algorithm = KeyAlgorithm(form.text("algorithm", required=False) or "rsa")
    except ValueError:
        raise ActionRefused("algorithm: rsa or ed25519") from None
    keys_dir = ctx.config.data_dir / "dkim"
    private_path, _ = key_paths(keys_dir, domain, selector)  # ValueError: a bad name
    if private_path.exists() and not form.is_checked("replace"):
        raise ActionRefused(f"{domain} already has a key with selector {selector};"
                            " tick “replace” to make a new one.")
    await asyncio.to_thread(generate_key, keys_dir, domain, selector, algorithm=algorithm)
    back = f"{DNS}?{urllib.parse.urlencode({'domain': domain})}"
    return await done(request, back, f"New {algorithm.value} key {selector} for {domain}:"
                      " publish its record below.", "dkim.generate", domain,
                      f"selector={selector} algorithm={algorithm.value}")
