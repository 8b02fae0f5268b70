"""The standard methods' arguments and responses (RFC 8620 §5.1-5.4), and the face of §5.

Owns: typed parsing of Foo/get, Foo/changes, Foo/set and Foo/copy arguments (raising
MethodError invalidArguments / requestTooLarge before any data is touched) and the
Foo/get response with its property filter. /query and /queryChanges live in query.py,
PatchObject and "#creation-id" references in patch.py; they are re-exported here so that
a data type's module imports the standard methods from one place.
Invariants: a parsed argument has the RFC type it claims; a request larger than the
advertised maxObjectsInGet / maxObjectsInSet is refused whole (never truncated); unknown
arguments are refused unless the data type names them as its own (`extra`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postroom.jmap.core import Limits
from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    SetError,
    SetFailure,
    invalid_arguments,
)
from postroom.jmap.patch import (
    UnknownCreationId,
    apply_patch,
    is_creation_reference,
    resolve_creation_id,
    resolve_creation_ids,
    set_target,
)
from postroom.jmap.query import (
    Comparator,
    Filter,
    FilterOperator,
    Operator,
    QueryArgs,
    QueryChangesArgs,
    QueryWindow,
    compute_query_window,
    parse_query_args,
    parse_query_changes_args,
    render_query_response,
)
from postroom.jmap.types import (
    expect_bool,
    expect_id,
    expect_id_list,
    expect_list,
    expect_object,
    expect_string,
    expect_string_list,
    expect_unsigned_int,
    is_id,
    optional,
    reject_unknown,
    required,
)

__all__ = [
    "ChangesArgs", "Comparator", "CopyArgs", "Filter", "FilterOperator", "GetArgs", "Operator",
    "QueryArgs", "QueryChangesArgs", "QueryWindow", "SetArgs", "UnknownCreationId",
    "apply_patch", "compute_query_window", "copy_source_id", "is_creation_reference",
    "parse_changes_args", "parse_copy_args", "parse_get_args", "parse_query_args",
    "parse_query_changes_args", "parse_set_args", "render_changes_response",
    "render_get_response", "render_query_response", "resolve_creation_id",
    "resolve_creation_ids", "set_target",
]


def _extras(arguments: Mapping[str, Any], standard: Sequence[str],
            extra: Collection[str]) -> dict[str, Any]:
    reject_unknown(arguments, (*standard, *extra))
    return {name: arguments[name] for name in extra if name in arguments}


def _too_large(description: str) -> MethodError:
    return MethodError(MethodErrorType.REQUEST_TOO_LARGE, description)


# -- Foo/get (§5.1) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetArgs:
    account_id: str
    ids: list[str] | None  # None: every record (the data type decides if it allows that)
    properties: list[str] | None  # None: every property
    extra: Mapping[str, Any]


def parse_get_args(arguments: Mapping[str, Any], limits: Limits, *,
                   known_properties: Collection[str] | None = None,
                   extra: Collection[str] = ()) -> GetArgs:
    """Foo/get's arguments; an unknown property is invalidArguments (§5.1)."""
    extras = _extras(arguments, ("accountId", "ids", "properties"), extra)
    account_id = required(arguments, "accountId", expect_id)
    ids = optional(arguments, "ids", expect_id_list, None)
    if ids is not None and len(ids) > limits.max_objects_in_get:
        raise _too_large(f"more than {limits.max_objects_in_get} ids (maxObjectsInGet)")
    properties = optional(arguments, "properties", expect_string_list, None)
    if properties is not None and known_properties is not None:
        unknown = sorted(set(properties) - set(known_properties))
        if unknown:
            raise invalid_arguments("unknown properties: " + ", ".join(unknown))
    return GetArgs(account_id, ids, properties, extras)


def render_get_response(account_id: str, state: str, records: Iterable[Mapping[str, Any]],
                        ids: Sequence[str] | None,
                        properties: Collection[str] | None) -> dict[str, Any]:
    """Foo/get's response from the records found (each with its "id").

    With `ids`, every requested id lands once in `list` or `notFound`, duplicates
    collapsed (§5.1); with ids=None, every record given is listed. `properties` filters
    each record, "id" always kept.
    """
    by_id = {record["id"]: record for record in records}
    wanted = list(by_id) if ids is None else list(dict.fromkeys(ids))
    keep = None if properties is None else {*properties, "id"}
    found = [_select(by_id[one], keep) for one in wanted if one in by_id]
    missing = [one for one in wanted if one not in by_id]
    return {"accountId": account_id, "state": state, "list": found, "notFound": missing}


def _select(record: Mapping[str, Any], keep: Collection[str] | None) -> dict[str, Any]:
    if keep is None:
        return dict(record)
    return {name: value for name, value in record.items() if name in keep}


# -- Foo/changes (§5.2) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangesArgs:
    account_id: str
    since_state: str
    max_changes: int | None
    extra: Mapping[str, Any]


def parse_changes_args(arguments: Mapping[str, Any], limits: Limits,
                       extra: Collection[str] = ()) -> ChangesArgs:
    extras = _extras(arguments, ("accountId", "sinceState", "maxChanges"), extra)
    account_id = required(arguments, "accountId", expect_id)
    since_state = required(arguments, "sinceState", expect_string)
    max_changes = optional(arguments, "maxChanges", expect_unsigned_int, None)
    if max_changes == 0:  # §5.2: "MUST be a positive integer greater than 0"
        raise invalid_arguments("maxChanges must be greater than 0")
    return ChangesArgs(account_id, since_state, max_changes, extras)


def render_changes_response(account_id: str, old_state: str, new_state: str, *,
                            has_more_changes: bool, created: Sequence[str],
                            updated: Sequence[str], destroyed: Sequence[str]
                            ) -> dict[str, Any]:
    return {"accountId": account_id, "oldState": old_state, "newState": new_state,
            "hasMoreChanges": has_more_changes, "created": list(created),
            "updated": list(updated), "destroyed": list(destroyed)}


# -- Foo/set (§5.3) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetArgs:
    """Foo/set's arguments. Keys of `update` and items of `destroy` may still be
    "#creation-id" references: resolve them (resolve_creation_id) when their turn
    comes, after the creates (§5.3 orders creates first)."""

    account_id: str
    if_in_state: str | None
    create: dict[str, dict[str, Any]]
    update: dict[str, dict[str, Any]]
    destroy: list[str]
    extra: Mapping[str, Any]


def _expect_target(value: Any, where: str) -> str:
    """An Id or a "#creation-id" reference to a record created in this request."""
    if is_creation_reference(value) and is_id(value[1:]):
        return str(value)
    return expect_id(value, where)


def _expect_object_map(value: Any, where: str,
                       key_check: Callable[[Any, str], str]) -> dict[str, dict[str, Any]]:
    members = expect_object(value, where)
    for key, item in members.items():
        key_check(key, f"{where} key")
        expect_object(item, f"{where}[{key!r}]")
    return members


def _create_map(value: Any, where: str) -> dict[str, dict[str, Any]]:
    return _expect_object_map(value, where, expect_id)  # creation ids are Ids (§5.3)


def _update_map(value: Any, where: str) -> dict[str, dict[str, Any]]:
    return _expect_object_map(value, where, _expect_target)


def _destroy_list(value: Any, where: str) -> list[str]:
    return [_expect_target(item, f"{where}[{n}]")
            for n, item in enumerate(expect_list(value, where))]


def parse_set_args(arguments: Mapping[str, Any], limits: Limits,
                   extra: Collection[str] = ()) -> SetArgs:
    extras = _extras(arguments, ("accountId", "ifInState", "create", "update", "destroy"),
                     extra)
    account_id = required(arguments, "accountId", expect_id)
    if_in_state = optional(arguments, "ifInState", expect_string, None)
    create = optional(arguments, "create", _create_map, {})
    update = optional(arguments, "update", _update_map, {})
    destroy = optional(arguments, "destroy", _destroy_list, [])
    if len(create) + len(update) + len(destroy) > limits.max_objects_in_set:
        raise _too_large(f"more than {limits.max_objects_in_set} objects (maxObjectsInSet)")
    return SetArgs(account_id, if_in_state, create, update, destroy, extras)


# -- Foo/copy (§5.4) ------------------------------------------------------------------------

_COPY = ("fromAccountId", "ifFromInState", "accountId", "ifInState", "create",
         "onSuccessDestroyOriginal", "destroyFromIfInState")


@dataclass(frozen=True, slots=True)
class CopyArgs:
    from_account_id: str
    if_from_in_state: str | None
    account_id: str
    if_in_state: str | None
    create: dict[str, dict[str, Any]]  # creation id → record naming its source "id"
    on_success_destroy_original: bool
    destroy_from_if_in_state: str | None
    extra: Mapping[str, Any]


def parse_copy_args(arguments: Mapping[str, Any], limits: Limits,
                    extra: Collection[str] = ()) -> CopyArgs:
    extras = _extras(arguments, _COPY, extra)
    from_account_id = required(arguments, "fromAccountId", expect_id)
    account_id = required(arguments, "accountId", expect_id)
    if account_id == from_account_id:  # §5.4: accountId MUST differ from fromAccountId
        raise invalid_arguments("accountId must differ from fromAccountId")
    create = required(arguments, "create", _create_map)
    if len(create) > limits.max_objects_in_set:
        raise _too_large(f"more than {limits.max_objects_in_set} objects (maxObjectsInSet)")
    return CopyArgs(
        from_account_id, optional(arguments, "ifFromInState", expect_string, None),
        account_id, optional(arguments, "ifInState", expect_string, None), create,
        optional(arguments, "onSuccessDestroyOriginal", expect_bool, False),
        optional(arguments, "destroyFromIfInState", expect_string, None), extras)


def copy_source_id(record: Mapping[str, Any]) -> str:
    """The id (in the from-account) of the record a /copy create entry copies (§5.4)."""
    source = record.get("id")
    if not is_id(source):
        raise SetFailure(SetError.invalid_properties(["id"], "the record to copy needs an id"))
    return str(source)
