"""Sans-IO pieces of the outbound SMTP client: reply parsing, EHLO keywords, DATA framing.

Owns the bytes-level grammar the client reads and writes (RFC 5321 §4.2, §4.5.2) so it can
be tested without sockets. Imports nothing from asyncio, ssl or socket.

Invariants:
- `ReplyParser.feed` accepts any bytes, split anywhere; several replies in one chunk
  (a pipelined burst, RFC 2920 §3.1) all come out, in order. Anything that is not a reply
  line raises `MalformedReply`, never another exception; buffers are bounded.
- `frame_data` always yields CRLF line ends, stuffs every line starting with "." and ends
  with the `CRLF . CRLF` terminator, whatever line ends the message had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers send longer
# ones, so we are lenient but still bounded.
MAX_LINE = 8192
MAX_LINES = 1000  # of one multi-line reply

# RFC 5321 §4.2: Reply-code is three digits, first 2-5; then SP or "-" and text, or CRLF.
_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]?)(.*)", re.DOTALL)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


class MalformedReply(Exception):
    """The server sent something that is not an SMTP reply."""


@dataclass(frozen=True, slots=True)
class ParsedReply:
    code: int
    lines: tuple[str, ...]  # text of each line, without the code and separator

    @property
    def text(self) -> str:
        return " ".join(self.lines)


class ReplyParser:
    """Bytes in, complete replies out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._code: int | None = None
        self._lines: list[str] = []

    @property
    def has_pending_bytes(self) -> bool:
        """True when bytes past the last complete reply are buffered."""
        return bool(self._buffer) or self._code is not None

    def feed(self, data: bytes) -> list[ParsedReply]:
        self._buffer += data
        replies: list[ParsedReply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise MalformedReply("reply line too long")
                return replies
            line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
            reply = self._take_line(line.removesuffix(b"\r"))
            if reply is not None:
                replies.append(reply)

    def _take_line(self, line: bytes) -> ParsedReply | None:
        if len(line) > MAX_LINE:
            raise MalformedReply("reply line too long")
        match = _LINE.fullmatch(line)
        if match is None or (match.group(2) == b"" and match.group(3)):
            raise MalformedReply(f"not an SMTP reply: {line[:60]!r}")
        code = int(match.group(1))
        # RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
        if self._code is not None and code != self._code:
            raise MalformedReply(f"reply code changed from {self._code} to {code}")
        self._code = code
        self._lines.append(_printable(match.group(3)))
        if len(self._lines) > MAX_LINES:
            raise MalformedReply("multi-line reply too long")
        if match.group(2) == b"-":
            return None
        reply = ParsedReply(code, tuple(self._lines))
        self._code, self._lines = None, []
        return reply


def _printable(raw: bytes) -> str:
    """Reply text ends up in logs and DSNs: no control characters."""
    return _UNPRINTABLE.sub(" ", raw.decode("utf-8", errors="replace")).strip()


@dataclass(frozen=True, slots=True)
class Extensions:
    """What an EHLO reply advertised (RFC 5321 §4.1.1.1: keyword [SP params] per line)."""

    keywords: frozenset[str] = frozenset()
    auth_mechanisms: frozenset[str] = frozenset()
    size_limit: int | None = None  # RFC 1870: SIZE [limit]; 0 or missing = no limit

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords


def parse_extensions(reply: ParsedReply) -> Extensions:
    """The first line is the server's greeting; each later line names one extension."""
    keywords: set[str] = set()
    mechanisms: set[str] = set()
    size_limit: int | None = None
    for line in reply.lines[1:]:
        words = line.replace("=", " ", 1).split() if line.upper().startswith("AUTH=") \
            else line.split()
        if not words:
            continue
        keyword = words[0].upper()
        keywords.add(keyword)
        if keyword == "AUTH":  # RFC 4954 §3; "AUTH=" is the pre-standard spelling
            mechanisms.update(word.upper() for word in words[1:])
        elif keyword == "SIZE" and len(words) > 1 and words[1].isdigit():
            size_limit = int(words[1]) or None
    return Extensions(frozenset(keywords), frozenset(mechanisms), size_limit)


def frame_data(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, dot-stuffed (RFC 5321 §4.5.2), terminated."""
    # bytes.splitlines splits on CRLF, bare LF and bare CR alike, so a stray bare line end
    # becomes CRLF instead of reaching a server that may refuse it (RFC 5321 §2.3.8).
    lines = [b"." + line if line.startswith(b".") else line
             for line in message.splitlines()]
    if not lines:
        return b".\r\n"
    return b"\r\n".join(lines) + b"\r\n.\r\n"
