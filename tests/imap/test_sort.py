"""SORT, UID SORT and SORT=DISPLAY (RFC 5256 §3, RFC 5957), ESORT and CONTEXT=SORT
(RFC 5267), PARTIAL (RFC 9394) on real sockets, with imap-tools and a scripted client; and
a big SORT that must not keep another user's NOOP waiting (issue 17)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imap_tools import MailBox

from postroom.imap.commands.sort import effective_criteria
from postroom.imap.wire.commands import parse_command
from postroom.imap.wire.commands.sort import SortCriterion
from postroom.imap.wire.lexer import ParseError
from postroom.mail.mimetree import message_meta
from postroom.store.api import NewMessage
from tests.conftest import make_config
from tests.imap.conftest import PASSWORD, USER, ImapThread, RawClient, login_raw
from tests.support.storage import is_postgres_chosen

BOB = "bob@example.test"
# Base subjects: banana, apple, cherry, apple. Sent dates (UTC): Jan 2 10:00, Jan 1 10:00,
# Jan 1 13:00, none (the internal date: now). First From mailboxes: b, z, a, A.
MESSAGES = [
    (b'From: "Zed" <b@x.example>\r\nTo: c@x.example\r\nCc: a@x.example\r\n'
     b"Subject: Re: banana\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\n" + b"1" * 400),
    (b"From: Alice <z@x.example>\r\nTo: a@x.example\r\nSubject: apple\r\n"
     b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n" + b"2" * 100),
    (b'From: "bob" (the builder) <a@x.example>\r\nSubject: [list] Fwd: cherry (fwd)\r\n'
     b"Date: Mon, 1 Jan 2024 08:00:00 -0500\r\n\r\n" + b"3" * 300),
    (b"From: <A@x.example>\r\nTo: B@x.example\r\nSubject: =?utf-8?q?apple?=\r\n\r\n"
     + b"4" * 200),
]  # fmt: skip


@pytest.fixture
def sorted_server(imap_server: ImapThread) -> ImapThread:
    for raw in MESSAGES:
        imap_server.deliver(raw)
    return imap_server


@pytest.fixture
def client(sorted_server: ImapThread, client_tls: ssl.SSLContext) -> Iterator[RawClient]:
    raw = login_raw(sorted_server, client_tls)
    assert raw.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    yield raw
    raw.close()


def _sort(client: RawClient, command: bytes) -> list[int]:
    lines = client.command(b"Q", command)
    assert lines[-1].startswith(b"Q OK"), lines
    found = next(line for line in lines if line.startswith(b"* SORT"))
    return [int(word) for word in found[len(b"* SORT"):].split()]


SORT_CASES = [
    (b"SUBJECT", [2, 4, 1, 3]),  # base subjects; equal ones keep mailbox order
    (b"REVERSE SUBJECT", [3, 1, 2, 4]),  # REVERSE leaves ties in mailbox order
    (b"DATE", [2, 3, 1, 4]),  # sent dates in UTC; without Date the internal date
    (b"REVERSE DATE", [4, 1, 3, 2]),
    (b"FROM", [3, 4, 1, 2]),  # addr-mailbox, i;ascii-casemap: "a" = "A"
    (b"TO", [3, 2, 4, 1]),  # no To sorts first
    (b"CC", [2, 3, 4, 1]),
    (b"DISPLAYFROM", [4, 2, 3, 1]),  # A@x.example, Alice, bob, Zed
    (b"DISPLAYTO", [3, 2, 4, 1]),
    (b"ARRIVAL", [1, 2, 3, 4]),
    (b"SIZE", [2, 4, 3, 1]),
    (b"SUBJECT REVERSE DATE", [4, 2, 1, 3]),
    (b"REVERSE ARRIVAL", [4, 3, 2, 1]),
]  # fmt: skip


def test_sort_keys(client: RawClient) -> None:
    for criteria, order in SORT_CASES:
        assert _sort(client, b"SORT (" + criteria + b") UTF-8 ALL") == order, criteria


def test_sort_with_search_criteria_uid_sort_and_charsets(client: RawClient) -> None:
    assert _sort(client, b"SORT (SUBJECT) UTF-8 NOT FROM alice") == [4, 1, 3]
    assert _sort(client, b"SORT (DATE) KOI8-R SUBJECT apple") == [2, 4]
    client.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    client.command(b"e", b"EXPUNGE")
    assert _sort(client, b"UID SORT (SUBJECT) US-ASCII ALL") == [2, 4, 3]
    assert _sort(client, b"SORT (SUBJECT) US-ASCII ALL") == [1, 3, 2]
    lines = client.command(b"c", b"SORT (DATE) X-NOPE ALL")
    assert lines[-1].startswith(b'c NO [BADCHARSET ("UTF-8" "US-ASCII" '), lines[-1]
    for bad in (b"SORT (FOO) UTF-8 ALL", b"SORT () UTF-8 ALL", b"SORT (DATE) ALL",
                b"SORT DATE UTF-8 ALL", b"SORT (REVERSE) UTF-8 ALL",
                b"SORT RETURN (SAVE) (DATE) UTF-8 ALL",
                b"SORT RETURN (ALL PARTIAL 1:2) (DATE) UTF-8 ALL"):  # fmt: skip
        assert client.command(b"b", bad)[-1].startswith(b"b BAD"), bad


def test_sort_modseq(client: RawClient) -> None:
    client.command(b"s", b"STORE 3 +FLAGS (x)")
    lines = client.command(b"m", b"FETCH 3 (MODSEQ)")
    [found] = [re.search(rb"MODSEQ \((\d+)\)", line) for line in lines
               if line.startswith(b"* 3 FETCH")]  # fmt: skip
    assert found is not None
    modseq = int(found.group(1))
    assert client.command(b"q", b"SORT (SUBJECT) UTF-8 MODSEQ 1")[0] == \
        b"* SORT 2 4 1 3 (MODSEQ %d)" % modseq  # fmt: skip


def test_esort_return_options(client: RawClient) -> None:
    # RFC 5267 §3.2: MIN/MAX are the first/last sorted; ALL keeps the sort order.
    assert client.command(b"e", b"SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL")[0] \
        == b'* ESEARCH (TAG "e") MIN 2 MAX 3 ALL 2,4,1,3 COUNT 4'  # fmt: skip
    assert client.command(b"f", b"UID SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL")[0] \
        == b'* ESEARCH (TAG "f") UID ALL 4,3,2,1'  # fmt: skip
    assert client.command(b"g", b"SORT RETURN (PARTIAL 2:3) (SUBJECT) UTF-8 ALL")[0] \
        == b'* ESEARCH (TAG "g") PARTIAL (2:3 4,1)'  # fmt: skip
    assert client.command(b"h", b"SORT RETURN (PARTIAL -1:-2) (DATE) UTF-8 ALL")[0] \
        == b'* ESEARCH (TAG "h") PARTIAL (-1:-2 1,4)'  # fmt: skip
    assert client.command(b"i", b"SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing")[0] \
        == b'* ESEARCH (TAG "i") COUNT 0'  # fmt: skip


def test_sort_update_context(sorted_server: ImapThread, client: RawClient) -> None:
    lines = client.command(b"U", b"UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL")
    assert lines == [b'* ESEARCH (TAG "U") UID', b"U OK UID SORT completed"]
    client.command(b"V", b"SORT RETURN (UPDATE MIN) (REVERSE SUBJECT) UTF-8 ALL")
    sorted_server.deliver(b"Subject: avocado\r\n\r\nx\r\n")
    lines = client.command(b"n", b"NOOP")
    # apple(2), apple(4), avocado(5), banana(1), cherry(3): UID 5 takes place 3.
    assert b'* ESEARCH (TAG "U") UID ADDTO (3 5)' in lines
    assert b'* ESEARCH (TAG "V") ADDTO (3 5)' in lines  # cherry banana avocado ...
    client.command(b"d", b"UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    lines = client.command(b"x", b"EXPUNGE")
    # Before the EXPUNGE (RFC 5267 §4.3.4): REVERSE SUBJECT has UID 2 fourth of five.
    assert lines[:3] == [b'* ESEARCH (TAG "U") UID REMOVEFROM (1 2)',
                         b'* ESEARCH (TAG "V") REMOVEFROM (4 2)', b"* 2 EXPUNGE"]
    assert client.command(b"c", b'CANCELUPDATE "U"')[-1].startswith(b"c OK")
    sorted_server.deliver(b"Subject: aardvark\r\n\r\nx\r\n")
    lines = client.command(b"n", b"NOOP")
    assert not any(line.startswith(b'* ESEARCH (TAG "U")') for line in lines)
    assert b'* ESEARCH (TAG "V") ADDTO (5 5)' in lines  # last in REVERSE SUBJECT order


def test_imap_tools_sorts(sorted_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    with MailBox("127.0.0.1", port=sorted_server.tls_port, ssl_context=client_tls).login(
            USER, PASSWORD, initial_folder="INBOX") as mailbox:
        _, data = mailbox.client.capability()
        capabilities = set(data[0].decode().split())
        assert {"SORT", "SORT=DISPLAY", "ESORT", "CONTEXT=SORT", "CONTEXT=SEARCH"} <= capabilities
        assert mailbox.uids("ALL", charset="UTF-8", sort="SUBJECT") == ["2", "4", "1", "3"]
        assert mailbox.uids("ALL", charset="UTF-8", sort=["REVERSE DATE"]) == [
            "4", "1", "3", "2"]
        assert mailbox.uids("ALL", charset="UTF-8", sort=["DISPLAYFROM", "SIZE"]) == [
            "4", "2", "3", "1"]
        subjects = [m.subject for m in mailbox.fetch(sort="REVERSE SUBJECT", charset="UTF-8",
                                                     mark_seen=False)]  # fmt: skip
        assert subjects == ["[list] Fwd: cherry (fwd)", "Re: banana", "apple", "apple"]


# -- loop safety --------------------------------------------------------------------------------
BIG = 2500 if is_postgres_chosen() else 6000  # PostgreSQL commits each append: slower to fill
STALL_LIMIT = 2.0


def _big_message(number: int) -> bytes:
    return (f"From: Sender {number % 97} <s{number % 89}@example.org>\r\nTo: {USER}\r\n"
            f"Subject: Re: report {(number * 7919) % BIG}\r\n"
            f"Date: Mon, {1 + number % 28} Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n").encode()


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory, server_cert: tuple[Path, Path]
               ) -> Iterator[tuple[ImapThread, dict[int, int]]]:  # fmt: skip
    """BIG messages, each its own blob and meta (nothing cached), appended concurrently
    so group commit takes them in batches; with the message number of each UID."""
    with contextlib.ExitStack() as stack:
        storage: dict[str, object] = {}
        if is_postgres_chosen():  # a module's server leases its own database
            from tests.postgres.pgserver import new_database

            storage = {"STORAGE": "postgresql", "DATABASE_URL": stack.enter_context(
                new_database())}  # fmt: skip
        config = make_config(tmp_path_factory.mktemp("big-sort"), server_cert, **storage)
        server = stack.enter_context(ImapThread(config))
        server.call(server.rt.accounts.add_account(BOB, PASSWORD))
        numbers: dict[int, int] = {}

        async def add(box_id: int, number: int, now: dt.datetime) -> None:
            raw = _big_message(number)
            blob_id = await server.rt.blobs.put(raw)
            row = await server.rt.store.append_message(box_id, NewMessage(
                blob_id, len(raw), now, frozenset(), message_meta(raw)))
            numbers[row.uid] = number

        async def fill() -> None:
            account = await server.rt.store.get_account(USER)
            assert account is not None
            box = await server.rt.store.get_mailbox(account.id, "INBOX")
            assert box is not None
            now = dt.datetime.now(dt.UTC)
            for start in range(0, BIG, 500):
                await asyncio.gather(*(add(box.id, number, now)
                                       for number in range(start, min(start + 500, BIG))))

        server.call(fill(), timeout=600)
        yield server, numbers


def test_a_big_sort_does_not_stall_other_users(
    big_server: tuple[ImapThread, dict[int, int]], client_tls: ssl.SSLContext
) -> None:
    server, number_of_uid = big_server
    sorter = login_raw(server, client_tls)
    victim = login_raw(server, client_tls, BOB)
    assert sorter.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    assert victim.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    answer: list[bytes] = []
    thread = threading.Thread(target=lambda: answer.extend(sorter.command(
        b"A", b"UID SORT (SUBJECT REVERSE DATE DISPLAYFROM) UTF-8 ALL")))
    began = time.monotonic()
    thread.start()
    slowest, noops = 0.0, 0
    try:
        while thread.is_alive() or noops == 0:
            sent = time.monotonic()
            assert victim.command(b"N", b"NOOP")[-1].startswith(b"N OK")
            slowest = max(slowest, time.monotonic() - sent)
            noops += 1
            if time.monotonic() - began > 120:
                break
        thread.join(120)
    finally:
        sorter.close()
        victim.close()
    print(f"{noops} NOOPs, slowest {slowest:.2f} s; SORT took {time.monotonic() - began:.2f} s")
    assert answer[-1].startswith(b"A OK"), answer[-1:]
    uids = [int(word) for word in answer[0][len(b"* SORT"):].split()]
    assert sorted(uids) == sorted(number_of_uid)
    subjects = [f"report {(number_of_uid[uid] * 7919) % BIG}" for uid in uids]
    assert subjects == sorted(subjects)
    assert slowest < STALL_LIMIT, f"another user waited {slowest:.1f} s for NOOP"


def test_repeated_sort_keys_cost_one_sort(client: RawClient) -> None:
    """A key again after its first use decides nothing: 5,000 of them sort like one."""
    began = time.monotonic()
    assert _sort(client, b"SORT (SUBJECT" + b" REVERSE SUBJECT DATE" * 2500
                 + b") UTF-8 ALL") == [2, 4, 1, 3]  # fmt: skip
    assert time.monotonic() - began < 2.0
    assert effective_criteria([SortCriterion("DATE"), SortCriterion("DATE", True),
                               SortCriterion("SIZE")]) == [SortCriterion("DATE"),
                                                           SortCriterion("SIZE")]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"SORT", b"UID SORT", b"RETURN", b"(", b")", b" ", b"DATE",
                                 b"REVERSE", b"SUBJECT", b"UTF-8", b"KOI8-R", b"ALL",
                                 b"PARTIAL", b"1:5", b"-1:-5", b"MIN", b"UPDATE", b"\"x\"",
                                 b"CANCELUPDATE", b"0", b"*", b"{1}\r\nx"]),
                max_size=12).map(b"".join))  # fmt: skip
def test_sort_parser_never_fails_but_with_parse_error(text: bytes) -> None:
    with contextlib.suppress(ParseError):  # anything else fails the test
        parse_command(b"a " + text)
