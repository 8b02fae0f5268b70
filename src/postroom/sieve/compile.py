"""Validating a parsed Sieve script against `registry.SPECS` and compiling it into the
immutable form the evaluator runs (`Script`), with Pigeonhole-like errors.

Owns the rules that are about meaning rather than grammar: `require` first and only
known capabilities (RFC 5228 §3.2), every command and test known and its extension
required, tags and their groups, the number and kinds of positional arguments, if/elsif/
else structure (§3.1), comparator and relation names, `:index`/`:last`, date parts,
constant addresses and regexes checked once; encoded characters decoded and strings
with variable references split (strings.py).

Invariants: a `Script` is fully valid — the evaluator never meets an unknown command, a
missing argument or an unrequired extension — and immutable, so one compiled script
serves every delivery (cached by text by the caller). The first error is raised as a
`SieveSyntaxError` carrying its line and column.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from postroom.sieve.lexer import SieveSyntaxError
from postroom.sieve.match import COMPARATORS, RELATIONS, Matcher, MatchType, check_regex
from postroom.sieve.parser import Argument, Number, StringList, Tag, parse_script
from postroom.sieve.parser import Command as AstCommand
from postroom.sieve.parser import Test as AstTest
from postroom.sieve.registry import BUILTIN_COMPARATORS, CAPABILITIES, SPECS, Spec, TagSpec
from postroom.sieve.strings import (
    EncodingError,
    Text,
    decode_encoded_characters,
    split_references,
)

MAX_SCRIPT_SIZE = 1 << 20  # bytes (Pigeonhole's sieve_max_script_size)
DATE_PARTS = frozenset({"year", "month", "day", "date", "julian", "hour", "minute",
                        "second", "time", "iso8601", "std11", "zone", "weekday"})  # fmt: skip
ENVELOPE_PARTS = frozenset({"from", "to", "auth"})
Str = str | Text
Value = Any  # Str, tuple[Str, ...], int or bool


class Constant(tuple[str, ...]):
    """A string list without variable references: the evaluator uses it as it is."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Node:
    """One compiled command or test. `args` are the positional arguments in spec order
    (an optional one left out is None); `tags` maps a given tag to its argument (True
    for a tag without one)."""

    name: str
    tags: MappingProxyType[str, Value]
    args: tuple[Value, ...]
    tests: tuple[Node, ...]
    block: tuple[Node, ...] | None
    line: int
    column: int
    matcher: Matcher | None = None  # comparator and match type, when constant


def build_matcher(node: Node, expand: Callable[[Any], str]) -> Matcher:
    """The comparator (default i;ascii-casemap) and match type (default :is) of a node."""
    tags = node.tags
    comparator = expand(tags.get("comparator")) or "i;ascii-casemap"
    for kind in (MatchType.VALUE, MatchType.COUNT):
        if kind.value in tags:
            return Matcher(kind, comparator, expand(tags[kind.value]).lower())
    for kind in (MatchType.CONTAINS, MatchType.MATCHES, MatchType.REGEX):
        if tags.get(kind.value):
            return Matcher(kind, comparator)
    return Matcher(MatchType.IS, comparator)


def _constant_matcher(node: Node) -> Matcher | None:
    values = [node.tags.get(name) for name in ("comparator", "value", "count")]
    if any(value is not None and not isinstance(value, str) for value in values):
        return None  # holds variables: built when it runs
    return build_matcher(node, lambda value: "" if value is None else str(value))


@dataclass(frozen=True, slots=True)
class Include:
    location: str  # "personal" or "global"
    name: str
    is_once: bool
    is_optional: bool


@dataclass(frozen=True, slots=True)
class Script:
    commands: tuple[Node, ...]
    requires: frozenset[str]
    includes: tuple[Include, ...]  # constant-named includes, for the caller to load

    @property
    def uses_variables(self) -> bool:
        return "variables" in self.requires


def compile_script(text: str, *, capabilities: tuple[str, ...] = CAPABILITIES) -> Script:
    """Parse and validate `text`; SieveSyntaxError (with position) on the first error."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_SCRIPT_SIZE:
        raise SieveSyntaxError(1, 1, f"script is larger than {MAX_SCRIPT_SIZE} bytes")
    ast = parse_script(text)
    compiler = _Compiler(frozenset(capabilities))
    commands = compiler.block(ast, top=True)
    return Script(commands, frozenset(compiler.requires), tuple(compiler.includes))


def _error(item: AstCommand | AstTest | Argument, message: str) -> SieveSyntaxError:
    return SieveSyntaxError(item.line, item.column, message)


class _Compiler:
    def __init__(self, capabilities: frozenset[str]) -> None:
        self.capabilities = capabilities
        self.requires: set[str] = set()
        self.includes: list[Include] = []

    # -- structure -----------------------------------------------------------------
    def block(self, commands: tuple[AstCommand, ...], *, top: bool = False
              ) -> tuple[Node, ...]:  # fmt: skip
        compiled: list[Node] = []
        may_require = top
        previous = ""
        for command in commands:
            if command.name == "require":
                if not may_require:
                    raise _error(command, "require commands can only be placed at top "
                                          "level at the beginning of the file")
                self.require(command)
                continue
            may_require = False
            if command.name in ("elsif", "else") and previous not in ("if", "elsif"):
                raise _error(command, f"{command.name} command must follow an if or "
                                      "elsif command")
            compiled.append(self.command(command))
            previous = command.name
        return tuple(compiled)

    def require(self, command: AstCommand) -> None:
        if len(command.arguments) != 1 or not isinstance(command.arguments[0], StringList) \
                or command.tests or command.block is not None:
            raise _error(command, "the require command expects one string list argument")
        for name in command.arguments[0].values:
            if name not in self.capabilities:
                raise _error(command.arguments[0],
                             f"require command: unknown Sieve capability '{name}'")
            self.requires.add(name)
            if name == "vacation-seconds":
                self.requires.add("vacation")  # RFC 6131 §2 implies vacation

    def command(self, command: AstCommand) -> Node:
        spec = self.spec_of(command, is_test=False)
        if spec.block == "required" and command.block is None:
            raise _error(command, f"the {command.name} command requires a block")
        if spec.block != "required" and command.block is not None:
            raise _error(command, f"the {command.name} command does not take a block")
        tests = self.tests(command, spec)
        tags, args = self.arguments(command, spec)
        block = self.block(command.block) if command.block is not None else None
        node = Node(command.name, MappingProxyType(tags), args, tests, block,
                    command.line, command.column)  # fmt: skip
        self.check_command(node, command)
        if command.name == "deleteheader":
            node = replace(node, matcher=_constant_matcher(node))
        return node

    def test(self, test: AstTest) -> Node:
        spec = self.spec_of(test, is_test=True)
        tests = self.tests(test, spec)
        tags, args = self.arguments(test, spec)
        node = Node(test.name, MappingProxyType(tags), args, tests, None, test.line,
                    test.column)  # fmt: skip
        self.check_test(node, test)
        return replace(node, matcher=_constant_matcher(node))

    def spec_of(self, item: AstCommand | AstTest, *, is_test: bool) -> Spec:
        spec = SPECS.get(item.name)
        kind = "test" if is_test else "command"
        if spec is None or spec.is_test != is_test:
            raise _error(item, f"unknown {kind} '{item.name}'")
        self.need(spec.requires, item, f"{spec.name} {kind}")
        return spec

    def need(self, extension: str, item: AstCommand | AstTest | Argument, what: str) -> None:
        if extension and extension not in self.requires:
            raise _error(item, f"{what} requires the \"{extension}\" extension "
                               f"(require \"{extension}\";)")

    def tests(self, item: AstCommand | AstTest, spec: Spec) -> tuple[Node, ...]:
        count = len(item.tests)
        if spec.tests == "one" and count != 1:
            raise _error(item, f"the {item.name} {'test' if spec.is_test else 'command'} "
                               "expects one test")
        if spec.tests == "list" and count < 1:
            raise _error(item, f"the {item.name} test expects a list of tests")
        if not spec.tests and count:
            raise _error(item.tests[0], f"the {item.name} "
                         f"{'test' if spec.is_test else 'command'} does not take a test")
        return tuple(self.test(test) for test in item.tests)

    # -- arguments -----------------------------------------------------------------
    def arguments(self, item: AstCommand | AstTest, spec: Spec
                  ) -> tuple[dict[str, Value], tuple[Value, ...]]:  # fmt: skip
        tags: dict[str, Value] = {}
        groups: dict[str, str] = {}
        positional: list[Argument] = []
        arguments = list(item.arguments)
        index = 0
        while index < len(arguments):
            argument = arguments[index]
            index += 1
            if not isinstance(argument, Tag):
                positional.append(argument)
                continue
            if positional:
                raise _error(argument, f"tag :{argument.name} must come before the "
                                       f"positional arguments of {item.name}")
            tag = spec.tags.get(argument.name)
            if tag is None:
                raise _error(argument, f"unknown tagged argument ':{argument.name}' for "
                                       f"the {item.name} {'test' if spec.is_test else 'command'}")
            self.need(tag.requires, argument, f":{argument.name}")
            if argument.name in tags:
                raise _error(argument, f"tag :{argument.name} given twice")
            if tag.group:
                if tag.group in groups:
                    raise _error(argument, f"tags :{groups[tag.group]} and :{argument.name}"
                                           " cannot be used together")
                groups[tag.group] = argument.name
            tags[argument.name] = self.tag_value(argument, tag, arguments, index, item)
            if tag.argument:
                index += 1
        return tags, self.positionals(item, spec, positional)

    def tag_value(self, tag: Tag, spec: TagSpec, arguments: list[Argument], index: int,
                  item: AstCommand | AstTest) -> Value:  # fmt: skip
        if not spec.argument:
            return True
        if index >= len(arguments) or isinstance(arguments[index], Tag):
            raise _error(tag, f"tag :{tag.name} of {item.name} expects a "
                              f"{_kind_name(spec.argument)} argument")
        return self.value(arguments[index], spec.argument, f":{tag.name} of {item.name}")

    def positionals(self, item: AstCommand | AstTest, spec: Spec,
                    given: list[Argument]) -> tuple[Value, ...]:  # fmt: skip
        kinds = spec.positionals
        least = len(kinds) - spec.optional_leading - spec.optional_trailing
        if not least <= len(given) <= len(kinds):
            want = f"{least}" if least == len(kinds) else f"{least} to {len(kinds)}"
            raise _error(item, f"the {item.name} {'test' if spec.is_test else 'command'} "
                               f"expects {want} positional argument(s), found {len(given)}")
        missing = len(kinds) - len(given)
        if spec.optional_leading:
            padded: list[Argument | None] = [None] * missing + list(given)
        else:
            padded = list(given) + [None] * missing
        return tuple(None if argument is None else
                     self.value(argument, kind, f"{item.name}")
                     for argument, kind in zip(padded, kinds, strict=True))  # fmt: skip

    def value(self, argument: Argument, kind: str, what: str) -> Value:
        if kind == "number":
            if not isinstance(argument, Number):
                raise _error(argument, f"{what} expects a number argument")
            return argument.value
        if not isinstance(argument, StringList):
            raise _error(argument, f"{what} expects a {_kind_name(kind)} argument")
        strings = tuple(self.string(text, argument) for text in argument.values)
        if kind == "string":
            if len(strings) != 1:
                raise _error(argument, f"{what} expects a string, not a string list")
            return strings[0]
        plain = [text for text in strings if isinstance(text, str)]
        return Constant(plain) if len(plain) == len(strings) else strings

    def string(self, text: str, argument: Argument) -> Str:
        if "encoded-character" in self.requires:
            try:
                text = decode_encoded_characters(text)
            except EncodingError as error:
                raise _error(argument, str(error)) from None
        if "variables" in self.requires:
            return split_references(text)
        return text

    # -- per-command checks ----------------------------------------------------------
    def check_command(self, node: Node, command: AstCommand) -> None:
        name = node.name
        if name == "redirect":
            _check_constant_address(node.args[0], command)
        elif name == "include":
            self.check_include(node, command)
        elif name == "set":
            _check_variable_name(node.args[0], command)
        elif name == "fileinto":
            use = node.tags.get("specialuse")
            if isinstance(use, str) and not use.startswith("\\"):
                raise _error(command, f"invalid special-use flag '{use}'")
        elif name == "deleteheader":
            self.check_matching(node, command)
            _check_index(node, command)
        elif name == "vacation" and isinstance(node.tags.get("from"), str):
            _check_constant_address(node.tags["from"], command, allow_name=True)

    def check_include(self, node: Node, command: AstCommand) -> None:
        name = node.args[0]
        if isinstance(name, str):
            if not name or "/" in name or len(name) > 255:
                raise _error(command, f"include: invalid script name '{name}'")
            location = "global" if node.tags.get("global") else "personal"
            self.includes.append(Include(location, name, bool(node.tags.get("once")),
                                         bool(node.tags.get("optional"))))  # fmt: skip

    def check_test(self, node: Node, test: AstTest) -> None:
        self.check_matching(node, test)
        _check_index(node, test)
        if node.name == "envelope":
            for part in node.args[0]:
                if isinstance(part, str) and part.lower() not in ENVELOPE_PARTS:
                    raise _error(test, f"envelope test: unknown envelope part '{part}'")
        elif node.name in ("date", "currentdate"):
            part = node.args[-2]
            if isinstance(part, str) and part.lower() not in DATE_PARTS:
                raise _error(test, f"{node.name} test: unknown date part '{part}'")
        elif node.name == "size" and not (node.tags.get("over") or node.tags.get("under")):
            raise _error(test, "the size test requires :over or :under")

    def check_matching(self, node: Node, item: AstCommand | AstTest) -> None:
        comparator = node.tags.get("comparator")
        if isinstance(comparator, str):
            if comparator not in COMPARATORS:
                raise _error(item, f"unknown comparator '{comparator}'")
            if comparator not in BUILTIN_COMPARATORS:
                self.need(f"comparator-{comparator}", item, f"comparator '{comparator}'")
        for relational in ("value", "count"):
            relation = node.tags.get(relational)
            if isinstance(relation, str) and relation.lower() not in RELATIONS:
                raise _error(item, f"invalid relational match '{relation}'")
        if node.tags.get("regex"):
            keys = node.args[-1] if node.args and node.args[-1] is not None else ()
            for key in keys if isinstance(keys, tuple) else (keys,):
                if isinstance(key, str):
                    problem = check_regex(key)
                    if problem:
                        raise _error(item, f"{node.name}: {problem}")


def _kind_name(kind: str) -> str:
    return {"list": "string list", "string": "string", "number": "number"}[kind]


def _check_index(node: Node, item: AstCommand | AstTest) -> None:
    if node.tags.get("last") and "index" not in node.tags and node.name != "duplicate":
        raise _error(item, ":last requires :index")
    index = node.tags.get("index")
    if isinstance(index, int) and index < 1:
        raise _error(item, ":index must be at least 1")


def _check_variable_name(name: Value, command: AstCommand) -> None:
    if isinstance(name, str) and (not name or name[0].isdigit() or not name.isascii()
                                  or not all(c.isalnum() or c == "_" for c in name)):
            raise _error(command, f"set command: invalid variable name '{name}'")


def _check_constant_address(value: Value, command: AstCommand, *,
                            allow_name: bool = False) -> None:  # fmt: skip
    if not isinstance(value, str):
        return  # holds variables: checked when it runs
    if allow_name:
        value = email.utils.parseaddr(value)[1]
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c in value for c in " <>,\r\n"):
        raise _error(command, f"{command.name} command: invalid address '{value}'")
