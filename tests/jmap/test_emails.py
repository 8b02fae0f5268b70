"""JMAP Emails and Threads (RFC 8621 §3, §4.2, §4.3; jmap/emails.py).

Most tests run each request through `core.parse_request` and `core.run_request` with a
real MethodRegistry over a real store (SQLite, or PostgreSQL under
POSTROOM_TEST_STORAGE=postgresql); the last one goes over HTTPS to a whole App, with
IMAP reading and writing the same messages over a real socket. `Api` and the fixtures
here serve test_emails_query.py, test_emails_set.py and test_threads.py too.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from postroom.config import Config
from postroom.jmap import emails
from postroom.jmap.context import MAIL, jmap_account_id
from postroom.jmap.core import CORE_CAPABILITY, Limits
from postroom.mail.mimetree import message_meta
from postroom.runtime import Runtime
from postroom.store.api import Account, FlagMode, Mailbox, NewMessage
from tests.conftest import make_config
from tests.jmap.harness import JmapApi
from tests.jmap.httpclient import JmapClient, basic
from tests.support.runtime import open_runtime
from tests.web.conftest import PASSWORD, USER, StartWebApp

ADDRESS = "alice@example.test"
WHEN = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)


def message(subject: str = "hi", *, message_id: str | None = None, reply_to: str | None = None,
            references: str | None = None, body: str = "Hello there",
            sender: str = "Ann Example <ann@example.com>",
            to: str = "alice@example.test", extra: str = "") -> bytes:  # fmt: skip
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
             "Date: Fri, 01 May 2026 08:00:00 +0000"]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    if reply_to:
        lines.append(f"In-Reply-To: <{reply_to}>")
    if references:
        lines.append(f"References: {references}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


class Api(JmapApi):
    """A JMAP account over a real store with the Email and Thread methods."""

    def __init__(self, runtime: Runtime, account: Account, limits: Limits) -> None:
        super().__init__(runtime, account, [emails.register], limits)

    async def mailbox(self, name: str) -> Mailbox:
        box = await self.store.get_mailbox(self.account.id, name)
        assert box is not None, name
        return box

    async def mailbox_id(self, name: str) -> str:
        return (await self.mailbox(name)).object_id

    async def deliver(self, raw: bytes, mailbox: str = "INBOX",
                      flags: frozenset[str] = frozenset(), minutes: int = 0) -> str:  # fmt: skip
        """Delivered as delivery does (the MIME tree stored as meta); the Email id."""
        box = await self.mailbox(mailbox)
        blob_id = await self.runtime.blobs.put(raw)
        await self.store.append_message(box.id, NewMessage(
            blob_id, len(raw), WHEN + dt.timedelta(minutes=minutes), flags, message_meta(raw)))
        return blob_id

    async def get(self, *ids: str, **arguments: Any) -> list[dict[str, Any]]:
        return list((await self.ok("Email/get", ids=list(ids), **arguments))["list"])

    async def get_one(self, email_id: str, **arguments: Any) -> dict[str, Any]:
        (found,) = await self.get(email_id, **arguments)
        return found


def mail_config(tmp_path: Path, server_cert: tuple[Path, Path], **overrides: object) -> Config:
    return make_config(tmp_path, server_cert, **overrides)


async def open_api(config: Config, limits: Limits | None = None) -> AsyncIterator[Api]:
    async with open_runtime(config) as runtime:
        account = await runtime.store.create_account(ADDRESS, "not-a-hash")
        yield Api(runtime, account, limits or Limits())


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(mail_config(tmp_path, server_cert)):
        yield opened


# -- Email/get ------------------------------------------------------------------------------


async def test_get_shows_metadata_from_the_store(api: Api) -> None:
    flags = frozenset({"\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted",
                       "$Forwarded", "Work"})
    email_id = await api.deliver(message(), flags=flags)
    inbox, trash = await api.mailbox("INBOX"), await api.mailbox("Trash")
    await api.store.copy_messages(inbox.id, [1], trash.id)
    found = await api.get_one(email_id, properties=[
        "size", "keywords", "mailboxIds", "receivedAt", "blobId", "threadId"])
    assert list(found) == ["id", "size", "keywords", "mailboxIds", "receivedAt", "blobId",
                           "threadId"]
    assert found["id"] == found["blobId"] == email_id
    assert found["threadId"] == "T" + email_id
    assert found["size"] == len(message())
    assert found["mailboxIds"] == {inbox.object_id: True, trash.object_id: True}
    assert found["keywords"] == {"$seen": True, "$flagged": True, "$answered": True,
                                 "$draft": True, "$forwarded": True, "work": True}
    assert found["receivedAt"] == "2026-05-01T09:00:00Z"


async def test_get_renders_headers_and_bodies_with_part_blob_ids(api: Api) -> None:
    email_id = await api.deliver(message("Greetings", body="Body text here"))
    found = await api.get_one(email_id, properties=["subject", "from", "textBody",
                                                    "bodyValues", "preview"],
                              fetchTextBodyValues=True, maxBodyValueBytes=4,
                              bodyProperties=["partId", "blobId", "type"])  # fmt: skip
    assert found["subject"] == "Greetings"
    assert found["from"] == [{"name": "Ann Example", "email": "ann@example.com"}]
    assert found["textBody"] == [{"partId": "1", "blobId": email_id + "_1",
                                  "type": "text/plain"}]
    assert found["bodyValues"] == {"1": {"value": "Body", "isEncodingProblem": False,
                                         "isTruncated": True}}
    assert found["preview"] == "Body text here"
    default = await api.get_one(email_id)
    assert {"id", "threadId", "mailboxIds", "subject", "textBody", "bodyValues"} <= set(default)
    assert default["bodyValues"] == {}  # nothing fetched unless asked


async def test_get_of_a_large_header_only_message(api: Api) -> None:
    raw = message("Big", extra="X-Pad: " + "p" * 300_000)
    email_id = await api.deliver(raw)
    assert (await api.get_one(email_id, properties=["subject"]))["subject"] == "Big"


async def test_get_not_found_null_ids_and_errors(api: Api) -> None:
    first = await api.deliver(message("one"))
    second = await api.deliver(message("two"))
    response = await api.ok("Email/get", ids=[first, "nope", first], properties=["subject"])
    assert response["list"] == [{"id": first, "subject": "one"}]
    assert response["notFound"] == ["nope"]
    assert response["state"] == await api.store.jmap_state(api.account.id)
    every = await api.ok("Email/get", ids=None, properties=["id"])
    assert sorted(item["id"] for item in every["list"]) == sorted([first, second])
    assert await api.error("Email/get", ids=[first], properties=["colour"]) == \
        "invalidArguments"
    assert await api.error("Email/get", ids=[first], bodyProperties=["x"]) == \
        "invalidArguments"
    assert await api.error("Email/get", ids=[first], maxBodyValueBytes=0) == \
        "invalidArguments"
    assert await api.error("Email/get", ids=[first], fetchTextBodyValues="yes") == \
        "invalidArguments"
    assert await api.error("Email/get", ids=[first], colour=1) == "invalidArguments"
    assert await api.error("Email/get", accountId="a999", ids=[first]) == "accountNotFound"


async def test_get_of_every_email_beyond_max_objects_is_too_large(
        tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    async for small in open_api(mail_config(tmp_path, server_cert),
                                Limits(max_objects_in_get=2)):
        for n in range(3):
            await small.deliver(message(f"m{n}"))
        assert await small.error("Email/get", ids=None) == "requestTooLarge"
        assert await small.error("Email/get", ids=["a", "b", "c"]) == "requestTooLarge"


async def test_an_email_whose_bytes_are_gone_is_not_found(api: Api) -> None:
    email_id = await api.deliver(message())
    await api.runtime.blobs.delete(email_id)
    response = await api.ok("Email/get", ids=[email_id], properties=["subject"])
    assert response["list"] == [] and response["notFound"] == [email_id]
    found = await api.get_one(email_id, properties=["size"])  # metadata needs no bytes
    assert found["size"] == len(message())


# -- Email/changes ----------------------------------------------------------------------------


async def test_changes_follow_delivery_flags_and_expunge(api: Api) -> None:
    start = await api.store.jmap_state(api.account.id)
    first = await api.deliver(message("one"))
    changes = await api.ok("Email/changes", sinceState=start)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == ([first], [], [])
    assert changes["oldState"] == start and changes["hasMoreChanges"] is False
    middle = changes["newState"]
    inbox = await api.mailbox("INBOX")
    await api.store.store_flags(inbox.id, [1], frozenset({"\\Seen"}), FlagMode.ADD)
    second = await api.deliver(message("two"))
    changes = await api.ok("Email/changes", sinceState=middle)
    assert (changes["created"], changes["updated"]) == ([second], [first])
    await api.store.expunge(inbox.id, [1])
    changes = await api.ok("Email/changes", sinceState=middle)
    assert (changes["created"], changes["destroyed"]) == ([second], [first])
    assert await api.error("Email/changes", sinceState="bogus") == "cannotCalculateChanges"
    assert await api.error("Email/changes", sinceState=middle, maxChanges=1) == \
        "cannotCalculateChanges"
    assert await api.error("Email/changes", sinceState=start, maxChanges=0) == \
        "invalidArguments"
    assert await api.error("Email/changes") == "invalidArguments"
    assert await api.error("Email/changes", accountId="a9", sinceState=start) == \
        "accountNotFound"


# -- Thread/get and Thread/changes ------------------------------------------------------------


async def test_threads_group_replies_in_received_order(api: Api) -> None:
    root = await api.deliver(message("start", message_id="root@x"), minutes=0)
    other = await api.deliver(message("elsewhere", message_id="other@x"), minutes=1)
    reply = await api.deliver(message("Re: start", message_id="r1@x", reply_to="root@x"),
                              minutes=5)  # fmt: skip
    early = await api.deliver(message("Renamed", message_id="r0@x",
                                      references="<root@x>"), minutes=3)  # fmt: skip
    found = {item["id"]: item["threadId"]
             for item in await api.get(root, other, reply, early, properties=["threadId"])}
    assert found[root] == found[reply] == found[early] == "T" + root
    assert found[other] == "T" + other  # no link and another subject: a thread of its own
    response = await api.ok("Thread/get", ids=["T" + root, "T" + other, "Tnope"])
    assert response["list"] == [{"id": "T" + root, "emailIds": [root, early, reply]},
                                {"id": "T" + other, "emailIds": [other]}]
    assert response["notFound"] == ["Tnope"]
    every = await api.ok("Thread/get", ids=None)
    assert sorted(item["id"] for item in every["list"]) == sorted(["T" + root, "T" + other])
    only = await api.ok("Thread/get", ids=["T" + other], properties=["id"])
    assert only["list"] == [{"id": "T" + other}]
    assert await api.error("Thread/get", ids=["T" + root], properties=["x"]) == \
        "invalidArguments"
    assert await api.error("Thread/get", accountId="a9", ids=[]) == "accountNotFound"


async def test_thread_changes(api: Api) -> None:
    root = await api.deliver(message("a", message_id="root@x"))
    await api.get(root, properties=["threadId"])
    start = await api.store.jmap_state(api.account.id)
    lone = await api.deliver(message("b", message_id="lone@x"), minutes=1)
    await api.deliver(message("Re: a", message_id="r@x", reply_to="root@x"), minutes=2)
    changes = await api.ok("Thread/changes", sinceState=start)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == (
        ["T" + lone], ["T" + root], [])
    assert changes["oldState"] == start
    assert await api.error("Thread/changes", sinceState=start, maxChanges=1) == \
        "cannotCalculateChanges"
    middle = changes["newState"]
    inbox = await api.mailbox("INBOX")
    await api.store.store_flags(inbox.id, [1], frozenset({"\\Seen"}), FlagMode.ADD)
    await api.store.expunge(inbox.id, [2])  # `lone`: its thread is gone
    changes = await api.ok("Thread/changes", sinceState=middle)
    assert (changes["created"], changes["updated"], changes["destroyed"]) == (
        [], [], ["T" + lone])  # a flag change leaves the thread as it is
    assert await api.error("Thread/changes", sinceState="s") == "cannotCalculateChanges"


# -- over HTTPS, beside IMAP -------------------------------------------------------------------


def test_emails_over_https_beside_imap(web_app: StartWebApp,
                                       client_tls: ssl.SSLContext) -> None:
    with web_app(ENABLE_JMAP=1) as app:
        jmap = app.app.jmap
        assert jmap is not None
        imap = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=client_tls,
                                 timeout=30)
        imap.login(USER, PASSWORD)
        assert imap.append("INBOX", None, None, message("over imap"))[0] == "OK"
        client = JmapClient(app, client_tls, basic())
        account = app.call(app.runtime.store.get_account(USER))
        assert account is not None
        mine = jmap_account_id(account.id)
        using = [CORE_CAPABILITY, MAIL]
        reply = client.api([
            ["Email/query", {"accountId": mine, "filter": {"subject": "IMAP"}}, "q"],
            ["Email/get", {"accountId": mine, "#ids": {"resultOf": "q", "name": "Email/query",
                                                      "path": "/ids"},
                           "properties": ["subject", "keywords"]}, "g"],
        ], using=using).json()["methodResponses"]
        ((_, found, _),) = [one for one in reply if one[0] == "Email/get"]
        (email,) = found["list"]
        assert email["subject"] == "over imap" and email["keywords"] == {}
        reply = client.api([["Email/set", {"accountId": mine, "update": {
            email["id"]: {"keywords/$seen": True, "keywords/$flagged": True}}}, "s"]],
            using=using).json()["methodResponses"]
        assert reply[0][0] == "Email/set" and reply[0][1]["updated"] == {email["id"]: None}
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(FLAGS)")
        assert typ == "OK" and b"\\Seen" in data[0] and b"\\Flagged" in data[0]
        imap.store("1", "-FLAGS", "\\Flagged")
        reply = client.api([["Email/get", {"accountId": mine, "ids": [email["id"]],
                                           "properties": ["keywords"]}, "g"]],
                           using=using).json()["methodResponses"]
        assert reply[0][1]["list"][0]["keywords"] == {"$seen": True}
        imap.logout()
