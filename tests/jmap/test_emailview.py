"""RFC 8621 §4.1/§4.2: a raw message as Email/get properties; argument validation."""

from __future__ import annotations

import json
import time
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.jmap import emailview
from postroom.jmap.emailheaders import InvalidArguments
from postroom.jmap.emailview import (
    DEFAULT_PROPERTIES,
    METADATA_PROPERTIES,
    email_properties,
    validate_body_properties,
    validate_properties,
)
from postroom.mail.mimetree import MAX_PARTS, parse_message


def blob_ids(part_id: str) -> str:
    return f"Gmsg-{part_id}"


def sample_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = '"Zoë Example" <zoe@example.com>'
    msg["To"] = "Team: bob@example.com, carol@example.com;"
    msg["Subject"] = "Résumé attached"
    msg["Date"] = "Tue, 2 Jan 2024 09:30:00 +0100"
    msg["Message-ID"] = "<m-1@example.com>"
    msg.set_content("Hello Bob,\nthe résumé is attached.\n")
    msg.add_alternative("<p>Hello Bob,<br>the résumé is attached.</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf",
                       filename="cv.pdf")
    return msg.as_bytes(policy=SMTP)


def get(raw: bytes, properties: Any, **options: Any) -> dict[str, Any]:
    return email_properties(raw, properties=properties, part_blob_id=blob_ids, **options)


def test_default_properties_without_metadata() -> None:
    raw = sample_message()
    result = get(raw, DEFAULT_PROPERTIES)
    assert set(result) == set(DEFAULT_PROPERTIES) - METADATA_PROPERTIES
    assert result["from"] == [{"name": "Zoë Example", "email": "zoe@example.com"}]
    assert result["to"] == [{"name": None, "email": "bob@example.com"},
                            {"name": None, "email": "carol@example.com"}]
    assert result["subject"] == "Résumé attached"
    assert result["sentAt"] == "2024-01-02T09:30:00+01:00"
    assert result["messageId"] == ["m-1@example.com"]
    assert result["inReplyTo"] is None and result["sender"] is None
    assert result["hasAttachment"] is True
    assert result["preview"] == "Hello Bob, the résumé is attached."
    assert [p["partId"] for p in result["textBody"]] == ["1.1"]
    assert [p["partId"] for p in result["htmlBody"]] == ["1.2"]
    assert result["attachments"][0] == {
        "partId": "2", "blobId": "Gmsg-2", "size": 13, "name": "cv.pdf",
        "type": "application/pdf", "charset": None, "disposition": "attachment", "cid": None,
        "language": None, "location": None}
    assert result["bodyValues"] == {}  # none asked for
    json.dumps(result)  # JSON-ready


def test_body_values_flags() -> None:
    raw = sample_message()
    text = get(raw, ["bodyValues"], fetch_text=True)["bodyValues"]
    assert list(text) == ["1.1"]
    assert text["1.1"]["value"] == "Hello Bob,\nthe résumé is attached.\n"
    html = get(raw, ["bodyValues"], fetch_html=True)["bodyValues"]
    assert list(html) == ["1.2"]
    both = get(raw, ["bodyValues"], fetch_text=True, fetch_html=True)["bodyValues"]
    assert list(both) == ["1.1", "1.2"]
    every = get(raw, ["bodyValues"], fetch_all=True, max_body_value_bytes=5)["bodyValues"]
    assert every["1.1"] == {"value": "Hello", "isEncodingProblem": False, "isTruncated": True}
    assert set(every) == {"1.1", "1.2"}  # the PDF is no text part


def test_body_structure_and_body_properties() -> None:
    raw = sample_message()
    result = get(raw, ["bodyStructure"], body_properties=["partId", "type", "header:Content-Type"])
    structure = result["bodyStructure"]
    assert structure["type"] == "multipart/mixed" and structure["partId"] is None
    assert structure["header:Content-Type"].strip().startswith("multipart/mixed")
    alternative, attachment = structure["subParts"]
    assert [p["partId"] for p in alternative["subParts"]] == ["1.1", "1.2"]
    assert attachment["partId"] == "2" and "subParts" not in attachment


def test_only_requested_properties_are_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(raw: bytes) -> None:
        raise AssertionError("the MIME structure was parsed for a header property")

    monkeypatch.setattr(emailview, "parse_message", refuse)
    raw = sample_message()
    result = get(raw, ["id", "subject", "header:X-None:all", "receivedAt"])
    assert result == {"subject": "Résumé attached", "header:X-None:all": []}


def test_a_stored_tree_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sample_message()
    meta = parse_message(raw)
    monkeypatch.setattr(emailview, "parse_message", None)
    result = get(raw, ["hasAttachment", "subject"], meta=meta)
    assert result == {"hasAttachment": True, "subject": "Résumé attached"}


def test_headers_and_header_forms() -> None:
    raw = (b"Subject: one\r\nX-List: <https://a.example/>\r\nSubject: two\r\n"
           b"Date: not a date\r\nMessage-ID: malformed\r\n\r\nbody")
    result = get(raw, ["headers", "subject", "header:Subject:all", "header:X-List:asURLs",
                       "sentAt", "messageId", "bodyStructure"],
                 body_properties=["partId", "headers"])
    assert result["subject"] == "two"
    assert result["header:Subject:all"] == [" one", " two"]
    assert result["header:X-List:asURLs"] == ["https://a.example/"]
    assert result["sentAt"] is None and result["messageId"] is None
    assert result["headers"][0] == {"name": "Subject", "value": " one"}
    assert result["bodyStructure"]["partId"] == "1"
    # A single-part message's root part is the message: its headers are all the fields.
    assert len(result["bodyStructure"]["headers"]) == 5


# -- validation ---------------------------------------------------------------------------


def test_validate_properties() -> None:
    assert validate_properties(None) == DEFAULT_PROPERTIES
    assert validate_properties(["subject", "id", "subject", "header:From:asAddresses:all"]) == (
        "subject", "id", "header:From:asAddresses:all")
    assert validate_properties([]) == ()


@pytest.mark.parametrize("names", [["subjekt"], ["partId"], ["header:From:asDate"],
                                   ["header:Subject:asAddresses"], ["header:"], [3],
                                   ["subject", "header:X:asNothing"]])
def test_invalid_properties(names: list[Any]) -> None:
    with pytest.raises(InvalidArguments):
        validate_properties(names)


def test_validate_body_properties() -> None:
    assert validate_body_properties(None) == (
        "partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
        "language", "location")
    assert validate_body_properties(["subParts", "headers", "header:Content-Type:asText"]) == (
        "subParts", "headers", "header:Content-Type:asText")
    for names in (["subject"], ["bodyStructure"], ["header:From:asText"]):
        with pytest.raises(InvalidArguments):
            validate_body_properties(names)


# -- any bytes ----------------------------------------------------------------------------

EVERYTHING = [*DEFAULT_PROPERTIES, "bodyStructure", "headers", "header:From:asGroupedAddresses",
              "header:List-Post:asURLs:all", "header:Date:asDate", "header:X:asText"]
PART_PROPERTIES = ["partId", "blobId", "size", "headers", "name", "type", "charset",
                   "disposition", "cid", "language", "location", "subParts",
                   "header:Content-Type:asText:all"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_json(raw: bytes) -> None:
    result = get(raw, EVERYTHING, body_properties=PART_PROPERTIES, fetch_all=True,
                 max_body_value_bytes=10)
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # valid UTF-8 throughout


HEADERISH = st.lists(st.sampled_from([
    b"From: ", b"To: ", b"Date: ", b"Subject: ", b"Message-ID: ", b"List-Post: ", b"X: ",
    b"<", b">", b"(", b")", b'"', b"\\", b"@", b",", b";", b":", b" ", b"\r\n", b"\r\n ",
    b"=?utf-8?q?=C3=A9?=", b"=?x?b?", b"a", b"\xff", b"\x00", b"Mon, 1 Jan 2024 10:00 +0100",
]), max_size=60)


@settings(max_examples=200, deadline=None)
@given(HEADERISH)
def test_header_shaped_bytes_give_json(chunks: list[bytes]) -> None:
    raw = b"".join(chunks) + b"\r\n\r\nbody"
    result = get(raw, EVERYTHING, body_properties=PART_PROPERTIES, fetch_text=True)
    json.dumps(result, ensure_ascii=False).encode("utf-8")


def test_huge_messages_are_bounded() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n
                     for n in range(10_000))
    wide = (b"Subject: wide\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            + parts + b"--b--\r\n")
    deep = b"Subject: deep\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=d%d\r\n\r\n--d%d\r\n" % (n, n)
        for n in range(1000)) + b"\r\ndeep text\r\n"
    for raw in (wide, deep):
        started = time.monotonic()
        result = get(raw, EVERYTHING, body_properties=PART_PROPERTIES, fetch_all=True,
                     max_body_value_bytes=100)
        assert time.monotonic() - started < 20
        assert len(result["bodyValues"]) <= MAX_PARTS
        json.dumps(result)
