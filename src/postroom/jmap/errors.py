"""JMAP's error vocabulary (RFC 8620 §3.6, §5.3): request-level, method-level, per record.

Owns the three error shapes a JMAP answer can carry and how each renders on the wire:
- `RequestError`: the whole request is refused before any method runs (§3.6.1); it is an
  RFC 7807 problem-details object sent with HTTP status 400.
- `MethodError`: one method call failed (§3.6.2); it renders as the invocation
  `["error", {"type": …}, callId]` in `methodResponses` and the next call still runs.
- `SetError`: one record of a /set or /copy failed (§5.3, §5.4); a value placed in
  notCreated / notUpdated / notDestroyed, never raised on its own (`SetFailure` carries it
  out of a per-record helper).
Invariants: a rendered error never holds a traceback or an internal message; `type`
strings are exactly the RFC's; every rendering is a fresh JSON-ready dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PROBLEM_PREFIX = "urn:ietf:params:jmap:error:"


class RequestErrorType(StrEnum):
    """RFC 8620 §3.6.1: the request-level problem types (after PROBLEM_PREFIX)."""

    UNKNOWN_CAPABILITY = "unknownCapability"
    NOT_JSON = "notJSON"
    NOT_REQUEST = "notRequest"
    LIMIT = "limit"


class RequestError(Exception):
    """A request refused as a whole: rendered as problem details (RFC 7807), HTTP 400.

    `limit` names the exceeded limit for the "limit" type (§3.6.1: the property is
    REQUIRED there); it is the capability property's name, e.g. "maxSizeRequest".
    """

    status = 400

    def __init__(self, kind: RequestErrorType, detail: str, limit: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.limit = limit

    @property
    def type_uri(self) -> str:
        return PROBLEM_PREFIX + self.kind.value

    def render(self) -> dict[str, Any]:
        """The problem-details JSON object (`application/problem+json`)."""
        problem: dict[str, Any] = {
            "type": self.type_uri, "status": self.status, "detail": self.detail,
        }
        if self.limit is not None:
            problem["limit"] = self.limit
        return problem


class MethodErrorType(StrEnum):
    """RFC 8620 §3.6.2 general method errors, and the per-method ones of §5."""

    SERVER_UNAVAILABLE = "serverUnavailable"
    SERVER_FAIL = "serverFail"
    SERVER_PARTIAL_FAIL = "serverPartialFail"
    UNKNOWN_METHOD = "unknownMethod"
    INVALID_ARGUMENTS = "invalidArguments"
    INVALID_RESULT_REFERENCE = "invalidResultReference"
    FORBIDDEN = "forbidden"
    ACCOUNT_NOT_FOUND = "accountNotFound"
    ACCOUNT_NOT_SUPPORTED_BY_METHOD = "accountNotSupportedByMethod"
    ACCOUNT_READ_ONLY = "accountReadOnly"
    # §5.1 /get, §5.3 /set
    REQUEST_TOO_LARGE = "requestTooLarge"
    # §5.2 /changes, §5.6 /queryChanges
    CANNOT_CALCULATE_CHANGES = "cannotCalculateChanges"
    TOO_MANY_CHANGES = "tooManyChanges"
    # §5.3 /set, §5.4 /copy
    STATE_MISMATCH = "stateMismatch"
    FROM_ACCOUNT_NOT_FOUND = "fromAccountNotFound"
    FROM_ACCOUNT_NOT_SUPPORTED_BY_METHOD = "fromAccountNotSupportedByMethod"
    # §5.5 /query
    ANCHOR_NOT_FOUND = "anchorNotFound"
    UNSUPPORTED_SORT = "unsupportedSort"
    UNSUPPORTED_FILTER = "unsupportedFilter"


class MethodError(Exception):
    """One method call failed; `extra` members go into the error object as given.

    `type` is a plain string so that extensions (RFC 8621's e.g.) can add their own;
    the MethodErrorType members are StrEnums and compare equal to their strings.
    """

    def __init__(self, type: str, description: str | None = None, **extra: Any) -> None:
        super().__init__(description or str(type))
        self.type = str(type)
        self.description = description
        self.extra = extra

    def render_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"type": self.type}
        if self.description is not None:
            arguments["description"] = self.description
        arguments.update(self.extra)
        return arguments

    def render(self, call_id: str) -> list[Any]:
        """The invocation that takes the failed call's place (§3.6.2)."""
        return ["error", self.render_arguments(), call_id]


def invalid_arguments(description: str) -> MethodError:
    """The most common method error, with its (non-localised, §3.6.2) description."""
    return MethodError(MethodErrorType.INVALID_ARGUMENTS, description)


class SetErrorType(StrEnum):
    """RFC 8620 §5.3 (and §5.4 alreadyExists) SetError types."""

    FORBIDDEN = "forbidden"
    OVER_QUOTA = "overQuota"
    TOO_LARGE = "tooLarge"
    RATE_LIMIT = "rateLimit"
    NOT_FOUND = "notFound"
    INVALID_PATCH = "invalidPatch"
    WILL_DESTROY = "willDestroy"
    INVALID_PROPERTIES = "invalidProperties"
    SINGLETON = "singleton"
    ALREADY_EXISTS = "alreadyExists"


@dataclass(frozen=True, slots=True)
class SetError:
    """Why one record was not created, updated or destroyed (§5.3).

    `properties` lists the offending properties of invalidProperties (§5.3: SHOULD list
    all of them); `existing_id` is alreadyExists's existingId (§5.4); `extra` carries
    members other specifications add.
    """

    type: str
    description: str | None = None
    properties: tuple[str, ...] | None = None
    existing_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def invalid_properties(cls, properties: Iterable[str],
                           description: str | None = None) -> SetError:
        return cls(SetErrorType.INVALID_PROPERTIES, description, properties=tuple(properties))

    @classmethod
    def already_exists(cls, existing_id: str, description: str | None = None) -> SetError:
        return cls(SetErrorType.ALREADY_EXISTS, description, existing_id=existing_id)

    def render(self) -> dict[str, Any]:
        rendered: dict[str, Any] = {"type": str(self.type)}
        if self.description is not None:
            rendered["description"] = self.description
        if self.properties is not None:
            rendered["properties"] = list(self.properties)
        if self.existing_id is not None:
            rendered["existingId"] = self.existing_id
        rendered.update(self.extra)
        return rendered


class SetFailure(Exception):
    """Carries a SetError out of a per-record helper (e.g. `apply_patch`)."""

    def __init__(self, error: SetError) -> None:
        super().__init__(error.description or str(error.type))
        self.error = error


def render_set_errors(errors: Mapping[str, SetError]) -> dict[str, Any] | None:
    """A notCreated/notUpdated/notDestroyed map: null when empty (§5.3)."""
    return {key: error.render() for key, error in errors.items()} or None
