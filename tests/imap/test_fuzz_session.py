"""Random command lines against a live session: every line gets an answer, never
NO [SERVERBUG], never a logged traceback, and the connection keeps working."""

from __future__ import annotations

import logging
import random
import ssl

import pytest

from tests.imap.conftest import ImapThread, login_raw, simple_message
from tests.imap.messages import NESTED

NAMES = [
    "FETCH", "UID FETCH", "STORE", "UID STORE", "SEARCH", "UID SEARCH", "COPY", "UID COPY",
    "MOVE", "UID MOVE", "EXPUNGE", "UID EXPUNGE", "SELECT", "EXAMINE", "STATUS", "LIST",
    "LSUB", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "NOOP", "CHECK",
    "CLOSE", "UNSELECT", "ENABLE", "ID", "NAMESPACE", "CAPABILITY", "APPEND", "X-WHAT",
]  # fmt: skip
TOKENS = [
    "1", "2", "1:*", "*", "$", "3:1", "4294967295", "0", "1,3", "INBOX", "Trash", "\"a b\"",
    '""', "%", "*", "(FLAGS)", "(BODY[1.2.MIME]<0.10>)", "BODY.PEEK[3.TEXT]", "BINARY[2]",
    "BINARY.SIZE[1.1]", "(ENVELOPE BODYSTRUCTURE RFC822.SIZE)", "FLAGS", "+FLAGS.SILENT",
    "-FLAGS", "(\\Seen $Junk)", "\\Deleted", "ALL", "UNSEEN", "OR", "NOT", "SUBJECT", "x",
    "BODY", "TEXT", "HEADER", "SINCE", "1-Jan-2000", "LARGER", "10", "UID", "RETURN",
    "(MIN MAX COUNT SAVE)", "(MESSAGES UIDNEXT)", "CHARSET", "UTF-8", "NIL", "(", ")",
    "(CHANGEDSINCE 1)", "(UNCHANGEDSINCE 1)", "IMAP4rev2", "CONDSTORE", "MODSEQ", "2",
    "(SUBSCRIBED)", "RETURN (CHILDREN STATUS (MESSAGES))", "Folder/Sub", "(CONDSTORE)",
]  # fmt: skip


def random_line(rng: random.Random, index: int) -> bytes:
    words = [rng.choice(NAMES)] + [rng.choice(TOKENS) for _ in range(rng.randint(0, 5))]
    return f"t{index} {' '.join(words)}".encode()


def test_random_commands_never_break_the_session(
    imap_server: ImapThread, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    imap_server.deliver(NESTED)
    imap_server.deliver(simple_message("two"))
    rng = random.Random(9051)
    client = login_raw(imap_server, client_tls)
    client.command(b"s", b"SELECT INBOX")
    with caplog.at_level(logging.ERROR):
        for index in range(400):
            line = random_line(rng, index)
            if b"APPEND" in line or b"LOGOUT" in line:
                continue
            lines = client.command(b"t%d" % index, line[len(b"t%d " % index) :])
            assert not any(b"SERVERBUG" in answer for answer in lines), (line, lines)
            # Still alive whatever state it is in now (the NOOP also keeps the run of
            # BAD answers short of the disconnect limit).
            assert client.command(b"n", b"NOOP")[-1].startswith(b"n OK")
            if index % 25 == 0:
                client.command(b"r", b"SELECT INBOX")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    client.close()
