"""Email/query and Email/queryChanges (RFC 8621 §4.4, §4.5; jmap/emailquery.py) over a
real store (SQLite, or PostgreSQL under POSTROOM_TEST_STORAGE=postgresql)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from postroom.delivery.fulltext import FulltextIndexer
from postroom.jmap import emailquery
from postroom.store.api import FlagMode
from tests.jmap.test_emails import Api, mail_config, message, open_api


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(mail_config(tmp_path, server_cert)):
        yield opened


async def _ids(api: Api, **arguments: Any) -> list[str]:
    return list((await api.ok("Email/query", **arguments))["ids"])


async def _three(api: Api) -> tuple[str, str, str]:
    """Three Emails: a (oldest, small), b (flagged, in Trash too), c (newest, large)."""
    a = await api.deliver(message("Apples", sender="Zed <zed@example.com>", body="crunchy"),
                          flags=frozenset({"\\Seen"}), minutes=1)  # fmt: skip
    b = await api.deliver(message("Bananas", sender="amy@example.com", to="bob@example.org",
                                  extra="X-Tag: yellow fruit", body="soft and sweet"),
                          flags=frozenset({"\\Flagged", "$Label1"}), minutes=2)  # fmt: skip
    c = await api.deliver(message("Re: Apples", sender="Bea <bea@example.com>",
                                  body="x" * 500 + " crunchy too"), minutes=3)  # fmt: skip
    inbox, trash = await api.mailbox("INBOX"), await api.mailbox("Trash")
    await api.store.copy_messages(inbox.id, [2], trash.id)
    return a, b, c


async def test_default_order_window_and_total(api: Api) -> None:
    a, b, c = await _three(api)
    response = await api.ok("Email/query", calculateTotal=True)
    assert response["ids"] == [c, b, a]  # receivedAt, newest first
    assert response["total"] == 3 and response["position"] == 0
    assert response["queryState"] == await api.store.jmap_state(api.account.id)
    assert response["canCalculateChanges"] is False
    assert "total" not in await api.ok("Email/query")
    assert await _ids(api, position=1, limit=1) == [b]
    assert await _ids(api, position=-1) == [a]
    paged = await api.ok("Email/query", anchor=b, anchorOffset=1)
    assert paged["ids"] == [a] and paged["position"] == 2
    assert await api.error("Email/query", anchor="nope") == "anchorNotFound"
    assert await api.error("Email/query", limit=-1) == "invalidArguments"
    assert await api.error("Email/query", accountId="a9") == "accountNotFound"


async def test_mailbox_date_size_and_keyword_conditions(api: Api) -> None:
    a, b, c = await _three(api)
    inbox, trash = await api.mailbox_id("INBOX"), await api.mailbox_id("Trash")
    assert await _ids(api, filter={"inMailbox": trash}) == [b]
    assert await _ids(api, filter={"inMailbox": "Mnowhere"}) == []
    assert await _ids(api, filter={"inMailboxOtherThan": [inbox]}) == [b]
    assert await _ids(api, filter={"inMailboxOtherThan": [trash]}) == [c, b, a]
    assert await _ids(api, filter={"before": "2026-05-01T09:02:00Z"}) == [a]
    assert await _ids(api, filter={"after": "2026-05-01T09:02:00Z"}) == [c, b]
    small = len(message("Apples", sender="Zed <zed@example.com>", body="crunchy"))
    assert await _ids(api, filter={"maxSize": small + 1}) == [a]
    assert await _ids(api, filter={"minSize": 400}) == [c]
    assert await _ids(api, filter={"hasKeyword": "$seen"}) == [a]
    assert await _ids(api, filter={"hasKeyword": "$LABEL1"}) == [b]
    assert await _ids(api, filter={"notKeyword": "$flagged"}) == [c, a]
    assert await _ids(api, filter={"inMailbox": inbox, "hasKeyword": "$flagged"}) == [b]


async def test_text_conditions_read_the_envelope_body_and_header(api: Api) -> None:
    a, b, c = await _three(api)
    assert await _ids(api, filter={"subject": "apples"}) == [c, a]
    assert await _ids(api, filter={"from": "ZED@"}) == [a]
    assert await _ids(api, filter={"from": "bea"}) == [c]  # the display name counts
    assert await _ids(api, filter={"to": "bob@example.org"}) == [b]
    assert await _ids(api, filter={"cc": "x"}) == []
    assert await _ids(api, filter={"bcc": "x"}) == []
    assert await _ids(api, filter={"body": "CRUNCHY"}) == [c, a]
    assert await _ids(api, filter={"text": "sweet"}) == [b]
    assert await _ids(api, filter={"text": "bananas"}) == [b]
    assert await _ids(api, filter={"header": ["X-Tag"]}) == [b]
    assert await _ids(api, filter={"header": ["x-tag", "FRUIT"]}) == [b]
    assert await _ids(api, filter={"header": ["X-Tag", "red"]}) == []
    assert await api.error("Email/query", filter={"header": []}) == "invalidArguments"
    assert await api.error("Email/query", filter={"header": ["a", "b", "c"]}) == \
        "invalidArguments"


async def test_the_fulltext_index_answers_as_reading_does(api: Api) -> None:
    a, b, c = await _three(api)
    indexer = FulltextIndexer(api.store, api.runtime.blobs)
    while await indexer.run_once():
        pass
    assert await _ids(api, filter={"body": "crunchy"}) == [c, a]
    assert await _ids(api, filter={"text": "soft and"}) == [b]
    d = await api.deliver(message("late", body="crunchy late"), minutes=9)  # not indexed
    assert await _ids(api, filter={"body": "crunchy"}) == [d, c, a]


async def test_reading_too_many_messages_is_server_unavailable(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    await _three(api)
    monkeypatch.setattr(emailquery, "MAX_MESSAGES_READ", 2)
    assert await api.error("Email/query", filter={"body": "nothing"}) == "serverUnavailable"
    assert len(await _ids(api, filter={"subject": "a"})) == 3  # the envelope is no read


async def test_operators(api: Api) -> None:
    a, b, c = await _three(api)
    assert await _ids(api, filter={"operator": "OR", "conditions": [
        {"hasKeyword": "$seen"}, {"hasKeyword": "$flagged"}]}) == [b, a]
    assert await _ids(api, filter={"operator": "AND", "conditions": [
        {"subject": "apples"}, {"notKeyword": "$seen"}]}) == [c]
    assert await _ids(api, filter={"operator": "NOT", "conditions": [
        {"subject": "apples"}]}) == [b]
    assert await _ids(api, filter={"operator": "NOT", "conditions": []}) == [c, b, a]
    nested = {"operator": "AND", "conditions": [
        {"operator": "OR", "conditions": [{"from": "zed"}, {"from": "bea"}]},
        {"operator": "NOT", "conditions": [{"hasKeyword": "$seen"}]}]}
    assert await _ids(api, filter=nested) == [c]
    assert await api.error("Email/query", filter={"operator": "OR", "conditions": []}) == \
        "invalidArguments"
    assert await api.error("Email/query", filter={"operator": "XOR", "conditions": []}) == \
        "unsupportedFilter"
    assert await api.error("Email/query", filter={"colour": "red"}) == "unsupportedFilter"
    assert await api.error("Email/query", filter={"minSize": "big"}) == "invalidArguments"
    assert await api.error("Email/query", filter={"before": "yesterday"}) == \
        "invalidArguments"


async def test_sorts(api: Api) -> None:
    a, b, c = await _three(api)

    async def by(*comparators: dict[str, Any]) -> list[str]:
        return await _ids(api, sort=list(comparators))

    assert await by({"property": "receivedAt", "isAscending": True}) == [a, b, c]
    assert await by({"property": "size", "isAscending": False}) == [c, b, a]
    assert await by({"property": "from"}) == [b, c, a]  # amy@…, Bea, Zed
    assert await by({"property": "to", "isAscending": False}) == [b, c, a]
    assert await by({"property": "subject"}, {"property": "receivedAt"}) == [a, c, b]
    assert await by({"property": "sentAt"}) == [c, b, a]  # equal dates: newest first
    assert await by({"property": "hasKeyword", "keyword": "$seen", "isAscending": False},
                    {"property": "size"}) == [a, b, c]  # fmt: skip
    assert await by({"property": "receivedAt", "collation": "i;unicode-casemap"}) == [a, b, c]
    assert await api.error("Email/query", sort=[{"property": "colour"}]) == "unsupportedSort"
    assert await api.error("Email/query", sort=[{"property": "hasKeyword"}]) == \
        "invalidArguments"
    assert await api.error("Email/query", sort=[{"property": "size",
                                                 "collation": "i;klingon"}]) == \
        "unsupportedSort"


async def test_threads_collapse_and_thread_keywords(api: Api) -> None:
    root = await api.deliver(message("t", message_id="root@x"), minutes=1,
                             flags=frozenset({"\\Seen"}))  # fmt: skip
    reply = await api.deliver(message("Re: t", message_id="r@x", reply_to="root@x"),
                              minutes=2)  # fmt: skip
    lone = await api.deliver(message("u", message_id="lone@x"), minutes=3,
                             flags=frozenset({"\\Seen"}))  # fmt: skip
    assert await _ids(api, collapseThreads=True) == [lone, reply]
    assert await _ids(api, collapseThreads=True, sort=[{"property": "receivedAt",
                                                        "isAscending": True}]) == [root, lone]
    assert await _ids(api, filter={"allInThreadHaveKeyword": "$seen"}) == [lone]
    assert await _ids(api, filter={"someInThreadHaveKeyword": "$seen"}) == [lone, reply, root]
    assert await _ids(api, filter={"noneInThreadHaveKeyword": "$seen"}) == []
    assert await _ids(api, filter={"noneInThreadHaveKeyword": "$flagged"}) == [
        lone, reply, root]
    assert await _ids(api, sort=[{"property": "allInThreadHaveKeyword", "keyword": "$seen"},
                                 {"property": "receivedAt"}]) == [root, reply, lone]
    trash = await api.mailbox("Trash")
    await api.store.copy_messages((await api.mailbox("INBOX")).id, [2], trash.id)
    # Restricted to one mailbox, the thread's other Emails still count.
    assert await _ids(api, filter={"inMailbox": trash.object_id,
                                   "someInThreadHaveKeyword": "$seen"}) == [reply]
    inbox = await api.mailbox("INBOX")
    await api.store.store_flags(inbox.id, [2], frozenset({"\\Seen"}), FlagMode.ADD)
    assert await _ids(api, filter={"allInThreadHaveKeyword": "$seen"}) == [lone, reply, root]
    assert await api.error("Email/query", collapseThreads="yes") == "invalidArguments"


async def test_has_attachment(api: Api) -> None:
    plain = await api.deliver(message("plain"))
    mixed = await api.deliver(
        b"From: a@example.com\r\nSubject: att\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
        b"\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=x.pdf\r\n\r\n%PDF\r\n--b--\r\n")
    assert await _ids(api, filter={"hasAttachment": True}) == [mixed]
    assert await _ids(api, filter={"hasAttachment": False}) == [plain]


async def test_query_changes_cannot_be_calculated(api: Api) -> None:
    state = (await api.ok("Email/query"))["queryState"]
    assert await api.error("Email/queryChanges", sinceQueryState=state) == \
        "cannotCalculateChanges"
    assert await api.error("Email/queryChanges") == "invalidArguments"
    assert await api.error("Email/queryChanges", accountId="a9", sinceQueryState=state) == \
        "accountNotFound"


async def test_a_big_query_sorts_in_a_thread_and_yields_alike(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # Past SORT_ON_LOOP candidates the sort runs in a worker thread, and the loops over
    # the Emails let other tasks run every LOOP_SLICE: the answer must not change.
    for index in range(6):
        await api.deliver(message(f"s{index % 3}", message_id=f"m{index}@x",
                                  body=f"body {index % 2}"), minutes=index)
    arguments: dict[str, Any] = {
        "filter": {"operator": "OR", "conditions": [{"body": "body 1"}, {"subject": "s0"}]},
        "sort": [{"property": "subject"}, {"property": "receivedAt", "isAscending": True}],
        "collapseThreads": True}
    on_loop = await _ids(api, **arguments)
    monkeypatch.setattr(emailquery, "SORT_ON_LOOP", 0)
    monkeypatch.setattr(emailquery, "LOOP_SLICE", 1)
    assert await _ids(api, **arguments) == on_loop and len(on_loop) >= 2
