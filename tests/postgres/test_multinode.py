"""Several `postroom serve` nodes on one PostgreSQL database (issue 10's "Done when").

Two real processes share nothing but the database: each has its own DATA_DIR and ports.
Mail delivered through one node is readable through the other at once (it is committed
before the 250), IDLE on the other node hears about it within a second (LISTEN/NOTIFY),
and concurrent delivery through both into one mailbox loses nothing and reuses no UID.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import itertools
import poplib
import re
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from postroom.accounts.service import AccountService
from postroom.store.changes import ChangeFeed
from postroom.store.postgres import open_postgres
from tests.postgres.conftest import node_env
from tests.postgres.pgserver import new_database
from tests.support.server import ServeProcess

USERS = {"alice@example.test": "pw-alice", "bob@example.test": "pw-bob",
         "load@example.test": "pw-load"}


def cli(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postroom", "--config", str(env_file), *args],
                          capture_output=True, text=True, timeout=60)


async def add_accounts(database_url: str, cache: Path) -> None:
    store, _ = await open_postgres(database_url, ChangeFeed(), cache)
    try:
        for address, password in USERS.items():
            await AccountService(store).add_account(address, password)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def shared_database() -> Iterator[str]:
    with new_database() as url:
        yield url


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, server_cert: tuple[Path, Path],
          shared_database: str) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two nodes for the whole module (starting them is the slow part); each test uses
    its own accounts."""
    folder = tmp_path_factory.mktemp("nodes")
    asyncio.run(add_accounts(shared_database, folder / "cache"))
    # Bans after 3 failures, answered at once: the shared-ban test stays fast.
    bans = {"AUTH_BAN_MAX_FAILURES": 3, "AUTH_FAILURE_DELAY": 0}
    env_a = node_env(folder, server_cert, shared_database, "a", **bans)
    env_b = node_env(folder, server_cert, shared_database, "b", **bans)
    with ServeProcess(env_a) as node_a, ServeProcess(env_b) as node_b:
        yield node_a, node_b


def pop3_bodies(port: int, tls: ssl.SSLContext, user: str, password: str = "") -> list[bytes]:
    pop = poplib.POP3_SSL("127.0.0.1", port, context=tls, timeout=10)
    pop.user(user)
    pop.pass_(password or USERS[user])
    bodies = [b"\r\n".join(pop.retr(n)[1]) for n in range(1, pop.stat()[0] + 1)]
    pop.quit()
    return bodies


def send(port: int, recipient: str, body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("someone@elsewhere.test", [recipient], body)


def test_account_added_with_the_cli_logs_in_on_both_nodes(
    nodes: tuple[ServeProcess, ServeProcess], client_tls: ssl.SSLContext
) -> None:
    env_a = Path(nodes[0].env_file)
    added = cli(env_a, "email", "add", "carol@example.test", "pw-carol")
    assert added.returncode == 0, added.stderr
    for node in nodes:
        assert pop3_bodies(node.ports["pop3s"], client_tls, "carol@example.test",
                           "pw-carol") == []


def test_delivered_on_a_readable_over_pop3_on_b_at_once(
    nodes: tuple[ServeProcess, ServeProcess], client_tls: ssl.SSLContext
) -> None:
    node_a, node_b = nodes
    send(node_a.ports["smtp"], "bob@example.test", b"Subject: cross\r\n\r\nfrom node A\r\n")
    # No waiting: the 250 on A came after the COMMIT, and B reads the same database.
    bodies = pop3_bodies(node_b.ports["pop3s"], client_tls, "bob@example.test")
    assert len(bodies) == 1 and bodies[0].endswith(b"from node A")


def test_idle_on_b_hears_delivery_on_a_within_a_second(
    nodes: tuple[ServeProcess, ServeProcess], client_tls: ssl.SSLContext
) -> None:
    node_a, node_b = nodes
    imap = imaplib.IMAP4_SSL("127.0.0.1", node_b.ports["imaps"], ssl_context=client_tls,
                             timeout=10)
    imap.login("alice@example.test", USERS["alice@example.test"])
    assert imap.select("INBOX")[1] == [b"0"]
    imap.send(b"i1 IDLE\r\n")
    assert imap.readline().startswith(b"+")
    started = time.monotonic()
    send(node_a.ports["smtp"], "alice@example.test", b"Subject: idle\r\n\r\nwake up\r\n")
    imap.sock.settimeout(5)
    line = imap.readline()
    elapsed = time.monotonic() - started
    assert line.strip() == b"* 1 EXISTS", line
    assert elapsed < 1.0
    imap.send(b"DONE\r\n")
    while not (line := imap.readline()).startswith(b"i1 "):
        assert line.startswith(b"* "), line  # e.g. RECENT; untagged data only
    assert line.startswith(b"i1 OK")
    imap.logout()


def test_concurrent_delivery_through_both_nodes_into_one_mailbox(
    nodes: tuple[ServeProcess, ServeProcess], shared_database: str
) -> None:
    per_connection, connections_per_node = 50, 10
    total = per_connection * connections_per_node * len(nodes)

    def deliver_batch(port: int, batch: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            for index in range(per_connection):
                token = f"token-{batch}-{index}"
                smtp.sendmail("load@elsewhere.test", ["load@example.test"],
                              f"Subject: {token}\r\n\r\n{token}\r\n".encode())

    jobs = list(itertools.product([n.ports["smtp"] for n in nodes], range(connections_per_node)))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(deliver_batch, port, port * 100 + number)
                   for port, number in jobs]
        for future in futures:
            future.result(timeout=300)

    with psycopg.connect(shared_database) as conn:
        rows = conn.execute(
            "SELECT m.uid, m.modseq, convert_from(d.data, 'UTF8'), b.uidnext"
            " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
            " JOIN accounts a ON a.id = b.account_id JOIN blobs d ON d.id = m.blob_id"
            " WHERE a.address = 'load@example.test' AND b.name = 'INBOX' ORDER BY m.uid"
        ).fetchall()
    uids = [row[0] for row in rows]
    assert uids == list(range(1, total + 1))  # none lost, no collision, no gap
    modseqs = [row[1] for row in rows]
    assert all(x < y for x, y in itertools.pairwise(modseqs))
    tokens = {re.search(r"token-\d+-\d+", row[2]).group() for row in rows}  # type: ignore[union-attr]
    assert len(tokens) == total
    assert rows[-1][3] == total + 1


def test_imap_on_b_fetches_a_body_delivered_on_a(
    nodes: tuple[ServeProcess, ServeProcess], client_tls: ssl.SSLContext
) -> None:
    node_a, node_b = nodes
    send(node_a.ports["smtp"], "bob@example.test",
         b"Subject: fetch me\r\n\r\nbody kept in PostgreSQL\r\n")
    imap = imaplib.IMAP4_SSL("127.0.0.1", node_b.ports["imaps"], ssl_context=client_tls,
                             timeout=10)
    imap.login("bob@example.test", USERS["bob@example.test"])
    imap.select("INBOX")
    status, data = imap.search(None, "BODY", '"kept in PostgreSQL"')
    assert status == "OK" and data[0]
    number = data[0].split()[-1]
    status, fetched = imap.fetch(number, "(BODY.PEEK[])")
    assert status == "OK" and fetched[0][1].endswith(b"body kept in PostgreSQL\r\n")  # type: ignore[index]
    imap.logout()


def test_a_client_banned_on_a_is_refused_by_b(
    nodes: tuple[ServeProcess, ServeProcess], client_tls: ssl.SSLContext, shared_database: str
) -> None:
    # Runs last in this module: every test here connects from 127.0.0.1.
    node_a, node_b = nodes
    try:
        for _ in range(3):
            pop = poplib.POP3_SSL("127.0.0.1", node_a.ports["pop3s"], context=client_tls,
                                  timeout=10)
            pop.user("alice@example.test")
            with pytest.raises(poplib.error_proto):
                pop.pass_("wrong password")
            with contextlib.suppress(poplib.error_proto, OSError):
                pop.quit()
        # B never saw a failure: the ban reaches it through the database.
        with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
            poplib.POP3_SSL("127.0.0.1", node_b.ports["pop3s"], context=client_tls, timeout=10)
        with smtplib.SMTP(timeout=10) as smtp:
            code, _ = smtp.connect("127.0.0.1", node_b.ports["smtp"])
            assert code == 421
    finally:
        with psycopg.connect(shared_database, autocommit=True) as conn:
            conn.execute("DELETE FROM bans")
    unbanned = poplib.POP3_SSL("127.0.0.1", node_b.ports["pop3s"], context=client_tls,
                               timeout=10)
    assert unbanned.getwelcome().startswith(b"+OK")
    unbanned.quit()


def fail_pop3_login(port: int, tls: ssl.SSLContext) -> None:
    pop = poplib.POP3_SSL("127.0.0.1", port, context=tls, timeout=10)
    pop.user("alice@example.test")
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong password")
    with contextlib.suppress(poplib.error_proto, OSError):
        pop.quit()


def test_failures_split_over_both_nodes_add_up_to_a_ban(
    nodes: tuple[ServeProcess, ServeProcess], client_tls: ssl.SSLContext, shared_database: str
) -> None:
    # After the shared-ban test (its ban was lifted, and a ban clears the count): every
    # test here connects from 127.0.0.1. The counts live in the database, so 2 failures
    # on A and 1 on B make the 3 that ban (counted per process, neither node would).
    node_a, node_b = nodes
    try:
        fail_pop3_login(node_a.ports["pop3s"], client_tls)
        fail_pop3_login(node_b.ports["pop3s"], client_tls)
        with psycopg.connect(shared_database) as conn:
            assert conn.execute("SELECT count(*) FROM auth_failures").fetchone() == (2,)
        fail_pop3_login(node_a.ports["pop3s"], client_tls)
        for node in nodes:
            with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
                poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=client_tls,
                                timeout=10)
    finally:
        with psycopg.connect(shared_database, autocommit=True) as conn:
            conn.execute("DELETE FROM bans")
            conn.execute("DELETE FROM auth_failures")
