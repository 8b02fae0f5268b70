"""JMAP blobIds (RFC 8620 §6) of what postroom stores.

Owns the spelling of a blobId: a stored blob (a message, an upload) is named by its
store blob id as it is; a part of a message (RFC 8621 §4.1.4 EmailBodyPart.blobId) by
`part_blob_id`: the message's blob id, "_", and the IMAP part number with "-" for ".".

Why not "{blobId}.{partId}": a blobId is an Id (§1.2), which allows only A-Z a-z 0-9
"-" and "_". Store blob ids are hex (SQLite's inline ones "i" + hex), so "_" cannot be
part of one and the split is unambiguous. Sans-IO.
"""

from __future__ import annotations

import re

_BLOB = re.compile(r"[A-Za-z0-9]{1,200}")
_PART = re.compile(r"[1-9][0-9]{0,8}(?:-[1-9][0-9]{0,8}){0,31}")


def part_blob_id(blob_id: str, part_id: str) -> str:
    """The blobId of part `part_id` ("2.1") of the message stored as `blob_id`."""
    return f"{blob_id}_{part_id.replace('.', '-')}"


def parse_blob_id(text: str) -> tuple[str, str | None] | None:
    """(store blob id, part id or None for the whole blob), or None when `text` names
    nothing postroom could have handed out."""
    blob_id, separator, part = text.partition("_")
    if not _BLOB.fullmatch(blob_id):
        return None
    if not separator:
        return blob_id, None
    if not _PART.fullmatch(part):
        return None
    return blob_id, part.replace("-", ".")
