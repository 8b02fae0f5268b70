"""IMAP response serializer (RFC 9051 §7, RFC 3501 §7, RFC 4731 ESEARCH, RFC 7162 VANISHED).

Owns: value rendering and the `render_*` functions; every function returns complete
response bytes ending in CRLF.

Values (`Value`): `str` → quoted string, or a literal when it holds CR/LF/NUL, is long, or
holds non-ASCII without `is_utf8` (RFC 9051 §4.3, RFC 6855 §3); `bytes` → literal, or
literal8 `~{n}` when it holds NUL (RFC 3516 §4.2); `int` → number; `None` → NIL;
`list`/`tuple` → parenthesised list (nested ENVELOPE/BODYSTRUCTURE data from mail/ works
as is); `Atom` → raw atom (flags, keywords, words); `Raw` → pre-rendered bytes;
`SequenceSet` → its compact form; `datetime` → quoted date-time.

Invariants:
- Human-readable text never breaks the line: CR/LF/NUL in it become spaces.
- Mailbox names pass through `mailbox_value`: modified UTF-7 unless `is_utf8`.
- `bool` is refused (TypeError) so a stray flag never renders as a number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from postroom.imap.wire.fetch import FetchAttribute
from postroom.imap.wire.grammar import MONTHS, SequenceSet
from postroom.mail.utf7 import encode_utf7

if TYPE_CHECKING:
    from postroom.security.limits import Refusal

MAX_QUOTED = 1000  # longer strings go out as literals: easier on clients' line buffers


@dataclass(frozen=True, slots=True)
class Atom:
    """Rendered verbatim: `\\Seen`, `$Forwarded`, `NIL`-free words, response-code names."""

    text: str


@dataclass(frozen=True, slots=True)
class Raw:
    """Pre-rendered wire bytes, inserted verbatim."""

    data: bytes


# Sequence (covariant) rather than list, so callers may pass list[Atom], list[str], ...;
# at run time only list and tuple are rendered as parenthesised lists.
Value = Union[  # noqa: UP007  (a recursive alias needs the Union spelling)
    str, bytes, int, None, Atom, Raw, SequenceSet, dt.datetime, Sequence["Value"],
]


def render_datetime(moment: dt.datetime) -> str:
    """date-time body (RFC 9051 §9): `01-Feb-1994 21:52:25 -0800` (naive → UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    offset = moment.utcoffset() or dt.timedelta()
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return (
        f"{moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {zone}"
    )


def mailbox_value(name: str, *, is_utf8: bool) -> str:
    """A mailbox name as it goes on the wire (RFC 9051 §5.1, RFC 3501 §5.1.3)."""
    return name if is_utf8 else encode_utf7(name)


def _encode_text(text: str) -> tuple[bytes, bool]:
    """UTF-8 bytes of `text` and whether they are valid UTF-8. Strings decoded upstream with
    surrogateescape get their original bytes back; other lone surrogates become "?"."""
    try:
        return text.encode("utf-8"), True
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape"), False
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace"), False


def _render_str(text: str, out: list[bytes], is_utf8: bool) -> None:
    data, is_valid = _encode_text(text)
    has_break = "\r" in text or "\n" in text or "\x00" in text
    is_quotable = is_valid and (text.isascii() or is_utf8)
    if is_quotable and not has_break and len(text) <= MAX_QUOTED:
        out.append(b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
    else:
        _render_bytes(data, out)


def _render_bytes(data: bytes, out: list[bytes]) -> None:
    prefix = b"~" if b"\x00" in data else b""  # RFC 3516: NUL needs literal8
    out.append(prefix + b"{%d}\r\n" % len(data))
    out.append(data)


def render_value(value: Value, out: list[bytes], *, is_utf8: bool = False) -> None:
    """Append the wire form of `value` to `out` (see the module docstring)."""
    if value is None:
        out.append(b"NIL")
    elif isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    elif isinstance(value, int):
        out.append(str(value).encode("ascii"))
    elif isinstance(value, str):
        _render_str(value, out, is_utf8)
    elif isinstance(value, bytes):
        _render_bytes(value, out)
    elif isinstance(value, Atom):
        out.append(value.text.encode("utf-8"))
    elif isinstance(value, Raw):
        out.append(value.data)
    elif isinstance(value, SequenceSet):
        out.append(value.render().encode("ascii"))
    elif isinstance(value, dt.datetime):
        out.append(b'"' + render_datetime(value).encode("ascii") + b'"')
    elif isinstance(value, list | tuple):
        _render_list(value, out, is_utf8)
    else:
        raise TypeError(f"cannot render {type(value).__name__} as an IMAP value")


def _render_list(items: list[Value] | tuple[Value, ...], out: list[bytes], is_utf8: bool
                 ) -> None:
    """A parenthesised list. A leading run of lists is written without spaces between
    them: that is the grammar of a multipart's bodies (`1*body SP media-subtype`) and of
    ENVELOPE address lists (`"(" 1*address ")"`), RFC 9051 §9, as Dovecot writes them."""
    out.append(b"(")
    is_leading_run = True
    for index, item in enumerate(items):
        is_list = isinstance(item, list | tuple)
        if index and not (is_leading_run and is_list):
            out.append(b" ")
        is_leading_run = is_leading_run and is_list
        render_value(item, out, is_utf8=is_utf8)
    out.append(b")")


def render_values(values: Iterable[Value], *, is_utf8: bool = False) -> bytes:
    """SP-separated values, without CRLF."""
    out: list[bytes] = []
    for index, value in enumerate(values):
        if index:
            out.append(b" ")
        render_value(value, out, is_utf8=is_utf8)
    return b"".join(out)


# -- BODY / BODYSTRUCTURE (RFC 9051 §7.5.2 body, body-type-mpart) ---------------------------
def render_body(data: list[Any], *, is_utf8: bool) -> Raw:
    """BODY or BODYSTRUCTURE data (`mail.bodystructure.body_structure`) as a FETCH value:
    like a list, but consecutive multipart children have no space between them
    (RFC 9051 §9: body-type-mpart = 1*body SP media-subtype)."""
    out: list[bytes] = []
    _render_body(data, out, is_utf8)
    return Raw(b"".join(out))


def _is_message_body(data: list[Any]) -> bool:
    return (len(data) > 8 and data[0] == "MESSAGE" and data[1] in ("RFC822", "GLOBAL")
            and isinstance(data[8], list))  # fmt: skip


def _render_body(data: list[Any], out: list[bytes], is_utf8: bool) -> None:
    out.append(b"(")
    if data and isinstance(data[0], list):  # multipart: children, then subtype and extension
        index = 0
        while index < len(data) and isinstance(data[index], list):
            _render_body(data[index], out, is_utf8)
            index += 1
        for item in data[index:]:
            out.append(b" ")
            render_value(item, out, is_utf8=is_utf8)
    else:
        is_message = _is_message_body(data)  # body-type-msg nests a whole body (field 8)
        for index, item in enumerate(data):
            if index:
                out.append(b" ")
            if is_message and index == 8:
                _render_body(item, out, is_utf8)
            else:
                render_value(item, out, is_utf8=is_utf8)
    out.append(b")")


def _clean_text(text: str) -> bytes:
    cleaned = text.replace("\r", " ").replace("\n", " ").replace("\x00", " ")
    return (cleaned or "completed").encode("utf-8", "replace")


def _render_status_line(
    prefix: bytes, status: str, text: str, code: str | None, code_args: Sequence[Value]
) -> bytes:
    parts = [prefix, b" ", status.encode("ascii"), b" "]
    if code:
        parts.append(b"[" + code.encode("ascii"))
        if code_args:
            parts.append(b" " + render_values(code_args))
        parts.append(b"] ")
    parts.append(_clean_text(text))
    parts.append(b"\r\n")
    return b"".join(parts)


def render_tagged(
    tag: str, status: str, text: str, code: str | None = None, code_args: Sequence[Value] = ()
) -> bytes:
    """`tag OK|NO|BAD [CODE args] text` (RFC 9051 §7.1)."""
    return _render_status_line(tag.encode("ascii"), status, text, code, code_args)


def render_untagged_status(
    status: str, text: str, code: str | None = None, code_args: Sequence[Value] = ()
) -> bytes:
    """`* OK|NO|BAD|BYE|PREAUTH [CODE args] text` (RFC 9051 §7.1)."""
    return _render_status_line(b"*", status, text, code, code_args)


def render_untagged(*items: Value, is_utf8: bool = False) -> bytes:
    """`* item item ...` for anything without a dedicated helper (e.g. NAMESPACE)."""
    return b"* " + render_values(items, is_utf8=is_utf8) + b"\r\n"


def render_continuation(text: str = "") -> bytes:
    """`+ text` (RFC 9051 §7.6); text may be a base64 SASL challenge."""
    return b"+ " + text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace") + b"\r\n"


def render_capability(capabilities: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(capabilities).encode("ascii") + b"\r\n"


def render_enabled(capabilities: Iterable[str]) -> bytes:
    """RFC 5161 §3.2: `* ENABLED` lists only what this command newly enabled."""
    return " ".join(["* ENABLED", *capabilities]).encode("ascii") + b"\r\n"


def render_flags(flags: Iterable[str]) -> bytes:
    return render_untagged(Atom("FLAGS"), [Atom(flag) for flag in flags])


def render_exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count


def render_recent(count: int) -> bytes:
    return b"* %d RECENT\r\n" % count  # IMAP4rev1 only (RFC 3501 §7.3.2)


def render_expunge(sequence_number: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % sequence_number


def render_vanished(uids: Iterable[int] | SequenceSet, *, is_earlier: bool = False) -> bytes:
    """RFC 7162 §3.2.10: `* VANISHED [(EARLIER)] uid-set`."""
    uid_set = uids if isinstance(uids, SequenceSet) else SequenceSet.from_values(uids)
    earlier = b"(EARLIER) " if is_earlier else b""
    return b"* VANISHED " + earlier + uid_set.render().encode("ascii") + b"\r\n"


FetchName = Union[str, FetchAttribute]  # noqa: UP007


def render_fetch(
    sequence_number: int, items: Sequence[tuple[FetchName, Value]], *, is_utf8: bool = False
) -> bytes:
    """`* n FETCH (NAME value ...)`; a FetchAttribute name echoes its response_name()."""
    out: list[bytes] = [b"* %d FETCH (" % sequence_number]
    for index, (name, value) in enumerate(items):
        label = name.response_name() if isinstance(name, FetchAttribute) else name
        out.append((" " if index else "").encode("ascii") + label.encode("ascii") + b" ")
        render_value(value, out, is_utf8=is_utf8)
    out.append(b")\r\n")
    return b"".join(out)


def render_list(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    extended: Sequence[tuple[str, Value]] = (),
    *,
    is_utf8: bool = False,
    command: str = "LIST",
) -> bytes:
    """`* LIST (\\attrs) "/" name [(extended items)]` (RFC 9051 §7.3.1, RFC 5258 §3.5);
    `command="LSUB"` for the rev1 LSUB answer."""
    items: list[Value] = [
        Atom(command),
        [Atom(attribute) for attribute in attributes],
        delimiter,
        mailbox_value(name, is_utf8=is_utf8),
    ]
    if extended:
        # RFC 5258 §9 mbox-list-extended: "(" tag SP value *(SP tag SP value) ")"
        items.append([item for tag, value in extended for item in (tag, value)])
    return render_untagged(*items, is_utf8=is_utf8)


def render_status(
    mailbox: str, items: Sequence[tuple[str, Value]], *, is_utf8: bool = False
) -> bytes:
    """`* STATUS name (MESSAGES 3 UIDNEXT 9)` (RFC 9051 §7.3.3); a value may be a list
    (RFC 8474 `MAILBOXID (id)`)."""
    flat: list[Value] = []
    for name, value in items:
        flat.extend((Atom(name), value))
    return render_untagged(
        Atom("STATUS"), mailbox_value(mailbox, is_utf8=is_utf8), flat, is_utf8=is_utf8
    )


def render_search(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """rev1 `* SEARCH 2 3 5 [(MODSEQ n)]` (RFC 3501 §7.2.5, RFC 7162 §3.1.5)."""
    out = ["* SEARCH", *(str(number) for number in numbers)]
    if modseq is not None:
        out.append(f"(MODSEQ {modseq})")
    return " ".join(out).encode("ascii") + b"\r\n"


def render_esearch(
    tag: str | None,
    *,
    is_uid: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    all_values: Iterable[int] | SequenceSet | None = None,
    count: int | None = None,
    modseq: int | None = None,
) -> bytes:
    """`* ESEARCH (TAG "a1") UID MIN 2 MAX 9 ALL 2:4,9 COUNT 4` (RFC 4731 §3.1);
    arguments left None are omitted; an empty ALL set is omitted (RFC 4731 §3.1)."""
    items: list[Value] = [Atom("ESEARCH")]
    if tag is not None:
        items.append([Atom("TAG"), tag])
    if is_uid:
        items.append(Atom("UID"))
    for label, number in (("MIN", minimum), ("MAX", maximum)):
        if number is not None:
            items.extend((Atom(label), number))
    if all_values is not None:
        values = (
            all_values
            if isinstance(all_values, SequenceSet)
            else SequenceSet.from_values(all_values)
        )
        if values.ranges:
            items.extend((Atom("ALL"), values))
    for label, number in (("COUNT", count), ("MODSEQ", modseq)):
        if number is not None:
            items.extend((Atom(label), number))
    return render_untagged(*items)


def render_id(parameters: Sequence[tuple[str, str | None]] | None) -> bytes:
    """RFC 2971 §3.2: `* ID NIL` or `* ID ("name" "postroom" ...)`."""
    if parameters is None:
        return render_untagged(Atom("ID"), None)
    flat: list[Value] = [item for pair in parameters for item in pair]
    return render_untagged(Atom("ID"), flat)


Namespace = Sequence[tuple[str, str | None]] | None


def render_namespace(
    personal: Namespace, other: Namespace = None, shared: Namespace = None, *, is_utf8: bool = False
) -> bytes:
    """RFC 9051 §7.3.5 / RFC 2342: `* NAMESPACE (("" "/")) NIL NIL`."""

    def group(spaces: Namespace) -> Value:
        if not spaces:
            return None
        return [[mailbox_value(prefix, is_utf8=is_utf8), delim] for prefix, delim in spaces]

    return render_untagged(
        Atom("NAMESPACE"), group(personal), group(other), group(shared), is_utf8=is_utf8
    )


def render_refusal(refusal: Refusal, hostname: str) -> bytes:
    """Instead of the greeting: `* BYE [UNAVAILABLE] …` (RFC 9051 §7.1.5); a
    `RefusalRenderer` (security/limits.py). The hostname is SMTP's to name."""
    return render_untagged_status("BYE", refusal.value, "UNAVAILABLE")
