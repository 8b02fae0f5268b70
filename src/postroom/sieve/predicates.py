"""The Sieve tests (RFC 5228 §5 and the extensions' tests), each a predicate over the
interpreter's message, context and variables.

Owns what each test means: which values it takes from the message or the envelope, the
address parts (RFC 5228 §2.7.4, RFC 5233 subaddress), `:index` (RFC 5260 §6), `:count`
(RFC 5231), and setting the match variables after a successful :matches / :regex
(RFC 5229 §3.2). Matching one value against one key is match.py's.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from typing import Protocol

from postroom.sieve.actions import DuplicateMark
from postroom.sieve.compile import Node, Str, build_matcher
from postroom.sieve.context import SieveContext
from postroom.sieve.dates import date_part, parse_header_date, parse_zone
from postroom.sieve.match import Budget, Matcher, MatchType, count_matches, match_one
from postroom.sieve.message import SieveMessage


class Interpreter(Protocol):
    """What the tests read of evaluate.py's interpreter (a Protocol, so this module does
    not import the one that calls it)."""

    message: SieveMessage
    context: SieveContext
    budget: Budget
    match_values: tuple[str, ...]
    flags: list[str]
    flag_variables: dict[str, list[str]]
    duplicate_marks: list[DuplicateMark]

    def expand(self, value: Str | None) -> str: ...
    def expand_list(self, values: tuple[Str, ...] | None) -> Sequence[str]: ...

SUBADDRESS_SEPARATOR = "+"
DEFAULT_DUPLICATE_SECONDS = 7 * 86400
MAX_DUPLICATE_SECONDS = 90 * 86400


def evaluate_test(interp: Interpreter, node: Node) -> bool:
    interp.budget.spend(1)
    return _TESTS[node.name](interp, node)


def matcher_of(interp: Interpreter, node: Node) -> Matcher:
    """The node's comparator and match type: computed once at compile time when they are
    constant (`Node.matcher`), else from the variables now."""
    if node.matcher is not None:
        return node.matcher
    return build_matcher(node, interp.expand)


def match_values(interp: Interpreter, node: Node, values: Sequence[str],
                 keys: Sequence[str]) -> bool:
    """Any value against any key; :count counts the values (RFC 5231 §4.1)."""
    matcher = matcher_of(interp, node)
    if matcher.match_type is MatchType.COUNT:
        # The given comparator compares the count (RFC 5231 §4.1: scripts name
        # i;ascii-numeric to compare it as a number).
        return count_matches(len(values), keys, matcher)
    for value in values:
        for key in keys:
            found = match_one(value, key, matcher, interp.budget)
            if found is not None:
                if matcher.match_type in (MatchType.MATCHES, MatchType.REGEX):
                    interp.match_values = found
                return True
    return False


def _pick_index(node: Node, values: list[str]) -> list[str]:
    """RFC 5260 §6: :index n (from the end with :last) selects one field occurrence."""
    index = node.tags.get("index")
    if not isinstance(index, int):
        return values
    if index > len(values):
        return []
    return [values[-index] if node.tags.get("last") else values[index - 1]]


# -- address parts --------------------------------------------------------------------
def address_part(node: Node, address: str) -> str | None:
    """The part of `address` the test compares; None when it has none (:detail of an
    address without a separator never matches, RFC 5233 §4)."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    tags = node.tags
    if tags.get("localpart"):
        return local
    if tags.get("domain"):
        return domain
    if tags.get("user"):
        return local.split(SUBADDRESS_SEPARATOR, 1)[0]
    if tags.get("detail"):
        _user, separator, detail = local.partition(SUBADDRESS_SEPARATOR)
        return detail if separator else None
    return address


def _parts(node: Node, addresses: list[str]) -> list[str]:
    return [part for part in (address_part(node, a) for a in addresses) if part is not None]


# -- tests -----------------------------------------------------------------------------
def _address(interp: Interpreter, node: Node) -> bool:
    addresses: list[str] = []
    for name in interp.expand_list(node.args[0]):
        if "index" in node.tags:
            for value in _pick_index(node, interp.message.values(name)):
                addresses += _addresses_in(value)
        else:
            addresses += interp.message.addresses(name)
    return match_values(interp, node, _parts(node, addresses), interp.expand_list(node.args[1]))


def _addresses_in(value: str) -> list[str]:
    return [address for _, address in email.utils.getaddresses([value]) if address]


def _envelope(interp: Interpreter, node: Node) -> bool:
    envelope = interp.context.envelope
    values: list[str] = []
    for part in interp.expand_list(node.args[0]):
        part = part.lower()
        if part == "from":
            values.append(envelope.sender)
        elif part == "to":
            values.append(envelope.recipient)
        elif part == "auth" and envelope.auth:
            values.append(envelope.auth)
    if node.tags.get("localpart") or node.tags.get("domain") or node.tags.get("user") \
            or node.tags.get("detail"):
        values = [v for v in values if v]  # the null path has no parts (RFC 5228 §5.4)
    return match_values(interp, node, _parts(node, values), interp.expand_list(node.args[1]))


def _header(interp: Interpreter, node: Node) -> bool:
    values: list[str] = []
    for name in interp.expand_list(node.args[0]):
        values += _pick_index(node, interp.message.values(name))
    return match_values(interp, node, values, interp.expand_list(node.args[1]))


def _exists(interp: Interpreter, node: Node) -> bool:
    return all(interp.message.has(name) for name in interp.expand_list(node.args[0]))


def _size(interp: Interpreter, node: Node) -> bool:
    limit = int(node.args[0])
    size = interp.message.size
    return size > limit if node.tags.get("over") else size < limit


def _body(interp: Interpreter, node: Node) -> bool:
    tags = node.tags
    if tags.get("raw"):
        texts = interp.message.body_texts("raw")
    elif "content" in tags:
        texts = interp.message.body_texts("content", tuple(interp.expand_list(tags["content"])))
    else:
        texts = interp.message.body_texts("text")
    interp.budget.spend(sum(len(text) for text in texts) // 64)
    return match_values(interp, node, texts, interp.expand_list(node.args[0]))


def _string(interp: Interpreter, node: Node) -> bool:
    values = interp.expand_list(node.args[0])
    if "count" in node.tags:  # RFC 5229 §5: :count counts the non-empty strings
        values = [value for value in values if value]
    return match_values(interp, node, values, interp.expand_list(node.args[1]))


def _hasflag(interp: Interpreter, node: Node) -> bool:
    if node.args[0] is not None:
        flags: list[str] = []
        for name in interp.expand_list(node.args[0]):
            flags += interp.flag_variables.get(name.lower(), [])
    else:
        flags = list(interp.flags)
    matcher = matcher_of(interp, node)
    if matcher.match_type is MatchType.COUNT:
        return match_values(interp, node, flags, interp.expand_list(node.args[1]))
    keys = [flag for key in interp.expand_list(node.args[1]) for flag in key.split()]
    return match_values(interp, node, flags, keys)


def _date(interp: Interpreter, node: Node) -> bool:
    header, part, keys = node.args
    values: list[str] = []
    for raw in _pick_index(node, interp.message.values(interp.expand(header))):
        moment = parse_header_date(raw)
        if moment is None:
            continue
        if "zone" in node.tags:
            zone = parse_zone(interp.expand(node.tags["zone"]))
            if zone is None:
                return False
            moment = moment.astimezone(zone)
        elif not node.tags.get("originalzone"):
            moment = moment.astimezone(interp.context.now.tzinfo)
        values.append(date_part(moment, interp.expand(part)))
    return match_values(interp, node, values, interp.expand_list(keys))


def _currentdate(interp: Interpreter, node: Node) -> bool:
    part, keys = node.args
    moment = interp.context.now
    if "zone" in node.tags:
        zone = parse_zone(interp.expand(node.tags["zone"]))
        if zone is None:
            return False
        moment = moment.astimezone(zone)
    return match_values(interp, node, [date_part(moment, interp.expand(part))],
                        interp.expand_list(keys))  # fmt: skip


def _environment(interp: Interpreter, node: Node) -> bool:
    name = interp.expand(node.args[0]).lower()
    value = interp.context.environment.get(name)
    if value is None:  # RFC 5183 §4: an unknown item fails the test
        return False
    return match_values(interp, node, [value], interp.expand_list(node.args[1]))


def _duplicate(interp: Interpreter, node: Node) -> bool:
    """RFC 7352: true when this id was seen within its period; recorded (on successful
    delivery) when not, or always with :last."""
    tags = node.tags
    if "uniqueid" in tags:
        value = interp.expand(tags["uniqueid"])
    else:
        header = interp.expand(tags.get("header")) or "Message-ID"
        values = interp.message.values(header)
        if not values:
            return False  # §3.1: no such field, no duplicate
        value = values[0].strip()
    handle = interp.expand(tags.get("handle"))
    seconds = int(tags.get("seconds", DEFAULT_DUPLICATE_SECONDS))
    seconds = max(0, min(seconds, MAX_DUPLICATE_SECONDS))
    seen = interp.context.is_duplicate(handle, value) or any(
        mark.handle == handle and mark.value == value for mark in interp.duplicate_marks)
    if not seen or tags.get("last"):
        interp.duplicate_marks.append(DuplicateMark(handle, value, seconds))
    return seen


def _mailboxexists(interp: Interpreter, node: Node) -> bool:
    known = {name.upper() if name.upper() == "INBOX" else name
             for name in interp.context.mailboxes} | {"INBOX"}  # fmt: skip
    for name in interp.expand_list(node.args[0]):
        if (name.upper() if name.upper() == "INBOX" else name) not in known:
            return False
    return True


def _specialuse_exists(interp: Interpreter, node: Node) -> bool:
    uses = {key.lower(): value for key, value in interp.context.special_use.items()}
    wanted = [flag.lower() for flag in interp.expand_list(node.args[1])]
    if node.args[0] is None:
        return all(flag in uses for flag in wanted)
    mailbox = interp.expand(node.args[0])
    return all(uses.get(flag) == mailbox for flag in wanted)


def _allof(interp: Interpreter, node: Node) -> bool:
    return all(evaluate_test(interp, test) for test in node.tests)


def _anyof(interp: Interpreter, node: Node) -> bool:
    return any(evaluate_test(interp, test) for test in node.tests)


def _not(interp: Interpreter, node: Node) -> bool:
    return not evaluate_test(interp, node.tests[0])


_TESTS: dict[str, Callable[[Interpreter, Node], bool]] = {
    "address": _address, "envelope": _envelope, "header": _header, "exists": _exists,
    "size": _size, "body": _body, "string": _string, "hasflag": _hasflag, "date": _date,
    "currentdate": _currentdate, "environment": _environment, "duplicate": _duplicate,
    "mailboxexists": _mailboxexists, "specialuse_exists": _specialuse_exists,
    "allof": _allof, "anyof": _anyof, "not": _not,
    "true": lambda interp, node: True, "false": lambda interp, node: False,
}  # fmt: skip
