"""The env-file keys of the web console (issue 21), a part of `config.Config`.

Owns those keys, their defaults and their validation; `config.Config` inherits them.
docker-mailserver has no web face, so the names are ours, all starting with `WEB_`
(and ENABLE_JMAP, the JMAP endpoints served on the same listener).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, field_validator

from postroom.configtypes import Duration, Flag, StrList


class WebSettings(BaseModel):
    """Web console settings (README "Web console")."""

    # The HTTPS listener (web/server.py) on LISTEN_ADDRESS; 0 = off (dev/postroom.env: 8443).
    web_port: int = Field(default=0, ge=0, le=65535, alias="WEB_PORT")
    # Reverse proxies whose X-Forwarded-For names the client (bans, limits, audit log);
    # from anyone else the header is ignored.
    web_trusted_proxies: StrList = Field(default=[], alias="WEB_TRUSTED_PROXIES")
    # A login lasts this long (idle or not); logout and password changes end it sooner.
    web_session_lifetime: Duration = Field(default=12 * 3600, alias="WEB_SESSION_LIFETIME")
    # The largest request body accepted (forms, uploads); larger ones get 413.
    web_max_body: int = Field(default=1 << 20, ge=1024, le=64 << 20, alias="WEB_MAX_BODY")
    # Who may read /metrics without logging in (web/health.py): these networks and
    # TRUSTED_NETWORKS; a logged-in admin may too.
    web_metrics_networks: StrList = Field(default=["127.0.0.0/8", "::1/128"],
                                          alias="WEB_METRICS_NETWORKS")
    # Issue 23: JMAP (RFC 8620/8621) on the web listener: /.well-known/jmap and /jmap/…
    # whenever WEB_PORT runs; 0 leaves the console alone.
    enable_jmap: Flag = Field(default=True, alias="ENABLE_JMAP")

    @field_validator("web_trusted_proxies", "web_metrics_networks")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @property
    def web_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in self.web_trusted_proxies]

    @property
    def web_metrics_allowed(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in self.web_metrics_networks]
