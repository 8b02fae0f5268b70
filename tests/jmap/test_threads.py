"""JMAP thread ids (jmap/threads.py, jmap/threadkeeper.py): the grouping rule as a pure
function (Message-ID links, then RFC 5256 §3 step 5's base subjects), the catch-up and
the thread keeper over a real store (SQLite, or PostgreSQL under POSTROOM_TEST_STORAGE),
and a whole App threading mail that SMTP delivered without any JMAP request."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.jmap import threadkeeper
from postroom.jmap.threadkeeper import ACCOUNTS_PER_ROUND, ThreadKeeper
from postroom.jmap.threads import (
    MessageIds,
    assign_threads,
    choose_threads,
    ids_from_header,
    ids_from_meta,
    thread_ids,
)
from postroom.mail.mimetree import message_meta
from postroom.runtime import Runtime
from postroom.store.api import Change
from postroom.store.jmapthreads_api import MAX_THREAD_MESSAGE_IDS, UnthreadedEmail
from tests.jmap.pushclient import account_of, wait_until
from tests.jmap.test_emails import Api, mail_config, message, open_api
from tests.web.conftest import USER, StartWebApp
from tests.web.mailsink import send_from_outside


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(mail_config(tmp_path, server_cert)):
        yield opened

WHEN = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def _emails(*blob_ids: str) -> list[UnthreadedEmail]:
    return [UnthreadedEmail(blob_id, "", WHEN) for blob_id in blob_ids]


def _threads(ids: list[MessageIds], known: dict[str, str] | None = None,
             subjects: dict[str, str] | None = None) -> list[str]:  # fmt: skip
    names = [f"b{n}" for n in range(len(ids))]
    rows = choose_threads(_emails(*names), ids, known or {}, {} if subjects is None else subjects)
    return [row.thread_id for row in rows]


def _head(subject: str, own: str | None = None, reply_to: str | None = None) -> MessageIds:
    return ids_from_header(message(subject, message_id=own, reply_to=reply_to).split(
        b"\r\n\r\n")[0] + b"\r\n")


def test_ids_from_the_header() -> None:
    header = (b"Message-ID: <own@x>\r\nIn-Reply-To: <parent@x> (comment)\r\n"
              b"References: <a@x>\r\n <b@x>  <parent@x>\r\nSubject: Re: [list]\r\n Hi\r\n")
    found = ids_from_header(header)
    assert found == MessageIds("own@x", ("parent@x",), ("a@x", "b@x", "parent@x"), "Hi")
    assert found.lookup_order() == ["parent@x", "b@x", "a@x", "own@x"]
    assert ids_from_header(b"Subject: none\r\n") == MessageIds(None, (), (), "none")
    assert ids_from_header(b"Subject: Re:  \r\n").subject == ""
    assert ids_from_header(b"Subject: Fwd: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n").subject == "Grüße"
    many = b"References: " + b" ".join(b"<%d@x>" % n for n in range(300)) + b"\r\n"
    kept = ids_from_header(many).references
    assert len(kept) == MAX_THREAD_MESSAGE_IDS and kept[-1] == "299@x"


def test_ids_from_the_stored_envelope_when_the_bytes_are_gone() -> None:
    meta = message_meta(message("Re: =?utf-8?q?Gr=C3=BC=C3=9Fe?=", message_id="m@x",
                                reply_to="p@x"))  # fmt: skip
    assert ids_from_meta(meta) == MessageIds("m@x", ("p@x",), (), "Grüße")
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
    rows = choose_threads(_emails("x"), [newest], table, {})
    assert rows[0].message_ids == ("b@x", "a@x", "c@x")
    assert table == {"a@x": "Ta", "b@x": "Tb", "c@x": "Tb"}  # first owner kept


def test_roots_with_the_same_base_subject_are_gathered() -> None:
    # RFC 5256 §3 step 5: unlinked Emails whose base subjects match are one thread.
    assert _threads([_head("Hello", "1@x"), _head("Re: Hello", "2@x")]) == ["Tb0", "Tb0"]
    assert _threads([_head("Hello", "1@x"), _head("Hello world", "2@x")]) == ["Tb0", "Tb1"]
    assert _threads([_head("HELLO"), _head("re: [list] hello (fwd)")]) == ["Tb0", "Tb0"]
    assert _threads([_head("Re:"), _head("Re:")]) == ["Tb0", "Tb1"]  # empty: never gathered
    assert _threads([_head("Re: Hello"), _head("Hello")]) == ["Tb0", "Tb0"]  # reply first
    # A root answering a message that is not here (RFC 5256's dummy) is gathered too.
    assert _threads([_head("Hello"), _head("Re: Hello", "2@x", "gone@x")]) == ["Tb0", "Tb0"]


def test_a_linked_email_keeps_its_link_and_names_no_thread() -> None:
    subjects: dict[str, str] = {}
    emails = _emails("a", "b", "c", "d", "e")
    ids = [_head("Hello", "a@x"), _head("Other", "b@x"),
           _head("Re: Other", "c@x", "a@x"),  # linked to "Hello": its subject does not move it
           _head("Renamed", "d@x", "a@x"),  # linked: "Renamed" names no thread
           _head("Renamed", "e@x")]  # fmt: skip
    rows = choose_threads(emails, ids, {}, subjects)
    assert [row.thread_id for row in rows] == ["Ta", "Tb", "Ta", "Ta", "Te"]
    # Only the Email that starts a thread records its subject; the table keeps the first.
    assert [row.subject_digest is not None for row in rows] == [True, True, False, False, True]
    assert subjects == {ids[0].subject_digest(): "Ta", ids[1].subject_digest(): "Tb",
                        ids[4].subject_digest(): "Te"}  # fmt: skip
    # A stored subject counts like one from this batch.
    later = _threads([_head("Re: Renamed", "f@x")], subjects=dict(subjects))
    assert later == ["Te"]


async def test_catch_up_is_in_arrival_order_and_runs_once(api: Api) -> None:
    # The reply is saved first but with the later internal date: arrival order counts.
    reply = await api.deliver(message("x", message_id="r@x", reply_to="p@x"), minutes=9)
    parent = await api.deliver(message("y", message_id="p@x"), minutes=1)
    assert await assign_threads(api.runtime, api.account.id) == 2
    assert await assign_threads(api.runtime, api.account.id) == 0
    assert await thread_ids(api.runtime, api.account.id, [reply, parent]) == {
        reply: "T" + reply, parent: "T" + reply}
    late = await api.deliver(message("z", message_id="l@x", references="<p@x>"))
    assert await thread_ids(api.runtime, api.account.id, [late]) == {late: "T" + reply}


async def test_subjects_gather_across_runs_and_ids_stay(api: Api) -> None:
    account = api.account.id
    hello = await api.deliver(message("Hello", message_id="h@x"))
    other = await api.deliver(message("Other", message_id="o@x"))
    first = await thread_ids(api.runtime, account, [hello, other])
    assert first == {hello: "T" + hello, other: "T" + other}
    answer = await api.deliver(message("Re: Hello", message_id="a@x"))  # no references
    world = await api.deliver(message("Hello world", message_id="w@x"))
    linked = await api.deliver(message("Re: Other", message_id="l@x", reply_to="h@x"))
    # A reply to the Email gathered by subject finds the thread by its Message-ID.
    renamed = await api.deliver(message("Changed", message_id="c@x", references="<a@x>"))
    found = await thread_ids(api.runtime, account, [hello, other, answer, world, linked,
                                                    renamed])  # fmt: skip
    assert found == {hello: "T" + hello, other: "T" + other, answer: "T" + hello,
                     world: "T" + world, linked: "T" + hello, renamed: "T" + hello}
    assert await assign_threads(api.runtime, account) == 0


async def test_concurrent_catch_ups_agree(api: Api) -> None:
    blob_ids = [await api.deliver(message(f"s{n}", message_id=f"{n}@x", reply_to=f"{n - 1}@x"))
                for n in range(30)]  # fmt: skip
    counts = await asyncio.gather(*(assign_threads(api.runtime, api.account.id)
                                    for _ in range(4)))  # fmt: skip
    assert sorted(counts) == [0, 0, 0, 30]
    found = await api.store.jmap_thread_ids(api.account.id, blob_ids)
    assert set(found.values()) == {"T" + blob_ids[0]}


async def test_a_message_whose_bytes_are_gone_threads_from_its_envelope(api: Api) -> None:
    parent = await api.deliver(message("one", message_id="p@x"))
    orphan = await api.deliver(message("two", message_id="o@x", reply_to="p@x"))
    await api.runtime.blobs.delete(orphan)
    assert await thread_ids(api.runtime, api.account.id, [orphan]) == {orphan: "T" + parent}
    gone = await api.deliver(message("Re: one", message_id="g@x"))  # by its subject
    await api.runtime.blobs.delete(gone)
    assert await thread_ids(api.runtime, api.account.id, [gone]) == {gone: "T" + parent}


# -- the thread keeper -------------------------------------------------------------------


async def _threaded(runtime: Runtime, account_id: int, blob_id: str) -> str:
    """Poll the store until the Email has a thread (the keeper works on its own)."""
    async with asyncio.timeout(20):
        while not (found := await runtime.store.jmap_thread_ids(account_id, [blob_id])):
            await asyncio.sleep(0.02)
    return found[blob_id]


async def test_the_keeper_threads_mail_as_it_arrives(api: Api) -> None:
    keeper = ThreadKeeper(api.runtime, pause=0.01)
    keeper.start()
    try:
        hello = await api.deliver(message("Hello", message_id="h@x"))
        assert await _threaded(api.runtime, api.account.id, hello) == "T" + hello
        answer = await api.deliver(message("Re: Hello", message_id="a@x"))
        assert await _threaded(api.runtime, api.account.id, answer) == "T" + hello
    finally:
        await keeper.stop()
    assert api.runtime.feed._watchers == []  # stopped watching the feed
    assert await assign_threads(api.runtime, api.account.id) == 0  # nothing left to do


def _append(account_id: int) -> Change:
    return Change(account_id, 1, frozenset({"append"}))


async def test_a_round_is_bounded_and_only_appends_count(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    async def record(runtime: Runtime, account_id: int) -> int:
        seen.append(account_id)
        return 1

    monkeypatch.setattr(threadkeeper, "assign_threads", record)
    keeper = ThreadKeeper(api.runtime)
    keeper.note(Change(999, 1, frozenset({"flags", "expunge"})))  # no new Email
    for account_id in [*range(1, 121), 5]:  # noted twice: threaded once
        keeper.note(_append(account_id))
    assert await keeper.run_round() == ACCOUNTS_PER_ROUND
    assert seen == list(range(1, ACCOUNTS_PER_ROUND + 1))
    assert await keeper.run_round() == ACCOUNTS_PER_ROUND
    assert await keeper.run_round() == 120 - 2 * ACCOUNTS_PER_ROUND
    assert await keeper.run_round() == 0
    assert seen == list(range(1, 121))


async def test_a_failing_account_is_logged_and_retried_later(
        api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    failures = {7: 1}

    async def flaky(runtime: Runtime, account_id: int) -> int:
        if failures.get(account_id, 0) > 0:
            failures[account_id] -= 1
            raise RuntimeError("broken")
        return 1

    monkeypatch.setattr(threadkeeper, "assign_threads", flaky)
    keeper = ThreadKeeper(api.runtime, retry=3600)
    keeper.note(_append(7))
    keeper.note(_append(8))
    with caplog.at_level(logging.ERROR, logger=threadkeeper.__name__):
        assert await keeper.run_round() == 1  # account 8 threaded despite account 7
    assert "account 7 failed" in caplog.text
    keeper.note(_append(7))  # new mail: the retry, not this note, covers it
    assert await keeper.run_round() == 0
    keeper.retry = 0
    keeper.note(_append(9))
    keeper._failed[7] = 0.0  # its retry is due
    assert await keeper.run_round() == 2


# -- a whole App: SMTP delivery, no JMAP request -------------------------------------------


def test_smtp_delivery_gets_its_thread_without_a_jmap_request(web_app: StartWebApp) -> None:
    with web_app(ENABLE_JMAP=1, ENABLE_DNSBL=0) as app:
        assert app.app.thread_keeper is not None
        store = app.runtime.store
        account = account_of(app, USER)
        inbox = app.call(store.get_mailbox(account.id, "INBOX"))
        assert inbox is not None

        def threads() -> dict[str, str]:
            rows = app.call(store.list_messages(inbox.id))
            found = app.call(store.jmap_thread_ids(account.id, [row.blob_id for row in rows]))
            return found if len(found) == len(rows) else {}

        send_from_outside(app, "Hello")
        wait_until(lambda: len(threads()) == 1, "the first delivery threaded", seconds=30)
        send_from_outside(app, "Re: Hello")
        wait_until(lambda: len(threads()) == 2, "the second delivery threaded", seconds=30)
        assert len(set(threads().values())) == 1  # gathered by subject
