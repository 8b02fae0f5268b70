"""The env-file keys of spam and virus filtering (issue 18), a part of `config.Config`.

Owns the filtering keys, their defaults and their validation; `config.Config` inherits
them, so loading, unknown-key warnings and one-line errors work as for every other key.
Key names are docker-mailserver's wherever one exists (`ENABLE_DNSBL`, `ENABLE_POSTGREY`,
`POSTGREY_*`, `SA_TAG`, `SA_TAG2`, `SA_KILL`, `SPAM_SUBJECT`, `MOVE_SPAM_TO_JUNK`,
`MARK_SPAM_AS_READ`, `ENABLE_RSPAMD`, `RSPAMD_LEARN`, `ENABLE_CLAMAV`), ours otherwise.

Invariants: a loaded value is valid (zone lists parse, thresholds are ordered as
docker-mailserver documents them: SA_TAG <= SA_TAG2 <= SA_KILL).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator, model_validator

from postroom.configtypes import Flag, StrList

# A zone with an optional weight, postscreen's `zone*weight` (weight may be negative for a
# DNSWL) and optional return-code filter `zone=127.0.0.[2..11]*weight`.
_ZONE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(=[0-9.\[\];.-]+)?(\*-?\d+(\.\d+)?)?")


class FilterSettings(BaseModel):
    """Spam and virus filtering settings (README "Spam and viruses")."""

    # -- embedded: DNS block and allow lists -------------------------------------------
    enable_dnsbl: Flag = Field(default=True, alias="ENABLE_DNSBL")
    dnsbl_zones: StrList = Field(
        default=["zen.spamhaus.org*3", "bl.spamcop.net*2", "b.barracudacentral.org*2"],
        alias="DNSBL_ZONES")
    dnsbl_domain_zones: StrList = Field(default=["dbl.spamhaus.org*3", "multi.uribl.com*2"],
                                      alias="DNSBL_DOMAIN_ZONES")
    dnswl_zones: StrList = Field(default=["list.dnswl.org*-2"], alias="DNSWL_ZONES")
    dnsbl_timeout: float = Field(default=3.0, gt=0, le=60, alias="DNSBL_TIMEOUT")
    # Real lists never list loopback or private addresses, and a dev setup must not wait
    # on DNS for them: clients with a non-global address are not looked up (nor their
    # domains) unless this is set (tests: the test DNS server lists 127.0.0.2).
    dnsbl_query_private: Flag = Field(default=False, alias="DNSBL_QUERY_PRIVATE")

    # -- embedded: greylisting (postgrey) ------------------------------------------------
    enable_postgrey: Flag = Field(default=False, alias="ENABLE_POSTGREY")
    postgrey_delay: int = Field(default=300, ge=0, le=86400, alias="POSTGREY_DELAY")
    postgrey_max_age: int = Field(default=35, ge=1, le=3650, alias="POSTGREY_MAX_AGE")
    postgrey_auto_whitelist_clients: int = Field(
        default=5, ge=0, le=1000, alias="POSTGREY_AUTO_WHITELIST_CLIENTS")
    postgrey_text: str = Field(default="Delayed by Postgrey", max_length=200,
                               alias="POSTGREY_TEXT")

    # -- embedded: verdicts, the docker-mailserver way -----------------------------------
    sa_tag: float = Field(default=2.0, alias="SA_TAG")
    sa_tag2: float = Field(default=6.31, alias="SA_TAG2")
    sa_kill: float = Field(default=10.0, alias="SA_KILL")
    # Put before the Subject of spam, then one space (docker-mailserver writes it with
    # the space: both work).
    spam_subject: str = Field(default="***SPAM***", max_length=100, alias="SPAM_SUBJECT")
    move_spam_to_junk: Flag = Field(default=True, alias="MOVE_SPAM_TO_JUNK")
    mark_spam_as_read: Flag = Field(default=False, alias="MARK_SPAM_AS_READ")
    spam_to_inbox: Flag = Field(default=False, alias="SPAM_TO_INBOX")
    # The per-account learning filter (mox's junk filter).
    enable_junk_filter: Flag = Field(default=True, alias="ENABLE_JUNK_FILTER")

    # -- integrations with running daemons -----------------------------------------------
    enable_rspamd: Flag = Field(default=False, alias="ENABLE_RSPAMD")
    rspamd_url: str = Field(default="http://127.0.0.1:11333", alias="RSPAMD_URL")
    rspamd_password: str = Field(default="", alias="RSPAMD_PASSWORD", repr=False)
    rspamd_learn: Flag = Field(default=False, alias="RSPAMD_LEARN")
    # Ours: rspamd learns only through its controller worker (its own port, password).
    rspamd_controller_url: str = Field(default="http://127.0.0.1:11334",
                                       alias="RSPAMD_CONTROLLER_URL")
    enable_clamav: Flag = Field(default=False, alias="ENABLE_CLAMAV")
    clamd_socket: str = Field(default="/run/clamav/clamd.ctl", alias="CLAMD_SOCKET")
    # A scanner that is down, slow or answers garbage: 451 (default) or accept with a header.
    filter_fail_open: Flag = Field(default=False, alias="FILTER_FAIL_OPEN")
    filter_timeout: float = Field(default=30.0, gt=0, le=600, alias="FILTER_TIMEOUT")

    @field_validator("dnsbl_zones", "dnsbl_domain_zones", "dnswl_zones")
    @classmethod
    def _check_zones(cls, value: list[str]) -> list[str]:
        lowered = [item.lower() for item in value]
        for item in lowered:
            if not _ZONE.fullmatch(item):
                raise ValueError(f"{item!r} is not a zone (zone, zone*weight or "
                                 "zone=127.0.0.2*weight)")
        return lowered

    @field_validator("rspamd_url", "rspamd_controller_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
            raise ValueError("expected http://host:port")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_thresholds(self) -> FilterSettings:
        if not self.sa_tag <= self.sa_tag2 <= self.sa_kill:
            raise ValueError("SA_TAG2: thresholds must be ordered SA_TAG <= SA_TAG2 <= SA_KILL")
        return self
