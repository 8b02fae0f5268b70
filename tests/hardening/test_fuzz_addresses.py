"""Hypothesis fuzzing of SMTP address parsing (issue 7): the RCPT/MAIL grammar and the
local-address canonicaliser only ever refuse with their own errors, round-trip what they
accept, and can never disagree about which domain an address belongs to — the property
that keeps address tricks from turning a local lookup into relaying."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postroom.errors import BadSyntax
from postroom.mail.address import normalize_domain, parse_address
from postroom.smtp.paths import parse_path
from postroom.smtp.wire import BadCommand, LineTooLong, Mail, Rcpt, parse_command

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_FRAGMENTS = [
    "user", "x", "@", "%", "!", ".", '"', "\\", ":", ",", "[", "]", "127.0.0.1", "IPv6:",
    "::1", "example.test", "elsewhere.example", "EXAMPLE.TEST", "а", "ｅ", "ß", " ", "<",
    ">", "\x00", "-", "xn--", "+tag", "=", "SIZE=1", "SMTPUTF8", "postmaster", "\t", "\u200b",
]  # fmt: skip
address_like = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=4)),
                        max_size=14).map("".join)


@given(address_like, st.sampled_from(["RCPT TO:", "MAIL FROM:", "RCPT TO: ", "rcpt to:"]))
@FUZZ
def test_path_commands_never_raise(argument: str, verb: str) -> None:
    line = (verb + argument).encode("utf-8", "surrogatepass") + b"\r\n"
    result = parse_command(line)
    assert isinstance(result, Mail | Rcpt | BadCommand | LineTooLong)


@given(address_like)
@FUZZ
def test_parse_path_refuses_only_with_value_error_and_round_trips(inside: str) -> None:
    try:
        mailbox = parse_path(inside, is_reverse=False)
    except ValueError:
        return
    assert mailbox is not None
    if mailbox.domain:  # not the bare <Postmaster>
        again = parse_path(str(mailbox), is_reverse=False)
        assert again is not None
        assert (again.local, again.domain, again.is_quoted) == (
            mailbox.local, mailbox.domain, mailbox.is_quoted)


@given(address_like)
@FUZZ
def test_local_canonical_form_keeps_the_domain_it_was_judged_by(text: str) -> None:
    """resolve_recipient decides locality from the text after the last `@`; delivery uses
    parse_address's canonical form. They must name the same domain, and the canonical
    local part must carry no routing characters."""
    try:
        address = parse_address(text)
    except BadSyntax:
        return
    assert address.domain == normalize_domain(text.strip().rpartition("@")[2])
    assert not set(address.local) & set('%!@"\\:[] ')
    assert parse_address(str(address)) == address  # canonical form is a fixed point
