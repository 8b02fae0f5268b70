"""The Sieve grammar (RFC 5228 §8.2): tokens to a tree of commands, tests and arguments.

Owns the generic syntax only — what a command, a test, a block and an argument are —
not what any command means: that is the validator's (which commands exist, what
arguments they take, what `require` enables). The tree keeps every node's position so
the validator's errors point where Pigeonhole's do.

Invariants:
- The tree is immutable (frozen dataclasses, tuples): a compiled script can be cached
  and shared between deliveries.
- Nesting (blocks inside blocks, tests inside tests) is bounded by MAX_NESTING and
  string lists by MAX_LIST_ITEMS, checked while parsing, so a hostile script is refused
  before anything walks it; the parser itself recurses at most MAX_NESTING deep.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.sieve.lexer import Kind, SieveSyntaxError, Token, tokenize

MAX_NESTING = 32
MAX_LIST_ITEMS = 1024


@dataclass(frozen=True, slots=True)
class StringList:
    values: tuple[str, ...]
    line: int
    column: int
    is_list: bool  # written with brackets (a one-item list is still a list)
    is_multiline: bool = False


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Tag:
    name: str  # without the colon, lower-cased
    line: int
    column: int


Argument = StringList | Number | Tag


@dataclass(frozen=True, slots=True)
class Test:
    name: str
    arguments: tuple[Argument, ...]
    tests: tuple[Test, ...]  # a test list "(t1, t2)" or one test, as the grammar has it
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    arguments: tuple[Argument, ...]
    tests: tuple[Test, ...]
    block: tuple[Command, ...] | None  # None: ended with ';'
    line: int
    column: int


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> SieveSyntaxError:
        token = token or self.current
        return SieveSyntaxError(token.line, token.column, message)

    def expect(self, kind: Kind, context: str) -> Token:
        token = self.current
        if token.kind is not kind:
            raise self.error(f"expected {kind.value} {context}, found {_describe(token)}")
        return self.take()

    # -- commands ------------------------------------------------------------------
    def commands(self, depth: int, closing: Kind, opening: Token | None = None
                 ) -> tuple[Command, ...]:  # fmt: skip
        found: list[Command] = []
        while self.current.kind is not closing:
            if opening is not None and self.current.kind is Kind.END:
                raise self.error(f"missing '}}' to close the block opened at line "
                                 f"{opening.line}, column {opening.column}")
            found.append(self.command(depth))
        return tuple(found)

    def command(self, depth: int) -> Command:
        token = self.current
        if token.kind is not Kind.IDENTIFIER:
            raise self.error(f"expected a command, found {_describe(token)}")
        self.take()
        arguments, tests = self.arguments(depth)
        if self.current.kind is Kind.SEMICOLON:
            self.take()
            return Command(str(token.value), arguments, tests, None, token.line, token.column)
        if self.current.kind is Kind.LBRACE:
            if depth >= MAX_NESTING:
                raise self.error(f"blocks are nested more than {MAX_NESTING} deep")
            opening = self.take()
            block = self.commands(depth + 1, Kind.RBRACE, opening)
            self.expect(Kind.RBRACE, "to end the block")
            return Command(str(token.value), arguments, tests, block, token.line, token.column)
        raise self.error(f"expected ';' or '{{' after the arguments of command "
                         f"'{token.value}', found {_describe(self.current)}")

    # -- arguments and tests -------------------------------------------------------
    def arguments(self, depth: int) -> tuple[tuple[Argument, ...], tuple[Test, ...]]:
        found: list[Argument] = []
        while True:
            token = self.current
            if token.kind is Kind.TAG:
                self.take()
                found.append(Tag(str(token.value), token.line, token.column))
            elif token.kind is Kind.NUMBER:
                self.take()
                found.append(Number(int(token.value), token.line, token.column))
            elif token.kind in (Kind.STRING, Kind.LBRACKET):
                found.append(self.string_list())
            else:
                break
        tests: tuple[Test, ...] = ()
        if self.current.kind is Kind.IDENTIFIER:
            tests = (self.test(depth + 1),)
        elif self.current.kind is Kind.LPAREN:
            tests = self.test_list(depth + 1)
        return tuple(found), tests

    def string_list(self) -> StringList:
        token = self.take()
        if token.kind is Kind.STRING:
            return StringList((str(token.value),), token.line, token.column, False,
                              token.is_multiline)  # fmt: skip
        values: list[str] = []
        while True:
            item = self.expect(Kind.STRING, "in the string list")
            values.append(str(item.value))
            if len(values) > MAX_LIST_ITEMS:
                raise self.error(f"a string list holds more than {MAX_LIST_ITEMS} strings",
                                 item)  # fmt: skip
            if self.current.kind is Kind.COMMA:
                self.take()
                continue
            self.expect(Kind.RBRACKET, "to end the string list")
            return StringList(tuple(values), token.line, token.column, True)

    def test(self, depth: int) -> Test:
        token = self.current
        if token.kind is not Kind.IDENTIFIER:
            raise self.error(f"expected a test, found {_describe(token)}")
        if depth > MAX_NESTING:
            raise self.error(f"tests are nested more than {MAX_NESTING} deep")
        self.take()
        arguments, tests = self.arguments(depth)
        return Test(str(token.value), arguments, tests, token.line, token.column)

    def test_list(self, depth: int) -> tuple[Test, ...]:
        self.take()  # "("
        tests = [self.test(depth)]
        while self.current.kind is Kind.COMMA:
            self.take()
            tests.append(self.test(depth))
            if len(tests) > MAX_LIST_ITEMS:
                raise self.error(f"a test list holds more than {MAX_LIST_ITEMS} tests")
        self.expect(Kind.RPAREN, "to end the test list")
        return tuple(tests)


def _describe(token: Token) -> str:
    if token.kind is Kind.IDENTIFIER:
        return f"identifier '{token.value}'"
    if token.kind is Kind.TAG:
        return f"tag ':{token.value}'"
    if token.kind is Kind.STRING:
        return "a string"
    if token.kind is Kind.NUMBER:
        return f"number {token.value}"
    return token.kind.value


def parse_script(text: str) -> tuple[Command, ...]:
    """The commands of a whole script; SieveSyntaxError with the position on failure."""
    parser = _Parser(tokenize(text))
    commands = parser.commands(0, Kind.END)
    return commands
