"""NOTIFY (RFC 5465) over real sockets: unsolicited STATUS, LIST and selected-mailbox
responses between commands and in IDLE, each mailbox filter, the errors, NOTIFY NONE and
[NOTIFICATIONOVERFLOW]. Absence is shown by order, never by waiting: a second event that
must be reported proves the first one was handled and said nothing."""

from __future__ import annotations

import re
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.commands.notify import MAX_NOTIFY_MAILBOXES
from postroom.imap.wire.commands import parse_command
from postroom.imap.wire.commands.notify import MailboxFilter, Notify
from postroom.imap.wire.lexer import ParseError
from postroom.store.api import Change
from tests.imap.conftest import ImapThread, RawClient, login_raw, simple_message

STATUS_OTHER = re.compile(rb"\* STATUS \"Other\" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)")


# -- syntax -----------------------------------------------------------------------------------


def test_parse_notify_set() -> None:
    command = parse_command(b'a NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) '
                            b'messageexpunge)) (subtree (Lists "Other") (MessageNew '
                            b'MessageExpunge FlagChange)) (personal NONE)')  # fmt: skip
    assert isinstance(command, Notify) and command.is_status and not command.is_none
    selected, subtree, personal = command.groups
    assert selected.filter is MailboxFilter.SELECTED
    assert selected.events == ("MessageNew", "MessageExpunge")
    assert len(selected.fetch_attributes) == 2
    assert subtree.mailboxes == ("Lists", "Other")
    assert personal.events == ()
    assert parse_command(b"a NOTIFY NONE") == Notify("a", False, ())


@pytest.mark.parametrize("line", [b"a NOTIFY", b"a NOTIFY SET", b"a NOTIFY SET (nowhere NONE)",
                                  b"a NOTIFY SET (subtree (MessageNew))",
                                  b"a NOTIFY SET (personal ())", b"a NOTIFY ALL"])
def test_parse_notify_errors(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command(line)


_WORDS = st.sampled_from([b"SET", b"NONE", b"STATUS", b"(", b")", b" ", b"selected", b"personal",
                          b"subtree", b"mailboxes", b"MessageNew", b"MessageExpunge", b"FlagChange",
                          b"UID", b"BODY.PEEK[]", b'"a b"', b"INBOX", b"x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS, max_size=20))
def test_parse_notify_never_fails_otherwise(words: list[bytes]) -> None:
    try:
        command = parse_command(b"a NOTIFY " + b"".join(words))
    except ParseError:
        return
    assert isinstance(command, Notify)


# -- over sockets -----------------------------------------------------------------------------


def _create(client: RawClient, *names: str) -> None:
    for name in names:
        assert client.command(b"c", f'CREATE "{name}"'.encode())[-1].startswith(b"c OK")


def _watcher(server: ImapThread, client_tls: ssl.SSLContext, notify: bytes) -> RawClient:
    client = login_raw(server, client_tls)
    answer = client.command(b"n", b"NOTIFY SET " + notify)
    assert answer[-1] == b"n OK NOTIFY completed", answer
    return client


def test_capability(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    assert b" NOTIFY" in client.command(b"c", b"CAPABILITY")[0]


def test_status_indicator_reports_watched_mailboxes(imap_server: ImapThread,
                                                    client_tls: ssl.SSLContext) -> None:
    other = login_raw(imap_server, client_tls)
    _create(other, "Other", "Lists", "Lists/a")
    imap_server.deliver(simple_message("x"), mailbox="Lists/a")
    client = login_raw(imap_server, client_tls)
    answer = client.command(b"n", b"NOTIFY SET STATUS (subtree Lists (MessageNew "
                                  b"MessageExpunge))")  # fmt: skip
    assert [line.split(b" (")[0] for line in answer[:-1]] == [
        b'* STATUS "Lists"', b'* STATUS "Lists/a"']
    assert b"MESSAGES 1 UIDNEXT 2" in answer[1] and answer[-1].startswith(b"n OK")


def test_new_mail_elsewhere_arrives_between_commands(imap_server: ImapThread,
                                                     client_tls: ssl.SSLContext) -> None:
    _create(login_raw(imap_server, client_tls), "Other")
    client = _watcher(imap_server, client_tls, b"(personal (MessageNew MessageExpunge))")
    imap_server.deliver(simple_message("elsewhere"), mailbox="Other")
    assert STATUS_OTHER.fullmatch(client.line())  # no command sent
    assert client.command(b"z", b"NOOP") == [b"z OK NOOP completed"]


def test_status_arrives_in_idle(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    _create(login_raw(imap_server, client_tls), "Other")
    client = _watcher(imap_server, client_tls, b"(mailboxes Other (MessageNew MessageExpunge))")
    client.send(b"i IDLE\r\n")
    assert client.line() == b"+ idling"
    imap_server.deliver(simple_message("idle"), mailbox="Other")
    assert STATUS_OTHER.fullmatch(client.line())
    client.send(b"DONE\r\n")
    assert client.until_tagged(b"i") == [b"i OK IDLE terminated"]


@pytest.mark.parametrize(("notify", "watched"), [
    (b"(inboxes (MessageNew MessageExpunge))", "INBOX"),
    (b"(subtree Lists (MessageNew MessageExpunge))", "Lists/a"),
    (b'(mailboxes ("Lists/a" Nowhere) (MessageNew MessageExpunge))', "Lists/a"),
    (b"(subscribed (MessageNew MessageExpunge))", "Lists/a"),
])
def test_filters_pick_their_mailboxes(imap_server: ImapThread, client_tls: ssl.SSLContext,
                                      notify: bytes, watched: str) -> None:
    other = login_raw(imap_server, client_tls)
    _create(other, "Other", "Lists", "Lists/a")
    if watched == "Lists/a":
        other.command(b"s", b'SUBSCRIBE "Lists/a"')
    client = _watcher(imap_server, client_tls, notify)
    imap_server.deliver(simple_message("not watched"), mailbox="Other")
    imap_server.deliver(simple_message("watched"), mailbox=watched)
    # The first thing said is about the watched mailbox: the Other delivery said nothing.
    assert client.line().startswith(f'* STATUS "{watched}" (MESSAGES 1 '.encode())


def test_flag_changes_only_with_flagchange(imap_server: ImapThread,
                                           client_tls: ssl.SSLContext) -> None:
    other = login_raw(imap_server, client_tls)
    _create(other, "Other", "Flags")
    imap_server.deliver(simple_message("a"), mailbox="Other")
    imap_server.deliver(simple_message("b"), mailbox="Flags")
    client = _watcher(imap_server, client_tls, b"(mailboxes Other (MessageNew MessageExpunge)) "
                      b"(mailboxes Flags (MessageNew MessageExpunge FlagChange))")  # fmt: skip
    for name in (b"Other", b"Flags"):
        other.command(b"s", b"SELECT " + name)
        other.command(b"f", b"STORE 1 +FLAGS (\\Seen)")
    line = client.line()
    assert line.startswith(b'* STATUS "Flags" (MESSAGES 1 ') and line.endswith(b" UNSEEN 0)")


def test_selected_mailbox_updates_between_commands(imap_server: ImapThread,
                                                   client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("first"))
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    assert client.command(b"n", b"NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS"
                          b" (SUBJECT)]) MessageExpunge))")[-1].startswith(b"n OK")
    imap_server.deliver(simple_message("second"))
    assert client.line() == b"* 2 EXISTS"
    assert client.line() == b"* 2 RECENT"  # an IMAP4rev1 client (RFC 3501 §7.3.2)
    fetch = client.line()
    assert fetch.startswith(b"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {")
    size = int(fetch[fetch.rindex(b"{") + 1 : -1])
    assert client.read_exact(size).startswith(b"Subject: second")
    client.line()  # the closing parenthesis
    other = login_raw(imap_server, client_tls)
    other.command(b"s", b"SELECT INBOX")
    other.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command(b"e", b"EXPUNGE")
    # RFC 5465 §6: SELECTED reports expunges at once, outside any command.
    lines = [client.line()]
    while lines[-1] != b"* 1 EXPUNGE":
        lines.append(client.line())
    assert all(line.startswith(b"* 1 FETCH") for line in lines[:-1])


def test_selected_delayed_holds_expunges_for_a_command(imap_server: ImapThread,
                                                       client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("first"))
    other = login_raw(imap_server, client_tls)
    _create(other, "Other")
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    assert client.command(b"n", b"NOTIFY SET (selected-delayed (MessageNew MessageExpunge)) "
                          b"(personal (MessageNew MessageExpunge))")[-1].startswith(b"n OK")
    other.command(b"s", b"SELECT INBOX")
    other.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.command(b"e", b"EXPUNGE")
    imap_server.deliver(simple_message("later"), mailbox="Other")
    lines = [client.line()]
    while not lines[-1].startswith(b'* STATUS "Other"'):
        lines.append(client.line())
    assert b"* 1 EXPUNGE" not in lines  # delayed ...
    assert client.command(b"z", b"NOOP")[-2:] == [b"* 1 EXPUNGE", b"z OK NOOP completed"]


def test_mailbox_names_and_subscriptions(imap_server: ImapThread,
                                         client_tls: ssl.SSLContext) -> None:
    client = _watcher(imap_server, client_tls, b"(personal (MailboxName SubscriptionChange))")
    other = login_raw(imap_server, client_tls)
    _create(other, "New")
    assert client.line() == b'* LIST () "/" "New"'
    other.command(b"r", b"RENAME New Newer")
    assert client.line() == b'* LIST () "/" "Newer" ("OLDNAME" ("New"))'
    other.command(b"s", b"SUBSCRIBE Newer")
    assert client.line() == b'* LIST (\\Subscribed) "/" "Newer"'
    other.command(b"u", b"UNSUBSCRIBE Newer")
    assert client.line() == b'* LIST () "/" "Newer"'
    other.command(b"d", b"DELETE Newer")
    assert client.line() == b'* LIST (\\NonExistent) "/" "Newer"'


def test_metadata_changes(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    _create(login_raw(imap_server, client_tls), "Other", "Quiet")
    client = _watcher(imap_server, client_tls, b"(mailboxes Other (MailboxMetadataChange)) "
                      b"(personal (ServerMetadataChange))")  # fmt: skip
    other = login_raw(imap_server, client_tls)
    # Quiet is watched for nothing: the first line is about Other.
    assert other.command(b"m", b'SETMETADATA Quiet (/private/comment "unheard")')[-1].startswith(
        b"m OK")
    assert other.command(b"m", b'SETMETADATA Other (/private/comment "hi" /shared/comment "x")'
                         )[-1].startswith(b"m OK")  # fmt: skip
    assert client.line() == b'* METADATA "Other" /private/comment /shared/comment'
    assert other.command(b"m", b'SETMETADATA "" (/private/vendor/x "1")')[-1].startswith(b"m OK")
    assert client.line() == b'* METADATA "" /private/vendor/x'


def test_notify_none_stops_notifications(imap_server: ImapThread,
                                         client_tls: ssl.SSLContext) -> None:
    _create(login_raw(imap_server, client_tls), "Other")
    client = _watcher(imap_server, client_tls, b"(personal (MessageNew MessageExpunge))")
    assert client.command(b"x", b"NOTIFY NONE") == [b"x OK NOTIFY completed"]
    imap_server.deliver(simple_message("unheard"), mailbox="Other")
    assert client.command(b"z", b"NOOP") == [b"z OK NOOP completed"]


@pytest.mark.parametrize(("notify", "answer"), [
    (b"(personal (MessageNew))", b"a BAD MessageNew and MessageExpunge must be given together"),
    (b"(personal (FlagChange))", b"a BAD FlagChange needs MessageNew and MessageExpunge"),
    (b"(personal (MessageNew (UID) MessageExpunge))",
     b"a BAD fetch attributes are for SELECTED filters only"),
    (b"(selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))",
     b"a BAD filter SELECTED-DELAYED given twice"),
    (b"(selected (MailboxName))", b"a BAD SELECTED takes message events only"),
    (b"(personal (MessageNew MessageExpunge AnnotationChange))",
     b"a NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange "
     b"MailboxMetadataChange ServerMetadataChange)] unsupported event AnnotationChange"),
    (b"(personal (MailboxMetadataChange ServerMetadataChange))", b"a OK NOTIFY completed"),
])
def test_notify_refusals(imap_server: ImapThread, client_tls: ssl.SSLContext,
                         notify: bytes, answer: bytes) -> None:
    client = login_raw(imap_server, client_tls)
    assert client.command(b"a", b"NOTIFY SET " + notify) == [answer]


def test_mailboxes_per_notify_are_bounded(imap_server: ImapThread,
                                          client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)
    names = b" ".join(b"m%d" % i for i in range(MAX_NOTIFY_MAILBOXES + 1))
    answer = client.command(b"a", b"NOTIFY SET (mailboxes (" + names + b") NONE)")
    assert answer[-1].startswith(b"a NO [LIMIT]")
    names = b" ".join(b"m%d" % i for i in range(MAX_NOTIFY_MAILBOXES))
    assert client.command(b"a", b"NOTIFY SET (mailboxes (" + names + b") NONE)")[-1] == (
        b"a OK NOTIFY completed")


def test_overflow_turns_notify_off(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    _create(login_raw(imap_server, client_tls), "Other")
    client = _watcher(imap_server, client_tls, b"(personal (MessageNew MessageExpunge))")

    async def flood() -> None:  # more changes than the subscription queue holds, at once
        account = await imap_server.rt.store.get_account("alice@example.test")
        assert account is not None
        for number in range(3000):
            imap_server.rt.feed.publish(Change(account.id, 10_000 + number,
                                               frozenset({"append"})))  # fmt: skip

    imap_server.call(flood())
    assert client.line().startswith(b"* OK [NOTIFICATIONOVERFLOW]")
    imap_server.deliver(simple_message("after"), mailbox="Other")
    assert client.command(b"z", b"NOOP") == [b"z OK NOOP completed"]
