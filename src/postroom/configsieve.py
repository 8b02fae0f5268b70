"""The env-file keys of Sieve, ManageSieve and vacation replies (issue 19), a part of
`config.Config`.

Owns those keys, their defaults and their validation; `config.Config` inherits them.
Names are docker-mailserver's where one exists (`ENABLE_MANAGESIEVE`, `ENABLE_SRS`,
`SRS_DOMAINNAME`), Pigeonhole's settings upper-cased otherwise (`sieve_max_actions` →
`SIEVE_MAX_ACTIONS`), with Pigeonhole's defaults.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator

from postroom.configtypes import Duration, Flag


class SieveSettings(BaseModel):
    """Sieve settings (README "Sieve filters and vacation replies")."""

    # ManageSieve (RFC 5804), as docker-mailserver: off unless ENABLE_MANAGESIEVE=1.
    enable_managesieve: Flag = Field(default=False, alias="ENABLE_MANAGESIEVE")
    managesieve_port: int = Field(default=4190, ge=0, le=65535, alias="MANAGESIEVE_PORT")
    # Per account: scripts kept and bytes of one script (Pigeonhole's sieve_quota_max_scripts
    # and sieve_max_script_size).
    sieve_max_scripts: int = Field(default=20, ge=1, le=1000, alias="SIEVE_MAX_SCRIPTS")
    sieve_max_script_size: int = Field(default=1 << 20, ge=1024, le=1 << 20,
                                       alias="SIEVE_MAX_SCRIPT_SIZE")
    # Per message: actions and redirects (Pigeonhole's sieve_max_actions/_redirects).
    sieve_max_actions: int = Field(default=32, ge=1, le=1000, alias="SIEVE_MAX_ACTIONS")
    sieve_max_redirects: int = Field(default=4, ge=0, le=100, alias="SIEVE_MAX_REDIRECTS")
    # Vacation (RFC 5230 / 6131): the shortest and longest period between two replies to
    # one sender (Pigeonhole's sieve_vacation_min_period / max_period).
    sieve_vacation_min_period: Duration = Field(default=86400,
                                                 alias="SIEVE_VACATION_MIN_PERIOD")
    sieve_vacation_max_period: Duration = Field(default=60 * 86400,
                                                 alias="SIEVE_VACATION_MAX_PERIOD")
    # Sender Rewriting for mail we forward (Sieve redirect), docker-mailserver's names;
    # redirected mail always uses SRS so the sender's SPF still passes where it arrives.
    enable_srs: Flag = Field(default=True, alias="ENABLE_SRS")
    srs_domainname: str = Field(default="", alias="SRS_DOMAINNAME")

    @field_validator("srs_domainname")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if value and not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+", value):
            raise ValueError(f"{value!r} is not a domain name")
        return value
