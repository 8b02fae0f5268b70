"""`CommandSpec`: everything the session needs to know about one IMAP command, in one
place, declared next to its handler (each family module's `SPECS`).

Owns the spec type, the handler type and the state sets of RFC 9051 §6 (§6.1 any state,
§6.2 not authenticated, §6.3 authenticated, §6.4 selected). The registry that gathers the
families' specs and derives the session's tables from them is `imap/commands/__init__.py`.

Invariants:
- One spec per command dataclass; `names` are the names as sent that parse to it
  ("FETCH", "UID FETCH"), each a key of `imap.wire.commands.PARSERS` (the sans-IO parser
  registry, which never imports handlers: the spec points down at the parser, not up).
- `handle` is None only for the commands the session driver runs itself because they
  move bytes outside the command/response cycle (STARTTLS, IDLE).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from postroom.imap.commands.context import Context, Done
from postroom.imap.wire.commands import PARSERS, Command
from postroom.imap.wire.commands.base import Parser
from postroom.imap.wire.connection import ConnectionState

Handler = Callable[[Context, Any], Awaitable[Done]]

ANY_STATE = frozenset(ConnectionState) - {ConnectionState.LOGOUT}  # RFC 9051 §6.1
NOT_AUTHENTICATED = frozenset({ConnectionState.NOT_AUTHENTICATED})  # §6.2
AUTHENTICATED = frozenset({ConnectionState.AUTHENTICATED, ConnectionState.SELECTED})  # §6.3
SELECTED = frozenset({ConnectionState.SELECTED})  # §6.4


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command: its dataclass, wire names, handler, states, what it loads, whether
    EXPUNGE may follow it, and the capabilities it brings.

    - `needs_view_tables`: the handler reads the selected view's per-message flags or
      MODSEQs, so the session loads them first (imap/selected.py); without it a session
      that SELECTs and IDLEs never does.
    - `allows_expunge`: EXPUNGE responses may go out after it; False for FETCH, STORE
      and SEARCH, whose sequence numbers must stay valid (RFC 9051 §7.5.1).
    - `capabilities`: what CAPABILITY advertises after login because of this command
      (or its extensions).
    """

    command: type[Command]
    names: tuple[str, ...]
    handle: Handler | None
    states: frozenset[ConnectionState]
    needs_view_tables: bool = True
    allows_expunge: bool = True
    capabilities: tuple[str, ...] = ()

    @property
    def parsers(self) -> dict[str, Parser]:
        """The wire parsers of `names` (KeyError if one is not registered)."""
        return {name: PARSERS[name] for name in self.names}
