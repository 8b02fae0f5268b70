"""Email/set create (RFC 8621 §4.6; jmap/emailcreate.py, jmap/emailstoring.py) over a real
store (SQLite, or PostgreSQL under POSTROOM_TEST_STORAGE=postgresql)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.jmap.test_emails import Api, mail_config, message, open_api
from tests.jmap.test_emails_set import _upload


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(mail_config(tmp_path, server_cert)):
        yield opened


async def _create(api: Api, **records: dict[str, Any]) -> dict[str, Any]:
    return await api.ok("Email/set", create=records)


async def _draft(api: Api, **properties: Any) -> dict[str, Any]:
    record = {"mailboxIds": {await api.mailbox_id("Drafts"): True}, **properties}
    response = await _create(api, d=record)
    assert response["notCreated"] is None, response["notCreated"]
    return dict(response["created"]["d"])


async def _error(api: Api, **properties: Any) -> dict[str, Any]:
    record = {"mailboxIds": {await api.mailbox_id("Drafts"): True}, **properties}
    response = await _create(api, d=record)
    assert response["created"] is None, response
    return dict(response["notCreated"]["d"])


async def test_a_plain_draft(api: Api) -> None:
    state = await api.store.jmap_state(api.account.id)
    created = await _draft(
        api, subject="Grüße aus Köln", keywords={"$draft": True, "$seen": True},
        **{"from": [{"name": "Zoë Ü", "email": "zoe@example.com"}]},
        to=[{"email": "bob@example.org"}, {"name": "Carl, Jr.", "email": "c@example.org"}],
        textBody=[{"partId": "t"}], bodyValues={"t": {"value": "Hallo 👋\nline two"}},
        receivedAt="2026-04-01T10:00:00Z")
    email_id = created["id"]
    assert created["blobId"] == email_id and created["threadId"] == "T" + email_id
    found = await api.get_one(email_id, properties=[
        "subject", "from", "to", "keywords", "mailboxIds", "receivedAt", "bodyValues",
        "textBody", "sentAt", "messageId", "size"], fetchTextBodyValues=True)
    assert found["subject"] == "Grüße aus Köln"
    assert found["from"] == [{"name": "Zoë Ü", "email": "zoe@example.com"}]
    assert found["to"] == [{"name": None, "email": "bob@example.org"},
                           {"name": "Carl, Jr.", "email": "c@example.org"}]
    assert found["keywords"] == {"$draft": True, "$seen": True}
    assert found["mailboxIds"] == {await api.mailbox_id("Drafts"): True}
    assert found["receivedAt"] == "2026-04-01T10:00:00Z"
    (part,) = found["textBody"]
    assert found["bodyValues"][part["partId"]]["value"] == "Hallo 👋\nline two\n"
    assert found["sentAt"] is not None and found["messageId"][0].endswith(
        "@" + api.runtime.config.hostname)
    assert found["size"] == created["size"]
    raw = await api.runtime.blobs.read(email_id)
    assert b"MIME-Version: 1.0\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(line.isascii() for line in raw.split(b"\r\n"))  # encoded words, QP
    changes = await api.ok("Email/changes", sinceState=state)
    assert changes["created"] == [email_id]


async def test_html_attachments_and_inline_parts(api: Api) -> None:
    pdf = await _upload(api, b"%PDF-1.4 binary \x00\x01\x02")
    png = await _upload(api, b"\x89PNG fake image")
    created = await _draft(
        api, subject="with parts",
        textBody=[{"partId": "t", "type": "text/plain"}],
        htmlBody=[{"partId": "h", "type": "text/html"}],
        bodyValues={"t": {"value": "see the picture"},
                    "h": {"value": "<p>see <img src=cid:pic1></p>"}},
        attachments=[{"blobId": pdf, "type": "application/pdf", "name": "report.pdf"},
                     {"blobId": png, "type": "image/png", "disposition": "inline",
                      "cid": "pic1", "name": "pic.png"}])
    found = await api.get_one(created["id"], properties=[
        "bodyStructure", "attachments", "hasAttachment", "htmlBody"],
        bodyProperties=["partId", "blobId", "type", "name", "cid", "disposition"])
    root = found["bodyStructure"]
    assert root["type"] == "multipart/mixed"
    related, attached = root["subParts"]
    assert related["type"] == "multipart/related"
    assert [part["type"] for part in related["subParts"]] == ["multipart/alternative",
                                                              "image/png"]
    assert related["subParts"][1]["cid"] == "pic1"
    assert attached["type"] == "application/pdf" and attached["name"] == "report.pdf"
    assert found["hasAttachment"] is True
    assert [one["name"] for one in found["attachments"]] == ["pic.png", "report.pdf"]
    assert found["htmlBody"][0]["type"] == "text/html"
    raw = await api.runtime.blobs.read(created["id"])
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    payloads = [part.get_content() for part in parsed.walk()
                if part.get_content_type() == "application/pdf"]  # fmt: skip
    assert payloads == [b"%PDF-1.4 binary \x00\x01\x02"]


async def test_body_structure_headers_and_threading(api: Api) -> None:
    parent = await api.deliver(message("topic", message_id="p@x"))
    forwarded = await api.deliver(message("inner one"))
    created = await _draft(
        api, subject="Re: topic", messageId=["mine@example.test"], inReplyTo=["p@x"],
        references=["p@x"], sentAt="2026-05-02T10:00:00+02:00",
        **{"header:X-Mood:asText": "très bien",
           "header:List-Unsubscribe:asURLs": ["mailto:u@example.org"],
           "header:X-Raw": "  plain  "},
        bodyStructure={"type": "multipart/mixed", "subParts": [
            {"partId": "b", "type": "text/plain", "language": ["fr"],
             "header:X-Part:asText": "inner"},
            {"blobId": forwarded, "type": "message/rfc822"}]},
        bodyValues={"b": {"value": "voilà"}})
    assert created["threadId"] == "T" + parent
    found = await api.get_one(created["id"], properties=[
        "messageId", "inReplyTo", "references", "sentAt", "header:X-Mood:asText",
        "header:List-Unsubscribe:asURLs", "header:X-Raw", "bodyStructure", "attachments"],
        bodyProperties=["type", "language", "header:X-Part:asText"])
    assert found["messageId"] == ["mine@example.test"] and found["inReplyTo"] == ["p@x"]
    assert found["sentAt"] == "2026-05-02T10:00:00+02:00"
    assert found["header:X-Mood:asText"] == "très bien"
    assert found["header:List-Unsubscribe:asURLs"] == ["mailto:u@example.org"]
    assert found["header:X-Raw"] == " plain"
    first, second = found["bodyStructure"]["subParts"]
    assert first == {"type": "text/plain", "language": ["fr"],
                     "header:X-Part:asText": "inner"}
    assert second["type"] == "message/rfc822"


async def test_creation_ids_reach_updates_and_destroys(api: Api) -> None:
    drafts, trash = await api.mailbox_id("Drafts"), await api.mailbox_id("Trash")
    answer = await api.request([["Email/set", {
        "accountId": api.account_id,
        "create": {"k": {"mailboxIds": {drafts: True}, "subject": "x"}},
        "update": {"#k": {"mailboxIds": {trash: True}}}}, "a"],
        ["Email/set", {"accountId": api.account_id, "destroy": ["#k"]}, "b"]],
        created_ids={})
    (first, _), (second, _) = [(one[1], one[0]) for one in answer["methodResponses"]]
    email_id = first["created"]["k"]["id"]
    assert first["updated"] == {email_id: None} and second["destroyed"] == [email_id]
    assert answer["createdIds"] == {"k": email_id}


async def test_what_cannot_be_created(api: Api) -> None:
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"id": "x"}, ["id"]), ({"headers": []}, ["headers"]), ({"size": 3}, ["size"]),
        ({"from": [{"email": "a@b.c"}], "header:From:asAddresses": [{"email": "d@e.f"}]},
         ["header:From:asAddresses"]),
        ({"header:Content-Type": "text/html"}, ["Content-Type"]),
        ({"subject": "two\r\nBcc: evil@example.org"}, ["subject"]),
        ({"to": [{"email": "not an address"}]}, ["to"]),
        ({"to": [{"email": "a@b.c", "extra": 1}]}, ["to"]),
        ({"header:From:asGroupedAddresses": []}, ["header:From:asGroupedAddresses"]),
        ({"header:Subject:asAddresses": []}, ["header:Subject:asAddresses"]),
        ({"textBody": [{"partId": "a"}, {"partId": "b"}]}, ["textBody"]),
        ({"textBody": [{"partId": "a", "type": "text/html"}]}, ["textBody"]),
        ({"textBody": [{"partId": "a"}], "bodyStructure": {"partId": "a"}},
         ["bodyStructure"]),
        ({"bodyStructure": {"partId": "a", "blobId": "b"}}, ["bodyStructure"]),
        ({"bodyStructure": {"partId": "nope"}}, ["bodyStructure"]),
        ({"bodyStructure": {"partId": "a", "charset": "latin1"},
          "bodyValues": {"a": {"value": "x"}}}, ["bodyStructure"]),
        ({"bodyStructure": {"partId": "a", "header:Content-Transfer-Encoding": "7bit"},
          "bodyValues": {"a": {"value": "x"}}}, ["bodyStructure"]),
        ({"bodyStructure": {"partId": "a"},
          "bodyValues": {"a": {"value": "x", "isTruncated": True}}}, ["bodyValues"]),
        ({"bodyStructure": {"type": "multipart/mixed", "subParts": []}}, ["bodyStructure"]),
        ({"bodyStructure": "text"}, ["bodyStructure"]),
        ({"keywords": {"$seen": False}}, ["keywords"]),
        ({"receivedAt": "yesterday"}, ["receivedAt"]),
    ]
    for properties, names in cases:
        error = await _error(api, **properties)
        assert error["type"] == "invalidProperties", (properties, error)
        assert error["properties"] == names, (properties, error)
    response = await _create(api, d={"mailboxIds": {}, "subject": "x"})
    assert response["notCreated"]["d"]["properties"] == ["mailboxIds"]
    error = await _error(api, attachments=[{"blobId": "0abc", "type": "image/png"}])
    assert error == {"type": "blobNotFound", "description": "no blob 0abc",
                     "notFound": ["0abc"]}
    deep: dict[str, Any] = {"partId": "a"}
    for _ in range(20):
        deep = {"type": "multipart/mixed", "subParts": [deep]}
    error = await _error(api, bodyStructure=deep, bodyValues={"a": {"value": "x"}})
    assert error["type"] == "invalidProperties"


async def test_created_messages_obey_the_size_limit(tmp_path: Path,
                                                    server_cert: tuple[Path, Path]) -> None:
    config = mail_config(tmp_path, server_cert, POSTFIX_MESSAGE_SIZE_LIMIT=2000)
    async for small in open_api(config):
        big = await _upload(small, b"x" * 5000)
        drafts = {await small.mailbox_id("Drafts"): True}
        response = await small.ok("Email/set", create={
            "a": {"mailboxIds": drafts, "attachments": [{"blobId": big}]},
            "b": {"mailboxIds": drafts, "textBody": [{"partId": "t"}],
                  "bodyValues": {"t": {"value": "y" * 1900}}},
            "c": {"mailboxIds": drafts, "textBody": [{"partId": "t"}],
                  "bodyValues": {"t": {"value": "small"}}}})
        assert response["notCreated"]["a"]["type"] == "tooLarge"
        assert response["notCreated"]["b"] == {
            "type": "tooLarge", "description": "messages are at most 2000 bytes",
            "maxSize": 2000}
        assert set(response["created"]) == {"c"}
