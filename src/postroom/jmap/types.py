"""JMAP's data types and JSON plumbing (RFC 8620 §1.2-1.4, §3.7; RFC 6901).

Owns: what an Id, Int, UnsignedInt, Date and UTCDate are; JSON Pointer evaluation with
JMAP's `*` extension; the nesting depth of a JSON text, measured without parsing it; and
the argument checkers every method parser uses, which raise MethodError("invalidArguments")
with a description naming the argument.
Invariants: a JSON `true`/`false` is never an Int (Python's bool is an int); checkers
return the value they accepted, never a coerced one; pointer evaluation raises only
PointerError; the depth scan is one linear regex pass, no recursion.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from postroom.jmap.errors import invalid_arguments

T = TypeVar("T")
D = TypeVar("D")

# -- Id, Int, UnsignedInt (RFC 8620 §1.2, §1.3) ---------------------------------------------

_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # §1.2: URL-safe base64 alphabet, 1-255 octets
MAX_INT = 2**53 - 1  # §1.3: the range a JavaScript double holds exactly
MIN_INT = -MAX_INT


def is_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_int(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and MIN_INT <= value <= MAX_INT)


def is_unsigned_int(value: object) -> bool:
    return is_int(value) and value >= 0  # type: ignore[operator]


# -- Date and UTCDate (RFC 8620 §1.4, RFC 3339 §5.6) ----------------------------------------

# §1.4: RFC 3339 date-time with upper-case letters; UTCDate's offset is "Z".
_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:\d{2})", re.ASCII)


def parse_date(text: str) -> datetime:
    """An RFC 3339 date-time in JMAP's form → an aware datetime; ValueError otherwise."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    micro = int((match.group(7) or "0").ljust(6, "0")[:6])  # finer digits are dropped
    return datetime(year, month, day, hour, minute, second, micro, _parse_offset(match[8]))


def _parse_offset(text: str) -> timezone:
    if text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad UTC offset: {text!r}")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def parse_utc_date(text: str) -> datetime:
    """§1.4 UTCDate: a Date whose offset MUST be "Z"."""
    if not text.endswith("Z"):
        raise ValueError(f"UTCDate must end in Z: {text!r}")
    return parse_date(text)


def _render_local(value: datetime) -> str:
    # strftime("%Y") does not zero-pad years below 1000 on every platform; §1.4 also
    # says time-secfrac MUST be omitted if zero.
    fraction = f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}{fraction}")


def render_utc_date(value: datetime) -> str:
    """An aware datetime as a UTCDate, e.g. "2014-10-30T06:12:00Z"."""
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    utc = value.astimezone(UTC)
    return _render_local(utc) + "Z"


def render_date(value: datetime) -> str:
    """An aware datetime as a Date keeping its own offset ("Z" when it is zero)."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("a naive datetime has no defined offset")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    zone = "Z" if minutes == 0 else f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return _render_local(value) + zone


# -- JSON nesting depth, without parsing -----------------------------------------------------

# A complete JSON string (escapes included) or one bracket: strings are skipped whole so
# that brackets inside them do not count. The unrolled form keeps the scan linear.
_DEPTH_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in `text`, counted outside strings.

    Exact for valid JSON; for invalid JSON it never undercounts the nesting a parser
    could reach before failing, so a depth check before `json.loads` bounds its recursion.
    """
    depth = deepest = 0
    for match in _DEPTH_TOKENS.finditer(text):
        lexeme = match.group()
        if lexeme in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif lexeme in ("]", "}"):
            depth -= 1
    return deepest


# -- JSON Pointer (RFC 6901) and the JMAP "*" extension (RFC 8620 §3.7) ---------------------

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*", re.ASCII)  # RFC 6901 §4: no leading zeros


class PointerError(ValueError):
    """A pointer that does not parse, or that names nothing in the document."""


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """RFC 6901 §3-4: "" is the whole document; otherwise "/"-separated reference tokens."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise PointerError(f"a JSON pointer starts with '/': {pointer!r}")
    tokens = pointer[1:].split("/")
    return tuple(_unescape_token(token) for token in tokens)


def _unescape_token(token: str) -> str:
    if re.search(r"~(?![01])", token):
        raise PointerError(f"'~' must be followed by 0 or 1: {token!r}")
    return token.replace("~1", "/").replace("~0", "~")  # RFC 6901 §4: this order


def _step(value: Any, token: str) -> Any:
    """One RFC 6901 evaluation step from `value` by `token`."""
    if isinstance(value, dict):
        if token not in value:
            raise PointerError(f"no member {token!r}")
        return value[token]
    if isinstance(value, list):
        if _ARRAY_INDEX.fullmatch(token) is None or int(token) >= len(value):
            raise PointerError(f"no array element {token!r}")
        return value[int(token)]
    raise PointerError(f"cannot descend into a {type(value).__name__} by {token!r}")


def evaluate_pointer(document: Any, pointer: str) -> Any:
    """Plain RFC 6901 evaluation."""
    value = document
    for token in parse_pointer(pointer):
        value = _step(value, token)
    return value


def evaluate_result_path(document: Any, pointer: str) -> Any:
    """RFC 8620 §3.7: RFC 6901 plus `*`, which maps the rest of the path over an array.

    Results that are themselves arrays are flattened into the output one level.
    `*` is special only where the current value is an array; on an object it is an
    ordinary member name.
    """
    return _evaluate_from(document, parse_pointer(pointer), 0)


def _evaluate_from(value: Any, tokens: Sequence[str], start: int) -> Any:
    # Recursion happens only at a `*`, so its depth is bounded by the path's length.
    for index in range(start, len(tokens)):
        part = tokens[index]
        if part == "*" and isinstance(value, list):
            mapped: list[Any] = []
            for item in value:
                result = _evaluate_from(item, tokens, index + 1)
                if isinstance(result, list):
                    mapped.extend(result)
                else:
                    mapped.append(result)
            return mapped
        value = _step(value, part)
    return value


# -- argument checkers (raise invalidArguments, RFC 8620 §3.6.2) ----------------------------

Checker = Callable[[Any, str], T]


def expect_string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid_arguments(f"{where} must be a String")
    return value


def expect_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_arguments(f"{where} must be a Boolean")
    return value


def expect_id(value: Any, where: str) -> str:
    if not is_id(value):
        raise invalid_arguments(f"{where} must be an Id (1-255 of A-Za-z0-9_-)")
    return str(value)


def expect_int(value: Any, where: str) -> int:
    if not is_int(value):
        raise invalid_arguments(f"{where} must be an Int (|n| <= 2^53-1)")
    return int(value)


def expect_unsigned_int(value: Any, where: str) -> int:
    if not is_unsigned_int(value):
        raise invalid_arguments(f"{where} must be an UnsignedInt (0 <= n <= 2^53-1)")
    return int(value)


def expect_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_arguments(f"{where} must be an object")
    return value


def expect_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_arguments(f"{where} must be an array")
    return value


def expect_id_list(value: Any, where: str) -> list[str]:
    return [expect_id(item, f"{where}[{n}]") for n, item in enumerate(expect_list(value, where))]


def expect_string_list(value: Any, where: str) -> list[str]:
    items = expect_list(value, where)
    return [expect_string(item, f"{where}[{n}]") for n, item in enumerate(items)]


def expect_utc_date(value: Any, where: str) -> datetime:
    try:
        return parse_utc_date(expect_string(value, where))
    except ValueError:
        raise invalid_arguments(f"{where} must be a UTCDate") from None


def required(arguments: Mapping[str, Any], name: str, expect: Checker[T]) -> T:
    """A required argument; a null reaches the checker, which refuses it unless nullable."""
    if name not in arguments:
        raise invalid_arguments(f"missing required argument {name}")
    return expect(arguments[name], name)


def optional(arguments: Mapping[str, Any], name: str, expect: Checker[T], default: D) -> T | D:
    """An optional argument: absent or null gives `default` (RFC 8620 "X|null" types)."""
    value = arguments.get(name)
    if value is None:
        return default
    return expect(value, name)


def reject_unknown(arguments: Mapping[str, Any], known: Collection[str],
                   where: str | None = None) -> None:
    """invalidArguments naming every argument (or member of `where`) not defined."""
    unknown = sorted(name for name in arguments if name not in known)
    if unknown:
        what = "unknown argument(s)" if where is None else f"{where}: unknown member(s)"
        raise invalid_arguments(f"{what}: " + ", ".join(unknown))


def render_numbered_id(prefix: str, number: int) -> str:
    """An Id for a row number: a letter naming the type, then the number ("I12")."""
    return f"{prefix}{number}"


def parse_numbered_id(prefix: str, text: str) -> int | None:
    """The row number `render_numbered_id(prefix, …)` gave `text`; None for any other
    text (one spelling per row: no sign, no leading zero, at most 18 digits)."""
    body = text[len(prefix):]
    if not text.startswith(prefix) or not body.isdigit() or len(body) > 18 or body[0] == "0":
        return None
    return int(body)
