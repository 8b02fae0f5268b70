"""Running a compiled Sieve script against one message: the interpreter.

Owns control flow (if/elsif/else, stop, include/return/global of RFC 6609), variables
(RFC 5229), the internal flags (RFC 5232), the action list with its merging, conflicts
and limits (RFC 5228 §2.10), and turning a runtime error into "keep" (§2.10.6). The
tests themselves are predicates.py; what delivery may know (mailboxes, included
scripts, duplicate ids) comes in `SieveContext` as values and callables that do no I/O.

Invariants:
- Pure: no I/O, no clock (the context's `now`), no randomness; the same script,
  message and context give the same result.
- Bounded: every command, test and comparison spends `Budget` steps; actions, redirects,
  variables, variable sizes and include depth have limits (`Limits`); exceeding one is
  a runtime error, never a hang and never an exception out of `evaluate`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from postroom.sieve.actions import (
    Action,
    Discard,
    DuplicateMark,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveResult,
    Vacation,
)
from postroom.sieve.compile import Constant, Node, Script, Str
from postroom.sieve.context import Limits, SieveContext, SieveEnvelope
from postroom.sieve.match import Budget, BudgetExceeded
from postroom.sieve.message import SieveMessage
from postroom.sieve.predicates import evaluate_test
from postroom.sieve.strings import Ref, Text, quote_regex, quote_wildcards

DEFAULT_VACATION_DAYS = 7


class SieveRuntimeError(Exception):
    def __init__(self, node: Node | None, message: str) -> None:
        where = f"line {node.line}: " if node is not None else ""
        super().__init__(f"{where}error: {message}")


class _Return(Exception):
    """`return` (RFC 6609 §3.3): end the current (included) script."""


class _Stop(Exception):
    """`stop` (RFC 5228 §3.3): end all processing."""


@dataclass(slots=True)
class _Scope:
    variables: dict[str, str] = field(default_factory=dict)
    globals: set[str] = field(default_factory=set)


class Interpreter:
    """One evaluation. Predicates (predicates.py) read `message`, `context`, the match
    state and the expansion helpers; commands run here."""

    def __init__(self, message: SieveMessage, context: SieveContext) -> None:
        self.message = message
        self.context = context
        self.limits = context.limits
        self.budget = Budget(context.limits.steps)
        self.result = SieveResult()
        self.flags: list[str] = []  # the internal variable of RFC 5232 §3
        self.flag_variables: dict[str, list[str]] = {}
        self.match_values: tuple[str, ...] = ()
        self.scope = _Scope()
        self.global_variables: dict[str, str] = {}
        self.redirects = 0
        self.depth = 0
        self.included_once: set[tuple[str, str]] = set()
        self.include_count = 0
        self.is_edited = False
        self.uses_variables = False
        self.duplicate_marks: list[DuplicateMark] = []

    # -- strings -------------------------------------------------------------------
    def expand(self, value: Str | None) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        text = "".join(part if isinstance(part, str) else self.variable(part)
                       for part in value.parts)  # fmt: skip
        self.budget.spend(len(text) // 64)
        return text

    def expand_list(self, values: tuple[Str, ...] | None) -> Sequence[str]:
        if type(values) is Constant:  # no variables in it: as compiled
            return values
        return [value if type(value) is str else self.expand(value)
                for value in values or ()]  # fmt: skip

    def variable(self, ref: Ref) -> str:
        if ref.is_match:
            index = int(ref.name)
            return self.match_values[index] if index < len(self.match_values) else ""
        if ref.name in self.scope.globals:
            return self.global_variables.get(ref.name, "")
        return self.scope.variables.get(ref.name, "")

    def set_variable(self, node: Node, name: str, value: str) -> None:
        name = name.lower()
        value = value[: self.limits.variable_size]
        target = (self.global_variables if name in self.scope.globals
                  else self.scope.variables)  # fmt: skip
        if name not in target and len(target) >= self.limits.variables:
            raise SieveRuntimeError(node, f"more than {self.limits.variables} variables")
        target[name] = value

    # -- running ---------------------------------------------------------------------
    def run(self, script: Script) -> None:
        self.uses_variables = script.uses_variables
        with contextlib.suppress(_Return):
            self.block(script.commands)

    def block(self, commands: tuple[Node, ...]) -> None:
        taken = False  # an if/elsif in this chain already ran its block
        for node in commands:
            self.budget.spend(1)
            if node.name == "if":
                taken = self.conditional(node)
            elif node.name in ("elsif", "else"):
                if not taken:
                    taken = self.conditional(node) if node.name == "elsif" else self.always(node)
            else:
                self.command(node)

    def conditional(self, node: Node) -> bool:
        if evaluate_test(self, node.tests[0]):
            self.block(node.block or ())
            return True
        return False

    def always(self, node: Node) -> bool:
        self.block(node.block or ())
        return True

    def command(self, node: Node) -> None:
        handler = _COMMANDS.get(node.name)
        if handler is None:  # the compiler only lets known commands through
            raise SieveRuntimeError(node, f"no handler for {node.name}")
        handler(self, node)

    # -- actions -----------------------------------------------------------------------
    def add_action(self, node: Node, action: Action, *, cancels_keep: bool) -> None:
        actions = self.result.actions
        for existing in actions:
            _check_conflict(node, existing, action)
        if _is_duplicate_action(actions, action):
            if cancels_keep:
                self.result.implicit_keep = False
            return
        if len(actions) >= self.limits.actions:
            raise SieveRuntimeError(node, f"more than {self.limits.actions} actions")
        actions.append(action)
        if cancels_keep:
            self.result.implicit_keep = False

    def flags_for(self, node: Node) -> tuple[str, ...]:
        """RFC 5232 §5: :flags given, else the internal variable's current value."""
        if "flags" in node.tags:
            return tuple(_split_flags(self.expand_list(node.tags["flags"])))
        return tuple(self.flags)


def _is_duplicate_action(actions: list[Action], action: Action) -> bool:
    """RFC 5228 §2.10.3: keep and fileinto of one mailbox, or one redirect address, once."""
    target = _target(action)
    return target is not None and any(_target(existing) == target for existing in actions)


def _target(action: Action) -> tuple[str, str] | None:
    if isinstance(action, Keep):
        return ("mailbox", "INBOX")
    if isinstance(action, FileInto):
        return ("mailbox", "INBOX" if action.mailbox.upper() == "INBOX" else action.mailbox)
    if isinstance(action, Redirect):
        return ("redirect", action.address.lower())
    if isinstance(action, Discard):
        return ("discard", "")
    return None


def _check_conflict(node: Node, existing: Action, new: Action) -> None:
    """RFC 5429 §2.1 / §2.2: reject and ereject exclude delivering actions and vacation;
    only one reject."""
    for first, second in ((existing, new), (new, existing)):
        if isinstance(first, Reject) and isinstance(
                second, Keep | FileInto | Redirect | Vacation | Reject):
            raise SieveRuntimeError(node, f"{'ereject' if first.is_ereject else 'reject'}"
                                          f" action conflicts with {_describe(second)}")


def _describe(action: Action) -> str:
    return {Keep: "keep", FileInto: "fileinto", Redirect: "redirect", Vacation: "vacation",
            Reject: "reject", Discard: "discard"}[type(action)]  # fmt: skip


def _split_flags(values: Sequence[str]) -> list[str]:
    """RFC 5232 §3: each string holds space-separated flags; duplicates (any case) once."""
    seen: dict[str, str] = {}
    for value in values:
        for flag in value.split():
            seen.setdefault(flag.lower(), flag)
    return list(seen.values())


# -- command handlers ----------------------------------------------------------------------
def _stop(interp: Interpreter, node: Node) -> None:
    raise _Stop()


def _keep(interp: Interpreter, node: Node) -> None:
    interp.add_action(node, Keep(interp.flags_for(node)), cancels_keep=True)


def _discard(interp: Interpreter, node: Node) -> None:
    interp.add_action(node, Discard(), cancels_keep=True)


def _fileinto(interp: Interpreter, node: Node) -> None:
    mailbox = interp.expand(node.args[0])
    if not mailbox or len(mailbox) > 1024 or "\0" in mailbox:
        raise SieveRuntimeError(node, f"fileinto: invalid mailbox name '{mailbox[:64]}'")
    special = interp.expand(node.tags.get("specialuse"))
    if special:  # RFC 8579 §4: the special-use mailbox wins when it exists
        found = {key.lower(): name for key, name in interp.context.special_use.items()}
        mailbox = found.get(special.lower(), mailbox)
    copy = bool(node.tags.get("copy"))
    action = FileInto(mailbox, interp.flags_for(node), bool(node.tags.get("create")),
                      special, copy)  # fmt: skip
    interp.add_action(node, action, cancels_keep=not copy)


def _redirect(interp: Interpreter, node: Node) -> None:
    address = interp.expand(node.args[0]).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in address for c in " <>,\r\n"):
        raise SieveRuntimeError(node, f"redirect: invalid address '{address[:128]}'")
    interp.redirects += 1
    if interp.redirects > interp.limits.redirects:
        raise SieveRuntimeError(node, f"more than {interp.limits.redirects} redirects")
    copy = bool(node.tags.get("copy"))
    interp.add_action(node, Redirect(address, copy), cancels_keep=not copy)


def _reject(interp: Interpreter, node: Node) -> None:
    reason = interp.expand(node.args[0])
    interp.add_action(node, Reject(reason, node.name == "ereject"), cancels_keep=True)


def _vacation(interp: Interpreter, node: Node) -> None:
    tags = node.tags
    reason = interp.expand(node.args[0])
    subject = interp.expand(tags.get("subject"))
    sender = interp.expand(tags.get("from"))
    addresses = tuple(interp.expand_list(tags.get("addresses")))
    is_mime = bool(tags.get("mime"))
    if "seconds" in tags:
        seconds = int(tags["seconds"])
    else:
        seconds = int(tags.get("days", DEFAULT_VACATION_DAYS)) * 86400
    handle = interp.expand(tags.get("handle"))
    if not handle:  # RFC 5230 §4.2: derived from the arguments when not given
        material = "\0".join([reason, subject, sender, *addresses, str(is_mime)])
        handle = hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    action = Vacation(reason, handle, seconds, subject, sender, addresses, is_mime)
    interp.add_action(node, action, cancels_keep=False)


def _flag_command(interp: Interpreter, node: Node) -> None:
    """RFC 5232 §4: setflag / addflag / removeflag on the internal or a named variable."""
    name = interp.expand(node.args[0]).lower() if node.args[0] is not None else ""
    current = interp.flag_variables.get(name, []) if name else interp.flags
    given = _split_flags(interp.expand_list(node.args[1]))
    if node.name == "setflag":
        updated = given
    elif node.name == "addflag":
        updated = _split_flags([" ".join(current + given)])
    else:
        removed = {flag.lower() for flag in given}
        updated = [flag for flag in current if flag.lower() not in removed]
    if name:
        interp.flag_variables[name] = updated
        interp.set_variable(node, name, " ".join(updated))
    else:
        interp.flags = updated


def _set(interp: Interpreter, node: Node) -> None:
    """RFC 5229 §4: modifiers applied by precedence: case, first letter, quoting, length."""
    value = interp.expand(node.args[1])
    tags = node.tags
    if tags.get("lower"):
        value = value.lower()
    elif tags.get("upper"):
        value = value.upper()
    if tags.get("lowerfirst"):
        value = value[:1].lower() + value[1:]
    elif tags.get("upperfirst"):
        value = value[:1].upper() + value[1:]
    if tags.get("quotewildcard"):
        value = quote_wildcards(value)
    elif tags.get("quoteregex"):
        value = quote_regex(value)
    if tags.get("length"):
        value = str(len(value))
    name = interp.expand(node.args[0])
    interp.set_variable(node, name, value)
    if name.lower() in interp.flag_variables:
        interp.flag_variables[name.lower()] = value.split()


def _include(interp: Interpreter, node: Node) -> None:
    """RFC 6609 §3.2: the included script runs with its own variables (globals
    shared) and flags shared; `return` ends it; `stop` ends everything."""
    location = "global" if node.tags.get("global") else "personal"
    name = interp.expand(node.args[0])
    key = (location, name)
    if node.tags.get("once") and key in interp.included_once:
        return
    interp.included_once.add(key)
    interp.include_count += 1
    if interp.include_count > interp.limits.includes:
        raise SieveRuntimeError(node, f"more than {interp.limits.includes} includes")
    if interp.depth >= interp.limits.include_depth:
        raise SieveRuntimeError(node, f"includes nested more than "
                                      f"{interp.limits.include_depth} deep")
    script = interp.context.include(location, name)
    if script is None:
        if node.tags.get("optional"):
            return
        raise SieveRuntimeError(node, f"include: {location} script '{name}' not found")
    outer_scope, outer_matches = interp.scope, interp.match_values
    interp.scope, interp.match_values = _Scope(globals=set(outer_scope.globals)), ()
    interp.depth += 1
    try:
        interp.block(script.commands)
    except _Return:
        pass
    finally:
        interp.depth -= 1
        interp.scope, interp.match_values = outer_scope, outer_matches


def _return(interp: Interpreter, node: Node) -> None:
    raise _Return()


def _global(interp: Interpreter, node: Node) -> None:
    for name in interp.expand_list(node.args[0]):
        interp.scope.globals.add(name.lower())


# RFC 5293 §6: fields a script may neither add nor delete (Pigeonhole's defaults).
PROTECTED_FIELDS = frozenset({"received", "auto-submitted"})
MAX_FIELD_VALUE = 998


def _valid_field_name(name: str) -> bool:
    return bool(name) and len(name) <= 200 and all(33 <= ord(c) <= 126 and c != ":"
                                                    for c in name)  # fmt: skip


def _addheader(interp: Interpreter, node: Node) -> None:
    name = interp.expand(node.args[0])
    value = interp.expand(node.args[1])
    if not _valid_field_name(name):
        raise SieveRuntimeError(node, f"addheader: invalid field name '{name[:64]}'")
    if name.lower() in PROTECTED_FIELDS:
        return  # silently refused, as Pigeonhole does
    value = " ".join(value.replace("\r", " ").replace("\n", " ").split())[:MAX_FIELD_VALUE]
    interp.message.add_field(name, _encode_field(value), last=bool(node.tags.get("last")))
    interp.is_edited = True


def _encode_field(value: str) -> str:
    """Non-ASCII values go out as RFC 2047 encoded words (RFC 5293 §4)."""
    if value.isascii():
        return value
    import email.header

    return email.header.Header(value, "utf-8").encode()


def _deleteheader(interp: Interpreter, node: Node) -> None:
    """RFC 5293 §5: delete the fields named, optionally only those whose value matches
    one of the patterns, or only the :index'th occurrence."""
    from postroom.sieve.match import match_one
    from postroom.sieve.predicates import matcher_of

    name = interp.expand(node.args[0])
    if not _valid_field_name(name):
        raise SieveRuntimeError(node, f"deleteheader: invalid field name '{name[:64]}'")
    if name.lower() in PROTECTED_FIELDS:
        return
    patterns = interp.expand_list(node.args[1]) if node.args[1] is not None else None
    matcher = matcher_of(interp, node)
    fields = interp.message.fields
    positions = [i for i, (field_name, _) in enumerate(fields)
                 if field_name.lower() == name.lower()]  # fmt: skip
    index = node.tags.get("index")
    if isinstance(index, int):
        if index > len(positions):
            return
        positions = [positions[-index] if node.tags.get("last") else positions[index - 1]]
    doomed = set()
    for position in positions:
        value = interp.message.values_at(position)
        if patterns is None or any(match_one(value, pattern, matcher, interp.budget)
                                   is not None for pattern in patterns):  # fmt: skip
            doomed.add(position)
    if doomed:
        interp.message.fields[:] = [item for i, item in enumerate(fields) if i not in doomed]
        interp.message.changed()
        interp.is_edited = True


_COMMANDS: dict[str, Callable[[Interpreter, Node], None]] = {
    "stop": _stop, "keep": _keep, "discard": _discard, "fileinto": _fileinto,
    "redirect": _redirect, "reject": _reject, "ereject": _reject, "vacation": _vacation,
    "setflag": _flag_command, "addflag": _flag_command, "removeflag": _flag_command,
    "set": _set, "include": _include, "return": _return, "global": _global,
    "addheader": _addheader, "deleteheader": _deleteheader,
}  # fmt: skip


# -- the entry point -------------------------------------------------------------------------
def evaluate(script: Script, message: SieveMessage, context: SieveContext) -> SieveResult:
    """The actions `script` asks for `message`. Never raises for anything the script or
    the message does: a runtime error (or an exhausted limit) gives a result with
    `error` set, no actions and the implicit keep (RFC 5228 §2.10.6)."""
    return evaluate_sequence([script], message, context)


def evaluate_sequence(scripts: list[Script], message: SieveMessage, context: SieveContext
                      ) -> SieveResult:  # fmt: skip
    """Several scripts run as one, in order (Pigeonhole's sieve_before, the user's
    script, sieve_after): each with its own variables, all sharing the actions, the
    internal flags, the edited header and the one implicit keep decided at the end;
    `stop` in any of them ends the whole sequence."""
    interp = Interpreter(message, context)
    try:
        for script in scripts:
            interp.scope = _Scope()
            interp.match_values = ()
            try:
                interp.run(script)
            except _Stop:
                break
    except (SieveRuntimeError, BudgetExceeded, RecursionError) as error:
        return SieveResult(error=str(error) or "runtime error")
    result = interp.result
    result.implicit_keep_flags = tuple(interp.flags)
    if interp.is_edited:
        result.edited_message = message.render()
    result.duplicates = list(interp.duplicate_marks)
    return result


__all__ = ["Interpreter", "Limits", "SieveContext", "SieveEnvelope", "SieveRuntimeError",
           "Text", "evaluate", "evaluate_sequence"]
