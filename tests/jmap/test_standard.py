"""RFC 8620 §5: the standard methods' arguments, the /get response, PatchObject (§5.3),
"#creation-id" references, filters and sorts (§5.5), and the /query window."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.jmap.core import Limits
from postroom.jmap.errors import MethodError, SetFailure
from postroom.jmap.standard import (
    Comparator,
    FilterOperator,
    Operator,
    UnknownCreationId,
    apply_patch,
    compute_query_window,
    copy_source_id,
    parse_changes_args,
    parse_copy_args,
    parse_get_args,
    parse_query_args,
    parse_query_changes_args,
    parse_set_args,
    render_get_response,
    render_query_response,
    resolve_creation_id,
    resolve_creation_ids,
)

LIMITS = Limits(max_objects_in_get=3, max_objects_in_set=3)


def method_error(call: Any) -> MethodError:
    with pytest.raises(MethodError) as caught:
        call()
    return caught.value


# -- /get (§5.1) ----------------------------------------------------------------------------


def test_get_args() -> None:
    args = parse_get_args({"accountId": "A1", "ids": ["a", "b"], "properties": ["name"]},
                          LIMITS, known_properties=("id", "name"))
    assert (args.account_id, args.ids, args.properties) == ("A1", ["a", "b"], ["name"])
    everything = parse_get_args({"accountId": "A1", "ids": None}, LIMITS)
    assert everything.ids is None and everything.properties is None


@pytest.mark.parametrize("arguments", [
    {},  # no accountId
    {"accountId": "bad id"},
    {"accountId": "A1", "ids": "a"},
    {"accountId": "A1", "ids": ["#k1"]},
    {"accountId": "A1", "properties": [1]},
    {"accountId": "A1", "properties": ["secret"]},  # not a property of the type
    {"accountId": "A1", "sinceState": "x"},  # not an argument of /get
])
def test_get_invalid_arguments(arguments: dict[str, Any]) -> None:
    error = method_error(lambda: parse_get_args(arguments, LIMITS,
                                                known_properties=("id", "name")))
    assert error.type == "invalidArguments"
    assert error.description


def test_get_request_too_large() -> None:
    assert parse_get_args({"accountId": "A1", "ids": ["a", "b", "c"]}, LIMITS).ids
    error = method_error(lambda: parse_get_args({"accountId": "A1", "ids": list("abcd")},
                                                LIMITS))
    assert error.type == "requestTooLarge"


def test_get_extra_arguments_are_the_data_types() -> None:
    args = parse_get_args({"accountId": "A1", "fetchTextBodyValues": True}, LIMITS,
                          extra=("fetchTextBodyValues", "bodyProperties"))
    assert args.extra == {"fetchTextBodyValues": True}


def test_render_get_response() -> None:
    records = [{"id": "a", "name": "A", "role": None}, {"id": "b", "name": "B", "role": "x"}]
    response = render_get_response("A1", "st", records, ["b", "zz", "b", "a", "zz"], ["name"])
    assert response == {"accountId": "A1", "state": "st",
                        "list": [{"id": "b", "name": "B"}, {"id": "a", "name": "A"}],
                        "notFound": ["zz"]}  # duplicates appear once (§5.1)
    every = render_get_response("A1", "st", records, None, None)
    assert every["list"] == records and every["notFound"] == []
    ids_only = render_get_response("A1", "st", records, ["a"], [])
    assert ids_only["list"] == [{"id": "a"}]  # id is always returned


# -- /changes (§5.2) ------------------------------------------------------------------------


def test_changes_args() -> None:
    args = parse_changes_args({"accountId": "A1", "sinceState": "s", "maxChanges": 50}, LIMITS)
    assert (args.since_state, args.max_changes) == ("s", 50)
    assert parse_changes_args({"accountId": "A1", "sinceState": "s", "maxChanges": None},
                              LIMITS).max_changes is None


@pytest.mark.parametrize("arguments", [
    {"accountId": "A1", "sinceState": "s", "maxChanges": 0},  # MUST be > 0
    {"accountId": "A1", "sinceState": "s", "maxChanges": -1},
    {"accountId": "A1", "sinceState": "s", "maxChanges": 1.5},
    {"accountId": "A1", "sinceState": "s", "maxChanges": True},
    {"accountId": "A1"},
    {"accountId": "A1", "sinceState": None},
    {"accountId": "A1", "sinceState": 3},
])
def test_changes_invalid_arguments(arguments: dict[str, Any]) -> None:
    assert method_error(lambda: parse_changes_args(arguments, LIMITS)).type == (
        "invalidArguments")


# -- /set (§5.3) ----------------------------------------------------------------------------


def test_set_args() -> None:
    args = parse_set_args({"accountId": "A1", "ifInState": "s1",
                           "create": {"k1": {"name": "x"}},
                           "update": {"M1": {"name": "y"}, "#k1": {"role": None}},
                           "destroy": ["#k0"]}, Limits())
    assert args.create == {"k1": {"name": "x"}}
    assert set(args.update) == {"M1", "#k1"}
    assert args.destroy == ["#k0"] and args.if_in_state == "s1"
    empty = parse_set_args({"accountId": "A1", "create": None}, LIMITS)
    assert (empty.create, empty.update, empty.destroy) == ({}, {}, [])


@pytest.mark.parametrize("arguments", [
    {"accountId": "A1", "create": []},
    {"accountId": "A1", "create": {"bad id": {}}},
    {"accountId": "A1", "create": {"#k1": {}}},  # a creation id is an Id, not a reference
    {"accountId": "A1", "create": {"k1": "x"}},
    {"accountId": "A1", "update": {"M1": None}},
    {"accountId": "A1", "update": {"#": {}}},
    {"accountId": "A1", "destroy": "M1"},
    {"accountId": "A1", "destroy": ["M 1"]},
    {"accountId": "A1", "ifInState": 5},
])
def test_set_invalid_arguments(arguments: dict[str, Any]) -> None:
    assert method_error(lambda: parse_set_args(arguments, LIMITS)).type == "invalidArguments"


def test_set_request_too_large_counts_all_three() -> None:
    at_limit = {"accountId": "A1", "create": {"k1": {}}, "update": {"M1": {}},
                "destroy": ["M2"]}
    parse_set_args(at_limit, LIMITS)
    error = method_error(lambda: parse_set_args({**at_limit, "destroy": ["M2", "M3"]}, LIMITS))
    assert error.type == "requestTooLarge"


# -- /copy (§5.4) ---------------------------------------------------------------------------


def test_copy_args() -> None:
    args = parse_copy_args({"fromAccountId": "A1", "accountId": "A2",
                            "create": {"k1": {"id": "M1"}}, "onSuccessDestroyOriginal": True},
                           LIMITS)
    assert (args.from_account_id, args.account_id) == ("A1", "A2")
    assert args.on_success_destroy_original and args.if_from_in_state is None
    assert copy_source_id(args.create["k1"]) == "M1"
    with pytest.raises(SetFailure) as caught:
        copy_source_id({"name": "no id"})
    assert caught.value.error.render()["properties"] == ["id"]


@pytest.mark.parametrize(("arguments", "kind"), [
    ({"fromAccountId": "A1", "accountId": "A1", "create": {}}, "invalidArguments"),
    ({"fromAccountId": "A1", "accountId": "A2"}, "invalidArguments"),
    ({"accountId": "A2", "create": {}}, "invalidArguments"),
    ({"fromAccountId": "A1", "accountId": "A2", "create": {}, "destroy": []},
     "invalidArguments"),
    ({"fromAccountId": "A1", "accountId": "A2",
      "create": {f"k{n}": {"id": "M"} for n in range(4)}}, "requestTooLarge"),
])
def test_copy_errors(arguments: dict[str, Any], kind: str) -> None:
    assert method_error(lambda: parse_copy_args(arguments, LIMITS)).type == kind


# -- PatchObject (§5.3) ---------------------------------------------------------------------

RECORD = {"id": "M1", "name": "Inbox", "keywords": {"$seen": True},
          "alerts": [{"offset": 1}], "meta": {"a": {"b": 1}}}


def test_patch_sets_adds_and_removes() -> None:
    patched = apply_patch(RECORD, {"name": "Archive", "keywords/$flagged": True,
                                   "keywords/$seen": None, "meta/a/b": 2, "meta/new": 1,
                                   "role": None})
    assert patched["name"] == "Archive"
    assert patched["keywords"] == {"$flagged": True}
    assert patched["meta"] == {"a": {"b": 2}, "new": 1}
    assert "role" not in patched  # null on an absent member is a no-op
    assert RECORD["keywords"] == {"$seen": True}  # the input is untouched


def test_patch_null_resets_a_default() -> None:
    patched = apply_patch(RECORD, {"name": None}, defaults={"name": ""})
    assert patched["name"] == ""


def test_patch_keys_are_escaped_pointers() -> None:
    patched = apply_patch({"mailboxIds": {}}, {"mailboxIds/a~1b": True, "mailboxIds/c~0d": True})
    assert patched["mailboxIds"] == {"a/b": True, "c~d": True}


def test_a_whole_array_may_be_replaced() -> None:
    assert apply_patch(RECORD, {"alerts": []})["alerts"] == []


@pytest.mark.parametrize("patch", [
    {"missing/child": 1},  # a parent that does not exist
    {"meta/x/y": 1},
    {"alerts/0/offset": 2},  # inside an array
    {"alerts/0": {}},
    {"name/first": "x"},  # through a string
    {"meta": {}, "meta/a/b": 3},  # one path a prefix of another
    {"keywords": {}, "keywords/$seen": None},
    {"meta/~2": 1},  # not an RFC 6901 escape
    {"": 1},
    {"/name": "x"},  # the leading "/" is implicit, not written
])
def test_invalid_patch(patch: dict[str, Any]) -> None:
    with pytest.raises(SetFailure) as caught:
        apply_patch(RECORD, patch)
    assert caught.value.error.type == "invalidPatch"
    assert caught.value.error.description


def test_similar_names_are_not_prefixes() -> None:
    assert apply_patch({"a": {}, "ab": 1}, {"a/x": 1, "ab": 2}) == {"a": {"x": 1}, "ab": 2}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3),
                       st.integers() | st.none(), max_size=6),
       st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3), st.integers(),
                       max_size=6))
def test_a_flat_patch_is_a_dict_update(patch: dict[str, Any], record: dict[str, Any]) -> None:
    expected = {**record, **{k: v for k, v in patch.items() if v is not None}}
    for key, value in patch.items():
        if value is None:
            expected.pop(key, None)
    assert apply_patch(record, patch) == expected


# -- "#creation-id" references (§3.3, §5.3) -------------------------------------------------


def test_resolve_creation_ids() -> None:
    created = {"k1": "M1", "k2": "M2"}
    assert resolve_creation_id("#k1", created) == "M1"
    assert resolve_creation_id("M9", created) == "M9"
    assert resolve_creation_ids(["#k1", "M9", "#k2"], created) == ["M1", "M9", "M2"]
    # maps keyed by id: keys resolve, values are never touched
    assert resolve_creation_ids({"#k1": {"name": "#k2"}}, created) == {"M1": {"name": "#k2"}}
    with pytest.raises(UnknownCreationId) as caught:
        resolve_creation_ids(["#nope"], created)
    assert caught.value.reference == "#nope"


# -- /query and /queryChanges (§5.5, §5.6) --------------------------------------------------


def test_query_args_with_filter_and_sort() -> None:
    args = parse_query_args({
        "accountId": "A1",
        "filter": {"operator": "AND", "conditions": [
            {"inMailbox": "M1"},
            {"operator": "NOT", "conditions": [{"hasKeyword": "$seen"}]}]},
        "sort": [{"property": "receivedAt", "isAscending": False},
                 {"property": "hasKeyword", "keyword": "$flagged",
                  "collation": "i;unicode-casemap"}],
        "position": -5, "anchor": None, "anchorOffset": -2, "limit": 20,
        "calculateTotal": True,
        "collapseThreads": True}, Limits(), extra=("collapseThreads",))
    assert args.filter == FilterOperator(Operator.AND, (
        {"inMailbox": "M1"}, FilterOperator(Operator.NOT, ({"hasKeyword": "$seen"},))))
    assert args.sort == (Comparator("receivedAt", False),
                         Comparator("hasKeyword", True, "i;unicode-casemap",
                                    {"keyword": "$flagged"}))
    assert (args.position, args.anchor_offset, args.limit, args.calculate_total) == (
        -5, -2, 20, True)
    assert args.extra == {"collapseThreads": True}
    plain = parse_query_args({"accountId": "A1"}, Limits())
    assert (plain.filter, plain.sort, plain.position, plain.anchor_offset) == (None, (), 0, 0)


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"text": "x"}
    for _ in range(depth):
        node = {"operator": "OR", "conditions": [node]}
    return node


@pytest.mark.parametrize(("arguments", "kind"), [
    ({"limit": -1}, "invalidArguments"),  # §5.5: a negative limit MUST be rejected
    ({"position": True}, "invalidArguments"),
    ({"position": 2**53}, "invalidArguments"),
    ({"anchor": "not an id"}, "invalidArguments"),
    ({"anchorOffset": "1"}, "invalidArguments"),
    ({"calculateTotal": "yes"}, "invalidArguments"),
    ({"filter": []}, "invalidArguments"),
    ({"filter": {"operator": "AND"}}, "invalidArguments"),  # no conditions
    ({"filter": {"operator": "AND", "conditions": [], "x": 1}}, "invalidArguments"),
    ({"filter": {"operator": "XOR", "conditions": []}}, "unsupportedFilter"),
    ({"filter": _nested(17)}, "unsupportedFilter"),
    ({"filter": {"operator": "OR", "conditions": [{"a": n} for n in range(256)]}},
     "unsupportedFilter"),
    ({"sort": {"property": "x"}}, "invalidArguments"),
    ({"sort": [{"isAscending": True}]}, "invalidArguments"),
    ({"sort": [{"property": "x", "isAscending": "no"}]}, "invalidArguments"),
    ({"sort": [{"property": "x", "collation": "i;klingon"}]}, "unsupportedSort"),
    ({"sort": [{"property": "x"}] * 17}, "unsupportedSort"),
    ({"collapseThreads": True}, "invalidArguments"),  # not named as the type's extra
])
def test_query_errors(arguments: dict[str, Any], kind: str) -> None:
    error = method_error(lambda: parse_query_args({"accountId": "A1", **arguments}, Limits()))
    assert error.type == kind
    named = next(iter(arguments))
    assert named in (error.description or "")  # the description names the argument


def test_filter_bounds_at_the_limit() -> None:
    assert parse_query_args({"accountId": "A1", "filter": _nested(16)}, Limits()).filter
    wide = {"operator": "OR", "conditions": [{"a": n} for n in range(255)]}
    assert parse_query_args({"accountId": "A1", "filter": wide}, Limits()).filter


def test_query_changes_args() -> None:
    args = parse_query_changes_args({"accountId": "A1", "sinceQueryState": "q1",
                                     "maxChanges": 10, "upToId": "M5",
                                     "calculateTotal": True}, Limits())
    assert (args.since_query_state, args.max_changes, args.up_to_id) == ("q1", 10, "M5")
    for bad in ({"sinceQueryState": "q", "maxChanges": 0}, {}, {"sinceQueryState": "q",
                                                                "upToId": "#x"}):
        error = method_error(lambda bad=bad: parse_query_changes_args(
            {"accountId": "A1", **bad}, Limits()))
        assert error.type == "invalidArguments"


# -- the /query window (§5.5) ---------------------------------------------------------------

IDS = [f"m{n}" for n in range(10)]


@pytest.mark.parametrize(("kwargs", "position", "ids"), [
    ({}, 0, IDS),
    ({"position": 3, "limit": 2}, 3, ["m3", "m4"]),
    ({"position": -3}, 7, ["m7", "m8", "m9"]),  # negative: from the end
    ({"position": -30, "limit": 2}, 0, ["m0", "m1"]),  # still negative: clamped to 0
    ({"position": 10}, 10, []),  # past the end: empty, not an error
    ({"position": 99, "limit": 5}, 99, []),
    ({"limit": 0}, 0, []),
    ({"anchor": "m4"}, 4, IDS[4:]),
    ({"anchor": "m4", "anchor_offset": 2, "limit": 2}, 6, ["m6", "m7"]),
    ({"anchor": "m4", "anchor_offset": -2, "limit": 3}, 2, ["m2", "m3", "m4"]),
    ({"anchor": "m1", "anchor_offset": -5, "limit": 2}, 0, ["m0", "m1"]),  # clamped to 0
    ({"anchor": "m8", "anchor_offset": 5}, 13, []),
    ({"anchor": "m2", "position": 7, "limit": 1}, 2, ["m2"]),  # position is ignored
])
def test_query_window(kwargs: dict[str, Any], position: int, ids: list[str]) -> None:
    window = compute_query_window(IDS, **kwargs)
    assert (window.position, window.ids, window.clamped_limit) == (position, ids, None)


def test_anchor_not_found() -> None:
    error = method_error(lambda: compute_query_window(IDS, anchor="zz"))
    assert error.type == "anchorNotFound"


def test_limit_is_clamped_and_reported() -> None:
    window = compute_query_window(IDS, limit=None, max_limit=4)
    assert (window.ids, window.clamped_limit) == (IDS[:4], 4)
    assert compute_query_window(IDS, limit=8, max_limit=4).clamped_limit == 4
    assert compute_query_window(IDS, limit=3, max_limit=4).clamped_limit is None
    response = render_query_response("A1", "q1", window, can_calculate_changes=False, total=10)
    assert response == {"accountId": "A1", "queryState": "q1", "canCalculateChanges": False,
                        "position": 0, "ids": IDS[:4], "total": 10, "limit": 4}
    quiet = render_query_response("A1", "q1", compute_query_window(IDS, limit=1),
                                  can_calculate_changes=True)
    assert "total" not in quiet and "limit" not in quiet
