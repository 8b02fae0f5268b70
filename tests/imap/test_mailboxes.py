"""CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST (extended) LSUB NAMESPACE STATUS ENABLE ID."""

from __future__ import annotations

import imaplib
import ssl

from imap_tools import MailBox

from tests.imap.conftest import PASSWORD, USER, ImapThread, login_raw, simple_message


def connect(server: ImapThread, client_tls: ssl.SSLContext) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=client_tls,
                               timeout=10)
    client.login(USER, PASSWORD)
    return client


def test_default_mailboxes_listed_with_special_use(imap_server: ImapThread,
                                                   client_tls: ssl.SSLContext) -> None:
    client = connect(imap_server, client_tls)
    typ, data = client.list()
    assert typ == "OK"
    assert data[0] == b'(\\HasNoChildren) "/" "INBOX"'
    assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in data
    assert b'(\\HasNoChildren \\Trash) "/" "Trash"' in data
    assert client.list('""', '""') == ("OK", [b'(\\Noselect) "/" ""'])
    client.logout()


def test_create_rename_delete_hierarchy(imap_server: ImapThread,
                                        client_tls: ssl.SSLContext) -> None:
    client = connect(imap_server, client_tls)
    assert client.create("Projects/2024/Q1")[0] == "OK"  # parents are created too
    typ, data = client.list('""', "Projects/%")
    assert data == [b'(\\HasChildren) "/" "Projects/2024"']
    typ, data = client.list("Projects/", "*")
    assert data == [b'(\\HasChildren) "/" "Projects/2024"',
                    b'(\\HasNoChildren) "/" "Projects/2024/Q1"']
    typ, data = client.create("Projects")
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    typ, data = client.delete("Projects")
    assert typ == "NO" and b"[HASCHILDREN]" in data[0]
    assert client.rename("Projects", "Archive/Old")[0] == "OK"
    typ, data = client.list('""', "*")
    names = [line.rsplit(b" ", 1)[1].strip(b'"') for line in data]
    assert b"Archive/Old/2024/Q1" in names and b"Projects" not in names
    assert client.delete("Archive/Old/2024/Q1")[0] == "OK"
    typ, data = client.delete("Nope")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    typ, data = client.delete("INBOX")
    assert typ == "NO"
    typ, data = client.create("INBOX")
    assert typ == "NO"
    client.logout()


def test_utf7_and_utf8_names(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    client = connect(imap_server, client_tls)
    assert client.create("&AMk-t&AOk-")[0] == "OK"  # "Été" in modified UTF-7
    _typ, data = client.list('""', "&AMk-*")
    assert data == [b'(\\HasNoChildren) "/" "&AMk-t&AOk-"']
    client.logout()
    raw = login_raw(imap_server, client_tls)
    assert raw.command(b"e", b"ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT"
    lines = raw.command(b"l", 'LIST "" "Ét*"'.encode())
    assert lines[0] == '* LIST (\\HasNoChildren) "/" "Été"'.encode()
    raw.close()


def test_subscriptions_lsub_and_list_extended(imap_server: ImapThread,
                                              client_tls: ssl.SSLContext) -> None:
    client = connect(imap_server, client_tls)
    client.create("Lists/python")
    client.subscribe("Lists/python")
    client.subscribe("Gone")  # a subscription may name a mailbox that does not exist
    _typ, data = client.lsub('""', "*")
    assert b'() "/" "Lists/python"' in data and b'(\\Noselect) "/" "Gone"' in data
    client.unsubscribe("Gone")
    raw = login_raw(imap_server, client_tls)
    lines = raw.command(b"a", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "Lists"')
    assert lines[0] == b'* LIST (\\HasChildren) "/" "Lists" ("CHILDINFO" ("SUBSCRIBED"))'
    lines = raw.command(b"b", b'LIST (SUBSCRIBED) "" "*"')
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" "Lists/python"' in lines
    assert all(b"Lists/python" in line or b"INBOX" in line or b"Sent" in line
               or b"Drafts" in line or b"Trash" in line or b"Junk" in line or line.startswith(b"b ")
               for line in lines)
    lines = raw.command(b"c", b'LIST (SPECIAL-USE) "" "*"')
    assert len(lines) == 5 and all(b"\\" in line for line in lines[:-1])
    lines = raw.command(b"d", b'LIST "" ("INBOX" "Sent") RETURN (SUBSCRIBED CHILDREN STATUS '
                             b'(MESSAGES UNSEEN))')
    assert lines[0].startswith(b'* LIST (\\HasNoChildren')
    assert lines[1] == b'* STATUS "INBOX" (MESSAGES 0 UNSEEN 0)'
    assert lines[2].endswith(b'"/" "Sent"')
    assert lines[3] == b'* STATUS "Sent" (MESSAGES 0 UNSEEN 0)'
    raw.close()
    client.logout()


def test_status_namespace_id_enable(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("one"))
    imap_server.deliver(simple_message("two"), flags=frozenset({"\\Seen", "\\Deleted"}))
    raw = login_raw(imap_server, client_tls)
    lines = raw.command(b"s", b"STATUS INBOX (MESSAGES UNSEEN DELETED SIZE UIDNEXT RECENT "
                              b"UIDVALIDITY APPENDLIMIT)")
    assert lines[0].startswith(b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 1 DELETED 1 SIZE ')
    assert b"UIDNEXT 3 RECENT 2 UIDVALIDITY " in lines[0] and b"APPENDLIMIT 10240000" in lines[0]
    assert raw.command(b"n", b"NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
    assert raw.command(b"i", b'ID ("name" "test")')[0].startswith(b'* ID ("name" "postroom"')
    assert raw.command(b"e", b"ENABLE IMAP4rev2 X-UNKNOWN")[0] == b"* ENABLED IMAP4rev2"
    assert raw.command(b"f", b"ENABLE IMAP4rev2")[0] == b"* ENABLED"
    lines = raw.command(b"g", b"STATUS INBOX (RECENT)")
    assert lines[-1].startswith(b"g BAD")
    lines = raw.command(b"c", b"CAPABILITY")
    for cap in (b"IMAP4rev2", b"IDLE", b"UIDPLUS", b"MOVE", b"ESEARCH", b"SEARCHRES",
                b"LIST-STATUS", b"SPECIAL-USE", b"BINARY", b"APPENDLIMIT=10240000"):
        assert cap in lines[0].split()
    raw.close()


def test_imap_tools_folder_manager(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    with MailBox("127.0.0.1", port=imap_server.tls_port, ssl_context=client_tls).login(
            USER, PASSWORD) as mailbox:
        mailbox.folder.create("Reports")
        assert mailbox.folder.exists("Reports")
        names = {folder.name for folder in mailbox.folder.list()}
        assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Reports"} <= names
        mailbox.folder.rename("Reports", "Reports 2024")
        status = mailbox.folder.status("Reports 2024")
        assert status["MESSAGES"] == 0
        mailbox.folder.set("Reports 2024")
        assert mailbox.folder.get() == "Reports 2024"
        mailbox.folder.set("INBOX")
        mailbox.folder.delete("Reports 2024")
        assert not mailbox.folder.exists("Reports 2024")


def test_missing_parent_level_listed_only_for_percent(imap_server: ImapThread,
                                                      client_tls: ssl.SSLContext) -> None:
    async def create_orphan() -> None:
        store = imap_server.rt.store
        account = await store.get_account(USER)
        assert account is not None
        await store.create_mailbox(account.id, "Top/Child")  # no "Top" (made elsewhere)

    imap_server.call(create_orphan())
    raw = login_raw(imap_server, client_tls)
    lines = raw.command(b"a", b'LIST "" "T*"')
    assert lines[:-1] == [b'* LIST (\\HasNoChildren) "/" "Top/Child"',
                          b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"']
    lines = raw.command(b"b", b'LIST "" "T%"')
    assert lines[0] == b'* LIST (\\NonExistent \\Noselect \\HasChildren) "/" "Top"'
    raw.close()


def test_create_special_use_and_rename_inbox(imap_server: ImapThread,
                                             client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("old mail"))
    raw = login_raw(imap_server, client_tls)
    answer = raw.command(b"a", b"CREATE Everything (USE (\\Archive))")
    assert len(answer) == 1 and answer[0].startswith(b"a OK [MAILBOXID (")  # RFC 8474 §4.1
    lines = raw.command(b"b", b'LIST "" "Everything"')
    assert lines[0] == b'* LIST (\\HasNoChildren \\Archive) "/" "Everything"'
    assert raw.command(b"c", b"CREATE Starred (USE (\\Flagged))")[0].startswith(b"c NO [USEATTR]")
    raw.command(b"s", b"SELECT INBOX")
    # RFC 9051 §6.3.9: renaming INBOX moves its messages and leaves INBOX empty.
    assert raw.command(b"r", b"RENAME INBOX Old-Inbox")[0] == b"* 1 EXPUNGE"
    assert raw.command(b"t", b"STATUS Old-Inbox (MESSAGES)")[0] == (
        b'* STATUS "Old-Inbox" (MESSAGES 1)')
    assert raw.command(b"u", b"STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 0)'
    raw.close()
