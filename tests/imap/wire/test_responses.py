from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.wire import responses as r
from postroom.imap.wire.fetch import BodySection, Partial, Section
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import Lexer


def value(v: r.Value, *, is_utf8: bool = False) -> bytes:
    return r.render_values([v], is_utf8=is_utf8)


@pytest.mark.parametrize(
    ("v", "wire"),
    [
        (None, b"NIL"),
        (0, b"0"),
        (4294967296, b"4294967296"),
        ("", b'""'),
        ("hello world", b'"hello world"'),
        ('say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
        ("a\r\nb", b"{4}\r\na\r\nb"),
        ("nul\x00", b"~{4}\r\nnul\x00"),
        ("ü", b"{2}\r\n\xc3\xbc"),
        (b"raw", b"{3}\r\nraw"),
        (b"a\x00b", b"~{3}\r\na\x00b"),
        (r.Atom("\\Seen"), b"\\Seen"),
        (r.Raw(b"BODY[]"), b"BODY[]"),
        (SequenceSet.from_values([1, 2, 3, 5]), b"1:3,5"),
        ([], b"()"),
        ([r.Atom("\\Seen"), r.Atom("$Junk")], b"(\\Seen $Junk)"),
        (["a", None, [1, ["b", None]]], b'("a" NIL (1 ("b" NIL)))'),
        (("x",), b'("x")'),
        (
            dt.datetime(1994, 2, 1, 21, 52, 25, tzinfo=dt.timezone(-dt.timedelta(hours=8))),
            b'"01-Feb-1994 21:52:25 -0800"',
        ),
        (dt.datetime(2020, 12, 5, 1, 2, 3), b'"05-Dec-2020 01:02:03 +0000"'),
    ],
)
def test_values(v: r.Value, wire: bytes) -> None:
    assert value(v) == wire


def test_utf8_quoted_when_enabled() -> None:
    assert value("ü", is_utf8=True) == '"ü"'.encode()
    assert value("ü\r\n", is_utf8=True) == b"{4}\r\n\xc3\xbc\r\n"


def test_long_strings_become_literals() -> None:
    text = "x" * (r.MAX_QUOTED + 1)
    assert value(text) == b"{%d}\r\n" % len(text) + text.encode()


def test_bool_refused() -> None:
    with pytest.raises(TypeError):
        value(True)


def test_quoted_round_trip_through_lexer() -> None:
    for text in ["plain", 'q"uote', "back\\slash", "tab\tin", "x" * 2000, "line\r\nbreak"]:
        wire = value(text)
        lx = Lexer(wire)
        assert lx.read_string().decode() == text
        assert lx.at_end()


def test_envelope_shaped_nesting() -> None:
    envelope = [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "IMAP4rev1 WG mtg summary",
        [["Terry Gray", None, "gray", "cac.washington.edu"]],
        None,
        [],
        None,
        None,
        None,
        None,
        "<B27397-0100000@cac.washington.edu>",
    ]
    assert r.render_fetch(12, [("ENVELOPE", envelope)]) == (
        b'* 12 FETCH (ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" '
        b'"IMAP4rev1 WG mtg summary" (("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'NIL () NIL NIL NIL NIL "<B27397-0100000@cac.washington.edu>"))\r\n'
    )


def test_render_fetch_with_attribute_names() -> None:
    attr = BodySection(Section((), "HEADER.FIELDS", ("SUBJECT",)), Partial(0, 100), True)
    wire = r.render_fetch(
        3, [("UID", 7), ("FLAGS", [r.Atom("\\Seen")]), (attr, b"Subject: x\r\n\r\n")]
    )
    assert wire == (
        b"* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)]<0> "
        b"{14}\r\nSubject: x\r\n\r\n)\r\n"
    )


def test_status_lines() -> None:
    assert r.render_tagged("a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert r.render_tagged("a1", "NO", "bad\r\nthing", "TOOBIG") == b"a1 NO [TOOBIG] bad  thing\r\n"
    assert (
        r.render_tagged(
            "a2",
            "OK",
            "Done",
            "COPYUID",
            [
                38505,
                SequenceSet.from_values([304, 319, 320]),
                SequenceSet.from_values([3956, 3957, 3958]),
            ],
        )
        == b"a2 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
    )
    assert (
        r.render_untagged_status(
            "OK", "Limited", "PERMANENTFLAGS", [[r.Atom("\\Deleted"), r.Atom("\\*")]]
        )
        == b"* OK [PERMANENTFLAGS (\\Deleted \\*)] Limited\r\n"
    )
    assert r.render_untagged_status("BYE", "") == b"* BYE completed\r\n"
    assert r.render_continuation() == b"+ \r\n"
    assert r.render_continuation("Ready") == b"+ Ready\r\n"


def test_simple_untagged() -> None:
    assert r.render_capability(["IMAP4rev2", "IDLE"]) == b"* CAPABILITY IMAP4rev2 IDLE\r\n"
    assert r.render_enabled(["UTF8=ACCEPT"]) == b"* ENABLED UTF8=ACCEPT\r\n"
    assert r.render_flags(["\\Seen", "$Junk"]) == b"* FLAGS (\\Seen $Junk)\r\n"
    assert r.render_exists(23) == b"* 23 EXISTS\r\n"
    assert r.render_recent(1) == b"* 1 RECENT\r\n"
    assert r.render_expunge(3) == b"* 3 EXPUNGE\r\n"
    assert r.render_vanished([41, 43, 44, 45]) == b"* VANISHED 41,43:45\r\n"
    assert r.render_vanished(SequenceSet.from_values([5]), is_earlier=True) == (
        b"* VANISHED (EARLIER) 5\r\n"
    )
    assert r.render_search([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert r.render_search([], modseq=None) == b"* SEARCH\r\n"
    assert r.render_search([1], modseq=917162500) == b"* SEARCH 1 (MODSEQ 917162500)\r\n"
    assert r.render_id(None) == b"* ID NIL\r\n"
    assert (
        r.render_id([("name", "postroom"), ("os", None)])
        == b'* ID ("name" "postroom" "os" NIL)\r\n'
    )
    assert r.render_namespace([("", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'


def test_list_and_status() -> None:
    assert r.render_list(["\\HasNoChildren"], "/", "INBOX") == (
        b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
    )
    assert r.render_list([], None, "Entwürfe") == b'* LIST () NIL "Entw&APw-rfe"\r\n'
    assert (
        r.render_list([], "/", "Entwürfe", is_utf8=True) == '* LIST () "/" "Entwürfe"\r\n'.encode()
    )
    assert (
        r.render_list(
            ["\\Subscribed"], "/", "Foo", [("CHILDINFO", ["SUBSCRIBED"]), ("OLDNAME", ["Bar"])]
        )
        == b'* LIST (\\Subscribed) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED") "OLDNAME" ("Bar"))\r\n'
    )
    assert r.render_list([], "/", "x", command="LSUB") == b'* LSUB () "/" "x"\r\n'
    assert r.render_status("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == (
        b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)\r\n'
    )


def test_esearch() -> None:
    assert (
        r.render_esearch("A282", minimum=2, count=3) == b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    )
    assert r.render_esearch("A283", is_uid=True, all_values=[1, 2, 3, 5, 7, 8]) == (
        b'* ESEARCH (TAG "A283") UID ALL 1:3,5,7:8\r\n'
    )
    assert r.render_esearch("A284", all_values=[], count=0) == b'* ESEARCH (TAG "A284") COUNT 0\r\n'
    assert r.render_esearch(None, maximum=9, modseq=12) == b"* ESEARCH MAX 9 MODSEQ 12\r\n"


@settings(max_examples=200, deadline=None)
@given(st.text(), st.booleans())
def test_any_string_round_trips_through_the_lexer(text: str, is_utf8: bool) -> None:
    wire = value(text, is_utf8=is_utf8)
    lx = Lexer(wire)
    if wire.startswith(b"~"):
        raw, _ = lx.read_literal(allow_literal8=True)
    else:
        raw = lx.read_string()
    assert lx.at_end()
    assert raw.decode("utf-8", "surrogatepass") == text


def test_surrogate_strings_do_not_crash() -> None:
    escaped = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert value(escaped) == b"{4}\r\ncaf\xe9"
    assert value(escaped, is_utf8=True) == b"{4}\r\ncaf\xe9"
    assert value("x\ud800") == b"{2}\r\nx?"


def test_leading_lists_are_not_space_separated() -> None:
    # RFC 9051 §9: body-type-mpart = 1*body SP media-subtype; env-from = "(" 1*address ")"
    multipart = [["TEXT", "PLAIN", None], ["TEXT", "HTML", None], "MIXED", ["BOUNDARY", "b"]]
    assert r.render_values([multipart]) == (
        b'(("TEXT" "PLAIN" NIL)("TEXT" "HTML" NIL) "MIXED" ("BOUNDARY" "b"))')
    disposition_then_language = ["attachment", ["FILENAME", "x"]], ["EN"]
    assert r.render_values([[None, *disposition_then_language]]) == (
        b'(NIL ("attachment" ("FILENAME" "x")) ("EN"))')


def test_render_body_multipart_children_have_no_space_between() -> None:
    # RFC 9051 §9: body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    text = ["TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", 5, 1]
    html = ["TEXT", "HTML", None, None, None, "7BIT", 9, 2]
    mixed = [text, html, "ALTERNATIVE"]
    single = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1)'
    assert r.render_body(text, is_utf8=False).data == single
    assert r.render_body(mixed, is_utf8=False).data == (
        b"(" + single + b'("TEXT" "HTML" NIL NIL NIL "7BIT" 9 2) "ALTERNATIVE")'
    )
    # body-type-msg: the enclosed message's body (field 8) is a body, multipart rules too.
    message = ["MESSAGE", "RFC822", None, None, None, "7BIT", 99, [None], mixed, 4]
    assert r.render_body(message, is_utf8=False).data == (
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 99 (NIL) (' + single
        + b'("TEXT" "HTML" NIL NIL NIL "7BIT" 9 2) "ALTERNATIVE") 4)'
    )  # fmt: skip
