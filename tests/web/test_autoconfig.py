"""Client autoconfiguration (issue 21) over the real web listener: Thunderbird's
clientConfig read the way Thunderbird reads it (ElementTree, incomingServer /
outgoingServer, port, socketType), Outlook's POX autodiscover for a hosted address and
its refusals (unknown domain, garbage, DTDs, oversized bodies), Apple's .mobileconfig as
a plist — and the IMAP port they advertise is one a real client logs in to."""

from __future__ import annotations

import dataclasses
import http.client
import imaplib
import plistlib
import ssl
import xml.etree.ElementTree as ET
from pathlib import Path

import dns.zone
import pytest

from postroom.errors import BadSyntax
from postroom.selftest.records import ZoneInput, render_zone
from postroom.web.autoconfig import (
    ClientSettings,
    autodiscover_response,
    mobileconfig,
    parse_autodiscover_request,
    thunderbird_config,
)
from tests.conftest import TEST_HOSTNAME
from tests.web.conftest import PASSWORD, USER, StartWebApp, WebClient, free_port, login

pytestmark = pytest.mark.timeout(90)

STANDARD = ClientSettings("mail.example.org", 993, 995, 465, 587)
OUTLOOK_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
    'requestschema/2006"><Request><EMailAddress>{}</EMailAddress>'
    "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/"
    "responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>")
OUTLOOK_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
          b"<Autodiscover><Request><EMailAddress>&lol2;</EMailAddress></Request></Autodiscover>")


def servers(xml: bytes) -> dict[tuple[str, str], tuple[str, int, str, str]]:
    """(element, type) → (hostname, port, socketType, username), as Thunderbird reads
    clientConfig/emailProvider (comm-central's readFromXML)."""
    root = ET.fromstring(xml)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None
    found = {}
    for element in [*provider.findall("incomingServer"), *provider.findall("outgoingServer")]:
        key = (element.tag, f"{element.get('type')}:{element.findtext('socketType')}")
        found[key] = (element.findtext("hostname", ""), int(element.findtext("port", "0")),
                      element.findtext("socketType", ""), element.findtext("username", ""))
    return found


def test_thunderbird_config_has_the_standard_servers() -> None:
    xml = thunderbird_config("example.org", STANDARD)
    root = ET.fromstring(xml)
    assert root.findtext("emailProvider/domain") == "example.org"
    assert root.find("emailProvider").get("id") == "example.org"  # type: ignore[union-attr]
    assert servers(xml) == {
        ("incomingServer", "imap:SSL"): ("mail.example.org", 993, "SSL", "%EMAILADDRESS%"),
        ("incomingServer", "pop3:SSL"): ("mail.example.org", 995, "SSL", "%EMAILADDRESS%"),
        ("outgoingServer", "smtp:SSL"): ("mail.example.org", 465, "SSL", "%EMAILADDRESS%"),
        ("outgoingServer", "smtp:STARTTLS"): ("mail.example.org", 587, "STARTTLS",
                                              "%EMAILADDRESS%"),
    }
    # The first incomingServer is the one Thunderbird proposes: IMAP.
    assert root.find("emailProvider/incomingServer").get("type") == "imap"  # type: ignore[union-attr]


def test_a_disabled_protocol_is_left_out() -> None:
    no_pop = ClientSettings("mail.example.org", 993, 0, 465, 587)
    assert ("incomingServer", "pop3:SSL") not in servers(thunderbird_config("x.org", no_pop))
    profile = plistlib.loads(mobileconfig("a@x.org", ClientSettings("h.x.org", 0, 995, 465, 587)))
    account = profile["PayloadContent"][0]
    assert account["EmailAccountType"] == "EmailTypePOP"
    assert account["IncomingMailServerPortNumber"] == 995


@pytest.mark.parametrize("body", [
    b"", b"not xml at all", b"<Autodiscover><Request/></Autodiscover>",
    b"<Other><EMailAddress>a@example.org</EMailAddress></Other>",
    OUTLOOK_REQUEST.format("no-at-sign").encode(),
    OUTLOOK_REQUEST.format("a@" + "x" * 400 + ".org").encode(), LAUGHS,
    b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><Autodiscover/>',
])
def test_autodiscover_requests_that_are_not_one(body: bytes) -> None:
    with pytest.raises(BadSyntax):
        parse_autodiscover_request(body)


def test_autodiscover_request_address_is_canonical() -> None:
    body = OUTLOOK_REQUEST.format(" User@Example.ORG ").encode()
    assert parse_autodiscover_request(body) == "user@example.org"


def web_settings() -> dict[str, object]:
    """Fixed ports (the documents carry them; port 0 would be "off")."""
    return {"IMAPS_PORT": free_port(), "POP3S_PORT": free_port(),
            "SUBMISSIONS_PORT": free_port(), "SUBMISSION_PORT": free_port()}


def raw(client: WebClient, method: str, path: str, body: bytes = b"",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", client.port, context=client.tls,
                                       timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def test_thunderbird_lookups_over_https(web_app: StartWebApp, client_tls: ssl.SSLContext
                                        ) -> None:
    ports = web_settings()
    with web_app(**ports) as app:
        client = WebClient(app, client_tls)
        status, headers, xml = raw(client, "GET", "/.well-known/autoconfig/mail/"
                                   "config-v1.1.xml?emailaddress=" + USER)
        assert status == 200
        assert headers["content-type"].startswith("application/xml")
        found = servers(xml)
        assert found[("incomingServer", "imap:SSL")] == (
            TEST_HOSTNAME, ports["IMAPS_PORT"], "SSL", "%EMAILADDRESS%")
        assert found[("outgoingServer", "smtp:SSL")][1] == ports["SUBMISSIONS_PORT"]
        assert found[("outgoingServer", "smtp:STARTTLS")][1] == ports["SUBMISSION_PORT"]
        # autoconfig.DOMAIN: the domain is the Host's.
        status, _, xml = raw(client, "GET", "/mail/config-v1.1.xml",
                             headers={"Host": "autoconfig.example.test:443"})
        assert status == 200
        assert ET.fromstring(xml).findtext("emailProvider/domain") == "example.test"
        # Not hosted here, not an address, no way to tell the domain.
        assert raw(client, "GET", "/.well-known/autoconfig/mail/config-v1.1.xml"
                   "?emailaddress=a@elsewhere.example")[0] == 404
        assert raw(client, "GET", "/.well-known/autoconfig/mail/config-v1.1.xml"
                   "?emailaddress=%3Cscript%3E")[0] == 400
        assert raw(client, "GET", "/mail/config-v1.1.xml")[0] == 404
        # The advertised IMAP server is real: a client logs in where it says.
        imap = imaplib.IMAP4_SSL("127.0.0.1", found[("incomingServer", "imap:SSL")][1],
                                 ssl_context=client_tls, timeout=30)
        try:
            assert imap.login(USER, PASSWORD)[0] == "OK"
        finally:
            imap.logout()


def test_outlook_autodiscover(web_app: StartWebApp, client_tls: ssl.SSLContext) -> None:
    ports = web_settings()
    with web_app(**ports) as app:
        client = WebClient(app, client_tls)
        xml_headers = {"Content-Type": "text/xml"}
        status, _, body = raw(client, "POST", "/autodiscover/autodiscover.xml",
                              OUTLOOK_REQUEST.format(USER).encode(), xml_headers)
        assert status == 200, body
        account = ET.fromstring(body).find(f"{OUTLOOK_NS}Response/{OUTLOOK_NS}Account")
        assert account is not None
        assert account.findtext(f"{OUTLOOK_NS}Action") == "settings"
        protocols = {p.findtext(f"{OUTLOOK_NS}Type"): p
                     for p in account.findall(f"{OUTLOOK_NS}Protocol")}
        assert set(protocols) == {"IMAP", "POP3", "SMTP"}
        imap = protocols["IMAP"]
        assert imap.findtext(f"{OUTLOOK_NS}Server") == TEST_HOSTNAME
        assert int(imap.findtext(f"{OUTLOOK_NS}Port", "0")) == ports["IMAPS_PORT"]
        assert imap.findtext(f"{OUTLOOK_NS}SSL") == "on"
        assert imap.findtext(f"{OUTLOOK_NS}LoginName") == USER
        smtp_port = protocols["SMTP"].findtext(f"{OUTLOOK_NS}Port", "0")
        assert int(smtp_port) == ports["SUBMISSIONS_PORT"]
        # An address in a hosted domain without an account is answered alike: no hint.
        status, _, other = raw(client, "POST", "/Autodiscover/Autodiscover.xml",
                               OUTLOOK_REQUEST.format("nobody@example.test").encode(),
                               xml_headers)
        assert status == 200 and b"nobody@example.test" in other
        refused = [
            OUTLOOK_REQUEST.format("a@elsewhere.example").encode(),  # 404: not hosted
            b"garbage", LAUGHS,  # 400
            OUTLOOK_REQUEST.format(USER).encode() + b" " * 9000,  # 413: over the cap
        ]
        answers = [raw(client, "POST", "/autodiscover/autodiscover.xml", body,
                       xml_headers)[0] for body in refused]
        assert answers == [404, 400, 400, 413]
        assert raw(client, "GET", "/autodiscover/autodiscover.xml")[0] == 405


def test_mobileconfig_for_the_logged_in_user(web_app: StartWebApp,
                                             client_tls: ssl.SSLContext) -> None:
    ports = web_settings()
    with web_app(**ports) as app:
        client = WebClient(app, client_tls)
        anonymous = client.get("/me/mobileconfig")
        assert anonymous.status == 303 and anonymous.location.startswith("/login")
        assert login(client, USER).status == 303
        status, headers, body = raw(client, "GET", "/me/mobileconfig", headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())})
        assert status == 200
        assert headers["content-type"] == "application/x-apple-aspen-config"
        assert "attachment" in headers["content-disposition"]
        profile = plistlib.loads(body)
        assert profile["PayloadType"] == "Configuration"
        (account,) = profile["PayloadContent"]
        assert account["PayloadType"] == "com.apple.mail.managed"
        assert account["EmailAddress"] == USER
        assert account["EmailAccountType"] == "EmailTypeIMAP"
        assert account["IncomingMailServerHostName"] == TEST_HOSTNAME
        assert account["IncomingMailServerPortNumber"] == ports["IMAPS_PORT"]
        assert account["IncomingMailServerUseSSL"] is True
        assert account["OutgoingMailServerPortNumber"] == ports["SUBMISSIONS_PORT"]
        assert account["IncomingMailServerUsername"] == USER
        # The same identifiers every time: a new download replaces the installed profile.
        assert plistlib.loads(mobileconfig(USER, STANDARD))["PayloadUUID"] == profile[
            "PayloadUUID"]


def test_autodiscover_response_names_only_the_address() -> None:
    body = autodiscover_response("a@example.org", STANDARD)
    assert b"a@example.org" in body and b"<script" not in body
    assert ET.fromstring(body).tag.endswith("Autodiscover")


def test_dns_records_point_clients_at_the_web_console(tmp_path: Path) -> None:
    """`dns records` with WEB_PORT: autoconfig.DOMAIN and _autodiscover._tcp, in a zone
    dnspython loads; without WEB_PORT neither is printed."""
    spec = ZoneInput(domain="example.org", hostname="mail.example.org", ipv4="192.0.2.1",
                     ipv6=None, dkim_dir=tmp_path, postmaster="postmaster@example.org",
                     web_port=8443)
    zone = dns.zone.from_text(render_zone(spec), origin="example.org.", check_origin=False,
                              relativize=False)
    cname = zone.find_rdataset("autoconfig.example.org.", "CNAME")
    assert [str(r.target) for r in cname] == ["mail.example.org."]
    srv = zone.find_rdataset("_autodiscover._tcp.example.org.", "SRV")
    assert [(r.port, str(r.target)) for r in srv] == [(8443, "mail.example.org.")]
    assert "forward port 443 to WEB_PORT=8443" in render_zone(spec)
    imaps = zone.find_rdataset("_imaps._tcp.example.org.", "SRV")
    assert [(r.port, str(r.target)) for r in imaps] == [(993, "mail.example.org.")]
    quiet = render_zone(dataclasses.replace(spec, web_port=0))
    assert "autoconfig.example.org" not in quiet and "_autodiscover" not in quiet
