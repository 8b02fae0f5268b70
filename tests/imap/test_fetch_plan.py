"""FetchPlan (imap/commands/fetchplan.py): one FETCH's items → the read path it takes,
decided once per command (sans-IO table test)."""

from __future__ import annotations

import pytest

from postroom.imap.commands.fetchplan import FetchPlan, ReadPath
from postroom.imap.wire.commands import parse_command
from postroom.imap.wire.commands.fetch import Fetch
from postroom.imap.wire.fetch import SimpleAttribute

ROWS, HEADERS, MESSAGES = ReadPath.VIEW_ROWS, ReadPath.TOP_HEADERS, ReadPath.MESSAGES


def plan_of(line: bytes) -> FetchPlan:
    command = parse_command(line)
    assert isinstance(command, Fetch)
    return FetchPlan.of(command)


@pytest.mark.parametrize(("items", "path", "is_header_only"), [
    (b"FLAGS", ROWS, True),
    (b"(UID FLAGS MODSEQ)", ROWS, True),
    (b"(INTERNALDATE RFC822.SIZE SAVEDATE)", ROWS, True),
    (b"BODY.PEEK[HEADER]", HEADERS, True),
    (b"(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject From)])", HEADERS, True),
    (b"BODY.PEEK[HEADER.FIELDS.NOT (Subject)]<0.100>", HEADERS, True),
    (b"RFC822.HEADER", HEADERS, True),
    (b"ENVELOPE", MESSAGES, True),  # metadata only, no blob
    (b"(FLAGS BODYSTRUCTURE)", MESSAGES, True),
    (b"BODY.PEEK[1.HEADER]", MESSAGES, False),  # a part's header lies past the top one
    (b"BODY.PEEK[TEXT]", MESSAGES, False),
    (b"BODY.PEEK[]", MESSAGES, False),
    (b"BINARY.PEEK[1]", MESSAGES, False),
    (b"RFC822.TEXT", MESSAGES, False),
])  # fmt: skip
def test_read_path(items: bytes, path: ReadPath, is_header_only: bool) -> None:
    plan = plan_of(b"a FETCH 1:* " + items)
    assert plan.read_path(marks_seen=False) is path
    assert plan.is_header_only is is_header_only


def test_setting_seen_leaves_the_rows_path() -> None:
    # FLAGS alone never sets \Seen, but the path choice is a table: with messages newly
    # \Seen the answers come from loaded rows (TOP_HEADERS without reading any header).
    plan = plan_of(b"a FETCH 1 (FLAGS RFC822.SIZE)")
    assert plan.read_path(marks_seen=True) is HEADERS and plan.is_row_only
    seen = plan_of(b"a FETCH 1 BODY[HEADER]")
    assert seen.sets_seen and seen.read_path(marks_seen=True) is HEADERS
    assert not plan_of(b"a FETCH 1 BODY.PEEK[HEADER]").sets_seen


def test_uid_and_modseq_are_added_and_items_answered_once() -> None:
    plan = plan_of(b"a UID FETCH 1:* (FLAGS FLAGS) (CHANGEDSINCE 7)")
    assert plan.attributes == (SimpleAttribute("UID"), SimpleAttribute("FLAGS"),
                               SimpleAttribute("MODSEQ"))  # fmt: skip
    assert plan.is_condstore_enabling and not plan.needs_rows
    assert plan_of(b"a FETCH 1 (MODSEQ)").is_condstore_enabling
    assert not plan_of(b"a FETCH 1 (FLAGS)").is_condstore_enabling
    assert plan_of(b"a FETCH 1 (FLAGS INTERNALDATE)").needs_rows


def test_header_field_names_are_lowered_once_per_command() -> None:
    plan = plan_of(b"a FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (Subject FROM)] BODY.PEEK[HEADER])")
    assert plan.wanted == (None, frozenset({"subject", "from"}), None)
    assert plan.needs_fields
    assert not plan_of(b"a FETCH 1 BODY.PEEK[HEADER]").needs_fields
