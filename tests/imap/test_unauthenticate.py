"""UNAUTHENTICATE (RFC 8437) over real sockets: back to the not-authenticated state with
the selected mailbox, NOTIFY, ENABLE and the change-feed subscription released, the
capabilities of that state announced, a LOGIN as someone else working afterwards, TLS and
COMPRESS kept, and the ban guard still judging every later LOGIN."""

from __future__ import annotations

import ssl

from tests.hardening.conftest import PASSWORD as APP_PASSWORD
from tests.hardening.conftest import USER as APP_USER
from tests.hardening.conftest import StartApp, start_app  # noqa: F401 (fixture)
from tests.imap.conftest import (
    PASSWORD,
    USER,
    ImapThread,
    RawClient,
    login_raw,
    simple_message,
)
from tests.imap.test_compress import DeflatingClient

BOB = "bob@example.test"


def _add_bob(server: ImapThread) -> None:
    server.call(server.rt.accounts.add_account(BOB, PASSWORD))


def test_capability_after_login_only(imap_server: ImapThread,
                                     client_tls: ssl.SSLContext) -> None:
    client = RawClient(imap_server.tls_port, tls=client_tls)
    assert b"UNAUTHENTICATE" not in client.command(b"c", b"CAPABILITY")[0]
    assert client.command(b"u", b"UNAUTHENTICATE")[-1].startswith(b"u BAD")
    client = login_raw(imap_server, client_tls)
    assert b" UNAUTHENTICATE" in client.command(b"c", b"CAPABILITY")[0]


def test_back_to_not_authenticated_then_another_user(imap_server: ImapThread,
                                                     client_tls: ssl.SSLContext) -> None:
    _add_bob(imap_server)
    imap_server.deliver(simple_message("for alice"))
    client = login_raw(imap_server, client_tls)
    client.command(b"e", b"ENABLE UTF8=ACCEPT")
    client.command(b"s", b"SELECT INBOX")
    client.command(b"n", b"NOTIFY SET (personal (MessageNew MessageExpunge))")
    answer = client.command(b"u", b"UNAUTHENTICATE")
    assert len(answer) == 1 and answer[0].startswith(b"u OK [CAPABILITY IMAP4rev2 ")
    assert b"AUTH=PLAIN" in answer[0] and b"UNAUTHENTICATE" not in answer[0]
    # Not authenticated: mailbox commands are refused, the selected mailbox is gone.
    assert client.command(b"f", b"FETCH 1 FLAGS")[-1].startswith(b"f BAD")
    assert client.command(b"l", b'LIST "" *')[-1].startswith(b"l BAD")
    # Alice's news reaches nobody on this connection any more (no NOTIFY, no feed).
    imap_server.deliver(simple_message("unheard"))
    assert client.command(b"o", b"NOOP") == [b"o OK NOOP completed"]
    assert client.command(b"b", f'LOGIN "{BOB}" "{PASSWORD}"'.encode())[-1].startswith(
        b"b OK")
    answer = client.command(b"s", b"SELECT INBOX")
    assert b"* 0 EXISTS" in answer  # Bob's INBOX, not Alice's
    # ENABLE ended with Alice's login: it may be given again and says so.
    client.command(b"x", b"UNSELECT")
    assert client.command(b"e", b"ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT"


def test_the_feed_subscription_is_released(imap_server: ImapThread,
                                           client_tls: ssl.SSLContext) -> None:
    client = login_raw(imap_server, client_tls)

    async def subscribers() -> int:
        account = await imap_server.rt.store.get_account(USER)
        assert account is not None
        return len(imap_server.rt.feed._subscribers.get(account.id, ()))

    assert imap_server.call(subscribers()) == 1
    client.command(b"u", b"UNAUTHENTICATE")
    assert imap_server.call(subscribers()) == 0


def test_compression_survives_unauthenticate(imap_server: ImapThread,
                                             client_tls: ssl.SSLContext) -> None:
    _add_bob(imap_server)
    client = DeflatingClient(imap_server.tls_port, tls=client_tls)
    client.command(b"l", f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    assert client.command(b"z", b"COMPRESS DEFLATE") == [b"z OK DEFLATE active"]
    client.start_compression()
    assert client.command(b"u", b"UNAUTHENTICATE")[-1].startswith(b"u OK")
    assert client.command(b"b", f'LOGIN "{BOB}" "{PASSWORD}"'.encode())[-1].startswith(
        b"b OK")
    assert client.command(b"z", b"COMPRESS DEFLATE")[-1].startswith(
        b"z NO [COMPRESSIONACTIVE]")
    assert client.command(b"o", b"NOOP") == [b"o OK NOOP completed"]


def test_bans_still_apply_after_unauthenticate(start_app: StartApp,  # noqa: F811
                                               client_tls: ssl.SSLContext) -> None:
    with start_app(AUTH_BAN_MAX_FAILURES=2) as app:
        client = RawClient(app.port("imaps"), tls=client_tls)
        login = f'LOGIN "{APP_USER}" "{APP_PASSWORD}"'.encode()
        assert client.command(b"a", login)[-1].startswith(b"a OK")
        assert client.command(b"u", b"UNAUTHENTICATE")[-1].startswith(b"u OK")
        for tag in (b"w1", b"w2"):
            wrong = f'LOGIN "{APP_USER}" "wrong"'.encode()
            assert client.command(tag, wrong)[-1].startswith(tag + b" NO")
        # Banned now: the right password on this same connection does not get in.
        assert client.command(b"r", login)[-1].startswith(b"r NO")
