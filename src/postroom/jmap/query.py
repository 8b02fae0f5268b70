"""/query and /queryChanges arguments, filters, sorts and the result window (RFC 8620 §5.5-5.6).

Owns: the typed arguments of Foo/query and Foo/queryChanges; the FilterOperator tree
(conditions stay as the type-specific objects the client sent, for the data type's own
code to judge); Comparators; and `compute_query_window`, the pure position/anchor/limit
arithmetic of §5.5 over the full sorted list of ids.
Invariants: a filter is bounded in depth and size by Limits before anyone walks it; a
window never reaches outside the list; a clamped limit is reported back (§5.5 "limit").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from postroom.jmap.core import Limits
from postroom.jmap.errors import MethodError, MethodErrorType, invalid_arguments
from postroom.jmap.types import (
    expect_bool,
    expect_id,
    expect_int,
    expect_list,
    expect_object,
    expect_string,
    expect_unsigned_int,
    optional,
    reject_unknown,
    required,
)


class Operator(StrEnum):
    AND = "AND"  # all conditions match
    OR = "OR"  # at least one matches
    NOT = "NOT"  # none matches


@dataclass(frozen=True, slots=True)
class FilterOperator:
    operator: Operator
    conditions: tuple[Filter, ...]


# A FilterCondition is the data type's own object; it never has an "operator" member.
Filter = FilterOperator | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Comparator:
    """§5.5 Comparator; `extra` keeps members other specs add (RFC 8621's "keyword")."""

    property: str
    is_ascending: bool = True
    collation: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _unsupported_filter(description: str) -> MethodError:
    return MethodError(MethodErrorType.UNSUPPORTED_FILTER, description)


def parse_filter(value: Any, limits: Limits) -> Filter:
    """A FilterOperator tree or a FilterCondition, bounded by the Limits' filter bounds."""
    budget = [limits.max_filter_conditions]
    return _parse_filter_node(value, limits.max_filter_depth, budget, "filter")


def _parse_filter_node(value: Any, depth_left: int, budget: list[int], where: str) -> Filter:
    node = expect_object(value, where)
    budget[0] -= 1
    if budget[0] < 0:
        raise _unsupported_filter("the filter has too many conditions and operators")
    if "operator" not in node:
        return node
    if depth_left <= 0:
        raise _unsupported_filter(f"the filter is nested too deeply at {where}")
    reject_unknown(node, ("operator", "conditions"), where)
    name = expect_string(node["operator"], f"{where}.operator")
    if name not in Operator.__members__:
        raise _unsupported_filter(f"{where}: unknown operator {name!r}")
    items = expect_list(node.get("conditions"), f"{where}.conditions")
    return FilterOperator(Operator(name), tuple(
        _parse_filter_node(item, depth_left - 1, budget, f"{where}.conditions[{n}]")
        for n, item in enumerate(items)))


def parse_sort(value: Any, limits: Limits) -> tuple[Comparator, ...]:
    items = expect_list(value, "sort")
    if len(items) > limits.max_sort_comparators:
        raise MethodError(MethodErrorType.UNSUPPORTED_SORT,
                          f"sort has more than {limits.max_sort_comparators} comparators")
    return tuple(_parse_comparator(item, limits, f"sort[{n}]") for n, item in enumerate(items))


def _parse_comparator(value: Any, limits: Limits, where: str) -> Comparator:
    member = expect_object(value, where)
    if "property" not in member:
        raise invalid_arguments(f"{where}.property is required")
    name = expect_string(member["property"], f"{where}.property")
    ascending = member.get("isAscending")
    is_ascending = True if ascending is None else expect_bool(ascending, f"{where}.isAscending")
    collation = member.get("collation")
    if collation is not None:
        collation = expect_string(collation, f"{where}.collation")
        if collation not in limits.collation_algorithms:
            # §5.5 unsupportedSort: "a collation method it does not recognise"
            raise MethodError(MethodErrorType.UNSUPPORTED_SORT,
                              f"{where}.collation: unknown collation {collation}")
    extra = {key: item for key, item in member.items()
             if key not in ("property", "isAscending", "collation")}
    return Comparator(name, is_ascending, collation, extra)


# -- Foo/query (§5.5) and Foo/queryChanges (§5.6) -------------------------------------------

_QUERY = ("accountId", "filter", "sort", "position", "anchor", "anchorOffset", "limit",
          "calculateTotal")
_QUERY_CHANGES = ("accountId", "filter", "sort", "sinceQueryState", "maxChanges", "upToId",
                  "calculateTotal")


@dataclass(frozen=True, slots=True)
class QueryArgs:
    account_id: str
    filter: Filter | None
    sort: tuple[Comparator, ...]
    position: int
    anchor: str | None
    anchor_offset: int
    limit: int | None
    calculate_total: bool
    extra: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class QueryChangesArgs:
    account_id: str
    filter: Filter | None
    sort: tuple[Comparator, ...]
    since_query_state: str
    max_changes: int | None
    up_to_id: str | None
    calculate_total: bool
    extra: Mapping[str, Any]


def _extra(arguments: Mapping[str, Any], standard: Sequence[str],
           extra: Collection[str]) -> dict[str, Any]:
    reject_unknown(arguments, (*standard, *extra))
    return {name: arguments[name] for name in extra if name in arguments}


def _filter_and_sort(arguments: Mapping[str, Any],
                     limits: Limits) -> tuple[Filter | None, tuple[Comparator, ...]]:
    raw_filter, raw_sort = arguments.get("filter"), arguments.get("sort")
    parsed = None if raw_filter is None else parse_filter(raw_filter, limits)
    return parsed, () if raw_sort is None else parse_sort(raw_sort, limits)


def parse_query_args(arguments: Mapping[str, Any], limits: Limits,
                     extra: Collection[str] = ()) -> QueryArgs:
    """Foo/query's arguments; `extra` names the data type's own (e.g. collapseThreads)."""
    extras = _extra(arguments, _QUERY, extra)
    account_id = required(arguments, "accountId", expect_id)
    found_filter, sort = _filter_and_sort(arguments, limits)
    return QueryArgs(
        account_id, found_filter, sort,
        position=optional(arguments, "position", expect_int, 0),
        anchor=optional(arguments, "anchor", expect_id, None),
        anchor_offset=optional(arguments, "anchorOffset", expect_int, 0),
        limit=optional(arguments, "limit", expect_unsigned_int, None),  # negative: invalid
        calculate_total=optional(arguments, "calculateTotal", expect_bool, False),
        extra=extras)


def parse_query_changes_args(arguments: Mapping[str, Any], limits: Limits,
                             extra: Collection[str] = ()) -> QueryChangesArgs:
    extras = _extra(arguments, _QUERY_CHANGES, extra)
    account_id = required(arguments, "accountId", expect_id)
    found_filter, sort = _filter_and_sort(arguments, limits)
    max_changes = optional(arguments, "maxChanges", expect_unsigned_int, None)
    if max_changes == 0:  # §5.6 as §5.2: when given it MUST be > 0
        raise invalid_arguments("maxChanges must be greater than 0")
    return QueryChangesArgs(
        account_id, found_filter, sort,
        since_query_state=required(arguments, "sinceQueryState", expect_string),
        max_changes=max_changes,
        up_to_id=optional(arguments, "upToId", expect_id, None),
        calculate_total=optional(arguments, "calculateTotal", expect_bool, False),
        extra=extras)


# -- the result window (§5.5) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryWindow:
    """The slice to return: `position` is its first index in the full list (§5.5).

    `clamped_limit` is the server's limit when it lowered (or set) the client's; the
    response then carries it as "limit" so the client knows.
    """

    position: int
    ids: list[str]
    clamped_limit: int | None = None


def compute_query_window(ids: Sequence[str], *, position: int = 0, anchor: str | None = None,
                         anchor_offset: int = 0, limit: int | None = None,
                         max_limit: int | None = None) -> QueryWindow:
    """§5.5: position (negative counts from the end) or anchor+anchorOffset, then limit."""
    total = len(ids)
    if anchor is not None:  # §5.5: with an anchor, position is ignored
        try:
            start = ids.index(anchor) + anchor_offset
        except ValueError:
            raise MethodError(MethodErrorType.ANCHOR_NOT_FOUND,
                              "the anchor is not in the results") from None
    else:
        start = position + total if position < 0 else position
    start = max(start, 0)  # both rules clamp a negative index to 0
    clamped = None
    if max_limit is not None and (limit is None or limit > max_limit):
        limit = clamped = max_limit
    end = total if limit is None else min(total, start + limit)
    return QueryWindow(start, list(ids[start:end]), clamped)


def render_query_response(account_id: str, query_state: str, window: QueryWindow, *,
                          can_calculate_changes: bool, total: int | None = None
                          ) -> dict[str, Any]:
    """Foo/query's response arguments; `total` only when calculateTotal was asked."""
    response: dict[str, Any] = {
        "accountId": account_id, "queryState": query_state,
        "canCalculateChanges": can_calculate_changes,
        "position": window.position, "ids": window.ids,
    }
    if total is not None:
        response["total"] = total
    if window.clamped_limit is not None:
        response["limit"] = window.clamped_limit
    return response
