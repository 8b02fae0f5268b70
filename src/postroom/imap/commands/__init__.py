"""IMAP command handlers, one module per command family, and the command registry.

Owns `SPECS` (command dataclass → `CommandSpec`, gathered from each family module's
`SPECS`) and the tables the session derives from it: `ALLOWED_STATES` / `is_allowed`
(RFC 9051 §6) and `CAPABILITIES` (what CAPABILITY lists after login). A command's parser
lives in the family module of the same name under `imap/wire/commands/`.

Adding a command: its dataclass, parser and `PARSERS` line in
`imap/wire/commands/<family>.py`, its handler and `CommandSpec` line in
`imap/commands/<family>.py`; a new family is those two modules plus one line in each
`FAMILIES`. Importing this module fails if a wire name has no spec or two.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from postroom.imap.commands import (
    append,
    auth,
    copymove,
    expunge,
    fetch,
    mailboxes,
    metadata,
    misc,
    notify,
    quota,
    search,
    select,
    sort,
    store,
    thread,
)
from postroom.imap.commands.context import Context, Done
from postroom.imap.commands.spec import CommandSpec
from postroom.imap.wire.commands import PARSERS, Command
from postroom.imap.wire.connection import ConnectionState

FAMILIES: tuple[ModuleType, ...] = (
    misc, auth, select, mailboxes, append, expunge, search, fetch, store, copymove,
    quota,
    sort,
    notify,
    metadata,
    thread,
)  # fmt: skip
# Capabilities of the protocol as a whole rather than of one command (RFC 9051 §7.2.2).
PROTOCOL_CAPABILITIES = ("IMAP4rev2", "IMAP4rev1", "LITERAL+", "UTF8=ACCEPT")


def _collect(families: Iterable[ModuleType]) -> dict[type[Command], CommandSpec]:
    specs: dict[type[Command], CommandSpec] = {}
    named: dict[str, CommandSpec] = {}
    for family in families:
        family_specs: tuple[CommandSpec, ...] = family.SPECS
        for spec in family_specs:
            if spec.command in specs:
                raise RuntimeError(f"{spec.command.__name__} has two specs")
            specs[spec.command] = spec
            for name in spec.names:
                if name in named:
                    raise RuntimeError(f"IMAP command {name} has two specs")
                named[name] = spec
    if set(named) != set(PARSERS):
        raise RuntimeError(f"specs and parsers disagree: {set(named) ^ set(PARSERS)}")
    return specs


SPECS: dict[type[Command], CommandSpec] = _collect(FAMILIES)
ALLOWED_STATES: dict[type[Command], frozenset[ConnectionState]] = {
    command: spec.states for command, spec in SPECS.items()
}
CAPABILITIES: tuple[str, ...] = tuple(
    dict.fromkeys(PROTOCOL_CAPABILITIES + tuple(
        capability for spec in SPECS.values() for capability in spec.capabilities))
)  # fmt: skip


def is_allowed(command: Command, state: ConnectionState) -> bool:
    return state in ALLOWED_STATES.get(type(command), frozenset())


__all__ = [
    "ALLOWED_STATES", "CAPABILITIES", "FAMILIES", "SPECS", "CommandSpec", "Context", "Done",
    "is_allowed",
]  # fmt: skip
