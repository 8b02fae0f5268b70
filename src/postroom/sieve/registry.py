"""What every Sieve command and test accepts: the signature table the validator checks
scripts against, and the capabilities postroom runs (ManageSieve's SIEVE capability).

Owns `SPECS` (name → `Spec`), the tag groups shared by many tests (comparator, match
type, address part, index) and `CAPABILITIES`. Adding a command: one `Spec` line here
(its tags, positional kinds, needed extension) and its handler in evaluate.py or
tests.py; nothing else dispatches on names.

Invariants: a spec's `requires` names the extension a script must `require` before
using it (RFC 5228 §3.2); tags that belong to one group are mutually exclusive (RFC 5228
§2.6.2: "only one of the match types may be given"); positional kinds are "string"
(one string; a one-string list is accepted where RFC 5228 §2.6.3 allows), "list"
(string-list) and "number".
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The extensions postroom runs, as `require` and ManageSieve's SIEVE capability name them.
CAPABILITIES: tuple[str, ...] = (
    "fileinto", "reject", "ereject", "envelope", "encoded-character", "imap4flags",
    "body", "variables", "vacation", "vacation-seconds", "relational",
    "comparator-i;ascii-numeric", "subaddress", "copy", "date", "index", "mailbox",
    "editheader", "include", "regex", "environment", "duplicate", "special-use",
)  # fmt: skip
# Comparators every script may name without `require` (RFC 5228 §2.7.3).
BUILTIN_COMPARATORS = frozenset({"i;octet", "i;ascii-casemap"})


@dataclass(frozen=True, slots=True)
class TagSpec:
    argument: str = ""  # "", "string", "list" or "number"
    group: str = ""  # tags of one group exclude each other
    requires: str = ""


COMPARATOR = {"comparator": TagSpec("string", "comparator")}
MATCH_TYPE = {
    "is": TagSpec(group="match"), "contains": TagSpec(group="match"),
    "matches": TagSpec(group="match"), "regex": TagSpec(group="match", requires="regex"),
    "value": TagSpec("string", "match", "relational"),
    "count": TagSpec("string", "match", "relational"),
}  # fmt: skip
ADDRESS_PART = {
    "localpart": TagSpec(group="address-part"), "domain": TagSpec(group="address-part"),
    "all": TagSpec(group="address-part"),
    "user": TagSpec(group="address-part", requires="subaddress"),
    "detail": TagSpec(group="address-part", requires="subaddress"),
}  # fmt: skip
INDEX = {"index": TagSpec("number", requires="index"), "last": TagSpec(requires="index")}
ZONE = {"zone": TagSpec("string", "zone"), "originalzone": TagSpec(group="zone")}


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    is_test: bool
    positionals: tuple[str, ...] = ()
    tags: dict[str, TagSpec] = field(default_factory=dict)
    requires: str = ""
    optional_leading: int = 0  # this many of `positionals` may be left out, from the front
    optional_trailing: int = 0  # … or from the back
    tests: str = ""  # "", "one" (if, not) or "list" (allof, anyof)
    block: str = ""  # "", "required" (if/elsif/else)


def _spec(name: str, positionals: tuple[str, ...] = (), *, test: bool = False,
          tags: dict[str, TagSpec] | None = None, requires: str = "", **extra: object
          ) -> Spec:  # fmt: skip
    return Spec(name, test, positionals, dict(tags or {}), requires, **extra)  # type: ignore[arg-type]


_MATCHING = COMPARATOR | MATCH_TYPE
_FLAGS = {"flags": TagSpec("list", requires="imap4flags")}

SPECS: dict[str, Spec] = {spec.name: spec for spec in (
    # -- control (RFC 5228 §3) ------------------------------------------------------------
    _spec("require", ("list",)),
    _spec("if", tests="one", block="required"),
    _spec("elsif", tests="one", block="required"),
    _spec("else", block="required"),
    _spec("stop"),
    # -- actions (RFC 5228 §4 and extensions) ---------------------------------------------
    _spec("keep", tags=_FLAGS),
    _spec("discard"),
    _spec("fileinto", ("string",), requires="fileinto", tags=_FLAGS | {
        "copy": TagSpec(requires="copy"), "create": TagSpec(requires="mailbox"),
        "specialuse": TagSpec("string", requires="special-use")}),
    _spec("redirect", ("string",), tags={"copy": TagSpec(requires="copy")}),
    _spec("reject", ("string",), requires="reject"),
    _spec("ereject", ("string",), requires="ereject"),
    _spec("vacation", ("string",), requires="vacation", tags={
        "days": TagSpec("number", "period"),
        "seconds": TagSpec("number", "period", "vacation-seconds"),
        "subject": TagSpec("string"), "from": TagSpec("string"),
        "addresses": TagSpec("list"), "mime": TagSpec(), "handle": TagSpec("string")}),
    _spec("setflag", ("string", "list"), requires="imap4flags", optional_leading=1),
    _spec("addflag", ("string", "list"), requires="imap4flags", optional_leading=1),
    _spec("removeflag", ("string", "list"), requires="imap4flags", optional_leading=1),
    _spec("set", ("string", "string"), requires="variables", tags={
        "lower": TagSpec(group="case"), "upper": TagSpec(group="case"),
        "lowerfirst": TagSpec(group="first"), "upperfirst": TagSpec(group="first"),
        "quotewildcard": TagSpec(group="quote"),
        "quoteregex": TagSpec(group="quote", requires="regex"),
        "length": TagSpec()}),
    _spec("addheader", ("string", "string"), requires="editheader",
          tags={"last": TagSpec()}),
    _spec("deleteheader", ("string", "list"), requires="editheader",
          tags=_MATCHING | INDEX, optional_trailing=1),
    _spec("include", ("string",), requires="include", tags={
        "personal": TagSpec(group="location"), "global": TagSpec(group="location"),
        "once": TagSpec(), "optional": TagSpec()}),
    _spec("return", requires="include"),
    _spec("global", ("list",), requires="include"),
    # -- tests (RFC 5228 §5 and extensions) -----------------------------------------------
    _spec("address", ("list", "list"), test=True, tags=_MATCHING | ADDRESS_PART | INDEX),
    _spec("allof", test=True, tests="list"),
    _spec("anyof", test=True, tests="list"),
    _spec("not", test=True, tests="one"),
    _spec("envelope", ("list", "list"), test=True, requires="envelope",
          tags=_MATCHING | ADDRESS_PART),
    _spec("exists", ("list",), test=True),
    _spec("false", test=True),
    _spec("true", test=True),
    _spec("header", ("list", "list"), test=True, tags=_MATCHING | INDEX),
    _spec("size", ("number",), test=True, tags={
        "over": TagSpec(group="size"), "under": TagSpec(group="size")}),
    _spec("body", ("list",), test=True, requires="body", tags=_MATCHING | {
        "raw": TagSpec(group="transform"), "text": TagSpec(group="transform"),
        "content": TagSpec("list", "transform")}),
    _spec("string", ("list", "list"), test=True, requires="variables", tags=_MATCHING),
    _spec("hasflag", ("list", "list"), test=True, requires="imap4flags", tags=_MATCHING,
          optional_leading=1),
    _spec("date", ("string", "string", "list"), test=True, requires="date",
          tags=_MATCHING | INDEX | ZONE),
    _spec("currentdate", ("string", "list"), test=True, requires="date",
          tags=_MATCHING | {"zone": TagSpec("string", "zone")}),
    _spec("environment", ("string", "list"), test=True, requires="environment",
          tags=_MATCHING),
    _spec("duplicate", test=True, requires="duplicate", tags={
        "handle": TagSpec("string"), "header": TagSpec("string", "id"),
        "uniqueid": TagSpec("string", "id"), "seconds": TagSpec("number"),
        "last": TagSpec()}),
    _spec("mailboxexists", ("list",), test=True, requires="mailbox"),
    _spec("specialuse_exists", ("string", "list"), test=True, requires="special-use",
          optional_leading=1),
)}  # fmt: skip
