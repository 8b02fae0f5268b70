"""RFC 8474 object ids: what EMAILID is (MAILBOXID is the store's `Mailbox.object_id`;
THREADID is NIL: no thread ids are kept)."""

from __future__ import annotations


def email_id(blob_id: str) -> str:
    """EMAILID: the stored body's id, the same for every copy (COPY and MOVE share the
    blob) and never another message's (a blob never changes); objectid syntax (§3)."""
    return "E" + blob_id[:254]
