"""The full-text index (issue 22): SEARCH TEXT/BODY over imaplib against real servers
answer exactly as without the index — for a generated corpus (substrings inside words,
case, non-ASCII, quoted-printable and base64 parts, HTML, attachments, RFC 2047
headers), for mail delivered before the index existed (catch-up), after EXPUNGE, for
messages not indexed yet, and after a restart. The reference is a second server with
ENABLE_FTS=0, fed the same messages in the same order (so UIDs agree)."""

from __future__ import annotations

import base64
import imaplib
import quopri
import random
import sqlite3
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.commands.search import CONTENT_CACHE
from postroom.imap.commands.searchplan import (
    IndexedText,
    OneFlag,
    TextTest,
    text_tests,
    with_index,
)
from postroom.imap.wire.search import AndKey, NotKey
from postroom.mail.searchtext import index_texts
from postroom.store.sql.fulltext import _SQLITE, trigram_query
from tests.conftest import make_config
from tests.support.server import AppThread

TLS: list[ssl.SSLContext] = []  # the test CA's client context, set by the test
PASSWORD = "secret-pass"
ADDRESS = "fts@example.com"
WORDS = ["Straße", "GRÜSSE", "café", "Ünïcödé", "naïve", "quarterly", "report", "Invoice",
         "zebra", "ПРИВЕТ", "мир", "日本語", "テキスト", "lorem", "ipsum", "100%", "snake_case",
         "it's", '"quoted"', "back\\slash", "emoji🙂ok", "résumé", "İstanbul", "ﬁnance"]


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def _text_part(rng: random.Random, text: str) -> bytes:
    kind = rng.choice(["8bit", "qp", "base64", "latin1-qp", "html"])
    if kind == "8bit":
        return (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit"
                b"\r\n\r\n" + text.encode() + b"\r\n")
    if kind == "qp":
        return (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding:"
                b" quoted-printable\r\n\r\n" + quopri.encodestring(text.encode()) + b"\r\n")
    if kind == "base64":
        return (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
                b"\r\n\r\n" + base64.encodebytes(text.encode()).replace(b"\n", b"\r\n"))
    if kind == "latin1-qp":
        data = text.encode("latin-1", "replace")
        return (b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding:"
                b" quoted-printable\r\n\r\n" + quopri.encodestring(data) + b"\r\n")
    html = f"<html><body><p>{text}</p><b>bold&amp;co</b></body></html>"
    return (b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit"
            b"\r\n\r\n" + html.encode() + b"\r\n")


def _message(rng: random.Random, index: int) -> bytes:
    subject = _words(rng, 3)
    encoded = "=?utf-8?b?" + base64.b64encode(subject.encode()).decode() + "?="
    header = (f"From: Sender {index} <sender{index}@example.org>\r\nTo: {ADDRESS}\r\n"
              f"Subject: {encoded}\r\nMessage-ID: <m{index}@example.org>\r\n"
              "MIME-Version: 1.0\r\n").encode()
    parts = [_text_part(rng, _words(rng, rng.randint(3, 40))) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.3:  # an attachment: not text, not searched
        secret = f"attachmentonly{index}".encode()
        parts.append(b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding:"
                     b" base64\r\n\r\n" + base64.encodebytes(secret) + b"\r\n")
    if len(parts) == 1 and rng.random() < 0.5:
        return header + parts[0]
    boundary = f"b{index}".encode()
    body = b"".join(b"--" + boundary + b"\r\n" + part for part in parts)
    return (header + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
            + body + b"--" + boundary + b"--\r\n")


def corpus(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [_message(rng, seed * 1000 + index) for index in range(count)]


def needles(seed: int) -> list[str]:
    """Substrings of the vocabulary (inside words, changed case), absent strings, short
    strings the index cannot answer, and the characters LIKE and FTS5 treat specially."""
    rng = random.Random(seed)
    found = []
    for _ in range(40):
        word = rng.choice(WORDS)
        start = rng.randrange(len(word))
        piece = word[start:start + rng.randint(1, 7)]
        found.append(piece.upper() if rng.random() < 0.3 else piece)
    return [*found, "attachmentonly3", "sender1", "subject:", "zebra lorem", "absentword",
            "ss", "SS", "%", "0%", "e_c", '"quo', "h\\s", "bold&amp", "<p>", "strasse",
            "GRÜẞE", "i̇stanbul", "fi", "finance"]


@contextmanager
def imap(app: AppThread) -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4_SSL("127.0.0.1", app.port("imaps"), ssl_context=TLS[0], timeout=30)
    try:
        client.login(ADDRESS, PASSWORD)
        client.select("INBOX")
        yield client
    finally:
        client.logout()


def uid_search(client: imaplib.IMAP4, key: str, needle: str) -> list[int]:
    if needle.isascii() and needle.isprintable() and not set(needle) & set('"\\'):
        status, data = client.uid("SEARCH", key, f'"{needle}"')  # a quoted string
    else:
        client.literal = needle.encode()  # type: ignore[attr-defined]  # as {n} literal
        status, data = client.uid("SEARCH", "CHARSET", "UTF-8", key)
    assert status == "OK", data
    return sorted(int(uid) for uid in (data[0] or b"").split())


def answers(app: AppThread, strings: list[str]) -> dict[tuple[str, str], list[int]]:
    with imap(app) as client:
        found = {(key, s): uid_search(client, key, s) for s in strings for key in ("TEXT", "BODY")}
        for criteria in ("OR BODY zebra TEXT ipsum", "NOT TEXT report", "TEXT lorem UNSEEN",
                         "BODY invoice NOT BODY zebra"):
            status, data = client.uid("SEARCH", criteria)
            assert status == "OK"
            found[("criteria", criteria)] = sorted(int(u) for u in (data[0] or b"").split())
    return found


def append(app: AppThread, messages: list[bytes]) -> None:
    with imap(app) as client:
        for raw in messages:
            status, _ = client.append("INBOX", "", None, raw)  # type: ignore[arg-type]
            assert status == "OK"


def expunge(app: AppThread, uids: list[int]) -> None:
    with imap(app) as client:
        client.uid("STORE", ",".join(map(str, uids)), "+FLAGS.SILENT", "(\\Deleted)")
        client.expunge()


def catch_up(app: AppThread) -> None:
    assert app.app.fulltext is not None
    app.call(app.app.fulltext.catch_up(), timeout=120)


async def _inbox_id(app: AppThread) -> int:
    account = await app.runtime.store.get_account(ADDRESS)
    assert account is not None
    inbox = await app.runtime.store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return inbox.id


def indexed_uid(app: AppThread) -> int:
    async def read() -> int:
        match = await app.runtime.store.fulltext_search(await _inbox_id(app), "anything",
                                                        with_header=True)
        assert match is not None
        return match.indexed_uid
    return app.call(read())


def blob_ids(app: AppThread) -> list[str]:
    async def read() -> list[str]:
        return [row.blob_id for row in await app.runtime.store.list_messages(
            await _inbox_id(app))]
    return app.call(read())


def server(tmp_path: Path, cert: tuple[Path, Path], name: str, fts: bool) -> AppThread:
    app = AppThread(make_config(tmp_path / name, cert, ENABLE_FTS=fts))
    app.__enter__()
    return app


def test_index_answers_as_reading_the_messages(tmp_path: Path, server_cert: tuple[Path, Path],
                                               client_tls: ssl.SSLContext) -> None:
    TLS[:] = [client_tls]
    strings = needles(7)
    first, second = corpus(1, 60), corpus(2, 20)
    reference = server(tmp_path, server_cert, "reference", fts=False)
    try:
        reference.add_account(ADDRESS, PASSWORD)
        append(reference, first)
        # Mail delivered before the index existed: the server starts without it.
        with AppThread(make_config(tmp_path / "indexed", server_cert, ENABLE_FTS=False)) as old:
            old.add_account(ADDRESS, PASSWORD)
            append(old, first)
            assert indexed_uid(old) == 0
        indexed = server(tmp_path, server_cert, "indexed", fts=True)
        try:
            expected = answers(reference, strings)
            assert any(expected.values()) and not all(expected.values())
            catch_up(indexed)
            assert indexed_uid(indexed) == len(first)
            # Strings of three or more characters are answered from the index alone: no
            # message is read (the search content cache stays empty of this server's).
            long = [s for s in strings if len(s.casefold()) >= 3]
            CONTENT_CACHE.clear()
            got = answers(indexed, long)
            assert not any(CONTENT_CACHE.holds(blob) for blob in blob_ids(indexed))
            assert got == {k: v for k, v in expected.items() if k[1] in long or k[0] == "criteria"}
            assert answers(indexed, strings) == expected
            assert any(CONTENT_CACHE.holds(blob) for blob in blob_ids(indexed))  # "ss": read
            expunge(reference, [3, 10, 11, 40])
            expunge(indexed, [3, 10, 11, 40])
            assert answers(indexed, strings) == answers(reference, strings)
            append(reference, second)
            append(indexed, second)  # not indexed yet, or partly: read the old way
            expected = answers(reference, strings)
            assert answers(indexed, strings) == expected
            catch_up(indexed)
            assert indexed_uid(indexed) == len(first) + len(second)
            assert answers(indexed, strings) == expected
        finally:
            indexed.stop()
        with AppThread(make_config(tmp_path / "indexed", server_cert)) as restarted:
            assert indexed_uid(restarted) == len(first) + len(second)
            assert answers(restarted, strings) == expected
            # New mail is indexed by the background task alone (no catch_up call).
            append(restarted, corpus(4, 3))
            append(reference, corpus(4, 3))
            total = len(first) + len(second) + 3
            deadline = time.monotonic() + 60
            while indexed_uid(restarted) < total and time.monotonic() < deadline:
                time.sleep(0.1)
            assert indexed_uid(restarted) == total
            assert answers(restarted, strings) == answers(reference, strings)
    finally:
        reference.stop()


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    max_size=80),
       start=st.integers(0, 80), length=st.integers(3, 40),
       other=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                     min_size=3, max_size=30))
def test_sqlite_index_query_is_exact_substring(text: str, start: int, length: int,
                                              other: str) -> None:
    """The SQLite index's query (trigram candidates, then instr) on the migration's own
    table is exactly Python's `in` on the stored (folded) text."""
    db = sqlite3.connect(":memory:")
    schema = resources.files("postroom.store.migrations.sqlite").joinpath("0022_fulltext.sql")
    statement = schema.read_text().split("CREATE TABLE")[0]  # the FTS5 table alone
    db.executescript(statement)
    folded = text.casefold()
    db.execute("INSERT INTO fulltext (rowid, header, body) VALUES (1, 'h', ?)", (folded,))
    for needle in (folded[start:start + length], other.casefold(), folded[:length] + "!"):
        if len(needle) < 3:
            continue
        rows = db.execute(_SQLITE.search_body,
                          (trigram_query(needle), 0, 2, needle)).fetchall()
        assert bool(rows) == (needle in folded), (folded, needle)


def test_index_texts_are_what_search_reads() -> None:
    raw = corpus(3, 1)[0]
    texts = index_texts(raw, None)
    assert texts is not None and texts[0].startswith("from: sender")
    assert index_texts(b"Subject: x\r\n\r\n" + b"a" * 300_000, None) is None  # too long
    assert index_texts(b"Subject: x\r\n\r\nnul \x00 here", None) is None  # not storable


def test_indexed_text_answers_only_for_what_it_covers() -> None:
    test = TextTest("abc", is_header_too=True)
    key = IndexedText(test, indexed_uid=10, uids=frozenset({2, 5}), skipped=frozenset({3}))
    assert [key.answer(uid) for uid in (2, 4, 3, 10, 11)] == [True, False, None, False, None]
    assert key.covers([1, 2, 10]) and key.covers([])
    assert not key.covers([1, 3]) and not key.covers([2, 11])
    program = AndKey((OneFlag("\\SEEN", True), NotKey(test), TextTest("xyz", False)))
    assert with_index(program, {test: key}) == AndKey(
        (OneFlag("\\SEEN", True), NotKey(key), TextTest("xyz", False)))
    assert text_tests(program) == {test, TextTest("xyz", False)}
