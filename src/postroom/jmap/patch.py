"""PatchObject application and creation-id references in /set (RFC 8620 §5.3, §3.3).

Owns: `apply_patch`, which applies a PatchObject to a record and refuses, as a SetError
invalidPatch, every patch §5.3 forbids; and `resolve_creation_ids`, which turns
"#creation-id" references into the ids the server assigned earlier in the request.
Invariants: `apply_patch` never mutates its inputs and either applies the whole patch or
none of it; only ids are resolved (never arbitrary property values, where a string may
legitimately start with "#").
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from postroom.jmap.errors import SetError, SetErrorType, SetFailure
from postroom.jmap.types import PointerError, parse_pointer

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _invalid_patch(description: str) -> SetFailure:
    return SetFailure(SetError(SetErrorType.INVALID_PATCH, description))


def parse_patch_paths(patch: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Each key's reference tokens: §5.3 keys are JSON pointers without the leading "/"."""
    paths: dict[str, tuple[str, ...]] = {}
    for key in patch:
        if key == "" or key.startswith("/"):
            raise _invalid_patch(f"bad patch path {key!r}")
        try:
            paths[key] = parse_pointer("/" + key)
        except PointerError as error:
            raise _invalid_patch(f"bad patch path {key!r}: {error}") from None
    _check_no_prefix(paths)
    return paths


def _check_no_prefix(paths: Mapping[str, tuple[str, ...]]) -> None:
    # §5.3: no pointer may be a prefix of another ("alerts" and "alerts/1/offset").
    # In sorted order a path's extensions follow it directly, so neighbours suffice.
    ordered = sorted(paths.values())
    for shorter, longer in itertools.pairwise(ordered):
        if longer[:len(shorter)] == shorter:
            raise _invalid_patch("patch paths overlap: " + "/".join(shorter))


def _parent_of(record: dict[str, Any], tokens: tuple[str, ...], key: str) -> dict[str, Any]:
    """The object holding the patched member; §5.3: every part before the last must exist."""
    current: Any = record
    for depth, token in enumerate(tokens[:-1]):
        if not isinstance(current, dict):
            break
        if token not in current:
            raise _invalid_patch(f"{key}: {'/'.join(tokens[:depth + 1])} does not exist")
        current = current[token]
    if isinstance(current, list):  # §5.3: never inside an array; replace it whole
        raise _invalid_patch(f"{key} points inside an array")
    if not isinstance(current, dict):
        raise _invalid_patch(f"{key} goes through a value that is not an object")
    return current


def apply_patch(record: Mapping[str, Any], patch: Mapping[str, Any],
                defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record with `patch` applied (§5.3); SetFailure(invalidPatch) if it is invalid.

    A null value removes the member (a no-op when absent), or for a top-level property
    with an entry in `defaults` resets it to that default.
    """
    paths = parse_patch_paths(patch)
    patched = copy.deepcopy(dict(record))
    for key, tokens in paths.items():
        parent = _parent_of(patched, tokens, key)
        member, value = tokens[-1], patch[key]
        if value is None and len(tokens) == 1 and defaults and member in defaults:
            parent[member] = copy.deepcopy(defaults[member])
        elif value is None:
            parent.pop(member, None)
        else:
            parent[member] = copy.deepcopy(value)
    return patched


# -- "#creation-id" references (§3.3, §5.3) -------------------------------------------------


class UnknownCreationId(LookupError):
    """A "#creation-id" reference to a creation id no earlier create in the request made.

    The caller decides its SetError: notFound for an update/destroy target, and
    invalidProperties for a foreign key of a created or updated record.
    """

    def __init__(self, reference: str) -> None:
        super().__init__(f"unknown creation id {reference}")
        self.reference = reference


def is_creation_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith("#")


def resolve_creation_id(value: str, created_ids: Mapping[str, str]) -> str:
    """An id, with a "#creation-id" reference replaced by the id it was created as."""
    if not value.startswith("#"):
        return value
    real = created_ids.get(value[1:])
    if real is None:
        raise UnknownCreationId(value)
    return real


def set_target(key: str, created_ids: Mapping[str, str], parse: Callable[[str], K | None],
               records: Mapping[K, V]) -> V:  # fmt: skip
    """The record a /set update or destroy names (RFC 8620 §5.3): its id, or "#creation-id"
    of one created earlier in the request; a SetError notFound for anything else."""
    try:
        real = resolve_creation_id(key, created_ids)
    except UnknownCreationId:
        raise SetFailure(SetError(SetErrorType.NOT_FOUND)) from None
    found = parse(real)
    if found is None or found not in records:
        raise SetFailure(SetError(SetErrorType.NOT_FOUND))
    return records[found]


def resolve_creation_ids(value: Any, created_ids: Mapping[str, str]) -> Any:
    """Resolve "#" references in an id, a list of ids, or the keys of a map keyed by id.

    Maps keep their values untouched: `{"#mb": true}` (mailboxIds) or `{"#k1": patch}`
    (update) have references only in their keys. Anything else is returned as is.
    """
    if isinstance(value, str):
        return resolve_creation_id(value, created_ids)
    if isinstance(value, list):
        return [resolve_creation_id(item, created_ids) if isinstance(item, str) else item
                for item in value]
    if isinstance(value, dict):
        return {resolve_creation_id(key, created_ids): item for key, item in value.items()}
    return value
