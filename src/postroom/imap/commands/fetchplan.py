"""`FetchPlan`: what one FETCH command will read, decided once from its items (RFC 9051
§6.4.5; RFC 7162 §3.1.4.1 CHANGEDSINCE / MODSEQ).

Owns the choice of read path and the per-command facts the handler (`fetch.py`) would
otherwise recompute per message:
- `ReadPath.VIEW_ROWS`: every item comes from the selected view and its rows (UID, FLAGS,
  MODSEQ, INTERNALDATE, RFC822.SIZE, SAVEDATE): no header, metadata or blob is read.
- `ReadPath.TOP_HEADERS`: the rest come from the top-level header bytes (BODY[HEADER],
  BODY[HEADER.FIELDS (…)], RFC822.HEADER): headers are read in batches up to their empty
  line, without metadata.
- `ReadPath.MESSAGES`: anything else (ENVELOPE, BODYSTRUCTURE, body parts): per message,
  the stored metadata and the blob — only its header when `is_header_only`.

Invariants: the plan is pure (no store, no context): built from the command alone, so the
same items always take the same path; a FETCH that sets \\Seen never takes VIEW_ROWS,
because its answers must carry the changed FLAGS of messages it loads rows for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from postroom.imap.wire.commands.fetch import Fetch
from postroom.imap.wire.fetch import (
    BinarySection,
    BinarySize,
    BodySection,
    FetchAttribute,
    SimpleAttribute,
)
from postroom.mail.sections import field_names

ROW_ONLY = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "SAVEDATE",
                      "EMAILID", "THREADID"})  # fmt: skip
VIEW_ONLY = frozenset({"UID", "FLAGS", "MODSEQ"})  # kept for every message: no row read
_HEADER_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})
Wanted = frozenset[str] | None  # HEADER.FIELDS[.NOT] names, lower-cased; None otherwise


class ReadPath(Enum):
    VIEW_ROWS = "view and rows"
    TOP_HEADERS = "rows and top-level headers"
    MESSAGES = "metadata and blobs"


def needs_meta(attribute: FetchAttribute) -> bool:
    return not (isinstance(attribute, SimpleAttribute) and attribute.name in ROW_ONLY)


def needs_blob(attribute: FetchAttribute) -> bool:
    if isinstance(attribute, BodySection | BinarySection | BinarySize):
        return True
    if isinstance(attribute, SimpleAttribute) and attribute.name == "PREVIEW":
        return True  # RFC 8970: read from the body of the first text part
    return isinstance(attribute, SimpleAttribute) and attribute.name.startswith("RFC822") and (
        attribute.name != "RFC822.SIZE"
    )


def is_header_only(attribute: FetchAttribute) -> bool:
    """The attribute reads nothing past the top-level header."""
    if isinstance(attribute, BodySection):
        return not attribute.section.part and attribute.section.text in _HEADER_TEXTS
    if isinstance(attribute, SimpleAttribute):
        return attribute.name == "RFC822.HEADER" or not needs_blob(attribute)
    return False


def is_top_header(attribute: FetchAttribute) -> bool:
    """Answered from the row, or from the top-level header bytes alone (no metadata)."""
    if isinstance(attribute, BodySection):
        return not attribute.section.part and attribute.section.text in _HEADER_TEXTS
    if isinstance(attribute, SimpleAttribute):
        return attribute.name in ROW_ONLY or attribute.name == "RFC822.HEADER"
    return False


def wanted_names(attributes: Sequence[FetchAttribute]) -> tuple[Wanted, ...]:
    """For each attribute, its top-level HEADER.FIELDS[.NOT] names lower-cased (once per
    command, not once per message), else None."""
    return tuple(_top_field_names(attribute) for attribute in attributes)


def _top_field_names(attribute: FetchAttribute) -> Wanted:
    if not isinstance(attribute, BodySection) or attribute.section.part:
        return None
    if attribute.section.text not in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return None
    return field_names(attribute.section.fields)


def _answered_items(command: Fetch) -> tuple[FetchAttribute, ...]:
    attributes = list(dict.fromkeys(command.attributes))  # each item answered once
    names = {a.name for a in attributes if isinstance(a, SimpleAttribute)}
    if command.is_uid and "UID" not in names:
        attributes.insert(0, SimpleAttribute("UID"))  # RFC 9051 §6.4.9
    if command.changed_since is not None and "MODSEQ" not in names:
        attributes.append(SimpleAttribute("MODSEQ"))  # RFC 7162 §3.1.4.1
    return tuple(attributes)


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """The items to answer and how to read them; see the module docstring."""

    attributes: tuple[FetchAttribute, ...]  # deduplicated, UID and MODSEQ added as required
    names: frozenset[str]  # the section-less item names among them
    wanted: tuple[Wanted, ...]  # per attribute, see `wanted_names`
    is_row_only: bool  # every item from the view and its rows
    is_top_header: bool  # every item from the rows or the top-level header
    is_header_only: bool  # no item reads the blob past the top-level header
    sets_seen: bool  # some item sets \Seen unless the mailbox is read-only

    @classmethod
    def of(cls, command: Fetch) -> FetchPlan:
        attributes = _answered_items(command)
        return cls(
            attributes=attributes,
            names=frozenset(a.name for a in attributes if isinstance(a, SimpleAttribute)),
            wanted=wanted_names(attributes),
            is_row_only=not any(needs_meta(attribute) for attribute in attributes),
            is_top_header=all(is_top_header(attribute) for attribute in attributes),
            is_header_only=all(is_header_only(attribute) for attribute in attributes),
            sets_seen=any(attribute.sets_seen for attribute in attributes),
        )

    @property
    def is_condstore_enabling(self) -> bool:
        """RFC 7162 §3.1: FETCH of MODSEQ or with CHANGEDSINCE (which adds MODSEQ)."""
        return "MODSEQ" in self.names

    @property
    def needs_rows(self) -> bool:
        """Some item needs the message rows, not only what the view keeps for every
        message (decides for VIEW_ROWS, where every item is section-less)."""
        return not self.names <= VIEW_ONLY

    @property
    def needs_fields(self) -> bool:
        """Some item is a top-level HEADER.FIELDS[.NOT]: split each header once."""
        return any(names is not None for names in self.wanted)

    def read_path(self, *, marks_seen: bool) -> ReadPath:
        """`marks_seen`: this FETCH set \\Seen on some of the messages."""
        if self.is_row_only and not marks_seen:
            return ReadPath.VIEW_ROWS
        if self.is_top_header:
            return ReadPath.TOP_HEADERS
        return ReadPath.MESSAGES
