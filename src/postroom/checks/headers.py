"""The header-size limit: an inbound check after DATA, before anything is stored.

Owns `HeaderLimitCheck` and the decision that a message's header section is too big to
be mail. Limits:
- one header field (with its folded continuation lines) up to 100 KiB — Postfix's
  `header_size_limit` default, refused here rather than truncated because postroom stores
  messages byte-exact (DKIM signatures must keep verifying);
- the whole header section up to 1 MiB. Hostile MIME with megabytes of headers would
  otherwise be parsed and kept in the metadata every FETCH reads.
Refused with `552 5.3.4` (RFC 3463: message too big for system). The scan reads at most
the limit plus one line; off the event loop unless the message is small and in memory.

Where the header section ends follows RFC 5322 §2.1 and what IMAP serves
(mail/headers.py): at the first empty line. A line that is neither a field nor a
continuation is counted as a field of its own, not taken as the start of the body:
otherwise fields after such a line would escape both limits while IMAP still serves
them as header fields (issue 25).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import IO

from postroom.checks.api import ACCEPT, CheckReply, ReceivedMessage, Verdict, refuse

MAX_HEADER_FIELD = 100 * 1024
MAX_HEADER_SECTION = 1024 * 1024

HEADER_FIELD_TOO_LARGE = CheckReply(552, "5.3.4", "Message header field too large "
                                    f"(limit {MAX_HEADER_FIELD} bytes)")
HEADER_SECTION_TOO_LARGE = CheckReply(552, "5.3.4", "Message header too large "
                                      f"(limit {MAX_HEADER_SECTION} bytes)")


def header_size_refusal(source: IO[bytes], max_field: int = MAX_HEADER_FIELD,
                max_section: int = MAX_HEADER_SECTION) -> CheckReply | None:
    """None when the header section of the message read from `source` is within the
    limits."""
    section = field = 0
    while True:
        line = source.readline(max_section + 1 - section)
        if line in (b"", b"\r\n", b"\n"):
            return None
        is_continuation = line[:1] in (b" ", b"\t")
        field = field + len(line) if is_continuation else len(line)
        section += len(line)
        if section > max_section:
            return HEADER_SECTION_TOO_LARGE
        if field > max_field:
            return HEADER_FIELD_TOO_LARGE


@dataclass(frozen=True, slots=True)
class HeaderLimitCheck:
    """Refuse messages whose header is too large."""

    max_field: int = MAX_HEADER_FIELD
    max_section: int = MAX_HEADER_SECTION
    name: str = "header-limits"
    timeout: float | None = None
    fail_open: bool = False

    async def on_message(self, message: ReceivedMessage) -> Verdict:
        if message.is_small:  # in memory: a few microseconds, cheaper than a thread hop
            too_large = self._scan(message)
        else:
            too_large = await asyncio.to_thread(self._scan, message)
        return ACCEPT if too_large is None else refuse(too_large)

    def _scan(self, message: ReceivedMessage) -> CheckReply | None:
        with message.open_body() as source:
            return header_size_refusal(source, self.max_field, self.max_section)
