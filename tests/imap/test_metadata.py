"""IMAP METADATA and METADATA-SERVER (RFC 5464) over real sockets, plus the sans-IO
parser and entry selection."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.imap.commands.metadata import is_selected, select_entries
from postroom.imap.wire.commands import parse_command
from postroom.imap.wire.commands.append import parse_imap_url
from postroom.imap.wire.commands.metadata import (
    MAX_ENTRY_DEPTH,
    MAX_ENTRY_NAME_LENGTH,
    Depth,
    GetMetadata,
    SetMetadata,
)
from postroom.imap.wire.lexer import ParseError
from postroom.store.metadata_api import MetadataEntry
from tests.conftest import make_config
from tests.imap.conftest import ImapThread, RawClient, login_raw

# -- sans-IO ----------------------------------------------------------------------------------


def test_parse_getmetadata_forms() -> None:
    assert parse_command(b'a GETMETADATA "" /shared/Comment') == GetMetadata(
        "a", "", ("/shared/comment",))
    command = parse_command(b"a GETMETADATA (DEPTH infinity MAXSIZE 1024) INBOX"
                            b" (/private /shared/a)")
    assert command == GetMetadata("a", "INBOX", ("/private", "/shared/a"), 1024,
                                  Depth.INFINITY)
    assert parse_command(b"a GETMETADATA (DEPTH 1) INBOX /private/a").depth is Depth.ONE  # type: ignore[attr-defined]


def test_parse_setmetadata_forms() -> None:
    command = parse_command(b'a SETMETADATA INBOX (/private/Comment "hi" /shared/x NIL'
                            b" /shared/bin ~{3}\r\n\x00\x01\x02)")
    assert command == SetMetadata("a", "INBOX", (
        ("/private/comment", b"hi"), ("/shared/x", None), ("/shared/bin", b"\x00\x01\x02")))


@pytest.mark.parametrize("line", [
    b"a GETMETADATA INBOX /comment",  # neither /private nor /shared
    b"a GETMETADATA INBOX /private/a*",
    b"a GETMETADATA INBOX /private/a%b",
    b"a GETMETADATA INBOX /private//a",
    b"a GETMETADATA INBOX /private/a/",
    b"a GETMETADATA (DEPTH 2) INBOX /private/a",
    b"a GETMETADATA (COLOR 1) INBOX /private/a",
    b'a SETMETADATA INBOX (/private "x")',  # the namespace itself holds no value
    b'a SETMETADATA INBOX (/private/a "x" /PRIVATE/A "y")',
    b"a SETMETADATA INBOX ()",
    b'a GETMETADATA INBOX "/private/' + b"a" * MAX_ENTRY_NAME_LENGTH + b'"',
    b"a GETMETADATA INBOX /private" + b"/a" * MAX_ENTRY_DEPTH,
])
def test_invalid_metadata_commands(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command(line)


def test_selection_by_depth_and_maxsize() -> None:
    stored = [MetadataEntry(name, value) for name, value in (
        ("/private/a", b"1"), ("/private/a/b", b"22"), ("/private/a/b/c", b"333"),
        ("/private/ab", b"4"), ("/shared/a", b"5"))]
    assert is_selected("/private/a/b", "/private/a", Depth.ONE)
    assert not is_selected("/private/ab", "/private/a", Depth.INFINITY)
    assert select_entries(stored, ["/private/a"], Depth.ZERO, None) == (
        [("/private/a", b"1")], 0)
    assert select_entries(stored, ["/private/a"], Depth.ONE, None)[0] == [
        ("/private/a", b"1"), ("/private/a/b", b"22")]
    assert select_entries(stored, ["/private"], Depth.INFINITY, 2) == (
        [("/private/a", b"1"), ("/private/a/b", b"22"), ("/private/ab", b"4")], 3)
    assert select_entries(stored, ["/private/missing", "/private"], Depth.ZERO, None) == (
        [("/private/missing", None)], 0)


# -- over sockets -----------------------------------------------------------------------------


def _command(raw: RawClient, tag: bytes, text: bytes) -> list[bytes]:
    return raw.command(tag, text)


def test_set_get_and_delete_mailbox_and_server_entries(
        imap_server: ImapThread, client_tls: ssl.SSLContext) -> None:
    raw = login_raw(imap_server, client_tls)
    caps = raw.command(b"C", b"CAPABILITY")[0].split()
    assert b"METADATA" in caps and b"METADATA-SERVER" in caps
    assert raw.command(b"a", b'SETMETADATA INBOX (/private/comment "my inbox"'
                       b' /shared/comment "shared one")')[-1] == b"a OK SETMETADATA completed"
    assert raw.command(b"b", b'SETMETADATA "" (/private/vendor/x/y {5+}\r\nhello)')[-1] \
        .startswith(b"b OK")
    lines = raw.command(b"c", b"GETMETADATA INBOX (/private/comment /shared/comment"
                        b" /private/absent)")
    assert lines[0] == (b'* METADATA "INBOX" (/private/comment "my inbox" /shared/comment'
                        b' "shared one" /private/absent NIL)')
    lines = raw.command(b"d", b'GETMETADATA (DEPTH infinity) "" /private')
    assert lines[0] == b'* METADATA "" (/private/vendor/x/y "hello")'
    # A binary value comes back as it went in.
    assert raw.command(b"e", b"SETMETADATA INBOX (/private/bin ~{3+}\r\n\x00\xff\x01)")[-1] \
        .startswith(b"e OK")
    raw.send(b"f GETMETADATA INBOX /private/bin\r\n")
    assert raw.line() == b'* METADATA "INBOX" (/private/bin ~{3}'
    assert raw.read_exact(3) == b"\x00\xff\x01"
    assert raw.until_tagged(b"f")[-1].startswith(b"f OK")
    # NIL removes; the other mailbox's and the server's entries are apart.
    raw.command(b"g", b"SETMETADATA INBOX (/private/comment NIL)")
    assert raw.command(b"h", b"GETMETADATA INBOX /private/comment")[0] == \
        b'* METADATA "INBOX" (/private/comment NIL)'
    assert raw.command(b"i", b"GETMETADATA Sent /shared/comment")[0] == \
        b'* METADATA "Sent" (/shared/comment NIL)'
    assert raw.command(b"j", b"GETMETADATA Nowhere /shared/comment")[-1] \
        .startswith(b"j NO [NONEXISTENT]")


def test_maxsize_longentries_and_depth_one(imap_server: ImapThread,
                                           client_tls: ssl.SSLContext) -> None:
    raw = login_raw(imap_server, client_tls)
    raw.command(b"a", b'SETMETADATA INBOX (/shared/a "1" /shared/a/b "12345" /shared/a/b/c "x")')
    lines = raw.command(b"b", b"GETMETADATA (MAXSIZE 3 DEPTH 1) INBOX /shared/a")
    assert lines == [b'* METADATA "INBOX" (/shared/a "1")',
                     b"b OK [METADATA LONGENTRIES 5] GETMETADATA completed"]
    lines = raw.command(b"c", b"GETMETADATA (DEPTH infinity) INBOX (/shared/a)")
    assert lines[0] == b'* METADATA "INBOX" (/shared/a "1" /shared/a/b "12345" /shared/a/b/c "x")'


def test_limits_maxsize_and_toomany(tmp_path: Path, server_cert: tuple[Path, Path],
                                    client_tls: ssl.SSLContext) -> None:
    config = make_config(tmp_path, server_cert, METADATA_MAX_SIZE=1024, METADATA_MAX_ENTRIES=2)
    with ImapThread(config) as server:
        raw = login_raw(server, client_tls)
        big = b"x" * 1025
        assert raw.command(b"a", b"SETMETADATA INBOX (/private/big {1025+}\r\n" + big + b")"
                           )[-1] == b"a NO [METADATA MAXSIZE 1024] values are at most 1024 octets"
        assert raw.command(b"b", b'SETMETADATA INBOX (/private/a "1" /private/b "2")')[-1] \
            .startswith(b"b OK")
        assert raw.command(b"c", b'SETMETADATA INBOX (/private/c "3")')[-1] \
            .startswith(b"c NO [METADATA TOOMANY]")
        # All or none: the third entry was refused with the change that came with it.
        assert raw.command(b"d", b'SETMETADATA INBOX (/private/a NIL /private/c "3"'
                           b' /private/d "4")')[-1].startswith(b"d NO [METADATA TOOMANY]")
        lines = raw.command(b"e", b"GETMETADATA (DEPTH 1) INBOX /private")
        assert lines[0] == b'* METADATA "INBOX" (/private/a "1" /private/b "2")'
        # Replacing and removing never count as growth; the server scope has its own count.
        assert raw.command(b"f", b'SETMETADATA INBOX (/private/a NIL /private/c "3")')[-1] \
            .startswith(b"f OK")
        assert raw.command(b"g", b'SETMETADATA "" (/private/a "1" /shared/b "2")')[-1] \
            .startswith(b"g OK")


def test_entries_go_with_delete_and_follow_rename(imap_server: ImapThread,
                                                  client_tls: ssl.SSLContext) -> None:
    raw = login_raw(imap_server, client_tls)
    raw.command(b"a", b"CREATE Projects")
    raw.command(b"b", b'SETMETADATA Projects (/private/comment "work")')
    assert raw.command(b"c", b"RENAME Projects Archive2")[-1].startswith(b"c OK")
    assert raw.command(b"d", b"GETMETADATA Archive2 /private/comment")[0] == \
        b'* METADATA "Archive2" (/private/comment "work")'
    raw.command(b"e", b"DELETE Archive2")
    raw.command(b"f", b"CREATE Archive2")
    assert raw.command(b"g", b"GETMETADATA Archive2 /private/comment")[0] == \
        b'* METADATA "Archive2" (/private/comment NIL)'
    # RENAME INBOX makes a new mailbox: it takes a copy, INBOX keeps its own.
    raw.command(b"h", b'SETMETADATA INBOX (/private/comment "inbox")')
    assert raw.command(b"i", b"RENAME INBOX Old")[-1].startswith(b"i OK")
    for mailbox in (b"INBOX", b"Old"):
        assert raw.command(b"j", b"GETMETADATA " + mailbox + b" /private/comment")[0] == \
            b'* METADATA "' + mailbox + b'" (/private/comment "inbox")'


# -- fuzzing (ARCHITECTURE rule 11d) ----------------------------------------------------------
_PIECES = st.sampled_from([b"GETMETADATA", b"SETMETADATA", b" ", b"(", b")", b'"', b"{3}\r\nabc",
                           b"~{2}\r\n\x00\x01", b"/private", b"/shared", b"/a", b"NIL", b"DEPTH",
                           b"MAXSIZE", b"infinity", b"1", b"INBOX", b'""', b"*", b"%", b"\xff"])


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=14))
def test_metadata_parsers_raise_only_parse_errors(pieces: list[bytes]) -> None:
    for name in (b"GETMETADATA ", b"SETMETADATA "):
        try:
            command = parse_command(b"a " + name + b"".join(pieces))
        except ParseError:
            continue
        assert isinstance(command, GetMetadata | SetMetadata)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="/;=.%:@imapUIDVALITYSECTONPR0123456789abc", max_size=60))
def test_imap_url_parser_never_raises(text: str) -> None:
    url = parse_imap_url(text)
    assert url is None or (url.uid > 0 and url.mailbox)
