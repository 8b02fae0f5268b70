"""Sans-IO IMAP4rev2 / IMAP4rev1 protocol core (RFC 9051, RFC 3501). Imports nothing from
asyncio, ssl, socket or postroom.store.

Modules:
- `connection`: `ImapConnection` (receive_data / next_event), its events
  (NeedData, NeedContinuation, SyntaxErrorEvent, LiteralTooBig, LineTooLong, RawLine),
  and `ConnectionState`.
- `commands/`: one module per command family (the families of `imap/commands/`), each
  with its frozen dataclasses and `PARSERS`; `parse_command(frame, is_utf8=...)`.
- `grammar`: `SequenceSet` and shared productions (flags, dates, mailbox names).
- `search`: the SEARCH criteria tree; `fetch`: FETCH attributes with `response_name()`.
- `responses`: `render_*` serializers (BODY/BODYSTRUCTURE too), `Atom`, `Raw`, `Value`.
- `lexer`: the token reader and `ParseError` (the modified UTF-7 codec is mail/utf7.py).

Typical driver loop: see the `connection` module docstring.
"""

from __future__ import annotations

from postroom.imap.wire.connection import (
    ConnectionState,
    Event,
    ImapConnection,
    LineTooLong,
    LiteralTooBig,
    NeedContinuation,
    NeedData,
    RawLine,
    SyntaxErrorEvent,
)
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import ParseError
from postroom.imap.wire.responses import Atom, Raw, Value

__all__ = [
    "Atom",
    "ConnectionState",
    "Event",
    "ImapConnection",
    "LineTooLong",
    "LiteralTooBig",
    "NeedContinuation",
    "NeedData",
    "ParseError",
    "Raw",
    "RawLine",
    "SequenceSet",
    "SyntaxErrorEvent",
    "Value",
]
