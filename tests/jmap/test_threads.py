"""JMAP thread ids (jmap/threads.py): the grouping rule as a pure function, and the
catch-up over a real store (SQLite, or PostgreSQL under POSTROOM_TEST_STORAGE)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.jmap.threads import (
    MessageIds,
    assign_threads,
    choose_threads,
    ids_from_header,
    ids_from_meta,
    thread_ids,
)
from postroom.mail.mimetree import message_meta
from postroom.store.jmapthreads_api import MAX_THREAD_MESSAGE_IDS, UnthreadedEmail
from tests.jmap.test_emails import Api, mail_config, message, open_api


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(mail_config(tmp_path, server_cert)):
        yield opened

WHEN = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def _emails(*blob_ids: str) -> list[UnthreadedEmail]:
    return [UnthreadedEmail(blob_id, "", WHEN) for blob_id in blob_ids]


def _threads(ids: list[MessageIds], known: dict[str, str] | None = None) -> list[str]:
    names = [f"b{n}" for n in range(len(ids))]
    return [row.thread_id for row in choose_threads(_emails(*names), ids, known or {})]


def test_ids_from_the_header() -> None:
    header = (b"Message-ID: <own@x>\r\nIn-Reply-To: <parent@x> (comment)\r\n"
              b"References: <a@x>\r\n <b@x>  <parent@x>\r\n")
    found = ids_from_header(header)
    assert found == MessageIds("own@x", ("parent@x",), ("a@x", "b@x", "parent@x"))
    assert found.lookup_order() == ["parent@x", "b@x", "a@x", "own@x"]
    assert ids_from_header(b"Subject: none\r\n") == MessageIds(None, (), ())
    many = b"References: " + b" ".join(b"<%d@x>" % n for n in range(300)) + b"\r\n"
    kept = ids_from_header(many).references
    assert len(kept) == MAX_THREAD_MESSAGE_IDS and kept[-1] == "299@x"


def test_ids_from_the_stored_envelope_when_the_bytes_are_gone() -> None:
    meta = message_meta(message(message_id="m@x", reply_to="p@x"))
    assert ids_from_meta(meta) == MessageIds("m@x", ("p@x",), ())
    assert ids_from_meta("") == MessageIds(None, (), ())
    assert ids_from_meta("not json") == MessageIds(None, (), ())


def test_replies_join_in_either_order_and_siblings_share() -> None:
    root = MessageIds("root@x", (), ())
    reply = MessageIds("r@x", ("root@x",), ("root@x",))
    assert _threads([root, reply]) == ["Tb0", "Tb0"]
    assert _threads([reply, root]) == ["Tb0", "Tb0"]  # the reply came first
    one, two = MessageIds("1@x", ("gone@x",), ()), MessageIds("2@x", (), ("gone@x",))
    assert _threads([one, two]) == ["Tb0", "Tb0"]  # both answer a message not here
    assert _threads([MessageIds(None, (), ()), MessageIds(None, (), ())]) == ["Tb0", "Tb1"]
    dup = MessageIds("same@x", (), ())
    assert _threads([dup, dup]) == ["Tb0", "Tb0"]  # a sent copy and its delivery


def test_the_nearest_parent_wins_and_threads_never_merge() -> None:
    known = {"a@x": "Ta", "b@x": "Tb"}
    bridge = MessageIds("c@x", ("b@x",), ("a@x",))
    assert _threads([bridge], dict(known)) == ["Tb"]  # In-Reply-To first
    newest = MessageIds("c@x", (), ("a@x", "b@x"))
    assert _threads([newest], dict(known)) == ["Tb"]  # then the newest reference
    table = dict(known)
    rows = choose_threads(_emails("x"), [newest], table)
    assert rows[0].message_ids == ("b@x", "a@x", "c@x")
    assert table == {"a@x": "Ta", "b@x": "Tb", "c@x": "Tb"}  # first owner kept


async def test_catch_up_is_in_arrival_order_and_runs_once(api: Api) -> None:
    # The reply is saved first but with the later internal date: arrival order counts.
    reply = await api.deliver(message(message_id="r@x", reply_to="p@x"), minutes=9)
    parent = await api.deliver(message(message_id="p@x"), minutes=1)
    assert await assign_threads(api.runtime, api.account.id) == 2
    assert await assign_threads(api.runtime, api.account.id) == 0
    assert await thread_ids(api.runtime, api.account.id, [reply, parent]) == {
        reply: "T" + reply, parent: "T" + reply}
    late = await api.deliver(message(message_id="l@x", references="<p@x>"))
    assert await thread_ids(api.runtime, api.account.id, [late]) == {late: "T" + reply}


async def test_concurrent_catch_ups_agree(api: Api) -> None:
    blob_ids = [await api.deliver(message(message_id=f"{n}@x", reply_to=f"{n - 1}@x"))
                for n in range(30)]  # fmt: skip
    counts = await asyncio.gather(*(assign_threads(api.runtime, api.account.id)
                                    for _ in range(4)))  # fmt: skip
    assert sorted(counts) == [0, 0, 0, 30]
    found = await api.store.jmap_thread_ids(api.account.id, blob_ids)
    assert set(found.values()) == {"T" + blob_ids[0]}


async def test_a_message_whose_bytes_are_gone_threads_from_its_envelope(api: Api) -> None:
    parent = await api.deliver(message(message_id="p@x"))
    orphan = await api.deliver(message(message_id="o@x", reply_to="p@x"))
    await api.runtime.blobs.delete(orphan)
    assert await thread_ids(api.runtime, api.account.id, [orphan]) == {orphan: "T" + parent}
