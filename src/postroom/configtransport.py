"""The env-file keys of transport security and reports (issue 20): MTA-STS served and
honoured, DANE, TLS-RPT, DMARC aggregate reports and ARC; a part of `config.Config`.

Owns those keys, their defaults and their validation; `config.Config` inherits them.
Names are docker-mailserver's where one exists (`ENABLE_MTA_STS`), ours otherwise.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from postroom.configtypes import Duration, Flag, StrList

_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")
_ADDRESS = re.compile(r"[^@\s]+@[a-z0-9.-]+")


class TransportSettings(BaseModel):
    """Transport security and report settings (README "Transport security and reports")."""

    # Outbound (RFC 8461): fetch and cache each recipient domain's MTA-STS policy and, when
    # it is `enforce`, deliver only over TLS to a policy MX with a verifying certificate.
    # docker-mailserver's key; on by default here (it only ever tightens delivery).
    enable_mta_sts: Flag = Field(default=True, alias="ENABLE_MTA_STS")
    # The policy we publish for each hosted domain at
    # https://mta-sts.DOMAIN/.well-known/mta-sts.txt: start with `testing`, move to
    # `enforce` once TLS-RPT reports are clean; `none` withdraws the policy.
    mta_sts_mode: Literal["testing", "enforce", "none"] = Field(default="testing",
                                                                alias="MTA_STS_MODE")
    # max_age of our published policy (RFC 8461 §3.2: up to 31557600 s; a week by default).
    mta_sts_max_age: Duration = Field(default=604800, le=31557600, alias="MTA_STS_MAX_AGE")
    # The HTTPS listener serving our policies (and TLS-ALPN-01 challenges when it is also
    # ACME_TLS_PORT); 0 = no listener (serve the file from another web server).
    mta_sts_port: int = Field(default=443, ge=0, le=65535, alias="MTA_STS_PORT")
    # The port recipients' policies are fetched from (443 in the real world; tests only).
    mta_sts_fetch_port: int = Field(default=443, ge=1, le=65535, alias="MTA_STS_FETCH_PORT")
    # Outbound DANE (RFC 7672): TLSA records of a recipient's MX, in a DNSSEC-validated
    # answer, make TLS and a matching certificate mandatory. Postfix's
    # smtp_tls_security_level = dane, as docker-mailserver configures it.
    enable_dane: Flag = Field(default=True, alias="ENABLE_DANE")
    # How an answer counts as DNSSEC-validated: `resolver` trusts the AD bit of
    # DNS_NAMESERVERS (run a local validating resolver such as unbound, as Postfix's
    # smtp_dns_support_level = dnssec assumes); `off` never (DANE then never applies).
    dnssec_validation: Literal["resolver", "off"] = Field(default="resolver",
                                                          alias="DNSSEC_VALIDATION")
    # TLS-RPT (RFC 8460): send the daily report of our outbound TLS results to the rua of
    # each recipient domain's _smtp._tls TXT record.
    enable_tlsrpt: Flag = Field(default=True, alias="ENABLE_TLSRPT")
    # DMARC aggregate reports (RFC 7489 §7.2): send each day's evaluations to the rua of
    # each sending domain's DMARC record.
    enable_dmarc_reports: Flag = Field(default=True, alias="ENABLE_DMARC_REPORTS")
    # Where reports about our own domains arrive (the rua we publish in `dns records`);
    # reports arriving there are parsed into the store and still delivered. Empty =
    # POSTMASTER_ADDRESS, else postmaster@ each hosted domain.
    report_address: str = Field(default="", alias="REPORT_ADDRESS")
    # The From of reports we send (DKIM-signed with its domain's key). Empty =
    # noreply-reports@ the domain of OVERRIDE_HOSTNAME.
    report_sender: str = Field(default="", alias="REPORT_SENDER")
    # The organisation named in reports we send; empty = OVERRIDE_HOSTNAME.
    report_org_name: str = Field(default="", alias="REPORT_ORG_NAME")
    # ARC (RFC 8617): verify chains on inbound mail and seal mail we forward (Sieve
    # redirect, aliases to outside addresses) with the forwarding domain's DKIM key.
    enable_arc: Flag = Field(default=True, alias="ENABLE_ARC")
    # Sealers (d= of ARC-Seal) whose passing chain may override a DMARC failure caused by
    # forwarding (RFC 7489 §10.1's local policy exception): mailing lists, forwarders.
    arc_trusted_sealers: StrList = Field(default=[], alias="ARC_TRUSTED_SEALERS")

    @field_validator("arc_trusted_sealers")
    @classmethod
    def _check_sealers(cls, value: list[str]) -> list[str]:
        domains = [item.strip().rstrip(".").lower() for item in value]
        for domain in domains:
            if not _DOMAIN.fullmatch(domain):
                raise ValueError(f"{domain!r} is not a domain name")
        return domains

    @field_validator("report_address", "report_sender")
    @classmethod
    def _check_address(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not _ADDRESS.fullmatch(value):
            raise ValueError(f"{value!r} is not an address")
        return value
