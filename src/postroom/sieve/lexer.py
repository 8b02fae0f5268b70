"""Sieve lexical analysis (RFC 5228 §2 and §8.1), with an exact position on every token.

Owns turning script text into `Token`s: identifiers, tags (`:name`), numbers with their
K/M/G quantifiers (§2.4.1), quoted strings with their escapes (§2.4.2) and multi-line
`text:` strings with dot-unstuffing (§2.4.2), the punctuation, and skipping both kinds
of comments (§2.3). Encoded characters (RFC 5228 §2.4.2.4) are not decoded here: they
apply only when the script requires "encoded-character", which the validator knows.

Invariants:
- Positions are 1-based line and column (in characters) of a token's first character;
  an error names the position of the character that is wrong, as Pigeonhole does.
- Line endings may be CRLF or bare LF (scripts edited on Unix); a multi-line string's
  value has CRLF line endings, the final one included (§2.4.2: "the CRLF before the
  final period is considered part of the value").
- Bounded: at most MAX_TOKENS tokens and numbers up to MAX_NUMBER (Pigeonhole's limit
  is the 64-bit range; larger is an error, never a silent wrap). The caller bounds the
  script's size.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_TOKENS = 200_000
MAX_NUMBER = 2**63 - 1
_QUANTIFIERS = {"K": 2**10, "M": 2**20, "G": 2**30}


class SieveSyntaxError(ValueError):
    """A script that does not parse or validate; `str()` is Pigeonhole-like:
    `line 3, column 9: error: unknown command 'fileint'`."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line}, column {column}: error: {message}")
        self.line = line
        self.column = column
        self.message = message


class Kind(enum.Enum):
    IDENTIFIER = "identifier"
    TAG = "tag"
    NUMBER = "number"
    STRING = "string"
    LBRACKET = "'['"
    RBRACKET = "']'"
    LPAREN = "'('"
    RPAREN = "')'"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    SEMICOLON = "';'"
    END = "end of script"


_PUNCTUATION = {
    "[": Kind.LBRACKET, "]": Kind.RBRACKET, "(": Kind.LPAREN, ")": Kind.RPAREN,
    "{": Kind.LBRACE, "}": Kind.RBRACE, ",": Kind.COMMA, ";": Kind.SEMICOLON,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    value: str | int  # identifier/tag name (lower-cased), string text, number value
    line: int
    column: int
    is_multiline: bool = False  # a `text:` string


def _is_identifier_start(char: str) -> bool:
    return char == "_" or ("a" <= char <= "z") or ("A" <= char <= "Z")


def _is_identifier_char(char: str) -> bool:
    return _is_identifier_start(char) or "0" <= char <= "9"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0

    @property
    def column(self) -> int:
        return self.pos - self.line_start + 1

    def error(self, message: str) -> SieveSyntaxError:
        return SieveSyntaxError(self.line, self.column, message)

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self.text[self.pos] == "\n":
                self.line += 1
                self.line_start = self.pos + 1
            self.pos += 1

    # -- white space and comments (§2.3) ---------------------------------------------
    def skip_blank(self) -> None:
        while self.pos < len(self.text):
            char = self.peek()
            if char in " \t\r\n":
                self.advance()
            elif char == "#":
                self._skip_to_line_end()
            elif char == "/" and self.peek(1) == "*":
                self._skip_bracket_comment()
            else:
                return

    def _skip_to_line_end(self) -> None:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        self.pos = end  # the newline itself is consumed by skip_blank (counts the line)

    def _skip_bracket_comment(self) -> None:
        line, column = self.line, self.column
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            raise SieveSyntaxError(line, column, "unterminated comment")
        self.advance(end + 2 - self.pos)  # comments do not nest (§2.3)


def tokenize(text: str) -> list[Token]:
    """All tokens of `text`, ending with one `Kind.END`; SieveSyntaxError on the first
    lexical error."""
    scanner = _Scanner(text)
    tokens: list[Token] = []
    while True:
        scanner.skip_blank()
        if len(tokens) >= MAX_TOKENS:
            raise scanner.error(f"script has more than {MAX_TOKENS} tokens")
        if scanner.pos >= len(text):
            tokens.append(Token(Kind.END, "", scanner.line, scanner.column))
            return tokens
        tokens.append(_next_token(scanner))


def _next_token(scanner: _Scanner) -> Token:
    char = scanner.peek()
    line, column = scanner.line, scanner.column
    if char in _PUNCTUATION:
        scanner.advance()
        return Token(_PUNCTUATION[char], char, line, column)
    if char == '"':
        return Token(Kind.STRING, _quoted(scanner), line, column)
    if char == ":":
        scanner.advance()
        if not _is_identifier_start(scanner.peek()):
            raise scanner.error("expected a tag name after ':'")
        return Token(Kind.TAG, _identifier(scanner), line, column)
    if "0" <= char <= "9":
        return Token(Kind.NUMBER, _number(scanner), line, column)
    if _is_identifier_start(char):
        name = _identifier(scanner)
        if name == "text" and scanner.peek() == ":":
            scanner.advance()
            return Token(Kind.STRING, _multiline(scanner), line, column, is_multiline=True)
        return Token(Kind.IDENTIFIER, name, line, column)
    raise scanner.error(f"unexpected character {char!r}")


def _identifier(scanner: _Scanner) -> str:
    start = scanner.pos
    while scanner.pos < len(scanner.text) and _is_identifier_char(scanner.peek()):
        scanner.pos += 1  # identifiers never span lines
    return scanner.text[start:scanner.pos].lower()  # identifiers are case-insensitive


def _number(scanner: _Scanner) -> int:
    start = scanner.pos
    while "0" <= scanner.peek() <= "9" and scanner.peek():
        scanner.pos += 1
    value = int(scanner.text[start:scanner.pos])
    quantifier = scanner.peek().upper()
    if quantifier in _QUANTIFIERS:
        scanner.pos += 1
        value *= _QUANTIFIERS[quantifier]
    if value > MAX_NUMBER:
        raise SieveSyntaxError(scanner.line, start - scanner.line_start + 1,
                               "number is too large")  # fmt: skip
    if _is_identifier_char(scanner.peek()):
        raise scanner.error("a number must not be followed by a letter")
    return value


def _quoted(scanner: _Scanner) -> str:
    """§2.4.2: `\\` and `\"` stand for themselves; any other backslash is dropped
    ("\\q" is "q"). Quoted strings may span lines."""
    line, column = scanner.line, scanner.column
    scanner.advance()  # the opening quote
    parts: list[str] = []
    while True:
        if scanner.pos >= len(scanner.text):
            raise SieveSyntaxError(line, column, "unterminated string")
        char = scanner.peek()
        if char == '"':
            scanner.advance()
            return "".join(parts)
        if char == "\\":
            scanner.advance()
            if scanner.pos >= len(scanner.text):
                raise SieveSyntaxError(line, column, "unterminated string")
            char = scanner.peek()
        parts.append(char)
        scanner.advance()


def _multiline(scanner: _Scanner) -> str:
    """§2.4.2 multi-line: `text:` then blanks and an optional hash comment up to the line
    end; lines up to one holding only "."; a leading ".." loses one dot."""
    while scanner.peek() in (" ", "\t") and scanner.peek():
        scanner.advance()
    if scanner.peek() == "#":
        scanner._skip_to_line_end()
    if scanner.peek() == "\r" and scanner.peek(1) == "\n":
        scanner.advance()
    if scanner.peek() != "\n":
        raise scanner.error("expected a line break after 'text:'")
    scanner.advance()
    line, column = scanner.line, scanner.column
    lines: list[str] = []
    while True:
        if scanner.pos >= len(scanner.text):
            raise SieveSyntaxError(line, column, "unterminated multi-line string "
                                   "(a line holding only '.' ends it)")
        end = scanner.text.find("\n", scanner.pos)
        end = len(scanner.text) if end < 0 else end
        content = scanner.text[scanner.pos:end].removesuffix("\r")
        scanner.advance(end - scanner.pos + (1 if end < len(scanner.text) else 0))
        if content == ".":
            return "".join(item + "\r\n" for item in lines)
        lines.append(content[1:] if content.startswith("..") else content)
