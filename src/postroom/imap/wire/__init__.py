"""Sans-IO IMAP4rev2 / IMAP4rev1 protocol core (RFC 9051, RFC 3501). Imports nothing from
asyncio, ssl, socket or postroom.store.

Modules:
- `connection`: `ImapConnection` (receive_data / next_event), its events
  (NeedData, NeedContinuation, SyntaxErrorEvent, LiteralTooBig, LineTooLong, RawLine),
  `ConnectionState` and the allowed-commands table `ALLOWED_STATES` / `is_allowed`.
- `commands`: one frozen dataclass per command and `parse_command(frame, is_utf8=...)`.
- `grammar`: `SequenceSet` and shared productions (flags, dates, mailbox names).
- `search`: the SEARCH criteria tree; `fetch`: FETCH attributes with `response_name()`.
- `responses`: `render_*` serializers, `Atom`, `Raw`, `Value`.
- `utf7`: modified UTF-7 codec; `lexer`: the token reader and `ParseError`.

Typical driver loop: see the `connection` module docstring.
"""

from __future__ import annotations

from postroom.imap.wire.connection import (
    ALLOWED_STATES,
    ConnectionState,
    Event,
    ImapConnection,
    LineTooLong,
    LiteralTooBig,
    NeedContinuation,
    NeedData,
    RawLine,
    SyntaxErrorEvent,
    is_allowed,
)
from postroom.imap.wire.grammar import SequenceSet
from postroom.imap.wire.lexer import ParseError
from postroom.imap.wire.responses import Atom, Raw, Value

__all__ = [
    "ALLOWED_STATES",
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
    "is_allowed",
]
