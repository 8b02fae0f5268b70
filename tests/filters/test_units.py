"""The pure parts of the embedded filter: levels, header rendering, field finding, the
Subject mark, copy layouts, zone syntax, query names, URL domains, greylist keys."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.checks.dnsbl import (
    MAX_DOMAINS,
    Zone,
    _distinct_domains,
    ip_query_name,
    is_refusal_answer,
    parse_zone,
    url_domains,
)
from postroom.checks.greylist import client_network, sender_key
from postroom.delivery.spamfiling import Marks, chosen_mailbox, copy_layout
from postroom.delivery.spamverdict import (
    Level,
    Thresholds,
    find_fields,
    judge,
    render_number,
    render_spam_fields,
    render_subject,
)
from postroom.delivery.transit import Symbol

LIMITS = Thresholds(2.0, 6.31, 10.0)


@pytest.mark.parametrize(("score", "level"), [
    (-3, Level.HAM), (1.99, Level.HAM), (2.0, Level.TAG), (6.3, Level.TAG),
    (6.31, Level.SPAM), (9.99, Level.SPAM), (10, Level.KILL), (1000, Level.KILL)])
def test_levels_are_reached_at_the_threshold(score: float, level: Level) -> None:
    assert LIMITS.level(score) is level


def test_account_values_override_only_what_they_set() -> None:
    assert LIMITS.overridden(None, 20.0, None) == Thresholds(2.0, 20.0, 10.0)


def test_numbers_are_short() -> None:
    assert [render_number(v) for v in (1000, 6.31, 2.5, -2, 0.001, -0.001)] == [
        "1000", "6.31", "2.5", "-2", "0", "0"]


def test_no_fields_below_tag() -> None:
    assert render_spam_fields(judge([Symbol("X", 1.0)], LIMITS)) == b""


def test_spamassassin_format_with_scores() -> None:
    fields = render_spam_fields(judge([Symbol("RBL_BL_TEST", 3.0), Symbol("GTUBE", 1000),
                                       Symbol("dnswl.x", -1.5)], LIMITS))
    assert fields == (b"X-Spam-Flag: YES\r\nX-Spam-Score: 1001.5\r\n"
                      b"X-Spam-Status: Yes, score=1001.5 required=6.31 tests=GTUBE=1000,\r\n"
                      b"\tRBL_BL_TEST=3,DNSWL_X=-1.5\r\n")  # folded as SpamAssassin does
    tagged = render_spam_fields(judge([Symbol("A", 2.5)], LIMITS))
    assert tagged == (b"X-Spam-Score: 2.5\r\n"
                      b"X-Spam-Status: No, score=2.5 required=6.31 tests=A=2.5\r\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=80), st.floats(-100, 100)),
                max_size=80))
def test_fields_are_ascii_and_folded(symbols: list[tuple[str, float]]) -> None:
    fields = render_spam_fields(judge([Symbol(n, s) for n, s in symbols] + [Symbol("Z", 50)],
                                      LIMITS))
    fields.decode("ascii")
    lines = fields.split(b"\r\n")
    assert lines[-1] == b"" and all(len(line) <= 998 for line in lines)
    assert all(line.startswith((b"X-Spam-", b"\t")) for line in lines[:-1])


MESSAGE = (b"From: a@example.org\r\nSubject: Hello\r\n there\r\nX-Spam-Flag: NO\r\n"
           b"x-spam-status: No\r\n\r\nSubject: not a field\r\n")


def test_find_fields_stops_at_the_body() -> None:
    found = find_fields(MESSAGE, [b"subject", b"x-spam-flag", b"x-spam-status"])
    assert [(f.name, MESSAGE[f.start:f.end]) for f in found] == [
        (b"subject", b"Subject: Hello\r\n there\r\n"), (b"x-spam-flag", b"X-Spam-Flag: NO\r\n"),
        (b"x-spam-status", b"x-spam-status: No\r\n")]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_find_fields_never_fails_and_stays_inside(data: bytes) -> None:
    for found in find_fields(data, [b"subject"]):
        assert 0 <= found.start < found.end <= len(data)


def test_subject_mark_keeps_the_original_value() -> None:
    (subject,) = find_fields(MESSAGE, [b"subject"])
    assert render_subject("***SPAM*** ", subject) == b"Subject: ***SPAM*** Hello\r\n there\r\n"
    assert render_subject("[spam] ", None) == b"Subject: [spam] \r\n"
    assert render_subject("Spam! ", None).isascii()
    assert render_subject("Pourriel é ", None).startswith(b"Subject: =?UTF-8?B?")


def test_copy_layout_cuts_client_fields_and_marks_the_subject() -> None:
    forged = ((0, 21),)  # the From line, as if it were a forged A-R field
    layout = copy_layout(MESSAGE, forged, Marks(b"X-Spam-Flag: YES\r\n", "***SPAM*** "))
    assert layout.above == b"X-Spam-Flag: YES\r\n"
    assert layout.below == b"Subject: ***SPAM*** Hello\r\n there\r\n"
    kept, position = [], 0
    for start, end in layout.skipped:
        kept.append(MESSAGE[position:start])
        position = end
    kept.append(MESSAGE[position:])
    assert b"".join(kept) == b"\r\nSubject: not a field\r\n"
    assert copy_layout(MESSAGE, forged, Marks()).skipped == forged


def test_spam_moves_only_what_goes_to_inbox() -> None:
    assert chosen_mailbox(None, "INBOX") == "INBOX"


@pytest.mark.parametrize(("text", "zone"), [
    ("zen.spamhaus.org", Zone("zen.spamhaus.org", 1.0)),
    ("bl.spamcop.net*2", Zone("bl.spamcop.net", 2.0)),
    ("list.dnswl.org*-2.5", Zone("list.dnswl.org", -2.5)),
    ("zen.spamhaus.org=127.0.0.[2..4;10]*3",
     Zone("zen.spamhaus.org", 3.0, (frozenset({127}), frozenset({0}), frozenset({0}),
                                    frozenset({2, 3, 4, 10})))),
])
def test_postscreen_zone_syntax(text: str, zone: Zone) -> None:
    assert parse_zone(text) == zone


def test_return_code_filter() -> None:
    zone = parse_zone("bl.test=127.0.0.[2..11]*2")
    assert zone.matches(ipaddress.IPv4Address("127.0.0.11"))
    assert not zone.matches(ipaddress.IPv4Address("127.0.0.12"))


def test_query_names() -> None:
    assert ip_query_name(ipaddress.ip_address("192.0.2.99"), "bl.test") == "99.2.0.192.bl.test"
    v6 = ip_query_name(ipaddress.ip_address("2001:db8::1"), "bl.test")
    assert v6 == "1." + "0." * 23 + "8.b.d.0.1.0.0.2.bl.test"  # RFC 5782 §2.4


@pytest.mark.parametrize(("answer", "is_refusal"), [
    ("127.255.255.254", True), ("127.255.255.252", True), ("127.0.0.1", True),
    ("127.0.1.255", True), ("127.0.0.2", False), ("127.0.1.2", False)])
def test_refusal_codes(answer: str, is_refusal: bool) -> None:
    assert is_refusal_answer(ipaddress.IPv4Address(answer)) is is_refusal


def test_url_domains_after_the_header_and_quoted_printable() -> None:
    body = (b"Subject: see http://header.example\r\n\r\nGo to https://Shop.Example.COM/x and "
            b"www.other.example.net, or http://spl=\r\nit.example.org/?a=3Db\r\n")
    assert list(url_domains(body)) == ["shop.example.com", "other.example.net",
                                       "split.example.org"]


def test_domains_are_organizational_distinct_and_bounded() -> None:
    names = [f"www.site{i}.co.uk" for i in range(50)] + ["192.0.2.1", "localhost"]
    domains = _distinct_domains(["a.b.example.com", "example.com", *names])
    assert domains[0] == "example.com" and domains[1] == "site0.co.uk"
    assert len(domains) == MAX_DOMAINS


def test_greylist_keys() -> None:
    assert client_network("192.0.2.77") == "192.0.2"
    assert client_network("::ffff:192.0.2.77") == "192.0.2"
    assert client_network("2001:db8:0:1:2:3:4:5") == "2001:db8:0:1"
    assert sender_key("Bounce-12345-User@Lists.Example") == "bounce-#-user@lists.example"
    assert sender_key("") == ""
