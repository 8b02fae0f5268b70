"""The env-file configuration contract.

Owns: where the config comes from (`--config FILE`, else `$POSTROOM_CONFIG`, else
`./postroom.env` when present, else defaults), the keys and their types, and validation.
Key names follow docker-mailserver's `mailserver.env` wherever one exists, so a user's
existing file mostly works; postroom's own keys are listed in README.md.

Invariants: a loaded `Config` is fully validated (a bad value raises `ConfigError` whose
message names the key); environment variables override the file for known keys, as in
docker-mailserver where the env file *is* the environment; unknown keys only warn.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from postroom.configfilter import FilterSettings
from postroom.configsieve import SieveSettings
from postroom.configtransport import TransportSettings
from postroom.configtypes import Flag, StrList, _parse_duration
from postroom.configweb import WebSettings
from postroom.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("postroom.env")
CONFIG_ENV_VAR = "POSTROOM_CONFIG"

# docker-mailserver keys postroom accepts without using them: an imported mailserver.env
# should not drown the user in warnings, but each one is still mentioned once.
DMS_KEYS_NOT_USED = frozenset(
    {
        "ENABLE_AMAVIS", "ENABLE_SPAMASSASSIN",
        "ENABLE_FAIL2BAN", "ENABLE_SASLAUTHD",
        "ENABLE_FETCHMAIL",
        "ENABLE_UPDATE_CHECK",
        "ENABLE_MTA_STS", "ENABLE_OAUTH2", "ENABLE_GETMAIL",
        "PERMIT_DOCKER", "NETWORK_INTERFACE", "LOGROTATE_INTERVAL", "LOGROTATE_COUNT",
        "ONE_DIR", "ACCOUNT_PROVISIONER", "POSTMASTER_ADDRESS_FROM", "SUPERVISOR_LOGLEVEL",
        "DMS_VMAIL_UID", "DMS_VMAIL_GID", "AMAVIS_LOGLEVEL",
        "POSTSCREEN_ACTION", "SMTP_ONLY", "TLS_LEVEL",
        "VIRUSMAILS_DELETE_DELAY", "POSTFIX_DAGENT",
        "POSTFIX_INET_PROTOCOLS", "DOVECOT_INET_PROTOCOLS", "ENABLE_IMAP_SPECIAL_USE",
        "UPDATE_CHECK_INTERVAL", "SPAMASSASSIN_SPAM_TO_INBOX",
        "DOVECOT_MAILBOX_FORMAT", "POSTFIX_REJECT_UNKNOWN_CLIENT_HOSTNAME",
    }
)


def parse_duration(text: str) -> int:
    """Seconds in a Postfix-style duration (`30m`, `12h`, `3600`); ValueError otherwise."""
    seconds = _parse_duration(text)
    if seconds < 1:
        raise ValueError("a duration must be at least 1s")
    return int(seconds)


Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[int, BeforeValidator(_parse_duration), Field(ge=1)]

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Bytes in a docker-mailserver size (`setup quota set user@domain 2G`): a number of
    bytes, or with a K, M, G or T suffix (binary units, as Dovecot reads them; a trailing
    B is allowed: `500MB`). ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a size such as 2G, 500M or 1048576")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _size_or_none(value: Any) -> Any:
    if isinstance(value, str):
        return parse_size(value) if value.strip() else None  # empty: the default
    return value


Size = Annotated[Annotated[int, Field(ge=0)] | None, BeforeValidator(_size_or_none)]


@dataclass(frozen=True, slots=True)
class Nameserver:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class RelayHost:
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)


class Config(FilterSettings, SieveSettings, TransportSettings, WebSettings):
    """Validated settings. Field aliases are the env-file keys."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    hostname: str = Field(default_factory=socket.getfqdn, alias="OVERRIDE_HOSTNAME")
    data_dir: Path = Field(default=Path("/var/lib/postroom"), alias="DATA_DIR")
    listen_addresses: StrList = Field(default=["0.0.0.0"], alias="LISTEN_ADDRESS")
    smtp_port: Port = Field(default=25, alias="SMTP_PORT")
    submission_port: Port = Field(default=587, alias="SUBMISSION_PORT")
    submissions_port: Port = Field(default=465, alias="SUBMISSIONS_PORT")
    imap_port: Port = Field(default=143, alias="IMAP_PORT")
    imaps_port: Port = Field(default=993, alias="IMAPS_PORT")
    pop3_port: Port = Field(default=110, alias="POP3_PORT")
    pop3s_port: Port = Field(default=995, alias="POP3S_PORT")
    enable_imap: Flag = Field(default=True, alias="ENABLE_IMAP")
    enable_pop3: Flag = Field(default=True, alias="ENABLE_POP3")
    ssl_type: Literal["", "manual", "self-signed", "letsencrypt", "acme"] = Field(
        default="", alias="SSL_TYPE"
    )
    ssl_cert_path: Path | None = Field(default=None, alias="SSL_CERT_PATH")
    ssl_key_path: Path | None = Field(default=None, alias="SSL_KEY_PATH")
    message_size_limit: int = Field(default=10240000, ge=0, alias="POSTFIX_MESSAGE_SIZE_LIMIT")
    spoof_protection: Flag = Field(default=True, alias="SPOOF_PROTECTION")
    timezone: str = Field(default="UTC", alias="TZ")
    dns_nameservers: StrList = Field(default=[], alias="DNS_NAMESERVERS")
    trusted_networks: StrList = Field(default=[], alias="TRUSTED_NETWORKS")
    # Load balancers that put a PROXY protocol header (HAProxy v1/v2) before every
    # connection they forward, as Dovecot's haproxy_trusted_networks; empty = feature off.
    proxy_protocol_trusted_networks: StrList = Field(
        default=[], alias="PROXY_PROTOCOL_TRUSTED_NETWORKS")
    outbound_smtp_port: Port = Field(default=25, alias="OUTBOUND_SMTP_PORT")
    outbound_bind_address: str = Field(default="", alias="OUTBOUND_BIND_ADDRESS")
    relay_host: str = Field(default="", alias="RELAY_HOST")
    default_relay_host: str = Field(default="", alias="DEFAULT_RELAY_HOST")
    relay_port: Port = Field(default=25, alias="RELAY_PORT")
    relay_user: str = Field(default="", alias="RELAY_USER")
    relay_password: str = Field(default="", alias="RELAY_PASSWORD", repr=False)
    queue_lifetime: Seconds = Field(default=5 * 86400, alias="QUEUE_LIFETIME")
    # How long a queue entry a worker claimed stays out of other nodes' reach (issue 10):
    # longer than a delivery pass takes, short enough that a dead node's mail waits no
    # longer than an ordinary retry would. Must be > 0 (Seconds: at least 1).
    queue_lease_seconds: Seconds = Field(default=900, alias="QUEUE_LEASE_SECONDS")
    postmaster_address: str = Field(default="", alias="POSTMASTER_ADDRESS")
    log_level: Literal["trace", "debug", "info", "warn", "warning", "error"] = Field(
        default="info", alias="LOG_LEVEL"
    )
    # Storage backend (issue 10): one node on SQLite under DATA_DIR, or any number of
    # nodes sharing one PostgreSQL database (mail bodies included) at DATABASE_URL.
    storage: Literal["sqlite", "postgresql"] = Field(default="sqlite", alias="STORAGE")
    database_url: str = Field(default="", alias="DATABASE_URL", repr=False)
    enable_spf: Flag = Field(default=True, alias="ENABLE_POLICYD_SPF")
    enable_dkim: Flag = Field(default=True, alias="ENABLE_OPENDKIM")
    enable_dmarc: Flag = Field(default=True, alias="ENABLE_OPENDMARC")
    # Hardening (security/): Fail2ban's sshd-jail defaults — 5 failed logins within
    # 10 minutes ban the address for 1 hour; AUTH_BAN_MAX_FAILURES=0 turns bans off.
    auth_ban_max_failures: int = Field(default=5, ge=0, alias="AUTH_BAN_MAX_FAILURES")
    auth_ban_find_time: Seconds = Field(default=600, alias="AUTH_BAN_FIND_TIME")
    auth_ban_time: Seconds = Field(default=3600, alias="AUTH_BAN_TIME")
    # Seconds before a failed login is answered (Dovecot's auth_failure_delay).
    auth_failure_delay: float = Field(default=2.0, ge=0, le=60, alias="AUTH_FAILURE_DELAY")
    # Verified-login cache (accounts/authcache.py, Dovecot's auth_cache_ttl/_size):
    # successes only, in memory, keyed digests; AUTH_CACHE_TTL=0 turns it off.
    auth_cache_ttl: Annotated[int, BeforeValidator(_parse_duration), Field(ge=0)] = Field(
        default=3600, alias="AUTH_CACHE_TTL")
    auth_cache_size: int = Field(default=10_000, ge=0, le=10_000_000, alias="AUTH_CACHE_SIZE")
    # Open connections over all listeners, and from one address (an IPv6 /64); 0 = no
    # limit. Postfix's smtpd_client_connection_count_limit is 50.
    max_connections: int = Field(default=500, ge=0, alias="MAX_CONNECTIONS")
    max_connections_per_ip: int = Field(default=50, ge=0, alias="MAX_CONNECTIONS_PER_IP")
    # Mail transactions one SMTP connection may start (Exim's smtp_accept_max_per_connection).
    smtp_max_messages_per_connection: int = Field(
        default=1000, ge=0, alias="SMTP_MAX_MESSAGES_PER_CONNECTION")
    # Processes accepting SMTP connections, the main one included (workers.py): one
    # Python process uses one core at most, and receiving mail is CPU-bound.
    smtp_processes: int = Field(default=1, ge=1, le=64, alias="SMTP_PROCESSES")
    # Processes serving IMAP (143/993), the main one included (issue 22): the sessions of
    # one process share its one event-loop thread.
    imap_processes: int = Field(default=1, ge=1, le=64, alias="IMAP_PROCESSES")

    # -- limits on what one user controls (issue 25; docs/ARCHITECTURE.md "Limits") --------
    # Mailbox names: UTF-8 bytes of the whole name, hierarchy levels, mailboxes per account
    # (Dovecot's filesystem layouts stop names at 255 bytes).
    max_mailbox_name_length: int = Field(default=255, ge=16, le=4096,
                                         alias="MAX_MAILBOX_NAME_LENGTH")
    max_mailbox_depth: int = Field(default=16, ge=1, le=256, alias="MAX_MAILBOX_DEPTH")
    max_mailboxes_per_account: int = Field(default=1000, ge=10, le=1_000_000,
                                           alias="MAX_MAILBOXES_PER_ACCOUNT")
    # IMAP keywords: bytes of one keyword, distinct keywords in one mailbox.
    max_keyword_length: int = Field(default=250, ge=16, le=1000, alias="MAX_KEYWORD_LENGTH")
    max_keywords_per_mailbox: int = Field(default=200, ge=1, le=10_000,
                                          alias="MAX_KEYWORDS_PER_MAILBOX")
    max_messages_per_mailbox: int = Field(default=1_000_000, ge=100, le=100_000_000,
                                          alias="MAX_MESSAGES_PER_MAILBOX")
    # docker-mailserver's key: bytes one account may hold over all its mailboxes; 0 means
    # no limit, as there. Unset, postroom caps an account at a generous 20 GB until the
    # quota work (issue 17) gives per-account quotas.
    mailbox_size_limit: int = Field(default=20_000_000_000, ge=0,
                                    alias="POSTFIX_MAILBOX_SIZE_LIMIT")
    # Search keys in one IMAP SEARCH program (every key and operator counts one).
    max_search_keys: int = Field(default=256, ge=8, le=100_000, alias="MAX_SEARCH_KEYS")
    # Deadlines that trickling bytes cannot extend (issue 25 §6). SMTPD_TIMEOUT is Postfix's
    # name: here the whole of one command line must arrive within it, counted from our
    # previous reply; SMTP_DATA_TIMEOUT bounds one whole DATA or BDAT body.
    smtpd_timeout: Seconds = Field(default=300, alias="SMTPD_TIMEOUT")
    smtp_data_timeout: Seconds = Field(default=600, alias="SMTP_DATA_TIMEOUT")
    # IMAP: before login, the whole exchange up to a successful login; after it, one whole
    # command line (RFC 9051 §5.4: the autologout timer is at least 30 minutes).
    imap_login_timeout: Seconds = Field(default=60, alias="IMAP_LOGIN_TIMEOUT")
    imap_idle_timeout: Seconds = Field(default=1800, alias="IMAP_IDLE_TIMEOUT")
    # POP3: one whole command line (RFC 1939 §3: at least 10 minutes).
    pop3_timeout: Seconds = Field(default=600, alias="POP3_TIMEOUT")

    # -- first-hour behaviour (issue 24) ---------------------------------------------------
    # Postfix 3.9's smtpd_forbid_bare_newline: `normalize` (a lone LF in DATA is read as
    # CRLF; data still ends only at <CRLF>.<CRLF>), `yes` (the same, as in Postfix) or
    # `reject` (521 5.5.2 and close). TRUSTED_NETWORKS are exempt from `reject`.
    smtpd_forbid_bare_newline: Literal["normalize", "yes", "reject"] = Field(
        default="normalize", alias="SMTPD_FORBID_BARE_NEWLINE")
    # RFC 2142 abuse@ for every local domain, routed here when set.
    abuse_address: str = Field(default="", alias="ABUSE_ADDRESS")
    # Networks never banned for failed logins (fail2ban's ignoreip); the dev config sets
    # loopback so the quick start cannot lock its own user out.
    auth_ban_ignore_networks: StrList = Field(default=[], alias="AUTH_BAN_IGNORE_NETWORKS")

    # -- IMAP and SMTP completeness (issue 17) ----------------------------------------------
    # docker-mailserver's ENABLE_QUOTAS: per-account quotas enforced and reported (RFC 9208).
    enable_quotas: Flag = Field(default=True, alias="ENABLE_QUOTAS")
    # Storage quota given to new accounts (`2G`, `500M`, bytes; 0 = none). Unset, it is
    # POSTFIX_MAILBOX_SIZE_LIMIT, as docker-mailserver's Dovecot quota default is.
    default_quota: Size = Field(default=None, alias="DEFAULT_QUOTA")
    # IMAP METADATA (RFC 5464): bytes of one value (MAXSIZE), entries per mailbox/server.
    metadata_max_size: int = Field(default=65536, ge=1024, le=10_000_000,
                                   alias="METADATA_MAX_SIZE")
    metadata_max_entries: int = Field(default=100, ge=1, le=100_000,
                                      alias="METADATA_MAX_ENTRIES")
    # Postfix's delay_warning_time: a sender whose mail is still queued this long after
    # it was accepted gets one delay DSN (RFC 3461 NOTIFY=DELAY, or no NOTIFY); 0 = never.
    delay_warning_time: Annotated[int, BeforeValidator(_parse_duration)] = Field(
        default=4 * 3600, ge=0, alias="DELAY_WARNING_TIME")
    # Postfix's smtp_tls_CAfile: the CA certificates (PEM) outbound delivery verifies next
    # hops against when it must (RFC 8689 REQUIRETLS); empty = the system's store.
    smtp_tls_cafile: str = Field(default="", alias="SMTP_TLS_CAFILE")
    # In-process DNS answer cache shared by SPF, DKIM, DMARC, MX and DNSBL (issue 22):
    # answers kept at most, least recently used dropped first (dns/cache.py); 0 = off.
    dns_cache_size: int = Field(default=10_000, ge=0, le=10_000_000, alias="DNS_CACHE_SIZE")
    # Full-text index for SEARCH TEXT/BODY (issue 22, decision 0051): messages are indexed
    # in the background and searched the old way until then. DMS configures Dovecot's FTS
    # through Dovecot files, not an env key: the name follows its ENABLE_* keys.
    enable_fts: Flag = Field(default=True, alias="ENABLE_FTS")
    # Certificates (issue 20). SSL_DOMAIN_CERT_DIR: one subfolder per certificate (named
    # after its domain) holding fullchain.pem + privkey.pem, chosen by the name a client
    # asks for (SNI, RFC 6066 §3); the SSL_TYPE certificate serves every other name. Not
    # SSL_CERT_DIR: OpenSSL reads that variable as its trusted-CA folder.
    ssl_domain_cert_dir: Path | None = Field(default=None, alias="SSL_DOMAIN_CERT_DIR")
    # SSL_TYPE=acme (RFC 8555, tls/acme*.py): the account's contact address (optional).
    acme_email: str = Field(default="", alias="ACME_EMAIL")
    # The CA's directory URL. Let's Encrypt's staging CA, for trying a setup without its
    # production rate limits: https://acme-staging-v02.api.letsencrypt.org/directory
    acme_directory: str = Field(default="https://acme-v02.api.letsencrypt.org/directory",
                                alias="ACME_DIRECTORY")
    # A PEM file of CA certificates to trust for the ACME server's own HTTPS (a private
    # CA such as pebble's); empty = the system's store.
    acme_ca_bundle: Path | None = Field(default=None, alias="ACME_CA_BUNDLE")
    # Which challenge proves control of the names: http-01 (RFC 8555 §8.3, a listener on
    # ACME_HTTP_PORT while an order runs) or tls-alpn-01 (RFC 8737, on ACME_TLS_PORT).
    acme_challenge: Literal["http-01", "tls-alpn-01"] = Field(default="http-01",
                                                             alias="ACME_CHALLENGE")
    acme_http_port: int = Field(default=80, ge=1, le=65535, alias="ACME_HTTP_PORT")
    acme_tls_port: int = Field(default=443, ge=1, le=65535, alias="ACME_TLS_PORT")
    # Names ordered for each hosted domain besides OVERRIDE_HOSTNAME: PREFIX.DOMAIN for
    # each prefix (MTA-STS needs mta-sts., client autoconfiguration autoconfig.); empty =
    # the host name only (each of these names must resolve to this server).
    acme_domain_prefixes: StrList = Field(default=["mta-sts", "autoconfig"],
                                          alias="ACME_DOMAIN_PREFIXES")

    @model_validator(mode="after")
    def _check_storage(self) -> Config:
        if self.storage == "postgresql" and not self.database_url:
            # Raised as a field error so the message names the key (see _describe).
            raise ValueError("DATABASE_URL: required when STORAGE=postgresql")
        if self.database_url and not re.match(r"(postgres(ql)?://|\w+\s*=)", self.database_url):
            raise ValueError("DATABASE_URL: expected postgresql://user:password@host/db")
        return self

    @field_validator("ssl_domain_cert_dir", "acme_ca_bundle", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("hostname")
    @classmethod
    def _check_hostname(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*",
                            value):
            raise ValueError(f"{value!r} is not a host name")
        return value

    @field_validator("listen_addresses")
    @classmethod
    def _check_listen(cls, value: list[str]) -> list[str]:
        for address in value:
            ipaddress.ip_address(address)
        return value or ["0.0.0.0"]

    @field_validator("dns_nameservers")
    @classmethod
    def _check_nameservers(cls, value: list[str]) -> list[str]:
        for item in value:
            _parse_host_port(item, default_port=53)
        return value

    @field_validator("trusted_networks", "proxy_protocol_trusted_networks",
                     "auth_ban_ignore_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("outbound_bind_address")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        if value:
            ipaddress.ip_address(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    # -- derived values -------------------------------------------------------------
    @property
    def nameservers(self) -> list[Nameserver]:
        return [Nameserver(*_parse_host_port(item, default_port=53))
                for item in self.dns_nameservers]

    @property
    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return _parse_networks(self.trusted_networks)

    @property
    def ban_ignore_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return _parse_networks(self.auth_ban_ignore_networks)

    @property
    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return _parse_networks(self.proxy_protocol_trusted_networks)

    @property
    def relay(self) -> RelayHost | None:
        """The smarthost: `RELAY_HOST` (+ `RELAY_PORT`) or DMS's `DEFAULT_RELAY_HOST`."""
        if self.default_relay_host:
            host, port = _parse_relay(self.default_relay_host)
        elif self.relay_host:
            host, port = _parse_relay(self.relay_host, default_port=self.relay_port)
        else:
            return None
        return RelayHost(host, port, self.relay_user, self.relay_password)

    @property
    def postmaster(self) -> str:
        return self.postmaster_address or f"postmaster@{self.hostname}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "postroom.sqlite3"

    @property
    def acme_dir(self) -> Path:
        """Account key and ordered certificates (SSL_TYPE=acme): DATA_DIR/acme/."""
        return self.data_dir / "acme"

    @property
    def cert_path(self) -> Path:
        """The certificate `serve` uses (see tls/contexts.py for how it is chosen)."""
        if self.ssl_type == "manual" and self.ssl_cert_path:
            return self.ssl_cert_path
        if self.ssl_type == "acme":  # a self-signed stand-in until the first order
            return self.acme_dir / "certs" / self.hostname / "fullchain.pem"
        if self.ssl_type == "letsencrypt":
            return Path("/etc/letsencrypt/live") / self.hostname / "fullchain.pem"
        return self.data_dir / "tls" / "selfsigned.crt"

    @property
    def key_path(self) -> Path:
        if self.ssl_type == "manual" and self.ssl_key_path:
            return self.ssl_key_path
        if self.ssl_type == "acme":
            return self.acme_dir / "certs" / self.hostname / "privkey.pem"
        if self.ssl_type == "letsencrypt":
            return Path("/etc/letsencrypt/live") / self.hostname / "privkey.pem"
        return self.data_dir / "tls" / "selfsigned.key"

    @property
    def is_self_signed(self) -> bool:
        return self.ssl_type in {"", "self-signed"}


def _parse_networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item, strict=False) for item in items]


def _parse_host_port(item: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address."""
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", item)
    if match:
        host, port = match.group(1), match.group(2)
    elif item.count(":") == 1:
        host, port = item.split(":")
    else:
        host, port = item, None
    port_number = int(port) if port else default_port
    if not host or not 0 < port_number < 65536:
        raise ValueError(f"{item!r} is not host:port")
    return host, port_number


def _parse_relay(value: str, default_port: int = 25) -> tuple[str, int]:
    """Postfix relayhost syntax: `[host]:port` (no MX lookup) or `host:port`."""
    return _parse_host_port(value.strip(), default_port)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    source: Path | None
    warnings: list[str]


KNOWN_KEYS = frozenset(
    info.alias for info in Config.model_fields.values() if info.alias is not None
)


def find_config_file(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    if environ.get(CONFIG_ENV_VAR):
        return Path(environ[CONFIG_ENV_VAR])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Read, merge and validate. Raises ConfigError naming the first bad key."""
    environ = os.environ if environ is None else environ
    source = find_config_file(path, environ)
    values: dict[str, str] = {}
    warnings: list[str] = []
    if source is not None:
        if not source.is_file():
            raise ConfigError(f"config file {source} does not exist")
        for key, value in dotenv_values(source).items():
            if key in KNOWN_KEYS:
                values[key] = value or ""
            elif key in DMS_KEYS_NOT_USED:
                warnings.append(f"{source}: {key} is a docker-mailserver setting postroom "
                                "does not use; ignored")
            else:
                warnings.append(f"{source}: unknown key {key}; ignored")
    for key in KNOWN_KEYS:
        if key in environ:
            values[key] = environ[key]
    # An empty value means "the default", as in mailserver.env (`SSL_TYPE=` etc.).
    values = {key: value for key, value in values.items() if value.strip() != ""}
    try:
        config = Config.model_validate(values)
    except ValidationError as error:
        raise ConfigError(_describe(error, values)) from None
    return LoadedConfig(config, source, warnings)


def _describe(error: ValidationError, values: Mapping[str, str]) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a check across keys (model validator) names its key itself
        return f"config: {message}"
    key = str(first["loc"][0])
    shown = values.get(key)
    suffix = f" (got {shown!r})" if shown is not None and "PASSWORD" not in key else ""
    return f"config: {key}: {message}{suffix}"


def check_serve_files(config: Config) -> None:
    """Certificates named by the user must exist when `serve` starts, not at the first
    STARTTLS. Other commands (`email add` …) do not need them."""
    if config.ssl_type == "manual":
        for key, value in (("SSL_CERT_PATH", config.ssl_cert_path),
                           ("SSL_KEY_PATH", config.ssl_key_path)):
            if value is None:
                raise ConfigError(f"config: {key}: required when SSL_TYPE=manual")
            if not value.is_file():
                raise ConfigError(f"config: {key}: file {value} does not exist")
    if config.ssl_domain_cert_dir is not None and not config.ssl_domain_cert_dir.is_dir():
        raise ConfigError(f"config: SSL_DOMAIN_CERT_DIR: folder {config.ssl_domain_cert_dir} "
                          "does not exist")
    if config.ssl_type == "acme" and config.acme_ca_bundle is not None \
            and not config.acme_ca_bundle.is_file():
        raise ConfigError(f"config: ACME_CA_BUNDLE: file {config.acme_ca_bundle} does not exist")
