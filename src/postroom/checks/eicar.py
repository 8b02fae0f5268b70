"""The EICAR anti-virus test file, recognised in every message whether or not clamd runs,
so an administrator can test the refusal path end to end (issue 18).

Owns `contains_eicar`: true when the message, or one of its MIME leaf parts decoded from
base64 or quoted-printable, *is* the EICAR test file: the 68-character string at its
start, followed by nothing but whitespace up to 128 bytes in all (EICAR's own
definition; a letter that merely quotes the string is no test file).

Invariants (bounds): a cheap byte search decides first, so a message with neither the
string nor the start of its base64 form is never parsed; only leaf parts whose encoded
payload is at most `MAX_ENCODED_PART` are decoded, and at most `MAX_PARTS` are looked at.
No I/O: the caller reads the message (off the loop when it is large).
"""

from __future__ import annotations

import email
from email.message import Message
from email.policy import compat32

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_FILE_MAX = 128  # EICAR: the file may be padded with whitespace up to 128 bytes
# The first 24 base64 characters of a part that starts with the string (18 bytes: aligned,
# and on the first encoded line whatever the line length).
_EICAR_BASE64_START = b"WDVPIVAlQEFQWzRcUFpYNTQo"
MAX_ENCODED_PART = 4 * 1024  # 128 bytes encode to ~180 in base64 and ~400 in QP
MAX_PARTS = 1000
SYMBOL = "EICAR_TEST_FILE"
SIGNATURE = "Eicar-Test-Signature"  # clamd's name for it


def is_eicar_file(data: bytes) -> bool:
    return (len(data) <= EICAR_FILE_MAX and data.startswith(EICAR)
            and not data[len(EICAR):].strip())


def may_contain_eicar(message: bytes) -> bool:
    """The cheap test: False means `contains_eicar` is False too."""
    return b"EICAR-STANDARD" in message or _EICAR_BASE64_START in message


def contains_eicar(message: bytes) -> bool:
    if not may_contain_eicar(message):
        return False
    parsed = email.message_from_bytes(message, policy=compat32)
    for count, part in enumerate(parsed.walk()):
        if count >= MAX_PARTS:
            return False
        if not part.is_multipart() and _part_is_eicar(part):
            return True
    return False


def _part_is_eicar(part: Message) -> bool:
    payload = part.get_payload()
    if not isinstance(payload, str) or len(payload) > MAX_ENCODED_PART:
        return False
    decoded = part.get_payload(decode=True)
    if not isinstance(decoded, bytes):
        return False
    # A text part's last line break belongs to the MIME structure, not to the file.
    return is_eicar_file(decoded) or is_eicar_file(decoded.rstrip(b"\r\n"))
