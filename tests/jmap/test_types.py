"""RFC 8620 §1.2-1.4 data types, RFC 6901 JSON Pointer with the §3.7 `*` rule, the JSON
depth scan, and the argument checkers (jmap/types.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.jmap.errors import MethodError
from postroom.jmap.types import (
    MAX_INT,
    PointerError,
    evaluate_pointer,
    evaluate_result_path,
    expect_bool,
    expect_id,
    expect_id_list,
    expect_int,
    expect_unsigned_int,
    expect_utc_date,
    is_id,
    is_int,
    is_unsigned_int,
    json_depth,
    optional,
    parse_date,
    parse_pointer,
    parse_utc_date,
    reject_unknown,
    render_date,
    render_utc_date,
    required,
)

# -- Id, Int, UnsignedInt ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "A-z_09", "x" * 255, "-leading-dash"])
def test_valid_ids(value: str) -> None:
    assert is_id(value)


@pytest.mark.parametrize("value", ["", "x" * 256, "has space", "dot.", "é", "#k1", "a/b",
                                   None, 5, ["a"]])
def test_invalid_ids(value: Any) -> None:
    assert not is_id(value)


def test_int_range_and_bool_is_not_an_int() -> None:
    assert is_int(MAX_INT) and is_int(-MAX_INT) and is_int(0)
    assert not is_int(MAX_INT + 1) and not is_int(-MAX_INT - 1)
    assert not is_int(True) and not is_int(1.0) and not is_int("1")
    assert is_unsigned_int(0) and not is_unsigned_int(-1) and not is_unsigned_int(False)


# -- Date and UTCDate ----------------------------------------------------------------------


def test_parse_utc_date_and_fractions() -> None:
    assert parse_utc_date("2014-10-30T06:12:00Z") == datetime(2014, 10, 30, 6, 12, tzinfo=UTC)
    assert parse_utc_date("2014-10-30T06:12:00.25Z").microsecond == 250000
    assert parse_utc_date("2014-10-30T06:12:00.1234567Z").microsecond == 123456


def test_parse_date_keeps_the_offset() -> None:
    parsed = parse_date("2014-10-30T14:12:00+08:00")
    assert parsed.utcoffset() == timedelta(hours=8)
    assert parsed == datetime(2014, 10, 30, 6, 12, tzinfo=UTC)


@pytest.mark.parametrize("text", [
    "2014-10-30t06:12:00Z",  # §1.4: letters upper-case
    "2014-10-30T06:12:00z",
    "2014-10-30 06:12:00Z",
    "2014-13-30T06:12:00Z",
    "2014-10-30T24:00:00Z",
    "2014-10-30T06:12:60Z",
    "2014-10-30T06:12Z",
    "2014-10-30T06:12:00+25:00",
    "2014-10-30T06:12:00",
    "2014-10-30T06:12:00.Z",
])
def test_bad_dates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


def test_utc_date_needs_z() -> None:
    with pytest.raises(ValueError):
        parse_utc_date("2014-10-30T06:12:00+00:00")


def test_render_utc_date_omits_zero_fraction() -> None:
    plus8 = timezone(timedelta(hours=8))
    assert render_utc_date(datetime(2014, 10, 30, 14, 12, tzinfo=plus8)) == "2014-10-30T06:12:00Z"
    assert render_utc_date(datetime(2014, 10, 30, 6, 12, 0, 250000, tzinfo=UTC)) == (
        "2014-10-30T06:12:00.25Z")
    with pytest.raises(ValueError):
        render_utc_date(datetime(2014, 10, 30))  # naive


def test_render_date_keeps_offset() -> None:
    minus = timezone(-timedelta(hours=3, minutes=30))
    assert render_date(datetime(2020, 1, 2, 3, 4, 5, tzinfo=minus)) == "2020-01-02T03:04:05-03:30"
    assert render_date(datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2020-01-02T03:04:05Z"


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(UTC)))
def test_utc_date_round_trip(value: datetime) -> None:
    text = render_utc_date(value)
    assert parse_utc_date(text) == value
    assert text.endswith("Z") and not text.endswith(".0Z")


# -- JSON depth ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('"[[[["', 0),
    ('["\\"[[[", {}]', 2), ('{"k\\\\": ["]]]"]}', 2), ("[" * 1000 + "]" * 1000, 1000),
])
def test_json_depth(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), children, max_size=4),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_json_depth_matches_the_structure(value: Any) -> None:
    assert json_depth(json.dumps(value)) == _depth(value)


def test_json_depth_on_an_unterminated_string_never_undercounts() -> None:
    # the brackets before the bad string are what a parser would recurse into
    assert json_depth("[" * 500 + '"abc') == 500


# -- JSON Pointer (RFC 6901 §5 examples) ----------------------------------------------------

RFC6901_DOC = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4,
               "i\\j": 5, 'k"l': 6, " ": 7, "m~n": 8}


@pytest.mark.parametrize(("pointer", "expected"), [
    ("", RFC6901_DOC), ("/foo", ["bar", "baz"]), ("/foo/0", "bar"), ("/", 0), ("/a~1b", 1),
    ("/c%d", 2), ("/e^f", 3), ("/g|h", 4), ("/i\\j", 5), ('/k"l', 6), ("/ ", 7), ("/m~0n", 8),
])
def test_rfc6901_examples(pointer: str, expected: Any) -> None:
    assert evaluate_pointer(RFC6901_DOC, pointer) == expected


def test_tilde_unescape_order() -> None:
    assert parse_pointer("/~01") == ("~1",)  # "~01" is "~1", not "/"


@pytest.mark.parametrize("pointer", [
    "foo", "/foo/00", "/foo/01", "/foo/2", "/foo/-", "/foo/-1", "/nope", "/foo/0/x", "/~2",
    "/a~", "/foo/ 1",
])
def test_bad_pointers(pointer: str) -> None:
    with pytest.raises(PointerError):
        evaluate_pointer(RFC6901_DOC, pointer)


def test_star_maps_and_flattens() -> None:
    doc = {"list": [{"t": "a", "e": ["1", "2"]}, {"t": "b", "e": ["3"]}, {"t": "a", "e": []}]}
    assert evaluate_result_path(doc, "/list/*/t") == ["a", "b", "a"]
    assert evaluate_result_path(doc, "/list/*/e") == ["1", "2", "3"]  # flattened
    assert evaluate_result_path(doc, "/list/*/e/*") == ["1", "2", "3"]
    assert evaluate_result_path({"m": [[1, 2], [3]]}, "/m/*") == [1, 2, 3]
    assert evaluate_result_path({"m": []}, "/m/*/x") == []
    with pytest.raises(PointerError):
        evaluate_result_path(doc, "/list/*/missing")


def test_star_on_an_object_is_a_member_name() -> None:
    assert evaluate_result_path({"*": {"x": 1}}, "/*/x") == 1
    with pytest.raises(PointerError):
        evaluate_pointer({"l": [1]}, "/l/*")  # plain RFC 6901 has no `*`


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


_KEYS = st.text(alphabet="ab~/*0", max_size=4)
_TREES = st.recursive(st.integers(), lambda children: st.dictionaries(_KEYS, children,
                                                                      max_size=3),
                      max_leaves=20)


def _leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    return [(path, value)]


@settings(max_examples=200, deadline=None)
@given(_TREES)
def test_every_escaped_path_finds_its_leaf(tree: Any) -> None:
    for path, leaf in _leaves(tree):
        pointer = "".join("/" + _escape(token) for token in path)
        assert parse_pointer(pointer) == path
        assert evaluate_pointer(tree, pointer) == leaf
        assert evaluate_result_path(tree, pointer) == leaf  # no arrays: `*` is plain


# -- argument checkers ---------------------------------------------------------------------


def _error_type(call: Any) -> str:
    with pytest.raises(MethodError) as caught:
        call()
    return caught.value.type


def test_checkers_raise_invalid_arguments_with_a_description() -> None:
    with pytest.raises(MethodError) as caught:
        expect_id("no spaces", "accountId")
    assert caught.value.type == "invalidArguments"
    assert "accountId" in (caught.value.description or "")
    assert _error_type(lambda: expect_int(True, "n")) == "invalidArguments"
    assert _error_type(lambda: expect_unsigned_int(-1, "n")) == "invalidArguments"
    assert _error_type(lambda: expect_bool(1, "b")) == "invalidArguments"
    assert _error_type(lambda: expect_id_list(["ok", 3], "ids")) == "invalidArguments"
    assert _error_type(lambda: expect_utc_date("yesterday", "d")) == "invalidArguments"
    assert expect_utc_date("2014-10-30T06:12:00Z", "d").year == 2014


def test_required_optional_and_unknown() -> None:
    arguments = {"accountId": "a1", "limit": None}
    assert required(arguments, "accountId", expect_id) == "a1"
    assert _error_type(lambda: required(arguments, "ids", expect_id_list)) == "invalidArguments"
    assert optional(arguments, "limit", expect_unsigned_int, 7) == 7  # null → default
    assert optional(arguments, "absent", expect_unsigned_int, None) is None
    reject_unknown(arguments, ("accountId", "limit"))
    with pytest.raises(MethodError) as caught:
        reject_unknown(arguments, ("accountId",))
    assert "limit" in (caught.value.description or "")
