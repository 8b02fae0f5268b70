"""The DNS advice of one hosted domain — the records to publish and the live check of
each — for a caller inside the running server: the admin console (issue 21).

Owns building a `ZoneInput` from the configuration (what `dns records` / `dns check` take
from their options) and running selftest/records.py with the server's own resolver.
The web face sits on a lower floor than selftest/, so it never imports this module:
app.py hands a `DomainAdvisor` to it (WebContext), and the web sees only its methods.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from postroom.config import Config
from postroom.dns.resolver import Resolver
from postroom.mail.address import normalize_domain
from postroom.reports.intake import rua_address
from postroom.selftest.records import (
    Finding,
    ZoneInput,
    check_domain,
    configured_srv_ports,
    render_zone,
    transport_inputs,
)


class DomainAdvisor:
    def __init__(self, config: Config, resolver: Resolver) -> None:
        self._config = config
        self._resolver = resolver

    @property
    def dkim_dir(self) -> Path:
        return self._config.data_dir / "dkim"

    def zone_input(self, domain: str, ipv4: str | None = None,
                   ipv6: str | None = None) -> ZoneInput:
        """Raises BadSyntax (a bad domain) or ValueError (an address of the wrong kind)."""
        domain = normalize_domain(domain)
        for value, version in ((ipv4, 4), (ipv6, 6)):
            if value and ipaddress.ip_address(value).version != version:
                raise ValueError(f"{value} is not an IPv{version} address")
        config = self._config
        return ZoneInput(domain=domain, hostname=config.hostname, ipv4=ipv4 or None,
                         ipv6=ipv6 or None, dkim_dir=self.dkim_dir,
                         postmaster=rua_address(config, domain),
                         srv_ports=configured_srv_ports(config), **transport_inputs(config))

    def zone(self, domain: str, ipv4: str | None = None, ipv6: str | None = None) -> str:
        """The BIND zone snippet `dns records` prints."""
        return render_zone(self.zone_input(domain, ipv4, ipv6))

    async def check(self, domain: str, ipv4: str | None = None,
                    ipv6: str | None = None) -> list[Finding]:
        """Every record queried live, as `dns check` does."""
        return await check_domain(self._resolver, self.zone_input(domain, ipv4, ipv6))
