"""Spam verdicts the docker-mailserver way: thresholds, levels and the marks on a message.

Owns the pure part of the final filtering step (sans-IO): which level a total score
reaches against SA_TAG / SA_TAG2 / SA_KILL (`Thresholds.level`), the `X-Spam-*` fields
that say so (`render_spam_fields`, SpamAssassin's format, which sieve scripts and mail
clients already read), the SPAM_SUBJECT rewrite (`render_subject`), and where the
client's own Subject and X-Spam-* fields sit in its header (`find_fields`), so the
receiver can cut them: a sender never chooses the verdict a user's filters see.

Invariants: a level is the highest threshold the score reaches (>=, as amavis compares);
rendered fields are CRLF-terminated, ASCII, folded below 78 characters per line where
possible (RFC 5322 §2.2.3) and never longer than 998; symbol names are reduced to
[A-Z0-9_] so no client-chosen byte reaches a header.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from postroom.delivery.transit import Symbol

# The fields this step writes; the client's copies of them are cut from the message.
SPAM_FIELDS = (b"x-spam-flag", b"x-spam-score", b"x-spam-status", b"x-spam-level")
_SYMBOL_UNSAFE = re.compile(r"[^A-Z0-9_]")
_FOLD_AT = 76
_MAX_TESTS = 50  # symbols named in X-Spam-Status; the score counts them all


class Level(enum.IntEnum):
    """How far a score reached, weakest first (docker-mailserver's SA_* keys)."""

    HAM = 0
    TAG = 1  # SA_TAG: X-Spam-* fields added
    SPAM = 2  # SA_TAG2: spam: Junk (MOVE_SPAM_TO_JUNK), SPAM_SUBJECT, MARK_SPAM_AS_READ
    KILL = 3  # SA_KILL: 554 5.7.1 at the end of DATA unless SPAM_TO_INBOX


@dataclass(frozen=True, slots=True)
class Thresholds:
    tag: float
    tag2: float
    kill: float

    def level(self, score: float) -> Level:
        if score >= self.kill:
            return Level.KILL
        if score >= self.tag2:
            return Level.SPAM
        return Level.TAG if score >= self.tag else Level.HAM

    def overridden(self, tag: float | None, tag2: float | None,
                   kill: float | None) -> Thresholds:
        """An account's own values where it has them (`postroom filter set`)."""
        return Thresholds(self.tag if tag is None else tag,
                          self.tag2 if tag2 is None else tag2,
                          self.kill if kill is None else kill)


@dataclass(frozen=True, slots=True)
class Judgement:
    """One total score against one set of thresholds."""

    score: float
    symbols: tuple[Symbol, ...]
    thresholds: Thresholds
    level: Level = field(init=False, compare=False)  # computed once: asked several times

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", self.thresholds.level(self.score))

    @property
    def is_spam(self) -> bool:
        return self.level >= Level.SPAM


def judge(symbols: Sequence[Symbol], thresholds: Thresholds) -> Judgement:
    return Judgement(sum(symbol.score for symbol in symbols), tuple(symbols), thresholds)


def render_number(value: float) -> str:
    """At most two decimals, no trailing zeros (SpamAssassin writes 5.0, rspamd 5.00)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in {"", "-0"} else text


def symbol_name(name: str) -> str:
    return _SYMBOL_UNSAFE.sub("_", name.upper())[:64] or "UNNAMED"


def render_tests(symbols: Iterable[Symbol]) -> str:
    """`NAME=score,…`, strongest first (SpamAssassin's tests= list, with scores)."""
    ranked = sorted(symbols, key=lambda symbol: -abs(symbol.score))[:_MAX_TESTS]
    return ",".join(f"{symbol_name(s.name)}={render_number(s.score)}" for s in ranked)


def _fold(name: str, words: Sequence[str]) -> bytes:
    """`name: w1 w2 …` folded at spaces and after commas (RFC 5322 §2.2.3)."""
    lines, line = [], f"{name}:"
    for word in words:
        for index, piece in enumerate(re.split(r"(?<=,)", word)):
            separator = " " if index == 0 else ""
            if len(line) + len(separator) + len(piece) > _FOLD_AT and line.strip():
                lines.append(line)
                line = "\t" + piece
            else:
                line += separator + piece
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def render_spam_fields(judgement: Judgement) -> bytes:
    """X-Spam-Flag (spam only), X-Spam-Score, X-Spam-Status; nothing below SA_TAG."""
    level = judgement.level
    if level is Level.HAM:
        return b""
    score = render_number(judgement.score)
    status = ["Yes," if judgement.is_spam else "No,", f"score={score}",
              f"required={render_number(judgement.thresholds.tag2)}"]
    tests = render_tests(judgement.symbols)
    status.append(f"tests={tests or 'none'}")
    flag = b"X-Spam-Flag: YES\r\n" if judgement.is_spam else b""
    return flag + f"X-Spam-Score: {score}\r\n".encode("ascii") + _fold("X-Spam-Status", status)


@dataclass(frozen=True, slots=True)
class HeaderField:
    name: bytes  # lower-cased
    start: int  # [start, end) in the message, the whole field with its CRLF
    end: int
    value: bytes  # after the colon, folding and line end included


def find_fields(message: bytes, names: Sequence[bytes]) -> list[HeaderField]:
    """The fields named (lower-case) in the header section of `message` (RFC 5322 §2.2:
    a field runs until a line that does not start with white space)."""
    fields: list[HeaderField] = []
    position = 0
    while position < len(message):
        end = _field_end(message, position)
        line = message[position:end]
        if line in {b"\r\n", b"\n"} or not line:
            break
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in names:
            fields.append(HeaderField(name.strip().lower(), position, end, value))
        position = end
    return fields


def _field_end(message: bytes, start: int) -> int:
    end = start
    while True:
        newline = message.find(b"\n", end)
        if newline < 0:
            return len(message)
        end = newline + 1
        if end >= len(message) or message[end:end + 1] not in {b" ", b"\t"}:
            return end


def render_subject(prefix: str, original: HeaderField | None) -> bytes:
    """The Subject field marked with SPAM_SUBJECT; the original value kept as written
    (encoded words included). A prefix that is not ASCII becomes an RFC 2047 encoded word."""
    prefix = prefix.strip()  # one space after the marker, whether the setting has it
    if prefix.isascii():
        marker = prefix.encode("ascii") + b" "
    else:
        encoded = base64.b64encode(prefix.encode("utf-8")).decode("ascii")
        marker = f"=?UTF-8?B?{encoded}?= ".encode("ascii")
    value = original.value.rstrip(b"\r\n") if original is not None else b""
    if value.startswith(b" "):
        value = value[1:]
    return b"Subject: " + marker + value + b"\r\n"
