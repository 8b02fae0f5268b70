"""Authentication-Results rendering (RFC 8601) and removal of forged ones (§5)."""

from __future__ import annotations

import authres
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mailauth.authresults import (
    render_authentication_results,
    render_header,
    strip_forged_authresults,
)
from postroom.mailauth.dkim import DkimResult, DkimVerdict
from postroom.mailauth.dmarc import DmarcResult, DmarcVerdict, Policy
from postroom.mailauth.spf import SpfResult, SpfVerdict

SPF = SpfResult(SpfVerdict.PASS, "example.com", "", "smtp.mailfrom", "alice@example.com")
DKIM_OK = DkimResult(DkimVerdict.PASS, "example.com", "mail", "good signature",
                     "ab/cD+efGHIJ==", "rsa-sha256")
DKIM_BAD = DkimResult(DkimVerdict.FAIL, "example.net", "s1", 'body hash "mismatch"\r\n',
                      "Zz0123456789", "rsa-sha256")
DMARC = DmarcResult(DmarcVerdict.PASS, Policy.NONE, "example.com", policy=Policy.REJECT)


def test_render_value() -> None:
    value = render_authentication_results("mx.example.org", spf=SPF,
                                          dkim=[DKIM_OK, DKIM_BAD], dmarc=DMARC)
    assert value == (
        "mx.example.org; spf=pass smtp.mailfrom=alice@example.com; "
        'dkim=pass header.d=example.com header.s=mail header.b="ab/cD+ef"; '
        'dkim=fail reason="body hash \\"mismatch\\"" header.d=example.net header.s=s1 '
        "header.b=Zz012345; "
        "dmarc=pass (p=reject dis=none) header.from=example.com")


def test_rendered_header_parses_with_authres() -> None:
    """An independent RFC 8601 parser (authres, dkimpy's dependency) reads ours back."""
    header = render_header("mx.example.org", spf=SPF, dkim=[DKIM_OK, DKIM_BAD], dmarc=DMARC)
    assert header.startswith(b"Authentication-Results: mx.example.org;\r\n\t")
    assert header.endswith(b"\r\n")
    parsed = authres.AuthenticationResultsHeader.parse(header.decode().replace("\r\n", ""))
    assert parsed.authserv_id == "mx.example.org"
    methods = [(r.method, r.result) for r in parsed.results]
    assert methods == [("spf", "pass"), ("dkim", "pass"), ("dkim", "fail"),
                       ("dmarc", "pass")]
    dkim_props = {p.name: p.value for p in parsed.results[1].properties}
    assert dkim_props["d"] == "example.com" and dkim_props["b"] == "ab/cD+ef"


def test_helo_and_none() -> None:
    helo = SpfResult(SpfVerdict.NONE, "h.example", "", "smtp.helo", "h.example")
    assert render_authentication_results("mx", spf=helo) == "mx; spf=none smtp.helo=h.example"
    assert render_authentication_results("mx") == "mx; none"
    assert render_header("mx") == b"Authentication-Results: mx; none\r\n"


def test_temperror_spf_has_reason() -> None:
    temp = SpfResult(SpfVerdict.TEMPERROR, "example.com", "SPF Temporary Error: DNS x",
                     "smtp.mailfrom", "odd local@example.com")
    assert render_authentication_results("mx", spf=temp) == (
        'mx; spf=temperror reason="SPF Temporary Error: DNS x" '
        'smtp.mailfrom="odd local@example.com"')


MESSAGE = (
    b"Received: from x\r\n"
    b"Authentication-Results: MX.example.org; dkim=pass header.d=bank.example\r\n"
    b"Authentication-Results: (forged\r\n"
    b"  (nested)) mx.example.org;\r\n"
    b"\tspf=pass smtp.mailfrom=ceo@bank.example\r\n"
    b'authentication-results: "mx.example.org"; dmarc=pass\r\n'
    b"Authentication-Results: other.example.net; spf=fail smtp.mailfrom=x@y.example\r\n"
    b"Authentication-Results: mx.example.org.evil; none\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Authentication-Results: mx.example.org; this is body text\r\n")


def test_strip_removes_only_ours() -> None:
    stripped = strip_forged_authresults(MESSAGE, "mx.example.org")
    assert stripped == (
        b"Received: from x\r\n"
        b"Authentication-Results: other.example.net; spf=fail smtp.mailfrom=x@y.example\r\n"
        b"Authentication-Results: mx.example.org.evil; none\r\n"
        b"Subject: hello\r\n"
        b"\r\n"
        b"Authentication-Results: mx.example.org; this is body text\r\n")


def test_strip_lf_only_and_headers_only() -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    stripped = strip_forged_authresults(lf, "MX.EXAMPLE.ORG")
    assert stripped.count(b"Authentication-Results") == 3
    assert stripped.endswith(b"Subject: hello\n\nAuthentication-Results: mx.example.org; "
                             b"this is body text\n")
    headers_only = b"Authentication-Results: mx; none\r\nSubject: x\r\n"
    assert strip_forged_authresults(headers_only, "mx") == b"Subject: x\r\n"
    assert strip_forged_authresults(b"", "mx") == b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b"Authentication-Results: mx; none\r\n", b"Authentication-Results: (c) mx ; x\r\n",
    b"Authentication-Results: other; none\r\n", b"Subject: x\r\n", b" folded\r\n",
    b"\r\n", b"\n", b"body\r\n", b"Authentication-Results: \"mx\r\n", b"X: (\r\n"]),
    max_size=12))
def test_strip_fuzz_never_adds_or_crashes(lines: list[bytes]) -> None:
    raw = b"".join(lines)
    stripped = strip_forged_authresults(raw, "mx")
    assert len(stripped) <= len(raw)
    assert raw.endswith(stripped.split(b"\n")[-1])
