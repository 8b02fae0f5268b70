"""Two sessions on one mailbox: EXISTS / EXPUNGE / FETCH FLAGS reach the other side at
command boundaries and in IDLE, never an EXPUNGE during FETCH/STORE/SEARCH."""

from __future__ import annotations

import ssl

from tests.imap.conftest import ImapThread, RawClient, login_raw, simple_message


def two_sessions(server: ImapThread, client_tls: ssl.SSLContext) -> tuple[RawClient, RawClient]:
    for index in range(3):
        server.deliver(simple_message(f"m{index}"))
    first, second = login_raw(server, client_tls), login_raw(server, client_tls)
    first.command(b"s", b"SELECT INBOX")
    second.command(b"s", b"SELECT INBOX")
    return first, second


def test_flags_and_new_messages_reach_the_other_session(imap_server: ImapThread,
                                                        client_tls: ssl.SSLContext) -> None:
    first, second = two_sessions(imap_server, client_tls)
    assert first.command(b"a", b"STORE 2 +FLAGS (\\Flagged)")[0] == (
        b"* 2 FETCH (FLAGS (\\Flagged \\Recent))")
    imap_server.deliver(simple_message("m3"))
    lines = second.command(b"n", b"NOOP")
    # The first session to hear of the new message gets it as \\Recent (RFC 3501 §2.3.2).
    assert lines == [b"* 4 EXISTS", b"* 1 RECENT", b"* 2 FETCH (UID 2 FLAGS (\\Flagged))",
                     b"n OK NOOP completed"]
    lines = first.command(b"n", b"NOOP")
    assert lines == [b"* 4 EXISTS", b"* 3 RECENT", b"n OK NOOP completed"]
    assert first.command(b"f", b"FETCH 4 (FLAGS)")[0] == b"* 4 FETCH (FLAGS ())"
    assert second.command(b"f", b"FETCH 4 (FLAGS)")[0] == b"* 4 FETCH (FLAGS (\\Recent))"
    first.close()
    second.close()


def test_no_expunge_during_fetch_store_search(imap_server: ImapThread,
                                              client_tls: ssl.SSLContext) -> None:
    first, second = two_sessions(imap_server, client_tls)
    first.command(b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert first.command(b"x", b"EXPUNGE") == [b"* 2 EXPUNGE", b"x OK EXPUNGE completed"]
    # The second session still numbers 3 messages until it may hear the EXPUNGE; the
    # expunged one answers from the session's cached row (RFC 9051 §7.5.1 allows it).
    lines = second.command(b"f", b"FETCH 1:* (UID)")
    assert lines == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)",
                     b"f OK FETCH completed"]
    lines = second.command(b"b", b"FETCH 2:3 (BODY.PEEK[TEXT])")
    assert lines[0].startswith(b"* 3 FETCH") and len(lines) == 2  # its body is gone
    lines = second.command(b"t", b"STORE 3 +FLAGS (\\Seen)")
    assert lines[0] == b"* 3 FETCH (FLAGS (\\Seen))" and b"EXPUNGE" not in b"".join(lines)
    assert second.command(b"q", b"SEARCH ALL") == [b"* SEARCH 1 3", b"q OK SEARCH completed"]
    lines = second.command(b"u", b"UID SEARCH ALL")
    assert b"EXPUNGE" not in b"".join(lines)
    # NOOP is a boundary where EXPUNGE may be sent.
    assert second.command(b"n", b"NOOP") == [b"* 2 EXPUNGE", b"n OK NOOP completed"]
    assert second.command(b"f", b"FETCH 2 (UID)")[0] == b"* 2 FETCH (UID 3)"
    first.close()
    second.close()


def test_idle_sees_flags_and_expunge_from_other_session(imap_server: ImapThread,
                                                        client_tls: ssl.SSLContext) -> None:
    first, second = two_sessions(imap_server, client_tls)
    second.send(b"i IDLE\r\n")
    assert second.line() == b"+ idling"
    first.command(b"a", b"STORE 1 +FLAGS.SILENT (\\Deleted \\Seen)")
    second.sock.settimeout(1.0)
    assert second.line() == b"* 1 FETCH (UID 1 FLAGS (\\Deleted \\Seen))"
    first.command(b"x", b"EXPUNGE")
    assert second.line() == b"* 1 EXPUNGE"
    second.sock.settimeout(10)
    second.send(b"DONE\r\n")
    assert second.until_tagged(b"i") == [b"i OK IDLE terminated"]
    first.close()
    second.close()


def test_pop3_style_store_deletion_reaches_idle(imap_server: ImapThread,
                                                client_tls: ssl.SSLContext) -> None:
    """A deletion made directly in the store (as POP3 does) is pushed as EXPUNGE."""
    first, second = two_sessions(imap_server, client_tls)
    first.close()
    second.send(b"i IDLE\r\n")
    assert second.line() == b"+ idling"

    async def delete_first() -> None:
        store = imap_server.rt.store
        account = await store.get_account("alice@example.test")
        assert account is not None
        box = await store.get_mailbox(account.id, "INBOX")
        assert box is not None
        await store.expunge(box.id, [1])

    imap_server.call(delete_first())
    second.sock.settimeout(1.0)
    assert second.line() == b"* 1 EXPUNGE"
    second.close()
