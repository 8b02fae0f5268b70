"""Issue 17, mailbox state over real sockets: \\Recent across a deleted and re-created
mailbox and under EXAMINE, FLAGS announced before a new keyword shows, the HIGHESTMODSEQ
of the first CONDSTORE-enabling command, LIST-EXTENDED and LSUB corners, names that
name no mailbox (NO, not BAD), SEARCH beyond EXISTS, STATUS SIZE and DELETED."""

from __future__ import annotations

import dataclasses
import datetime as dt
import imaplib
import re
import ssl
from typing import cast

import pytest

from postroom.imap.selected import (
    ExistsUpdate,
    KeywordsUpdate,
    mailbox_flags,
    selected_from_summary,
)
from postroom.imap.wire.commands import parse_command
from postroom.imap.wire.commands.mailboxes import Delete, List, Rename, Status
from postroom.imap.wire.commands.select import Examine
from postroom.imap.wire.lexer import ParseError
from postroom.store.api import Mailbox, MessageRow, SelectSummary, Store
from tests.imap.conftest import (
    PASSWORD,
    USER,
    ImapThread,
    RawClient,
    login_raw,
    simple_message,
)


def untagged(lines: list[bytes], prefix: bytes) -> list[bytes]:
    return [line for line in lines if line.startswith(prefix)]


def index_of(lines: list[bytes], prefix: bytes) -> int:
    return next(n for n, line in enumerate(lines) if line.startswith(prefix))


def create(client: RawClient, name: bytes) -> None:
    assert client.command(b"c", b"CREATE " + name)[-1].startswith(b"c OK")


# -- \Recent ------------------------------------------------------------------------------
def test_recent_survives_delete_and_recreate(imap_server: ImapThread,
                                             client_tls: ssl.SSLContext) -> None:
    alice = login_raw(imap_server, client_tls)
    create(alice, b"Reborn")
    for n in range(3):
        imap_server.deliver(simple_message(f"old {n}"), mailbox="Reborn")
    assert b"* 3 RECENT" in alice.command(b"s", b"SELECT Reborn")
    assert alice.command(b"u", b"UNSELECT")[-1].startswith(b"u OK")
    assert alice.command(b"d", b"DELETE Reborn")[-1].startswith(b"d OK")
    create(alice, b"Reborn")  # on SQLite the same row id as before
    for n in range(2):
        imap_server.deliver(simple_message(f"new {n}"), mailbox="Reborn")
    other = login_raw(imap_server, client_tls)
    assert b'* STATUS "Reborn" (RECENT 2)' in other.command(b"t", b"STATUS Reborn (RECENT)")
    lines = alice.command(b"s", b"SELECT Reborn")
    assert b"* 2 EXISTS" in lines and b"* 2 RECENT" in lines
    assert alice.command(b"r", b"SEARCH RECENT")[0] == b"* SEARCH 1 2"
    alice.close()
    other.close()


def test_selected_mailbox_deleted_and_recreated_ends_the_session(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:  # fmt: skip
    watcher = login_raw(imap_server, client_tls)
    other = login_raw(imap_server, client_tls)
    create(other, b"Tmp")
    imap_server.deliver(simple_message("old"), mailbox="Tmp")
    watcher.command(b"s", b"SELECT Tmp")
    assert other.command(b"d", b"DELETE Tmp")[-1].startswith(b"d OK")
    create(other, b"Tmp")  # SQLite: the same row id, another mailbox
    imap_server.deliver(simple_message("new"), mailbox="Tmp")
    watcher.send(b"n NOOP\r\n")
    assert watcher.line() == b"* BYE the selected mailbox was deleted"  # then closed
    watcher.close()
    other.close()


def test_examine_reports_recent_without_claiming(imap_server: ImapThread,
                                                 client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    imap_server.deliver(simple_message("two"), flags=frozenset({"\\Seen"}))
    looker = login_raw(imap_server, client_tls)
    lines = looker.command(b"e", b"EXAMINE INBOX")
    assert b"* 2 RECENT" in lines and lines[-1].startswith(b"e OK [READ-ONLY]")
    assert looker.command(b"r", b"SEARCH RECENT")[0] == b"* SEARCH 1 2"
    assert looker.command(b"n", b"SEARCH NEW")[0] == b"* SEARCH 1"
    assert looker.command(b"o", b"SEARCH OLD")[0] == b"* SEARCH"
    # EXAMINE claimed nothing: the next SELECT still gets both, and STATUS agrees.
    owner = login_raw(imap_server, client_tls)
    assert owner.command(b"t", b"STATUS INBOX (RECENT)")[0] == b'* STATUS "INBOX" (RECENT 2)'
    assert b"* 2 RECENT" in owner.command(b"s", b"SELECT INBOX")
    assert owner.command(b"r", b"SEARCH RECENT")[0] == b"* SEARCH 1 2"
    # The selecting session holds them as \Recent; STATUS of its own mailbox says so.
    assert owner.command(b"t", b"STATUS INBOX (RECENT)")[0] == b'* STATUS "INBOX" (RECENT 2)'
    late = login_raw(imap_server, client_tls)
    assert late.command(b"t", b"STATUS INBOX (RECENT)")[0] == b'* STATUS "INBOX" (RECENT 0)'
    assert b"* 0 RECENT" in late.command(b"s", b"SELECT INBOX")
    assert late.command(b"o", b"SEARCH OLD")[0] == b"* SEARCH 1 2"
    assert late.command(b"n", b"SEARCH NEW")[0] == b"* SEARCH"
    # A message arriving while EXAMINEd is \Recent there and still for the next SELECT.
    imap_server.deliver(simple_message("three"))
    lines = looker.command(b"p", b"NOOP")
    assert b"* 3 EXISTS" in lines and b"* 3 RECENT" in lines
    assert b"* 1 RECENT" in late.command(b"p", b"NOOP")  # `late` claims it
    for client in (looker, owner, late):
        client.close()


def test_imaplib_sees_recent_after_recreate(imap_server: ImapThread,
                                            client_tls: ssl.SSLContext) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_tls,
                               timeout=10)
    client.login(USER, PASSWORD)
    client.create("Box")
    imap_server.deliver(simple_message("a"), mailbox="Box")
    client.select("Box")
    client.close()
    client.delete("Box")
    client.create("Box")
    imap_server.deliver(simple_message("b"), mailbox="Box")
    client.select("Box")
    assert client.response("RECENT") == ("RECENT", [b"1"])
    client.logout()


# -- keywords -----------------------------------------------------------------------------
def test_store_of_new_keyword_announces_flags_first(imap_server: ImapThread,
                                                    client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    alice = login_raw(imap_server, client_tls)
    lines = alice.command(b"s", b"SELECT INBOX")
    assert b"$Work" not in untagged(lines, b"* FLAGS")[0]
    lines = alice.command(b"a", b"STORE 1 +FLAGS ($Work)")
    flags = index_of(lines, b"* FLAGS")
    assert b"$Work" in lines[flags]
    assert lines[flags + 1].startswith(b"* OK [PERMANENTFLAGS (")
    assert b"$Work" in lines[flags + 1] and b"\\*" in lines[flags + 1]
    assert flags + 1 < index_of(lines, b"* 1 FETCH") and b"$Work" in lines[-2]
    lines = alice.command(b"b", b"STORE 1 +FLAGS ($Work \\Flagged)")  # nothing new now
    assert untagged(lines, b"* FLAGS") == [] and untagged(lines, b"* OK [PERMANENTFLAGS") == []
    alice.close()


def test_keywords_from_other_sessions_announced_first(imap_server: ImapThread,
                                                      client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    alice = login_raw(imap_server, client_tls)
    bob = login_raw(imap_server, client_tls)
    alice.command(b"s", b"SELECT INBOX")
    bob.command(b"s", b"SELECT INBOX")
    assert bob.command(b"a", b"STORE 1 +FLAGS.SILENT ($Other)")[-1].startswith(b"a OK")
    lines = alice.command(b"n", b"NOOP")
    assert b"$Other" in lines[index_of(lines, b"* FLAGS")]
    assert index_of(lines, b"* FLAGS") < index_of(lines, b"* 1 FETCH")
    # Seen by a FETCH first: FLAGS still goes out before the FETCH shows the keyword.
    assert bob.command(b"b", b"STORE 1 +FLAGS.SILENT ($Third)")[-1].startswith(b"b OK")
    lines = alice.command(b"f", b"FETCH 1 (FLAGS)")
    assert b"$Third" in lines[index_of(lines, b"* FLAGS")]
    assert index_of(lines, b"* FLAGS") < index_of(lines, b"* 1 FETCH")
    # A message appended with a new keyword: FLAGS before its EXISTS.
    raw = simple_message("two")
    bob.send(b"p APPEND INBOX ($Fresh) {%d}\r\n" % len(raw))
    assert bob.line().startswith(b"+")
    bob.send(raw + b"\r\n")
    assert bob.until_tagged(b"p")[-1].startswith(b"p OK")
    lines = alice.command(b"n", b"NOOP")
    assert b"$Fresh" in lines[index_of(lines, b"* FLAGS")]
    assert index_of(lines, b"* FLAGS") < index_of(lines, b"* 2 EXISTS")
    alice.close()
    bob.close()


def test_examine_announces_keywords_without_permanent_flags(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:  # fmt: skip
    imap_server.deliver(simple_message("one"))
    looker = login_raw(imap_server, client_tls)
    writer = login_raw(imap_server, client_tls)
    looker.command(b"e", b"EXAMINE INBOX")
    writer.command(b"s", b"SELECT INBOX")
    writer.command(b"a", b"STORE 1 +FLAGS.SILENT ($Seen2)")
    lines = looker.command(b"n", b"NOOP")
    assert b"$Seen2" in lines[index_of(lines, b"* FLAGS")]
    assert lines[index_of(lines, b"* FLAGS") + 1].startswith(b"* OK [PERMANENTFLAGS ()]")
    looker.close()
    writer.close()


# -- CONDSTORE ----------------------------------------------------------------------------
def _highest(lines: list[bytes]) -> int:
    found = [re.search(rb"\[HIGHESTMODSEQ (\d+)\]", line) for line in lines]
    values = [int(match.group(1)) for match in found if match]
    assert len(values) == 1, lines
    return values[0]


def test_first_condstore_command_reports_highestmodseq(imap_server: ImapThread,
                                                       client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    imap_server.deliver(simple_message("two"))
    for tag, command, first in ((b"f", b"FETCH 1 (MODSEQ)", b"* 1 FETCH"),
                                (b"q", b"SEARCH MODSEQ 1", b"* SEARCH"),
                                (b"t", b"STORE 1 (UNCHANGEDSINCE 1000) +FLAGS (\\Seen)",
                                 b"* 1 FETCH")):  # fmt: skip
        client = login_raw(imap_server, client_tls)
        highest = _highest(client.command(b"s", b"SELECT INBOX"))
        lines = client.command(tag, command)
        assert lines[0] == b"* OK [HIGHESTMODSEQ %d] highest mod-sequence" % highest, lines
        assert index_of(lines, first) > 0
        again = client.command(tag, command)  # CONDSTORE is on now: said once
        assert not [line for line in again if b"[HIGHESTMODSEQ" in line]
        client.close()
    # SELECT (CONDSTORE) reports HIGHESTMODSEQ once, as every SELECT does.
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    _highest(client.command(b"c", b"SELECT INBOX (CONDSTORE)"))
    client.close()


# -- LIST-EXTENDED and LSUB ---------------------------------------------------------------
def test_recursivematch_needs_subscribed(imap_server: ImapThread,
                                         client_tls: ssl.SSLContext) -> None:
    alice = login_raw(imap_server, client_tls)
    for options in (b"(RECURSIVEMATCH)", b"(REMOTE RECURSIVEMATCH)",
                    b"(SPECIAL-USE RECURSIVEMATCH)"):
        assert alice.command(b"l", b'LIST ' + options + b' "" *')[-1].startswith(b"l BAD")
    lines = alice.command(b"m", b'LIST (SUBSCRIBED RECURSIVEMATCH REMOTE) "" *')
    assert lines[-1].startswith(b"m OK")
    alice.close()


def test_subscribed_deleted_mailbox_is_nonexistent(imap_server: ImapThread,
                                                   client_tls: ssl.SSLContext) -> None:
    alice = login_raw(imap_server, client_tls)
    create(alice, b"Fruit/Peach")
    alice.command(b"a", b"SUBSCRIBE Fruit/Peach")
    alice.command(b"b", b"DELETE Fruit/Peach")
    lines = alice.command(b"l", b'LIST (SUBSCRIBED) "" "Fruit/*"')
    assert lines[:-1] == [b'* LIST (\\Subscribed \\NonExistent) "/" "Fruit/Peach"']
    alice.close()


def test_childinfo_only_for_descendants_the_pattern_misses(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:  # fmt: skip
    """RFC 5258 §5 example 9."""
    alice = login_raw(imap_server, client_tls)
    for name in (b"foo2/bar1", b"foo2/bar2", b"baz2/bar2", b"baz2/bar22", b"baz2/bar222",
                 b"eps2/mamba", b"qux2/bar2"):
        create(alice, name)
    for name in (b"foo2/bar1", b"foo2/bar2", b"baz2/bar2", b"baz2/bar22", b"baz2/bar222",
                 b"eps2", b"eps2/mamba", b"qux2/bar2"):
        assert alice.command(b"s", b"SUBSCRIBE " + name)[-1].startswith(b"s OK")
    lines = alice.command(b"l", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*2"')
    listed = {}
    for line in lines[:-1]:
        match = re.fullmatch(rb'\* LIST \(([^)]*)\) "/" "([^"]+)"( .*)?', line)
        assert match, line
        listed[match.group(2)] = (match.group(1).split(), match.group(3) or b"")
    assert set(listed) == {b"foo2", b"foo2/bar2", b"baz2/bar2", b"baz2/bar22",
                           b"baz2/bar222", b"eps2", b"qux2/bar2"}  # fmt: skip
    childinfo = b' ("CHILDINFO" ("SUBSCRIBED"))'
    assert {name for name, (_, extra) in listed.items() if extra} == {b"foo2", b"eps2"}
    assert listed[b"foo2"][1] == childinfo and listed[b"eps2"][1] == childinfo
    assert b"\\Subscribed" not in listed[b"foo2"][0]
    assert b"\\Subscribed" in listed[b"eps2"][0]
    alice.close()


def test_lsub_percent_lists_unsubscribed_parents_noselect(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:  # fmt: skip
    alice = login_raw(imap_server, client_tls)
    create(alice, b"news/comp/mail/misc")
    alice.command(b"s", b"SUBSCRIBE news/comp/mail/misc")
    lines = alice.command(b"a", b'LSUB "" "news/comp/%"')
    assert lines[:-1] == [b'* LSUB (\\Noselect) "/" "news/comp/mail"']
    lines = alice.command(b"b", b'LSUB "" "news/%/%"')
    assert lines[:-1] == [b'* LSUB (\\Noselect) "/" "news/comp/mail"']
    lines = alice.command(b"c", b'LSUB "" "n*"')
    assert lines[:-1] == [b'* LSUB () "/" "news/comp/mail/misc"']
    alice.close()


def test_lsub_percent_with_imaplib(imap_server: ImapThread,
                                  client_tls: ssl.SSLContext) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_tls,
                               timeout=10)
    client.login(USER, PASSWORD)
    client.create("Lists/python/dev")
    client.subscribe("Lists/python/dev")
    typ, data = client.lsub('""', "%")  # the default mailboxes come subscribed
    assert typ == "OK" and b'(\\Noselect) "/" "Lists"' in data and b'() "/" "INBOX"' in data
    client.logout()


# -- names that name no mailbox, SEARCH beyond EXISTS ------------------------------------
def test_odd_legal_names_are_no_such_mailbox(imap_server: ImapThread,
                                             client_tls: ssl.SSLContext) -> None:
    alice = login_raw(imap_server, client_tls)
    create(alice, b"&-")  # a mailbox named "&": `&` alone must still not name it
    for command in (b"SELECT &", b"EXAMINE foo&bar", b"STATUS &Jjo (MESSAGES)",
                    b'SELECT "\xc3\x89t\xc3\xa9"', b'STATUS "Caf\xc3\xa9" (UIDNEXT)',
                    b"DELETE &", b'RENAME "\xc3\xa9" x', b"UNSUBSCRIBE &",
                    b"SELECT ]odd", b"SELECT Nowhere"):  # fmt: skip
        lines = alice.command(b"x", command)
        assert lines[-1].startswith(b"x NO [NONEXISTENT]"), (command, lines)
    for command in (b"CREATE &", b'CREATE "\xc3\xa9"', b"SUBSCRIBE &", b"RENAME INBOX &"):
        lines = alice.command(b"y", command)
        assert lines[-1].startswith(b"y NO [CANNOT]"), (command, lines)
    assert alice.command(b"s", b"EXAMINE &-")[-1].startswith(b"s OK")  # "&" is still there
    alice.command(b"c", b"UNSELECT")
    assert alice.command(b"u", b"ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT"
    assert alice.command(b"z", b'SELECT "\xc3\x89t\xc3\xa9"')[-1].startswith(
        b"z NO [NONEXISTENT]")
    assert alice.command(b"n", b"NOOP")[-1] == b"n OK NOOP completed"  # still alive
    alice.close()


def test_search_beyond_exists_is_empty(imap_server: ImapThread,
                                       client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    imap_server.deliver(simple_message("two"))
    alice = login_raw(imap_server, client_tls)
    alice.command(b"s", b"SELECT INBOX")
    assert alice.command(b"a", b"SEARCH RETURN () 1000") == [
        b'* ESEARCH (TAG "a")', b"a OK SEARCH completed"]
    assert alice.command(b"b", b"SEARCH 1000")[:-1] == [b"* SEARCH"]
    assert alice.command(b"c", b"SEARCH 2:1000")[:-1] == [b"* SEARCH 2"]
    assert alice.command(b"d", b"SEARCH 1,5:7")[:-1] == [b"* SEARCH 1"]
    assert alice.command(b"e", b"SEARCH RETURN (COUNT) 3:4")[0] == b'* ESEARCH (TAG "e") COUNT 0'
    create(alice, b"Empty")
    alice.command(b"f", b"SELECT Empty")
    assert alice.command(b"g", b"SEARCH 1")[:-1] == [b"* SEARCH"]
    alice.close()


# -- STATUS SIZE and DELETED --------------------------------------------------------------
def test_status_size_and_deleted(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    one, two = simple_message("one"), simple_message("two", body="x" * 500 + "\r\n")
    imap_server.deliver(one)
    imap_server.deliver(two, flags=frozenset({"\\Deleted"}))
    alice = login_raw(imap_server, client_tls)
    assert b"STATUS=SIZE" in alice.command(b"c", b"CAPABILITY")[0].split()
    lines = alice.command(b"s", b"STATUS INBOX (SIZE DELETED MESSAGES)")
    assert lines[0] == b'* STATUS "INBOX" (SIZE %d DELETED 1 MESSAGES 2)' % (len(one) + len(two))
    create(alice, b"Void")
    assert alice.command(b"t", b"STATUS Void (SIZE DELETED)")[0] == (
        b'* STATUS "Void" (SIZE 0 DELETED 0)')
    alice.close()


# -- pure parts ---------------------------------------------------------------------------
def test_parsers_mark_unusable_names_and_check_recursivematch() -> None:
    assert parse_command(b"a STATUS & (MESSAGES)") == Status(
        "a", "&", ("MESSAGES",), is_name_usable=False)
    assert parse_command(b"a RENAME Old &") == Rename(
        "a", "Old", "&", is_name_usable=True, is_new_name_usable=False)
    assert parse_command(b"a DELETE &-") == Delete("a", "&")  # "&" spelled right
    assert parse_command(b'a EXAMINE "\xc3\xa9"', is_utf8=True) == Examine("a", "\u00e9")
    for options in (b"(RECURSIVEMATCH)", b"(REMOTE RECURSIVEMATCH)",
                    b"(SPECIAL-USE RECURSIVEMATCH)"):
        with pytest.raises(ParseError):
            parse_command(b'a LIST ' + options + b' "" *')
    listed = parse_command(b'a LIST (RECURSIVEMATCH SUBSCRIBED) "" *')
    assert isinstance(listed, List)
    assert listed.selection == {"RECURSIVEMATCH", "SUBSCRIBED"}


def test_mailbox_flags_and_keyword_updates() -> None:
    update = mailbox_flags({"$b", "$a"}, is_read_only=False, keyword_limit=3)
    assert update.flags[-2:] == ("$a", "$b") and update.permanent_flags[-1] == "\\*"
    assert mailbox_flags({"$a"}, is_read_only=False, keyword_limit=1).permanent_flags[-1] == "$a"
    assert mailbox_flags({"$a"}, is_read_only=True, keyword_limit=9).permanent_flags == ()

    class Holder:  # stands in for a store: only a key for the \Recent claims
        pass

    mailbox = Mailbox(1, 1, "INBOX", 7, 2, 1, None, True, "Mabcdefghijklmnopqrstuv")
    store = cast(Store, Holder())
    def summary() -> SelectSummary:  # each SELECT reads its own (the view keeps the list)
        return SelectSummary([1], [frozenset({"$a"})], 1)

    view = selected_from_summary(store, mailbox, summary(), is_read_only=False,
                                 keyword_limit=5)
    assert view.take_keywords_update() is None  # SELECT told of $a
    row = MessageRow(1, 2, 2, "blob", 1, dt.datetime.now(dt.UTC), frozenset({"$new"}))
    assert view.note_appended(row, store)
    updates = view.take_updates(may_expunge=True, is_rev1=True)
    assert isinstance(updates[0], KeywordsUpdate) and "$new" in updates[0].flags
    assert isinstance(updates[1], ExistsUpdate)
    assert view.take_keywords_update() is None  # said once
    assert view.recent == {1, 2}
    other = selected_from_summary(store, mailbox, summary(), is_read_only=True)
    assert other.recent == set()  # claimed by `view`; a re-created mailbox has another key
    reborn = dataclasses.replace(mailbox, object_id="Mzyxwvutsrqponmlkjihgfed")
    assert selected_from_summary(store, reborn, summary(), is_read_only=True).recent == {1}
