"""SEARCH BODY/TEXT read the MIME tree stored at delivery instead of parsing each message
again (issue 8); the answers must be exactly those of parsing. Checked on a corpus of
tricky messages (transfer encodings, charsets, nesting, broken structure), directly and
through a real session against the parse-only path."""

from __future__ import annotations

import base64
import io
import ssl
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.commands.search import _load_content
from postroom.mail.mimetree import message_meta
from postroom.mail.searchtext import stored_meta as _stored_meta
from tests.imap.conftest import ImapThread, login_raw
from tests.imap.messages import NESTED


def _mime(parts: list[bytes], boundary: bytes = b"b1") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part for part in parts)
    return body + b"--" + boundary + b"--\r\n"


CORPUS: list[bytes] = [
    NESTED,
    b"Subject: plain\r\n\r\nNeedle in ASCII\r\n",
    b"Subject: =?ISO-8859-1?Q?caf=E9?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nd=E9j=E0 vu, soft=\r\nbreak\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes("Grüße aus Köln, needle".encode()).replace(b"\n", b"\r\n"),
    b"Content-Type: text/plain; charset=koi8-r\r\n\r\n" + "Привет needle".encode("koi8-r"),
    b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nstill \xff\xfe text\r\n",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-weird\r\n\r\nraw needle\r\n",
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n' + _mime([
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<b>Needle</b>\r\n",
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n",
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner needle body\r\n",
    ]),
    b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n--never-closed\r\n'
    b"Content-Type: text/plain\r\n\r\ntruncated needle",
    b"Content-Type: multipart/alternative\r\n\r\nno boundary parameter needle\r\n",
    b"Subject: no body at all\r\n",
    b"\r\nbody without header needle\r\n",
    b"Subject: bare LF\nContent-Type: text/plain\n\nneedle with bare LF\n",
    b'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n\r\n'
    b"Subject: digest part\r\n\r\ndigest needle\r\n--d--\r\n",
]


def _both(raw: bytes) -> tuple[Any, Any]:
    stored = _load_content(io.BytesIO(raw), True, message_meta(raw))
    parsed = _load_content(io.BytesIO(raw), True, None)
    return stored, parsed


def test_stored_meta_gives_the_same_text_as_parsing() -> None:
    for raw in CORPUS:
        stored, parsed = _both(raw)
        assert (stored.header, stored.body_text) == (parsed.header, parsed.body_text), raw


def test_unknown_meta_falls_back_to_parsing() -> None:
    assert _stored_meta('{"v": 99, "p": []}') is None
    assert _stored_meta("not json") is None
    assert _stored_meta("") is None
    content = _load_content(io.BytesIO(CORPUS[1]), True, '{"v": 99}')
    assert content.body_text == "Needle in ASCII\r\n"


_CHUNKS = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=b1\r\n", b"Content-Type: text/plain\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Type: message/rfc822\r\n", b"charset=utf-8\r\n", b"\r\n", b"--b1\r\n",
    b"--b1--\r\n", b"=C3=A9t=C3=A9 ", b"aGVsbG8=\r\n", b"needle ", b"\xff\xfe", b"\n",
])  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_CHUNKS, st.binary(max_size=8)), max_size=30))
def test_stored_meta_matches_parsing_on_arbitrary_mime(chunks: list[bytes]) -> None:
    stored, parsed = _both(b"".join(chunks))
    assert (stored.header, stored.body_text) == (parsed.header, parsed.body_text)


def test_search_answers_equal_the_parse_only_path(imap_server: ImapThread,
                                                  client_tls: ssl.SSLContext) -> None:
    for raw in CORPUS:
        imap_server.deliver(raw)
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    queries = [b"BODY needle", b"TEXT needle", _literal(b"BODY", "grüße"),
               _literal(b"TEXT", "café"), _literal(b"BODY", "déjà"), b"TEXT inner",
               _literal(b"BODY", "При"), b"OR BODY report TEXT forwarded", b"NOT BODY needle",
               b'TEXT "soft"']
    store: Any = imap_server.rt.store

    def answers() -> list[bytes]:
        found = []
        for index, query in enumerate(queries):
            tag = b"q%d" % index
            lines = client.command(tag, b"SEARCH CHARSET UTF-8 " + query)
            assert lines[-1].startswith(tag + b" OK"), lines
            found.append(lines[0])
        return found

    original = store.get_metas
    calls: list[int] = []

    async def counted(mailbox_id: int, uids: list[int]) -> dict[int, str]:
        calls.append(len(uids))
        return dict(await original(mailbox_id, uids))

    store.get_metas = counted
    with_meta = answers()
    assert calls and calls[0] == len(CORPUS)  # one query for the whole batch
    needles = b"* SEARCH 2 4 5 7 8 9 10 12 13 14"  # the corpus does match, in every form
    assert with_meta[:2] == [needles, needles]
    store.get_metas = _no_metas
    try:
        assert answers() == with_meta
    finally:
        store.get_metas = original
    client.close()


def _literal(key: bytes, text: str) -> bytes:
    data = text.encode()
    return key + b" {%d+}\r\n%s" % (len(data), data)


async def _no_metas(mailbox_id: int, uids: list[int]) -> dict[int, str]:
    return {}  # every message parsed, as before issue 8
