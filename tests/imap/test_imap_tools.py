"""A high-level client (imap_tools) doing what mail apps do: fetch, flag, move, delete."""

from __future__ import annotations

import datetime as dt
import ssl

from imap_tools import AND, MailBox, MailMessageFlags

from tests.imap.conftest import PASSWORD, USER, ImapThread, login_raw, simple_message
from tests.imap.messages import NESTED, PDF


def test_fetch_flag_move_delete(imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    imap_server.deliver(simple_message("plain one", "first body\r\n"))
    imap_server.deliver(NESTED)
    with MailBox("127.0.0.1", port=imap_server.tls_port, ssl_context=client_tls).login(
            USER, PASSWORD, initial_folder="INBOX") as mailbox:
        messages = list(mailbox.fetch(mark_seen=False))
        assert [m.subject for m in messages] == ["plain one", "Grüße aus Köln"]
        nested = messages[1]
        assert nested.from_values.name == "Jürgen Müller"
        assert nested.to == ("alice@example.test", "bob@example.test")
        assert nested.date == dt.datetime(2024, 3, 5, 10, 0,
                                          tzinfo=dt.timezone(dt.timedelta(hours=1)))
        assert "Grüße" in nested.text and "<p>Gruesse</p>" in nested.html
        [attachment] = [a for a in nested.attachments if a.filename == "report.pdf"]
        assert attachment.payload == PDF
        headers_only = list(mailbox.fetch(headers_only=True, mark_seen=False))
        assert headers_only[0].text == "" and headers_only[0].subject == "plain one"

        uids = [m.uid for m in messages]
        assert uids is not None
        mailbox.flag(uids[0], (MailMessageFlags.FLAGGED, MailMessageFlags.SEEN), True)
        assert [m.uid for m in mailbox.fetch(AND(flagged=True))] == [uids[0]]
        assert [m.uid for m in mailbox.fetch(AND(seen=False))] == [uids[1]]
        assert [m.uid for m in mailbox.fetch(AND(subject="Köln"), charset="UTF-8")] == [uids[1]]
        mailbox.move(uids[0], "Trash")
        mailbox.delete(uids[1])
        assert list(mailbox.fetch()) == []
        mailbox.folder.set("Trash")
        [moved] = list(mailbox.fetch(mark_seen=False))
        assert moved.subject == "plain one"
        assert set(moved.flags) == {"\\Seen", "\\Flagged", "\\Recent"}
        result = mailbox.append(simple_message("appended"), "Trash",
                                flag_set=[MailMessageFlags.DRAFT])
        assert result[0] == "OK"
        assert [m.subject for m in mailbox.fetch()] == ["plain one", "appended"]


def test_selected_mailbox_deleted_elsewhere(imap_server: ImapThread,
                                            client_tls: ssl.SSLContext) -> None:
    first, second = login_raw(imap_server, client_tls), login_raw(imap_server, client_tls)
    first.command(b"c", b"CREATE Doomed")
    second.command(b"s", b"SELECT Doomed")
    first.command(b"d", b"DELETE Doomed")
    second.send(b"n NOOP\r\n")
    assert second.line() == b"* BYE the selected mailbox was deleted"
    # The deleting session itself can delete its own selected mailbox and carry on.
    first.command(b"c", b"CREATE Doomed2")
    first.command(b"s", b"SELECT Doomed2")
    assert first.command(b"d", b"DELETE Doomed2") == [b"d OK DELETE completed"]
    assert first.command(b"f", b"FETCH 1 FLAGS")[0].startswith(b"f BAD")
    first.close()
    second.close()
