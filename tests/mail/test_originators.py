"""mail/originators.py: the one address-list parser (RFC 5322 §3.4, §4.4 obsolete forms,
RFC 6854 groups), its refusals, its agreement with IMAP ENVELOPE and the SMTP header scan,
and hypothesis properties: it never raises, reads back what was written, and never loses an
address that follows whatever came before it."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mail.envelope import INVALID_ADDRESS, MISSING_DOMAIN, render_envelope
from postroom.mail.headers import split_message
from postroom.mail.originators import (
    MAX_ADDRESS_TOKENS,
    MAX_ORIGINATOR_ADDRESSES,
    AddressList,
    Group,
    Mailbox,
    Unparsable,
    parse_addresses,
)
from postroom.mailauth.headerscan import authors_of, scan_header


def mailboxes(text: str) -> list[str]:
    parsed = parse_addresses(text)
    assert isinstance(parsed, AddressList), parsed
    return [mailbox.address for mailbox in parsed.mailboxes]


@pytest.mark.parametrize(("text", "expected"), [
    ("a@b.test", ["a@b.test"]),
    ("Alice <alice@example.com>", ["alice@example.com"]),
    ('"Doe, John" <john@example.com> (work), b@c.test', ["john@example.com", "b@c.test"]),
    ("(x) ceo@bank.example", ["ceo@bank.example"]),
    ("(a (nested \\) one) b) ceo@bank.example", ["ceo@bank.example"]),
    ("ceo @ bank (c) . example", ["ceo@bank.example"]),  # obs-domain with CFWS
    ("john . doe@x.test", ["john.doe@x.test"]),  # obs-local-part
    ('"john doe"@x.test', ["john doe@x.test"]),
    ("<@r1.example,@r2.example:u@example.com>", ["u@example.com"]),  # obs-route
    ("John Q. Public <jqp@[192.0.2.1]>", ["jqp@[192.0.2.1]"]),  # obs-phrase
    (",, a@b.test ,, c@d.test,", ["a@b.test", "c@d.test"]),  # obs-addr-list
    ("team: carol@c.test, Dan <dan@d.test>;, e@e.test",
     ["carol@c.test", "dan@d.test", "e@e.test"]),
    ("G: a@b.c", ["a@b.c"]),  # a group left open at the end is closed
    ("undisclosed-recipients:;", []),
    ("nobody", ["nobody"]),  # no domain: kept, with domain None
    ("=?UTF-8?Q?J=C3=B6rg?= <joerg@example.de>", ["joerg@example.de"]),
    ("Jörg <jörg@bücher.example>", ["jörg@bücher.example"]),  # RFC 6532
    ("", []),
])
def test_reads_every_mailbox(text: str, expected: list[str]) -> None:
    assert mailboxes(text) == expected


def test_structure_keeps_names_routes_and_groups() -> None:
    parsed = parse_addresses('Friends: x@e.com, "Y \\"Z\\"" <y@e.com>;, A  (c) B <@r:w@e.com>')
    assert parsed == AddressList((
        Group("Friends", (Mailbox(None, None, "x", "e.com"), Mailbox('Y "Z"', None, "y", "e.com"))),
        Mailbox("A B", "@r", "w", "e.com"),
    ))


@pytest.mark.parametrize("text", [
    "(ceo@bank.example",  # unterminated comment swallowing the address
    "(a\\",
    '"ceo@bank.example',
    "x@[192.0.2.1",
    "a@b.test)",
    "a@b.test]",
    "\\a@b.test",
    "<a@b.test",
    "a@b.test>",
    "<>",
    "bob@example.test admin@example.test",  # two addresses, no comma
    "john doe@x.test",
    "a@b@c.test",
    "a@",
    "@b.test",
    "a@b.test;",
    "G: a@b.test; H: c@d.test; x",
    "G: H: a@b.test;;",  # nested group
    "a@b.test\rFrom: c@d.test",
    "a@b.test\x00",
])
def test_refuses_what_cannot_be_read_for_sure(text: str) -> None:
    assert isinstance(parse_addresses(text), Unparsable)


def test_limits() -> None:
    many = ", ".join(f"u{n}@x.test" for n in range(MAX_ORIGINATOR_ADDRESSES + 1))
    assert parse_addresses(many) == Unparsable(f"more than {MAX_ORIGINATOR_ADDRESSES} addresses")
    assert isinstance(parse_addresses(many, max_addresses=None), AddressList)
    wordy = "w " * MAX_ADDRESS_TOKENS + "<a@b.test>"
    assert isinstance(parse_addresses(wordy), Unparsable)
    assert mailboxes("w " * 50 + "<a@b.test>") == ["a@b.test"]


# -- the report's fields: what the checks see is what ENVELOPE shows ----------------------

LONG_COMMENT = b"From: (" + b"\r\n ".join([b"x" * 1000] * 66) + b") ceo@bank.example\r\n"
MANY_FOLDS = b"From: bob@example.test," + b"\r\n " * 22_000 + b" admin@example.test\r\n"


@pytest.mark.parametrize(("field", "expected"), [
    (LONG_COMMENT, [[None, None, "ceo", "bank.example"]]),
    (MANY_FOLDS, [[None, None, "bob", "example.test"], [None, None, "admin", "example.test"]]),
    (b"From: nobody\r\n", [[None, None, "nobody", MISSING_DOMAIN]]),
    (b"From: (ceo@bank.example\r\n", [[None, None, INVALID_ADDRESS, MISSING_DOMAIN]]),
])
def test_envelope_shows_what_the_scan_checked(field: bytes, expected: list[object]) -> None:
    raw = field + b"Subject: s\r\n\r\nbody\r\n"
    envelope = render_envelope(split_message(raw)[0])
    assert envelope[2] == expected
    facts = scan_header(io.BytesIO(raw), "mx.example.test")
    authors = authors_of(facts.from_fields)
    if expected[0][2] == INVALID_ADDRESS:
        assert authors is None
    else:
        assert authors is not None
        assert [[None, None, a.local, a.domain or MISSING_DOMAIN] for a in authors] == expected


# -- properties ------------------------------------------------------------------------------

_SPECIALISH = st.text(alphabet='ab.@,;:<>()[]"\\ \t=?é', max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(_SPECIALISH, st.text(max_size=60)))
def test_never_raises(text: str) -> None:
    result = parse_addresses(text)
    assert isinstance(result, AddressList | Unparsable)
    if isinstance(result, AddressList):
        assert len(result.mailboxes) <= MAX_ORIGINATOR_ADDRESSES


@settings(max_examples=300, deadline=None)
@given(prefix=_SPECIALISH)
def test_a_following_address_is_never_lost(prefix: str) -> None:
    """Whatever comes first (an open comment, quote, bracket, group…), an address after it
    is either read or the whole field is refused: never silently dropped."""
    result = parse_addresses(prefix + ", evil@evil.test")
    if isinstance(result, AddressList):
        assert Mailbox(None, None, "evil", "evil.test") in result.mailboxes


_ATOM = st.text(alphabet="abcxyz0189!#$%&'*+-/=?^_`{|}~", min_size=1, max_size=6)
_CFWS = st.sampled_from(["", " ", "\t", " (c) ", "(a(b)c)", " (\\)) "])


@st.composite
def _mailbox(draw: st.DrawFn) -> tuple[str, Mailbox]:
    local = ".".join(draw(st.lists(_ATOM, min_size=1, max_size=3)))
    domain = ".".join(draw(st.lists(_ATOM, min_size=1, max_size=3)))
    name = draw(st.one_of(st.none(), _ATOM, st.just('"Doe, J. <x@y>"')))
    cfws = draw(_CFWS)
    if name is None:  # a comment after an addr-spec is its display name (ENVELOPE, issue 17)
        comment = {" (c) ": "c", "(a(b)c)": "a(b)c", " (\\)) ": ")"}.get(cfws)
        return f"{cfws}{local}@{domain}{cfws}", Mailbox(comment, None, local, domain)
    shown = name.strip('"')
    return f"{name}{cfws}<{local}@{domain}>{cfws}", Mailbox(shown, None, local, domain)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.tuples(_mailbox(), st.booleans()), max_size=6))
def test_reads_back_what_was_written(items: list[tuple[tuple[str, Mailbox], bool]]) -> None:
    texts, expected = [], []
    for (text, mailbox), grouped in items:
        texts.append(f"g: {text};" if grouped else text)
        expected.append(mailbox)
    parsed = parse_addresses(",\r\n ".join(texts).replace("\r\n", ""))
    assert isinstance(parsed, AddressList), parsed
    assert list(parsed.mailboxes) == expected


_SIMPLE_PIECES = st.sampled_from(["a", "Zoë", "x.y", "=?utf-8?q?a?=", " ", "\t", "  ", '"',
                                  '"N, M"', "<", ">", "@", ".", "\u00a0", "\u2028", "(", ","])


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(_SIMPLE_PIECES, max_size=12))
def test_fast_path_reads_like_the_full_parser(pieces: list[str]) -> None:
    """The one-regex reading of common forms agrees with the full grammar."""
    from postroom.mail.originators import _parse_full  # the path the fast one shortcuts

    for text in ("".join(pieces), "Name " + "".join(pieces) + " <a@b.test>",
                 "".join(pieces) + "@b.test", "".join(pieces) + " <a@b.test>"):
        assert parse_addresses(text) == _parse_full(text, MAX_ORIGINATOR_ADDRESSES)
