"""What delivery tells the Sieve evaluator: the envelope, the time, the environment,
the mailboxes, loaders for included scripts and duplicate ids, and the limits.

Owns these value types only, so the evaluator and its tests can both import them.
Invariant: nothing here does I/O — the callables answer from what delivery loaded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from postroom.sieve.compile import Script


@dataclass(frozen=True, slots=True)
class Limits:
    steps: int = 2_000_000  # CPU steps of one evaluation (Budget)
    actions: int = 32  # Pigeonhole's sieve_max_actions
    redirects: int = 4  # Pigeonhole's sieve_max_redirects
    include_depth: int = 10  # Pigeonhole's sieve_include_max_nesting_depth
    includes: int = 255
    variables: int = 255  # per scope
    variable_size: int = 4096  # characters (Pigeonhole's sieve_variables_max_variable_size)


@dataclass(frozen=True, slots=True)
class SieveEnvelope:
    sender: str  # "" for the null reverse-path
    recipient: str
    auth: str = ""  # the authenticated submitter, if any


@dataclass(frozen=True, slots=True)
class SieveContext:
    envelope: SieveEnvelope
    now: dt.datetime  # aware, in the user's zone
    environment: Mapping[str, str] = field(default_factory=dict)
    mailboxes: frozenset[str] = frozenset({"INBOX"})
    special_use: Mapping[str, str] = field(default_factory=dict)  # "\\Junk" → mailbox name
    include: Callable[[str, str], Script | None] = lambda location, name: None
    is_duplicate: Callable[[str, str], bool] = lambda handle, value: False
    limits: Limits = Limits()


