"""RFC 8621 §4.1.2-§4.1.3: header property names and the parsed forms."""

from __future__ import annotations

import pytest

from postroom.jmap.emailheaders import (
    HeaderBlock,
    HeaderForm,
    HeaderProperty,
    InvalidArguments,
    addresses_form,
    date_form,
    decode_encoded_words,
    grouped_addresses_form,
    header_properties,
    header_value,
    is_form_allowed,
    message_ids_form,
    parse_header_property,
    raw_form,
    text_form,
    urls_form,
)

# -- property names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("header:Subject", HeaderProperty("Subject", HeaderForm.RAW, False)),
        ("header:subject:asText", HeaderProperty("subject", HeaderForm.TEXT, False)),
        ("header:From:asAddresses:all", HeaderProperty("From", HeaderForm.ADDRESSES, True)),
        ("header:To:asGroupedAddresses", HeaderProperty("To", HeaderForm.GROUPED_ADDRESSES)),
        ("header:References:asMessageIds", HeaderProperty("References", HeaderForm.MESSAGE_IDS)),
        ("header:Resent-Date:asDate", HeaderProperty("Resent-Date", HeaderForm.DATE)),
        ("header:List-Post:asURLs:all", HeaderProperty("List-Post", HeaderForm.URLS, True)),
        ("header:List-Id:asText", HeaderProperty("List-Id", HeaderForm.TEXT)),
        ("header:Received:all", HeaderProperty("Received", HeaderForm.RAW, True)),
        ("header:Received:asRaw", HeaderProperty("Received", HeaderForm.RAW)),
        # Fields RFC 5322 and RFC 2369 do not define allow every form.
        ("header:X-Date:asDate", HeaderProperty("X-Date", HeaderForm.DATE)),
        ("header:X-Foo:asAddresses", HeaderProperty("X-Foo", HeaderForm.ADDRESSES)),
        ("header:X-Foo:asURLs", HeaderProperty("X-Foo", HeaderForm.URLS)),
    ],
)
def test_valid_header_properties(name: str, expected: HeaderProperty) -> None:
    assert parse_header_property(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "Subject",  # no prefix
        "header:",  # no field name
        "header:Sub ject",  # space is not printable-non-colon
        "header:Sübject",  # not ASCII
        "header:From:asText",  # §4.1.2.2: From is not a Text field
        "header:Subject:asAddresses",
        "header:From:asDate",
        "header:Date:asMessageIds",
        "header:Message-ID:asURLs",
        "header:List-Post:asText",  # RFC 2369 fields allow only URLs (and Raw)
        "header:Received:asText",
        "header:Return-Path:asAddresses",
        "header:From:asaddresses",  # form names are case-sensitive
        "header:From:asNothing",
        "header:From:all:asAddresses",  # :all comes last
        "header:From:asAddresses:asRaw",
        "header:From::all",
        "header:From:all:all",
    ],
)
def test_invalid_header_properties(name: str) -> None:
    with pytest.raises(InvalidArguments):
        parse_header_property(name)
    with pytest.raises(ValueError):  # the caller may catch it as a ValueError too
        parse_header_property(name)


def test_form_table_matches_rfc() -> None:
    assert is_form_allowed("REPLY-TO", HeaderForm.GROUPED_ADDRESSES)
    assert is_form_allowed("Resent-Reply-To", HeaderForm.ADDRESSES)
    assert is_form_allowed("Resent-Message-ID", HeaderForm.MESSAGE_IDS)
    assert is_form_allowed("Keywords", HeaderForm.TEXT)
    assert not is_form_allowed("Keywords", HeaderForm.MESSAGE_IDS)
    assert is_form_allowed("Return-Path", HeaderForm.RAW)


# -- Raw and Text -------------------------------------------------------------------------


def test_raw_keeps_everything_but_the_line_end() -> None:
    assert raw_form(b" =?utf-8?q?x?=\r\n  folded\r\n") == " =?utf-8?q?x?=\r\n  folded"
    assert raw_form(b" a\x00b\n") == " ab"
    assert raw_form(b" caf\xe9 \xc3\xa9") == " caf\ufffd é"


def test_text_unfolds_decodes_and_trims() -> None:
    assert text_form(b" Hello\r\n  world \r\n") == "Hello  world"
    assert text_form(b" =?ISO-8859-1?Q?Caf=E9?= au lait\r\n") == "Café au lait"
    # RFC 2047 §6.2: blanks between adjacent encoded-words go.
    assert text_form(b" =?utf-8?B?w6k=?=\r\n =?utf-8?Q?t=C3=A9?=") == "été"
    assert text_form(b" =?iso-8859-1?b?Y2Fm6Q==?=") == "café"  # base64 latin-1


def test_text_leaves_misplaced_and_unknown_words() -> None:
    # §4.1.2.2 step 4: an encoded-word touching other text is not decoded.
    assert text_form(b" x=?utf-8?q?a?= y") == "x=?utf-8?q?a?= y"
    assert text_form(b" (=?utf-8?q?a?=)") == "(=?utf-8?q?a?=)"
    assert text_form(b" =?x-unknown?q?a?= b") == "=?x-unknown?q?a?= b"
    assert text_form(b" =?hex?q?41?=") == "=?hex?q?41?="  # not a text encoding


def test_text_drops_encoded_controls_and_normalises() -> None:
    assert text_form(b" =?utf-8?q?a=00b=07c?=") == "abc"
    # NFC: e + combining acute becomes one character.
    assert text_form(" e\u0301".encode()) == "\u00e9"


def test_decode_encoded_words_keeps_plain_text() -> None:
    assert decode_encoded_words("plain text") == "plain text"
    assert decode_encoded_words(" =?utf-8?q?a?=  =?utf-8?q?b?= c ") == " ab c "


# -- addresses ----------------------------------------------------------------------------


def test_addresses_decode_names_and_flatten_groups() -> None:
    value = (b' "  James Smythe" <james@example.com>, Friends: jane@example.com,'
             b" =?UTF-8?Q?John_Sm=C3=AEth?= <john@example.com>;")
    assert addresses_form(value) == [
        {"name": "James Smythe", "email": "james@example.com"},
        {"name": None, "email": "jane@example.com"},
        {"name": "John Smîth", "email": "john@example.com"},
    ]


def test_grouped_addresses_in_to() -> None:
    value = b" a@x.example, B <b@x.example>, Team: c@x.example, d@x.example;, e@x.example"
    assert grouped_addresses_form(value) == [
        {"name": None, "addresses": [{"name": None, "email": "a@x.example"},
                                     {"name": "B", "email": "b@x.example"}]},
        {"name": "Team", "addresses": [{"name": None, "email": "c@x.example"},
                                       {"name": None, "email": "d@x.example"}]},
        {"name": None, "addresses": [{"name": None, "email": "e@x.example"}]},
    ]
    assert grouped_addresses_form(b" undisclosed-recipients:;") == [
        {"name": "undisclosed-recipients", "addresses": []}]
    assert addresses_form(b" undisclosed-recipients:;") == []


def test_address_comment_is_the_name() -> None:
    assert addresses_form(b" alice@example.com (Alice Smith)") == [
        {"name": "Alice Smith", "email": "alice@example.com"}]


def test_quoted_pairs_and_encoded_quoted_names() -> None:
    assert addresses_form(b' "O\\"Brien, Pat" <pat@example.com>') == [
        {"name": 'O"Brien, Pat', "email": "pat@example.com"}]
    assert addresses_form(b' "=?utf-8?q?J=C3=B6rg?=" <j@example.com>') == [
        {"name": "Jörg", "email": "j@example.com"}]


def test_unparsable_addresses_are_best_effort() -> None:
    # An unterminated angle address: our strict parser refuses, the stdlib reads it.
    assert addresses_form(b" John Doe <jdoe@example.com") == [
        {"name": "John Doe", "email": "jdoe@example.com"}]
    assert addresses_form(b' "unterminated <a@b>') == []
    assert addresses_form(b" ") == []


# -- MessageIds, Date, URLs -------------------------------------------------------------


def test_message_ids() -> None:
    assert message_ids_form(b" <a@b.example>\r\n") == ["a@b.example"]
    assert message_ids_form(b" <a@b> (comment <x@y>)\r\n <c@d>") == ["a@b", "c@d"]
    # RFC 5322 §4.5.4: obsolete In-Reply-To phrases are skipped.
    assert message_ids_form(b' Your message of "Monday" <a@b>') == ["a@b"]


@pytest.mark.parametrize("value", [b"", b" a@b", b" <>", b" <a@b", b" a@b>", b" <a<b>",
                                   b" < >"])
def test_malformed_message_ids_are_null(value: bytes) -> None:
    assert message_ids_form(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b" Mon, 18 Jun 2018 16:51:28 -0400", "2018-06-18T16:51:28-04:00"),
        (b" Mon, 18 Jun 2018 16:51:28 -0400 (EDT)", "2018-06-18T16:51:28-04:00"),
        (b" 1 Jan 2020 00:00:00 +0530", "2020-01-01T00:00:00+05:30"),
        (b" Tue, 1 Jul 2003 10:52:37 +0000", "2003-07-01T10:52:37Z"),
        (b" Tue, 1 Jul 2003 10:52:37 -0000", "2003-07-01T10:52:37Z"),
        (b" 1 Jan 99 10:00 EST", "1999-01-01T10:00:00-05:00"),  # obsolete 2-digit year
        (b" 31 Dec 2016 23:59:60 +0000", "2016-12-31T23:59:59Z"),  # leap second
    ],
)
def test_dates(value: bytes, expected: str) -> None:
    assert date_form(value) == expected


@pytest.mark.parametrize("value", [b" yesterday", b" 32 Jun 2018 10:00 +0100",
                                   b" 30 Feb 2018 10:00 +0100", b" 1 Jan 2020 25:00 +0000",
                                   b"", b" 1 Jan 2020 10:00 +9900"])
def test_bad_dates_are_null(value: bytes) -> None:
    assert date_form(value) is None


def test_urls() -> None:
    value = (b" <https://www.ietf.org/mailman/options/102attendees>,\r\n"
             b" <mailto:102attendees-request@ietf.org?subject=unsubscribe>")
    assert urls_form(value) == ["https://www.ietf.org/mailman/options/102attendees",
                                "mailto:102attendees-request@ietf.org?subject=unsubscribe"]
    assert urls_form(b" <mailto:list@host.com?subject=help> (List Instructions)") == [
        "mailto:list@host.com?subject=help"]
    assert urls_form(b" <http://www.host.com/list/\r\n archive/>") == [
        "http://www.host.com/list/archive/"]


@pytest.mark.parametrize("value", [b" NO (posting not allowed on this list)", b"",
                                   b" <a> junk", b" <>", b" <a>, <b"])
def test_bad_urls_are_null(value: bytes) -> None:
    assert urls_form(value) is None


# -- instances and convenience properties ---------------------------------------------

HEADER = (
    b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Received: from c by d; Mon, 1 Jan 2024 00:00:01 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.com, Team: carol@example.com;\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0100\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"In-Reply-To: <p@example.com>\r\n"
    b"References: <r@example.com> <p@example.com>\r\n"
    b"X-Multi: one\r\nX-Multi: two\r\n"
    b"From nobody line without colon\r\n"
    b"\r\n"
)


def test_last_instance_and_all() -> None:
    block = HeaderBlock(HEADER)
    assert header_value(block, parse_header_property("header:x-multi")) == " two"
    assert header_value(block, parse_header_property("header:X-MULTI:all")) == [" one", " two"]
    assert header_value(block, parse_header_property("header:X-Multi:asText:all")) == [
        "one", "two"]
    assert header_value(block, parse_header_property("header:X-None")) is None
    assert header_value(block, parse_header_property("header:X-None:all")) == []
    assert header_value(block, parse_header_property("header:X-None:asAddresses")) is None
    received = header_value(block, parse_header_property("header:Received:all"))
    assert len(received) == 2 and received[0].startswith(" from a")


def test_convenience_properties() -> None:
    names = ["messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
             "replyTo", "subject", "sentAt", "header:Subject:asText", "preview"]
    values = header_properties(HeaderBlock(HEADER), names)
    assert values == {
        "messageId": ["m1@example.com"],
        "inReplyTo": ["p@example.com"],
        "references": ["r@example.com", "p@example.com"],
        "sender": None,
        "from": [{"name": "Alice", "email": "alice@example.com"}],
        "to": [{"name": None, "email": "bob@example.com"},
               {"name": None, "email": "carol@example.com"}],
        "cc": None,
        "bcc": None,
        "replyTo": None,
        "subject": "Grüße",
        "sentAt": "2024-01-01T10:00:00+01:00",
        "header:Subject:asText": "Grüße",
    }


def test_headers_property_lists_fields_raw_in_order() -> None:
    headers = header_properties(HeaderBlock(HEADER), ["headers"])["headers"]
    assert [one["name"] for one in headers][:3] == ["Received", "Received", "From"]
    assert headers[4] == {"name": "Subject", "value": " =?utf-8?q?Gr=C3=BC=C3=9Fe?="}
    assert all(one["name"] for one in headers)  # the line without a colon is no field
    assert len(headers) == 11
