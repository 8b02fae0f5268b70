"""JMAP Mailboxes (RFC 8621 §2; jmap/mailboxes.py, jmap/mailboxset.py).

Most tests run each request through `core.parse_request` and `core.run_request` with a
real MethodRegistry over a real store (SQLite, or PostgreSQL under
POSTROOM_TEST_STORAGE=postgresql); the last one goes over HTTPS to a whole App, with
IMAP changing the same mailboxes over a real socket.
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
from postroom.jmap import mailboxes, mailboxset
from postroom.jmap.context import MAIL
from postroom.jmap.core import CORE_CAPABILITY, Limits
from postroom.jmap.mailboxes import missing_superiors
from postroom.mail.mimetree import message_meta
from postroom.runtime import Runtime
from postroom.store.api import Account, FlagMode, NewMessage
from postroom.store.errors import StorageFailure
from tests.conftest import make_config
from tests.jmap.harness import JmapApi
from tests.jmap.httpclient import JmapClient, basic
from tests.support.runtime import open_runtime
from tests.web.conftest import PASSWORD, USER, StartWebApp

ADDRESS = "alice@example.test"
COUNTS = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
MESSAGE = b"From: a@example.com\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello\r\n"


class Api(JmapApi):
    """A JMAP account over a real store with the Mailbox methods."""

    def __init__(self, runtime: Runtime, account: Account, limits: Limits) -> None:
        super().__init__(runtime, account, [mailboxset.register], limits)

    async def all(self) -> dict[str, dict[str, Any]]:
        """Every Mailbox by full path ("a/b"), as Mailbox/get shows them."""
        found = (await self.ok("Mailbox/get", ids=None))["list"]
        by_id = {box["id"]: box for box in found}

        def path(box: dict[str, Any]) -> str:
            parent = box["parentId"]
            return box["name"] if parent is None else path(by_id[parent]) + "/" + box["name"]
        return {path(box): box for box in found}

    async def mailbox_id(self, name: str) -> str:
        box = await self.store.get_mailbox(self.account.id, name)
        assert box is not None, name
        return box.object_id

    async def create(self, **records: dict[str, Any]) -> dict[str, Any]:
        return await self.ok("Mailbox/set", create=records)

    async def deliver(self, mailbox: str, flags: frozenset[str] = frozenset(),
                      raw: bytes = MESSAGE) -> int:
        box = await self.store.get_mailbox(self.account.id, mailbox)
        assert box is not None
        blob_id = await self.runtime.blobs.put(raw)
        row = await self.store.append_message(box.id, NewMessage(
            blob_id, len(raw), dt.datetime.now(dt.UTC), flags, message_meta(raw)))
        return row.uid


@pytest.fixture
def mail_config(tmp_path: Path, server_cert: tuple[Path, Path]) -> Config:
    return make_config(tmp_path, server_cert, MAX_MAILBOXES_PER_ACCOUNT=12,
                       MAX_MAILBOX_DEPTH=4, MAX_MAILBOX_NAME_LENGTH=40)


async def _open_api(config: Config, limits: Limits) -> AsyncIterator[Api]:
    async with open_runtime(config) as runtime:
        account = await runtime.store.create_account(ADDRESS, "not-a-hash")
        yield Api(runtime, account, limits)


@pytest.fixture
async def api(mail_config: Config) -> AsyncIterator[Api]:
    async for opened in _open_api(mail_config, Limits()):
        yield opened


# -- Mailbox/get ----------------------------------------------------------------------------


async def test_get_shows_the_default_mailboxes_with_roles_and_rights(api: Api) -> None:
    response = await api.ok("Mailbox/get", ids=None)
    assert response["accountId"] == api.account_id
    assert response["state"] == await api.store.jmap_state(api.account.id)
    assert response["notFound"] == []
    boxes = {box["name"]: box for box in response["list"]}
    assert set(boxes) == {"INBOX", "Sent", "Drafts", "Trash", "Junk"}
    assert {name: box["role"] for name, box in boxes.items()} == {
        "INBOX": "inbox", "Sent": "sent", "Drafts": "drafts", "Trash": "trash", "Junk": "junk"}
    inbox = boxes["INBOX"]
    assert inbox["id"] == await api.mailbox_id("INBOX")
    assert inbox["parentId"] is None and inbox["isSubscribed"] is True
    assert [inbox[name] for name in COUNTS] == [0, 0, 0, 0]
    assert inbox["myRights"]["mayDelete"] is False and inbox["myRights"]["mayRename"] is False
    assert boxes["Sent"]["myRights"] == dict.fromkeys(inbox["myRights"], True)
    assert inbox["sortOrder"] < min(box["sortOrder"] for box in boxes.values() if box != inbox)
    assert set(inbox) == set(mailboxes.PROPERTIES)


async def test_get_by_id_with_properties_and_not_found(api: Api) -> None:
    inbox = await api.mailbox_id("INBOX")
    response = await api.ok("Mailbox/get", ids=[inbox, "Mnope", inbox],
                            properties=["name", "unreadEmails"])
    assert response["list"] == [{"id": inbox, "name": "INBOX", "unreadEmails": 0}]
    assert response["notFound"] == ["Mnope"]
    assert await api.error("Mailbox/get", ids=[inbox], properties=["colour"]) == \
        "invalidArguments"
    assert await api.error("Mailbox/get", accountId="a999") == "accountNotFound"
    assert await api.error("Mailbox/get", ids="x") == "invalidArguments"


async def test_requests_beyond_max_objects_are_too_large(mail_config: Config) -> None:
    limits = Limits(max_objects_in_get=4, max_objects_in_set=2)
    async for small in _open_api(mail_config, limits):
        assert await small.error("Mailbox/get", ids=None) == "requestTooLarge"
        assert len((await small.ok("Mailbox/get", ids=[
            await small.mailbox_id("INBOX")]))["list"]) == 1
        assert await small.error("Mailbox/set", create={"a": {"name": "A"}},
                                 destroy=["M1", "M2"]) == "requestTooLarge"


async def test_counts_count_each_email_once_per_mailbox(api: Api) -> None:
    inbox = await api.store.get_mailbox(api.account.id, "INBOX")
    trash = await api.store.get_mailbox(api.account.id, "Trash")
    assert inbox is not None and trash is not None
    unread = await api.deliver("INBOX")
    # Other subjects: three threads (RFC 5256's subject step would gather one subject).
    await api.deliver("INBOX", frozenset({"\\Seen"}), MESSAGE.replace(b"hi", b"two"))
    await api.deliver("INBOX", frozenset({"\\Draft"}),  # §2: a draft is not unread
                      MESSAGE.replace(b"hi", b"three"))
    await api.store.copy_messages(inbox.id, [unread], inbox.id)  # the same Email twice
    await api.store.copy_messages(inbox.id, [unread], trash.id)  # and in another mailbox
    boxes = await api.all()
    assert [boxes["INBOX"][name] for name in COUNTS] == [3, 1, 3, 1]
    assert [boxes["Trash"][name] for name in COUNTS] == [1, 1, 1, 1]
    # An Email's keywords are those of all its copies (as Email/get shows them): read in
    # the trash, it is read in INBOX too.
    await api.store.store_flags(trash.id, [1], frozenset({"\\Seen"}), FlagMode.ADD)
    boxes = await api.all()
    assert boxes["Trash"]["unreadEmails"] == 0 and boxes["INBOX"]["unreadEmails"] == 0


def _mail(message_id: str, reply_to: str | None = None) -> bytes:
    # Each its own subject: only references join threads here (not RFC 5256's subject step).
    head = f"From: a@example.com\r\nSubject: {message_id}\r\nMessage-ID: <{message_id}>\r\n"
    if reply_to:
        head += f"In-Reply-To: <{reply_to}>\r\n"
    return head.encode() + b"\r\nbody\r\n"


async def test_thread_counts_follow_rfc_8621_section_2(api: Api) -> None:
    await api.deliver("INBOX", frozenset({"\\Seen"}), _mail("one@x"))
    await api.deliver("Sent", frozenset(), _mail("two@x", "one@x"))  # unread, same thread
    await api.deliver("INBOX", frozenset({"\\Seen"}), _mail("three@x"))
    await api.deliver("Trash", frozenset(), _mail("four@x", "three@x"))  # only in trash
    boxes = await api.all()
    # the unread Email of a thread need not be in the mailbox itself
    assert [boxes["INBOX"][name] for name in COUNTS] == [2, 0, 2, 1]
    assert [boxes["Sent"][name] for name in COUNTS] == [1, 1, 1, 1]
    # an Email only in the trash does not make INBOX's thread unread; it does the trash's
    assert [boxes["Trash"][name] for name in COUNTS] == [1, 1, 1, 1]


async def test_missing_superiors_are_created_so_every_parent_exists(api: Api) -> None:
    # Sieve's fileinto :create and the maildir importer store a name without its parents.
    await api.store.create_mailbox(api.account.id, "x/a/b")
    state = await api.store.jmap_state(api.account.id)
    boxes = await api.all()
    assert boxes["x"]["parentId"] is None
    assert boxes["x/a"]["parentId"] == boxes["x"]["id"] and boxes["x/a"]["name"] == "a"
    assert boxes["x/a/b"]["parentId"] == boxes["x/a"]["id"] and boxes["x/a/b"]["name"] == "b"
    names = {box.name for box in await api.store.list_mailboxes(api.account.id)}
    assert {"x", "x/a", "x/a/b"} <= names  # IMAP now lists them as real mailboxes
    changes = await api.ok("Mailbox/changes", sinceState=state)
    assert set(changes["created"]) == {boxes["x"]["id"], boxes["x/a"]["id"]}
    assert changes["updated"] == [boxes["x/a/b"]["id"]]  # its parentId changed


async def test_a_name_with_an_empty_level_stays_whole(api: Api) -> None:
    await api.store.create_mailbox(api.account.id, "p//q")
    boxes = await api.all()
    assert boxes["p//q"]["parentId"] is None and boxes["p//q"]["name"] == "p//q"
    # a client sending the name back unchanged is not refused for the "/" in it
    response = await api.ok("Mailbox/set", update={boxes["p//q"]["id"]: {
        "name": "p//q", "isSubscribed": True}})
    assert response["updated"] == {boxes["p//q"]["id"]: None}


def test_missing_superiors_shortest_first() -> None:
    assert missing_superiors(["a/b/c", "a/x", "d", "e//f"]) == ["a", "a/b"]
    assert missing_superiors(["a", "a/b"]) == []


# -- Mailbox/changes ------------------------------------------------------------------------


async def test_changes_report_imap_side_creates_renames_and_counts(api: Api) -> None:
    first = await api.ok("Mailbox/get", ids=[])
    created = await api.store.create_mailbox(api.account.id, "Projects")  # IMAP CREATE
    changes = await api.ok("Mailbox/changes", sinceState=first["state"])
    assert changes["oldState"] == first["state"]
    assert changes["created"] == [created.object_id] and changes["destroyed"] == []
    assert changes["hasMoreChanges"] is False
    second = changes["newState"]
    await api.store.rename_mailbox(created.id, "Work")  # IMAP RENAME keeps the Mailbox id
    changes = await api.ok("Mailbox/changes", sinceState=second)
    assert changes["updated"] == [created.object_id] and changes["created"] == []
    assert changes["updatedProperties"] is None
    boxes = await api.all()
    assert boxes["Work"]["id"] == created.object_id
    third = changes["newState"]
    await api.deliver("Work")
    changes = await api.ok("Mailbox/changes", sinceState=third)
    assert changes["updated"] == [created.object_id]
    assert changes["updatedProperties"] == COUNTS
    await api.store.delete_mailbox(created.id)
    changes = await api.ok("Mailbox/changes", sinceState=third)
    assert changes["destroyed"] == [created.object_id]


async def test_changes_errors(api: Api) -> None:
    state = (await api.ok("Mailbox/get", ids=[]))["state"]
    assert await api.error("Mailbox/changes", sinceState="s-unknown") == \
        "cannotCalculateChanges"
    assert await api.error("Mailbox/changes", sinceState=state, maxChanges=0) == \
        "invalidArguments"
    assert await api.error("Mailbox/changes") == "invalidArguments"
    await api.store.create_mailbox(api.account.id, "One")
    await api.store.create_mailbox(api.account.id, "Two")
    assert await api.error("Mailbox/changes", sinceState=state, maxChanges=1) == \
        "cannotCalculateChanges"
    assert len((await api.ok("Mailbox/changes", sinceState=state, maxChanges=2))["created"]) \
        == 2


# -- Mailbox/query and Mailbox/queryChanges -------------------------------------------------


async def _query(api: Api, **arguments: Any) -> list[str]:
    ids = (await api.ok("Mailbox/query", **arguments))["ids"]
    by_id = {box["id"]: path for path, box in (await api.all()).items()}
    return [by_id[one] for one in ids]


async def test_query_filters(api: Api) -> None:
    for name in ("Work", "Work/Alpha", "Work/Beta", "alpha-list"):
        await api.store.create_mailbox(api.account.id, name)
    await api.store.set_subscribed(api.account.id, "Work/Beta", True)
    work = await api.mailbox_id("Work")
    assert await _query(api, filter={"parentId": work}) == ["Work/Alpha", "Work/Beta"]
    assert set(await _query(api, filter={"parentId": None})) == {
        "INBOX", "Sent", "Drafts", "Trash", "Junk", "Work", "alpha-list"}
    assert sorted(await _query(api, filter={"name": "ALPHA"})) == ["Work/Alpha", "alpha-list"]
    assert await _query(api, filter={"role": "trash"}) == ["Trash"]
    assert len(await _query(api, filter={"role": None})) == 4
    assert len(await _query(api, filter={"hasAnyRole": True})) == 5
    assert await _query(api, filter={"isSubscribed": True, "hasAnyRole": False}) == \
        ["Work/Beta"]
    assert await _query(api, filter={"operator": "AND", "conditions": [
        {"name": "a"}, {"operator": "NOT", "conditions": [{"parentId": None}]}]}) == \
        ["Work/Alpha", "Work/Beta"]
    assert sorted(await _query(api, filter={"operator": "OR", "conditions": [
        {"role": "sent"}, {"role": "junk"}]})) == ["Junk", "Sent"]
    # §2.3 filterAsTree: a match whose ancestors do not all match is left out
    assert await _query(api, filter={"name": "Alpha"}, filterAsTree=True) == ["alpha-list"]
    assert await _query(api, filter={"name": "w"}, filterAsTree=True) == ["Work"]


async def test_query_sorts_and_windows(api: Api) -> None:
    for name in ("b", "b/z", "b/y", "a", "C"):
        await api.store.create_mailbox(api.account.id, name)
    default = await _query(api)  # sortOrder (roles first, INBOX foremost), then name
    assert default[0] == "INBOX" and default[-5:] == ["a", "b", "C", "b/y", "b/z"]
    by_name = await _query(api, sort=[{"property": "name", "isAscending": False}],
                           filter={"hasAnyRole": False})
    assert by_name == ["b/z", "b/y", "C", "b", "a"]
    octet = await _query(api, sort=[{"property": "name", "collation": "i;octet"}],
                         filter={"hasAnyRole": False})
    assert octet == ["C", "a", "b", "b/y", "b/z"]
    tree = await _query(api, sort=[{"property": "name", "isAscending": False}],
                        filter={"hasAnyRole": False}, sortAsTree=True)
    assert tree == ["C", "b", "b/z", "b/y", "a"]  # §2.3: parents before their children
    response = await api.ok("Mailbox/query", sort=[{"property": "name"}], position=1,
                            limit=2, calculateTotal=True)
    assert response["position"] == 1 and len(response["ids"]) == 2
    assert response["total"] == 10 and response["canCalculateChanges"] is False
    assert response["queryState"] == await api.store.jmap_state(api.account.id)
    anchored = await api.ok("Mailbox/query", sort=[{"property": "name"}],
                            anchor=response["ids"][0], anchorOffset=1, limit=1)
    assert anchored["ids"] == response["ids"][1:] and anchored["position"] == 2


async def test_query_errors_and_query_changes(api: Api) -> None:
    assert await api.error("Mailbox/query", filter={"colour": "red"}) == "unsupportedFilter"
    assert await api.error("Mailbox/query", filter={"name": 3}) == "invalidArguments"
    assert await api.error("Mailbox/query", filter={"parentId": "#x"}) == "invalidArguments"
    assert await api.error("Mailbox/query", filter={"isSubscribed": "yes"}) == \
        "invalidArguments"
    assert await api.error("Mailbox/query", sort=[{"property": "totalEmails"}]) == \
        "unsupportedSort"
    assert await api.error("Mailbox/query", sortAsTree="yes") == "invalidArguments"
    assert await api.error("Mailbox/query", collapseThreads=True) == "invalidArguments"
    assert await api.error("Mailbox/query", anchor="Mnope") == "anchorNotFound"
    state = (await api.ok("Mailbox/query"))["queryState"]
    # RFC 8620 §5.6: a server may always refuse; the client queries again
    assert await api.error("Mailbox/queryChanges", sinceQueryState=state) == \
        "cannotCalculateChanges"
    assert await api.error("Mailbox/queryChanges", sinceQueryState=state,
                           filter={"colour": 1}) == "unsupportedFilter"
    assert await api.error("Mailbox/queryChanges") == "invalidArguments"


# -- Mailbox/set: create --------------------------------------------------------------------


async def test_create_with_parent_references_and_defaults(api: Api) -> None:
    response = await api.create(child={"name": "Child", "parentId": "#top"},
                                top={"name": "Top", "isSubscribed": False})
    assert response["notCreated"] is None
    top, child = response["created"]["top"], response["created"]["child"]
    assert child["parentId"] == top["id"] and top["parentId"] is None  # a default: returned
    assert [child[name] for name in COUNTS] == [0, 0, 0, 0]
    assert child["isSubscribed"] is True and "isSubscribed" not in top  # default subscribes
    assert child["role"] is None and child["myRights"]["mayDelete"] is True
    assert "name" not in child
    boxes = await api.all()
    assert boxes["Top/Child"]["id"] == child["id"] and boxes["Top"]["isSubscribed"] is False
    assert await api.store.list_subscriptions(api.account.id) == sorted(
        ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Top/Child"])
    assert response["newState"] == await api.store.jmap_state(api.account.id)
    assert response["oldState"] != response["newState"]


async def test_create_references_across_calls_and_created_ids(api: Api) -> None:
    answer = await api.request([
        ["Mailbox/set", {"accountId": api.account_id, "create": {"p": {"name": "P"}}}, "1"],
        ["Mailbox/set", {"accountId": api.account_id,
                         "create": {"c": {"name": "C", "parentId": "#p"}}}, "2"],
    ], created_ids={})
    parent = answer["methodResponses"][0][1]["created"]["p"]["id"]
    child = answer["methodResponses"][1][1]["created"]["c"]["id"]
    assert answer["createdIds"] == {"p": parent, "c": child}
    got = (await api.all())["P/C"]
    assert got["id"] == child and got["parentId"] == parent
    response = await api.create(x={"name": "X", "parentId": "#unknown"})
    assert response["notCreated"]["x"]["type"] == "invalidProperties"
    assert response["notCreated"]["x"]["properties"] == ["parentId"]
    cycle = await api.create(a={"name": "A", "parentId": "#b"},
                             b={"name": "B", "parentId": "#a"})
    assert set(cycle["notCreated"]) == {"a", "b"} and cycle["created"] is None


async def test_create_with_a_role(api: Api) -> None:
    response = await api.create(arch={"name": "Archive", "role": "archive"},
                                sent={"name": "Sent 2", "role": "sent"},
                                odd={"name": "Odd", "role": "colourful"},
                                flag={"name": "Flagged", "role": "flagged"},
                                inbox={"name": "In", "role": "inbox"})
    assert set(response["created"]) == {"arch"}
    for key in ("sent", "odd", "flag", "inbox"):
        assert response["notCreated"][key]["type"] == "invalidProperties"
        assert response["notCreated"][key]["properties"] == ["role"]
    boxes = await api.all()
    assert boxes["Archive"]["role"] == "archive"
    assert "Sent 2" not in boxes


INVALID_CREATES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ["name"]),
    ({"name": ""}, ["name"]),
    ({"name": 7}, ["name"]),
    ({"name": "a/b"}, ["name"]),
    ({"name": "tab\there"}, ["name"]),
    ({"name": "c1\u0085"}, ["name"]),
    ({"name": "x" * 41}, ["name"]),
    ({"name": "Sent"}, ["name"]),  # a sibling has it
    ({"name": "inbox"}, ["name"]),  # INBOX in any case
    ({"name": "ok", "id": "M1", "totalEmails": 0}, ["id", "totalEmails"]),
    ({"name": "ok", "colour": "red"}, ["colour"]),
    ({"name": "ok", "isSubscribed": "yes"}, ["isSubscribed"]),
    ({"name": "ok", "sortOrder": -1}, ["sortOrder"]),
    ({"name": "ok", "sortOrder": 2**31}, ["sortOrder"]),
    ({"name": "ok", "parentId": "Mnope"}, ["parentId"]),
    ({"name": "ok", "parentId": 5}, ["parentId"]),
    ({"name": "", "parentId": "Mnope", "role": "x"}, ["name", "parentId", "role"]),
]


async def test_create_refuses_invalid_properties(api: Api) -> None:
    response = await api.create(**{f"n{n}": record
                                   for n, (record, _) in enumerate(INVALID_CREATES)})
    assert response["created"] is None
    for n, (record, properties) in enumerate(INVALID_CREATES):
        error = response["notCreated"][f"n{n}"]
        assert error["type"] == "invalidProperties", record
        assert sorted(error["properties"]) == properties, record
        assert error["description"]
    assert response["newState"] == response["oldState"]


async def test_create_limits_depth_count_and_normalises(api: Api) -> None:
    made = await api.create(a={"name": "a"}, b={"name": "b", "parentId": "#a"},
                            c={"name": "c", "parentId": "#b"},
                            d={"name": "d", "parentId": "#c"},
                            e={"name": "e", "parentId": "#d"})  # MAX_MAILBOX_DEPTH=4
    assert set(made["created"]) == {"a", "b", "c", "d"}
    assert made["notCreated"]["e"]["properties"] == ["parentId"]
    nfd = "Cafe\u0301"
    answer = await api.create(cafe={"name": nfd, "sortOrder": 99})
    created = answer["created"]["cafe"]
    assert created["name"] == "Caf\u00e9"  # RFC 8621 §2: Net-Unicode, NFC
    assert created["sortOrder"] == mailboxes.ROLELESS_SORT_ORDER  # ours, not stored
    # 5 defaults + 4 + 1 = 10; MAX_MAILBOXES_PER_ACCOUNT=12
    full = await api.create(k={"name": "k"}, l={"name": "l"}, m={"name": "m"})
    assert set(full["created"]) == {"k", "l"}
    assert full["notCreated"]["m"]["type"] == "overQuota"


# -- Mailbox/set: update --------------------------------------------------------------------


async def test_rename_and_move_keep_the_id_and_take_children_along(api: Api) -> None:
    made = (await api.create(w={"name": "Work"}, a={"name": "Alpha", "parentId": "#w"},
                             h={"name": "Home"}))["created"]
    work, alpha, home = made["w"]["id"], made["a"]["id"], made["h"]["id"]
    response = await api.ok("Mailbox/set", update={work: {"name": "Job"}})
    assert response["updated"] == {work: None} and response["notUpdated"] is None
    boxes = await api.all()
    assert boxes["Job"]["id"] == work and boxes["Job/Alpha"]["id"] == alpha
    response = await api.ok("Mailbox/set", update={work: {"parentId": home}})
    assert response["updated"] == {work: None}
    boxes = await api.all()
    assert boxes["Home/Job"]["id"] == work and boxes["Home/Job/Alpha"]["id"] == alpha
    names = {box.name for box in await api.store.list_mailboxes(api.account.id)}
    assert "Home/Job/Alpha" in names  # the IMAP name too
    response = await api.ok("Mailbox/set", update={work: {"parentId": None, "name": "Top"}})
    assert (await api.all())["Top/Alpha"]["id"] == alpha


async def test_update_subscription_sort_order_and_references(api: Api) -> None:
    response = await api.ok("Mailbox/set", create={"n": {"name": "News"}},
                            update={"#n": {"isSubscribed": False, "sortOrder": 3}})
    news = response["created"]["n"]["id"]
    assert response["updated"] == {news: {"sortOrder": mailboxes.ROLELESS_SORT_ORDER}}
    assert "News" not in await api.store.list_subscriptions(api.account.id)
    response = await api.ok("Mailbox/set", update={news: {"isSubscribed": True,
                                                          "sortOrder": None}})
    # a null restores the §2 default, 0, which is not ours either
    assert response["updated"] == {news: {"sortOrder": mailboxes.ROLELESS_SORT_ORDER}}
    assert "News" in await api.store.list_subscriptions(api.account.id)


async def test_update_errors(api: Api) -> None:
    made = (await api.create(w={"name": "Work"}, a={"name": "Alpha", "parentId": "#w"},
                             s={"name": "Sub", "parentId": "#a"}))["created"]
    work, alpha = made["w"]["id"], made["a"]["id"]
    inbox, sent = await api.mailbox_id("INBOX"), await api.mailbox_id("Sent")
    response = await api.ok("Mailbox/set", update={
        inbox: {"name": "Post"},
        sent: {"role": "archive"},
        work: {"parentId": alpha},
        alpha: {"name": "x" * 40},
        "Mnope": {"name": "Gone"},
        "#nope": {"name": "Gone"},
    })
    errors = response["notUpdated"]
    assert errors[inbox]["type"] == "forbidden"
    assert errors[sent]["properties"] == ["role"]
    assert errors[work]["properties"] == ["parentId"]  # below itself
    assert errors[alpha]["properties"] == ["name"]  # too long for the full name
    assert errors["Mnope"]["type"] == "notFound" and errors["#nope"]["type"] == "notFound"
    assert response["updated"] is None
    response = await api.ok("Mailbox/set", update={
        work: {"myRights/mayDelete": False},
        alpha: {"totalEmails": 5},
        sent: {"name/x": 1},
        made["s"]["id"]: {"name": "Sent", "parentId": None},
    }, destroy=[])
    errors = response["notUpdated"]
    assert errors[work]["properties"] == ["myRights"]
    assert errors[alpha]["properties"] == ["totalEmails"]
    assert errors[sent]["type"] == "invalidPatch"
    assert errors[made["s"]["id"]]["properties"] == ["name"]  # a sibling has it
    same = await api.ok("Mailbox/set", update={work: {"totalEmails": 0, "id": work}})
    assert same["updated"] == {work: None}  # server-set values left as they are
    both = await api.ok("Mailbox/set", update={made["s"]["id"]: {"name": "S"}},
                        destroy=[made["s"]["id"]])
    assert both["notUpdated"][made["s"]["id"]]["type"] == "willDestroy"
    assert both["destroyed"] == [made["s"]["id"]]


# -- Mailbox/set: destroy and states --------------------------------------------------------


async def test_destroy(api: Api) -> None:
    made = (await api.create(p={"name": "P"}, c={"name": "C", "parentId": "#p"},
                             full={"name": "Full"}, e={"name": "Empty"}))["created"]
    await api.deliver("Full")
    inbox = await api.mailbox_id("INBOX")
    response = await api.ok("Mailbox/set", destroy=[
        made["p"]["id"], made["full"]["id"], inbox, "Mnope", made["e"]["id"]])
    assert response["destroyed"] == [made["e"]["id"]]
    errors = response["notDestroyed"]
    assert errors[made["p"]["id"]]["type"] == "mailboxHasChild"
    assert errors[made["full"]["id"]]["type"] == "mailboxHasEmail"
    assert errors[inbox]["type"] == "forbidden" and errors["Mnope"]["type"] == "notFound"
    # a parent and its child in one call: the child goes first
    response = await api.ok("Mailbox/set", destroy=[made["p"]["id"], made["c"]["id"]])
    assert sorted(response["destroyed"]) == sorted([made["p"]["id"], made["c"]["id"]])
    trash = await api.store.get_mailbox(api.account.id, "Trash")
    assert trash is not None
    full = await api.store.get_mailbox(api.account.id, "Full")
    assert full is not None
    await api.store.copy_messages(full.id, [1], trash.id)
    response = await api.ok("Mailbox/set", destroy=[made["full"]["id"]],
                            onDestroyRemoveEmails=True)
    assert response["destroyed"] == [made["full"]["id"]]
    assert await api.store.get_mailbox(api.account.id, "Full") is None
    assert (await api.all())["Trash"]["totalEmails"] == 1  # the copy elsewhere stays
    assert await api.error("Mailbox/set", onDestroyRemoveEmails="yes") == "invalidArguments"


async def test_if_in_state_and_method_errors(api: Api) -> None:
    state = (await api.ok("Mailbox/get", ids=[]))["state"]
    assert await api.error("Mailbox/set", ifInState="s-old", create={"x": {"name": "X"}}) == \
        "stateMismatch"
    assert (await api.all()).get("X") is None
    response = await api.ok("Mailbox/set", ifInState=state, create={"x": {"name": "X"}})
    assert response["oldState"] == state and response["created"]
    assert await api.error("Mailbox/set", accountId="a0") == "accountNotFound"
    assert await api.error("Mailbox/set", create=[]) == "invalidArguments"
    assert await api.error("Mailbox/set", destroy=["bad id!"]) == "invalidArguments"
    unchanged = await api.ok("Mailbox/set")
    assert unchanged["oldState"] == unchanged["newState"]
    assert unchanged["created"] is None and unchanged["notCreated"] is None


async def test_a_storage_failure_midway_is_a_partial_failure(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    made = (await api.create(x={"name": "X"}))["created"]["x"]["id"]

    async def failing(mailbox_id: int) -> None:
        raise StorageFailure("disk on fire")
    monkeypatch.setattr(api.store, "delete_mailbox", failing)
    # RFC 8620 §3.6.2: nothing written yet is serverFail, something written serverPartialFail
    assert await api.error("Mailbox/set", destroy=[made]) == "serverFail"
    assert await api.error("Mailbox/set", create={"y": {"name": "Y"}},
                           destroy=[made]) == "serverPartialFail"
    assert "Y" in await api.all()


# -- over HTTPS, beside IMAP ----------------------------------------------------------------


def test_mailboxes_over_https_follow_imap(web_app: StartWebApp,
                                          client_tls: ssl.SSLContext) -> None:
    with web_app(ENABLE_JMAP=1) as app:
        assert app.app.jmap is not None
        client = JmapClient(app, client_tls, basic())
        session = client.session().json()
        account_id = session["primaryAccounts"][MAIL]
        using = [CORE_CAPABILITY, MAIL]

        def call(name: str, **arguments: Any) -> dict[str, Any]:
            reply = client.api([[name, {"accountId": account_id, **arguments}, "0"]], using)
            assert reply.status == 200, reply.body
            answer = reply.json()["methodResponses"][0]
            assert answer[0] == name, answer
            return dict(answer[1])

        state = call("Mailbox/get", ids=None)["state"]
        imap = imaplib.IMAP4("127.0.0.1", app.port("imap"))
        try:
            imap.starttls(ssl_context=client_tls)
            imap.login(USER, PASSWORD)
            assert imap.create("Reports")[0] == "OK"
            created = call("Mailbox/changes", sinceState=state)
            assert len(created["created"]) == 1
            mailbox_id = created["created"][0]
            assert imap.rename("Reports", "Reports-2026")[0] == "OK"
            renamed = call("Mailbox/changes", sinceState=created["newState"])
            assert renamed["updated"] == [mailbox_id]
            got = call("Mailbox/get", ids=[mailbox_id])["list"][0]
            assert got["name"] == "Reports-2026"
            made = call("Mailbox/set", create={"n": {"name": "Kids", "parentId": mailbox_id}})
            assert made["created"]["n"]["id"]
            status, listed = imap.list('""', "Reports-2026/*")
            assert status == "OK" and b"Reports-2026/Kids" in b"".join(
                line for line in listed if isinstance(line, bytes))
        finally:
            imap.logout()
