"""Mail client autoconfiguration (issue 21): Thunderbird, Outlook, Apple.

Owns the documents that tell a mail client where postroom's IMAP, POP3 and submission
services are, built by pure functions from `ClientSettings`, and their routes:
- Thunderbird autoconfig (its "ISP" lookup): GET `/.well-known/autoconfig/mail/
  config-v1.1.xml?emailaddress=…` on the domain and `/mail/config-v1.1.xml` on
  `autoconfig.DOMAIN`; the clientConfig 1.1 format Thunderbird parses (incomingServer
  imap 993 SSL and pop3 995 SSL, outgoingServer smtp 465 SSL and 587 STARTTLS,
  username %EMAILADDRESS%);
- Outlook autodiscover, the POX protocol: POST `/autodiscover/autodiscover.xml` with an
  `<EMailAddress>`, answered with IMAP, POP3 and SMTP settings;
- Apple's configuration profile: GET `/me/mobileconfig`, a `com.apple.mail.managed`
  payload for the logged-in user (linked from the self-service page), unsigned.

Invariants: only hosted domains get an answer (404 otherwise), and whether an account
exists is never revealed (any well-formed address in a hosted domain is answered alike);
a document names only the domain asked about, not the other hosted domains. Request
bodies are capped at `MAX_AUTODISCOVER_BODY` and parsed with defusedxml (no DTDs, no
entities); garbage is a 400, never a traceback. Ports are the configured ones, and a
disabled protocol (ENABLE_IMAP=0, ENABLE_POP3=0) is left out.
"""

from __future__ import annotations

import plistlib
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from postroom.config import Config
from postroom.errors import BadSyntax
from postroom.mail.address import parse_address
from postroom.web.auth import require_user
from postroom.web.context import context

MAX_AUTODISCOVER_BODY = 8192  # a real request is ~400 bytes
MAX_ADDRESS = 320  # RFC 5321 path limits: local part 64 + @ + domain 255
XML_TYPE = "application/xml; charset=utf-8"
MOBILECONFIG_TYPE = "application/x-apple-aspen-config"
# [MS-OXDSCLI] §2.2.4: the POX response schemas, and the one request schema answered.
AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE_NS = ("http://schemas.microsoft.com/exchange/autodiscover/outlook/"
                       "responseschema/2006a")
# A profile's identifiers are derived from the address, so downloading it again replaces
# the installed profile rather than adding a second one.
PROFILE_NAMESPACE = uuid.UUID("5b1f2d0e-3c47-4f6a-9a43-7f0c1d2e8b55")
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._@-]")  # quoted into Content-Disposition


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where clients reach us: the host name and the ports of the services offered
    (0: that service is off)."""

    hostname: str
    imaps_port: int
    pop3s_port: int
    submissions_port: int
    submission_port: int

    @classmethod
    def from_config(cls, config: Config) -> ClientSettings:
        return cls(config.hostname, config.imaps_port if config.enable_imap else 0,
                   config.pop3s_port if config.enable_pop3 else 0,
                   config.submissions_port, config.submission_port)


# -- Thunderbird ----------------------------------------------------------------------------


def thunderbird_config(domain: str, settings: ClientSettings) -> bytes:
    """clientConfig 1.1 (Thunderbird's autoconfig format) for the mail of `domain`."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    _text(provider, "domain", domain)
    _text(provider, "displayName", f"{domain} mail")
    _text(provider, "displayShortName", domain)
    servers = (("incomingServer", "imap", settings.imaps_port, "SSL"),
               ("incomingServer", "pop3", settings.pop3s_port, "SSL"),
               ("outgoingServer", "smtp", settings.submissions_port, "SSL"),
               ("outgoingServer", "smtp", settings.submission_port, "STARTTLS"))
    for kind, protocol, port, socket_type in servers:
        if port:
            _server(provider, kind, protocol, settings.hostname, port, socket_type)
    return _document(root)


def _server(parent: ET.Element, kind: str, protocol: str, hostname: str, port: int,
            socket_type: str) -> None:
    server = ET.SubElement(parent, kind, type=protocol)
    _text(server, "hostname", hostname)
    _text(server, "port", str(port))
    _text(server, "socketType", socket_type)
    _text(server, "authentication", "password-cleartext")  # inside TLS only
    _text(server, "username", "%EMAILADDRESS%")


# -- Outlook (POX autodiscover) -----------------------------------------------------------


def parse_autodiscover_request(body: bytes) -> str:
    """The `EMailAddress` of a POX autodiscover request; BadSyntax for anything else
    (not XML, a DTD or entity, no address, an address that is not one)."""
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as error:
        raise BadSyntax("not an autodiscover request") from error
    if _local_name(root.tag) != "Autodiscover":
        raise BadSyntax("not an autodiscover request")
    for element in root.iter():
        if _local_name(element.tag) == "EMailAddress":
            text = (element.text or "").strip()
            if not text or len(text) > MAX_ADDRESS:
                break
            return str(parse_address(text))
    raise BadSyntax("the request names no e-mail address")


def autodiscover_response(address: str, settings: ClientSettings) -> bytes:
    """The POX answer for `address`: IMAP, POP3 and SMTP, each over implicit TLS."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE_NS)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_RESPONSE_NS)
    account = ET.SubElement(response, "Account")
    _text(account, "AccountType", "email")
    _text(account, "Action", "settings")
    for protocol, port in (("IMAP", settings.imaps_port), ("POP3", settings.pop3s_port),
                           ("SMTP", settings.submissions_port)):
        if port:
            element = ET.SubElement(account, "Protocol")
            for name, value in (("Type", protocol), ("Server", settings.hostname),
                                ("Port", str(port)), ("DomainRequired", "off"),
                                ("LoginName", address), ("SPA", "off"), ("SSL", "on"),
                                ("AuthRequired", "on")):
                _text(element, name, value)
    return _document(root)


# -- Apple ------------------------------------------------------------------------------------


def mobileconfig(address: str, settings: ClientSettings) -> bytes:
    """An (unsigned) configuration profile with one mail account for `address`: IMAP
    (POP3 when IMAP is off) and submission, both over implicit TLS."""
    is_imap = bool(settings.imaps_port)
    reverse_host = ".".join(reversed(settings.hostname.split(".")))
    account_uuid = str(uuid.uuid5(PROFILE_NAMESPACE, "account:" + address)).upper()
    profile_uuid = str(uuid.uuid5(PROFILE_NAMESPACE, "profile:" + address)).upper()
    account = {
        "PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
        "PayloadIdentifier": f"{reverse_host}.postroom.mail.{account_uuid}",
        "PayloadUUID": account_uuid, "PayloadDisplayName": f"Mail: {address}",
        "EmailAccountDescription": address, "EmailAccountName": address,
        "EmailAccountType": "EmailTypeIMAP" if is_imap else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": settings.hostname,
        "IncomingMailServerPortNumber": settings.imaps_port or settings.pop3s_port,
        "IncomingMailServerUseSSL": True, "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": settings.hostname,
        "OutgoingMailServerPortNumber": settings.submissions_port,
        "OutgoingMailServerUseSSL": True, "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadContent": [account], "PayloadType": "Configuration", "PayloadVersion": 1,
        "PayloadIdentifier": f"{reverse_host}.postroom.profile.{profile_uuid}",
        "PayloadUUID": profile_uuid, "PayloadDisplayName": f"{address} mail",
        "PayloadDescription": f"The mail account {address} on {settings.hostname}",
        "PayloadRemovalDisallowed": False,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


def _text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _local_name(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _document(root: ET.Element) -> bytes:
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# -- routes -------------------------------------------------------------------------------


def routes() -> list[BaseRoute]:
    return [
        Route("/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird, methods=["GET"]),
        Route("/mail/config-v1.1.xml", thunderbird, methods=["GET"]),
        Route("/autodiscover/autodiscover.xml", autodiscover, methods=["POST"]),
        Route("/Autodiscover/Autodiscover.xml", autodiscover, methods=["POST"]),
        Route("/me/mobileconfig", mobileconfig_download, methods=["GET"]),
    ]


async def thunderbird(request: Request) -> Response:
    """The domain is the one of `emailaddress` (Thunderbird sends it), else the one
    under `autoconfig.` in the Host header."""
    asked = request.query_params.get("emailaddress", "")
    if asked:
        domain = _domain_of(asked)
    else:
        host = request.headers.get("host", "").lower()
        host = host.rpartition(":")[0] if host.count(":") == 1 else host  # no port
        if not host.startswith("autoconfig."):
            raise HTTPException(404, "Ask with ?emailaddress=user@domain.")
        domain = _domain_of("postmaster@" + host[len("autoconfig."):])
    await _require_hosted(request, domain)
    return Response(thunderbird_config(domain, _settings(request)), media_type=XML_TYPE)


async def autodiscover(request: Request) -> Response:
    body = await _capped_body(request, MAX_AUTODISCOVER_BODY)
    try:
        address = parse_autodiscover_request(body)
    except BadSyntax as error:
        raise HTTPException(400, str(error)) from None
    await _require_hosted(request, address.rpartition("@")[2])
    return Response(autodiscover_response(address, _settings(request)), media_type=XML_TYPE)


async def mobileconfig_download(request: Request) -> Response:
    user = require_user(request)
    settings = _settings(request)
    if not settings.imaps_port and not settings.pop3s_port:
        raise HTTPException(404, "Neither IMAP nor POP3 is offered by this server.")
    filename = _UNSAFE_IN_FILENAME.sub("_", user.address) + ".mobileconfig"
    return Response(mobileconfig(user.address, settings), media_type=MOBILECONFIG_TYPE,
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


def _settings(request: Request) -> ClientSettings:
    return ClientSettings.from_config(context(request).config)


def _domain_of(address: str) -> str:
    if len(address) > MAX_ADDRESS:
        raise HTTPException(400, "That address is too long.")
    try:
        return parse_address(address).domain
    except BadSyntax as error:
        raise HTTPException(400, str(error)) from None


async def _require_hosted(request: Request, domain: str) -> None:
    if not await context(request).runtime.store.is_local_domain(domain):
        raise HTTPException(404, "No mail is hosted here for that domain.")


async def _capped_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 once it passes `limit` bytes (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, "Request too large.")
        chunks.append(chunk)
    return b"".join(chunks)
