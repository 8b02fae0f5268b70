"""Issue 25 (findings 2, 3, 11) on real sockets: hostile LIST patterns, deep hierarchies,
long names, and the mailbox / subscription count limits.

The attacks run as the issue states them; a second logged-in user sends NOOPs meanwhile,
and each must be answered within 2 s (a blocked event loop answers none of them).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.imap.conftest import PASSWORD, USER, ImapThread, RawClient, login_raw

BOB = "bob@example.test"
DEFAULTS = [b"INBOX", b"Drafts", b"Junk", b"Sent", b"Trash"]  # LIST order


def add_bob(server: ImapThread) -> None:
    server.call(server.rt.accounts.add_account(BOB, PASSWORD))


def answered_meanwhile(attacker: RawClient, tag: bytes, command: bytes,
                       bystander: RawClient, *, deadline: float = 60.0) -> list[bytes]:
    """Send `command` as the attacker; while it runs, the bystander's NOOPs (at least
    three) must each be answered within 2 s. Returns the attacker's answer."""
    answer: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        try:
            answer.extend(attacker.until_tagged(tag))
        finally:
            done.set()

    attacker.send(tag + b" " + command + b"\r\n")
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    waits: list[float] = []
    started = time.monotonic()
    while len(waits) < 3 or not done.is_set():
        assert time.monotonic() - started < deadline, "the attack is still running"
        before = time.monotonic()
        assert bystander.command(b"n", b"NOOP") == [b"n OK NOOP completed"]
        waits.append(time.monotonic() - before)
    reader.join(deadline)
    assert max(waits) < 2.0, f"NOOP waits while the attack ran: {waits}"
    assert answer, "no answer to the attack"
    return answer


def name_of(line: bytes) -> bytes:
    if b"}\r\n" in line:  # a long name comes as a literal
        return line.split(b"}\r\n", 1)[1]
    return line.rsplit(b" ", 1)[1].strip(b'"')


def listed_names(lines: list[bytes]) -> list[bytes]:
    return [name_of(line) for line in lines if line.startswith(b"* LIST ")]


@pytest.fixture
def pair(imap_server: ImapThread, client_tls: ssl.SSLContext
         ) -> Iterator[tuple[RawClient, RawClient]]:  # fmt: skip
    add_bob(imap_server)
    alice = login_raw(imap_server, client_tls)
    bob = login_raw(imap_server, client_tls, BOB)
    bob.sock.settimeout(5)
    yield alice, bob
    alice.close()
    bob.close()


def test_percent_pattern_does_not_block(imap_server: ImapThread,
                                        pair: tuple[RawClient, RawClient]) -> None:
    alice, bob = pair
    assert alice.command(b"c", b"CREATE Box")[-1].startswith(b"c OK [MAILBOXID (")
    pattern = b'"' + b"%" * 60 + b'x"'
    lines = answered_meanwhile(alice, b"a", b'LIST "" ' + pattern, bob)
    assert lines[-1] == b"a OK LIST completed"
    assert listed_names(lines) == [b"Box"]  # the one top-level name ending in "x"
    lines = alice.command(b"b", b'LIST "" ' + b'"' + b"%*" * 40 + b'x"')
    assert lines[-1] == b"b OK LIST completed"  # one run of wildcards, however long
    assert listed_names(lines) == [b"Box"]


def test_pattern_caps(pair: tuple[RawClient, RawClient]) -> None:
    alice, _ = pair
    too_long = b'"' + b"a" * 1100 + b'*"'
    assert alice.command(b"a", b'LIST "" ' + too_long)[-1].startswith(b"a NO [LIMIT]")
    runs = b'"' + b"%a" * 40 + b'"'
    assert alice.command(b"b", b'LIST "" ' + runs)[-1].startswith(b"b NO [LIMIT]")
    assert alice.command(b"c", b'LSUB "" ' + runs)[-1].startswith(b"c NO [LIMIT]")
    lines = alice.command(b"d", b'LIST "" "' + b"%a" * 32 + b'"')
    assert lines == [b"d OK LIST completed"]
    assert alice.command(b"n", b"NOOP") == [b"n OK NOOP completed"]


def test_deep_create_refused_and_list_stays_fast(imap_server: ImapThread,
                                                 pair: tuple[RawClient, RawClient]) -> None:
    alice, bob = pair
    name = "/".join(f"L{i}" for i in range(5000)).encode()
    lines = answered_meanwhile(alice, b"a", b'CREATE "' + name + b'"', bob)
    assert lines[-1].startswith(b"a NO [LIMIT]")
    lines = answered_meanwhile(alice, b"b", b'LIST "" "*"', bob)
    assert listed_names(lines) == DEFAULTS  # nothing of the 5,000 levels was made
    # Within the depth limit (16 levels) but one more level is refused.
    fits = "/".join(f"L{i}" for i in range(16)).encode()
    assert alice.command(b"c", b'CREATE "' + fits + b'"')[-1].startswith(b"c OK [MAILBOXID (")
    deeper = fits + b"/L16"
    assert alice.command(b"d", b'CREATE "' + deeper + b'"')[-1].startswith(b"d NO [LIMIT]")
    # RENAME: the moved children's new names keep the depth limit too.
    assert alice.command(b"e", b'RENAME L0 "X/Y"')[-1].startswith(b"e NO [LIMIT]")
    assert alice.command(b"f", b'RENAME "L0/L1" "X"')[-1] == b"f OK RENAME completed"


def test_existing_deep_hierarchy_lists_fast(imap_server: ImapThread,
                                            pair: tuple[RawClient, RawClient]) -> None:
    """Rows made before the limits (here straight through the store) far past them:
    LIST answers without blocking, and they can be cleaned up. One-letter levels keep
    the deepest name under PostgreSQL's index-entry size (about 2,700 bytes); the parent
    computation before the fix took seconds of CPU on 1,000 such levels."""
    alice, bob = pair
    depth = 1000
    levels = [chr(ord("a") + index % 26) for index in range(depth)]

    async def make_chain() -> None:
        store = imap_server.rt.store
        account = await store.get_account(USER)
        assert account is not None
        for count in range(1, depth + 1):
            await store.create_mailbox(account.id, "/".join(levels[:count]))

    imap_server.call(make_chain(), timeout=300)
    lines = answered_meanwhile(alice, b"a", b'LIST "" "*"', bob)
    assert lines[-1] == b"a OK LIST completed"
    assert len(listed_names(lines)) == depth + len(DEFAULTS)
    assert b'* LIST (\\HasChildren) "/" "a"' in lines
    lines = answered_meanwhile(alice, b"b", b'LIST "" "a/%"', bob)
    assert listed_names(lines) == [b"a/b"]
    deepest = "/".join(levels).encode()
    lines = alice.command(b"c", b'LIST "" "*/j/k/l"')
    assert deepest in listed_names(lines)
    assert b"(\\HasNoChildren)" in lines[-2]
    # The name itself is past the pattern cap, but SELECT and DELETE take it.
    assert alice.command(b"p", b'LIST "" "' + deepest + b'"')[-1].startswith(b"p NO [LIMIT]")
    assert alice.command(b"s", b'SELECT "' + deepest + b'"')[-1].startswith(b"s OK")
    assert alice.command(b"d", b'DELETE "' + deepest + b'"')[-1] == b"d OK DELETE completed"


def test_name_length_limit(pair: tuple[RawClient, RawClient]) -> None:
    alice, _ = pair
    huge = b"a" * 10_000
    assert alice.command(b"a", b"CREATE " + huge)[-1].startswith(b"a NO [LIMIT]")
    assert alice.command(b"b", b"CREATE " + b"a" * 256)[-1].startswith(b"b NO [LIMIT]")
    assert alice.command(b"c", b"CREATE " + b"a" * 255)[-1].startswith(b"c OK [MAILBOXID (")
    # UTF-8 bytes count, not characters: 128 × "é" is 256 bytes.
    assert alice.command(b"u", b"ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT"
    wide = ('"' + "é" * 128 + '"').encode()
    assert alice.command(b"d", b"CREATE " + wide)[-1].startswith(b"d NO [LIMIT]")
    assert alice.command(b"e", b"SUBSCRIBE " + huge)[-1].startswith(b"e NO [LIMIT]")
    assert alice.command(b"f", b"CREATE " + b"p/" + b"q" * 250)[-1].startswith(b"f OK")
    # RENAME: "p" → 10 bytes makes the child "pppppppppp/qqq…" 261 bytes long.
    assert alice.command(b"g", b"RENAME p " + b"p" * 10)[-1].startswith(b"g NO [LIMIT]")
    assert alice.command(b"h", b"RENAME p " + b"a" * 256)[-1].startswith(b"h NO [LIMIT]")
    names = listed_names(alice.command(b"l", b'LIST "" "*"'))
    assert huge not in names and b"p" in names


@pytest.fixture
def small_server(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[ImapThread]:
    config = make_config(tmp_path, server_cert, MAX_MAILBOXES_PER_ACCOUNT=10)
    with ImapThread(config) as server:
        yield server


def test_mailbox_count_limit(small_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    alice = login_raw(small_server, client_tls)  # 5 default mailboxes
    assert alice.command(b"a", b"CREATE a/b/c")[-1].startswith(b"a OK [MAILBOXID (")  # 8
    # Three more would make 11: refused before anything is made, parents included.
    assert alice.command(b"b", b"CREATE x/y/z")[-1].startswith(b"b NO [LIMIT]")
    assert b"x" not in listed_names(alice.command(b"l", b'LIST "" "*"'))
    assert alice.command(b"c", b"CREATE a/d")[-1].startswith(b"c OK [MAILBOXID (")  # 9
    assert alice.command(b"d", b"CREATE e")[-1].startswith(b"d OK [MAILBOXID (")  # 10
    assert alice.command(b"e", b"CREATE f")[-1].startswith(b"e NO [LIMIT]")
    # RENAME that would need a new parent counts it; a plain rename does not.
    assert alice.command(b"f", b"RENAME e g/h")[-1].startswith(b"f NO [LIMIT]")
    assert alice.command(b"g", b"RENAME e g")[-1] == b"g OK RENAME completed"
    assert alice.command(b"h", b"RENAME INBOX Old")[-1].startswith(b"h NO [LIMIT]")
    assert alice.command(b"i", b"DELETE g")[-1] == b"i OK DELETE completed"
    assert alice.command(b"j", b"CREATE f")[-1].startswith(b"j OK [MAILBOXID (")
    alice.close()


def test_subscription_count_limit(small_server: ImapThread,
                                  client_tls: ssl.SSLContext) -> None:
    alice = login_raw(small_server, client_tls)  # 5 default subscriptions
    for index in range(5):  # names that do not exist count too: they outlive mailboxes
        tag = b"s%d" % index
        assert alice.command(tag, b"SUBSCRIBE gone%d" % index)[-1].startswith(tag + b" OK")
    assert alice.command(b"a", b"SUBSCRIBE more")[-1].startswith(b"a NO [LIMIT]")
    assert alice.command(b"b", b"SUBSCRIBE gone1")[-1].startswith(b"b OK")  # already there
    assert alice.command(b"c", b"UNSUBSCRIBE gone1")[-1].startswith(b"c OK")
    assert alice.command(b"d", b"SUBSCRIBE more")[-1].startswith(b"d OK")
    lines = alice.command(b"e", b'LSUB "" "*"')
    assert len([line for line in lines if line.startswith(b"* LSUB")]) == 10
    alice.close()
