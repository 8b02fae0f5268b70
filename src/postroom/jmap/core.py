"""The JMAP API request: parsing, limits, the method registry and the call loop (RFC 8620 §3).

Owns: `Limits` (the urn:ietf:params:jmap:core capability's numbers plus our own bounds);
`parse_request`, which turns an HTTP body into a `Request` or raises `RequestError`
(§3.6.1); `MethodRegistry`, which maps a method name to its capability and handler; and
`run_request`, which runs the calls in order with result references (§3.7), creation ids
(§3.3) and method-level errors (§3.6.2).
Invariants: no method runs unless the whole request parsed; calls run strictly in order,
each seeing only the responses of earlier calls; a handler's unexpected exception becomes
serverFail for that call alone (logged, never shown) and the next call runs; the body is
never handed to `json.loads` before its size and nesting depth are checked. Sans-IO: no
asyncio, sockets or store here; handlers are awaited, nothing else is.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from postroom.jmap.errors import (
    MethodError,
    MethodErrorType,
    RequestError,
    RequestErrorType,
    invalid_arguments,
)
from postroom.jmap.types import PointerError, evaluate_result_path, is_id, json_depth

log = logging.getLogger(__name__)

CORE_CAPABILITY = "urn:ietf:params:jmap:core"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask for. The first eight are advertised (§2 core capability)."""

    max_size_upload: int = 50_000_000
    max_concurrent_upload: int = 4
    max_size_request: int = 10_000_000
    max_concurrent_requests: int = 4
    max_calls_in_request: int = 16
    max_objects_in_get: int = 500
    max_objects_in_set: int = 500
    collation_algorithms: tuple[str, ...] = (
        "i;ascii-casemap", "i;ascii-numeric", "i;octet", "i;unicode-casemap")
    # Our own, not advertised: bounds on what the core would otherwise walk unboundedly.
    max_json_depth: int = 64  # nesting of arrays/objects in a request body
    max_reference_path: int = 256  # characters of one result reference's path
    max_created_ids: int = 1000  # entries of a request's createdIds map
    max_filter_depth: int = 16  # FilterOperator nesting in /query
    max_filter_conditions: int = 256  # operators and conditions in one /query filter
    max_sort_comparators: int = 16  # Comparators in one /query sort
    max_query_limit: int = 5000  # /query results per call; larger limits are clamped

    def render_capability(self) -> dict[str, Any]:
        """The urn:ietf:params:jmap:core capability object (§2)."""
        return {
            "maxSizeUpload": self.max_size_upload,
            "maxConcurrentUpload": self.max_concurrent_upload,
            "maxSizeRequest": self.max_size_request,
            "maxConcurrentRequests": self.max_concurrent_requests,
            "maxCallsInRequest": self.max_calls_in_request,
            "maxObjectsInGet": self.max_objects_in_get,
            "maxObjectsInSet": self.max_objects_in_set,
            "collationAlgorithms": list(self.collation_algorithms),
        }


# -- the Request object (§3.3) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invocation:
    """One element of methodCalls: [name, arguments, method call id] (§3.2)."""

    name: str
    arguments: dict[str, Any]
    call_id: str


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed Request; `created_ids` is None when the client sent no createdIds."""

    using: frozenset[str]
    method_calls: tuple[Invocation, ...]
    created_ids: dict[str, str] | None
    limits: Limits


def _not_request(detail: str) -> RequestError:
    return RequestError(RequestErrorType.NOT_REQUEST, detail)


def _not_json(detail: str) -> RequestError:
    return RequestError(RequestErrorType.NOT_JSON, detail)


def parse_request(body: bytes, limits: Limits, known_capabilities: Collection[str]) -> Request:
    """An API request body → Request, or RequestError (§3.6.1) naming the first defect."""
    if len(body) > limits.max_size_request:
        raise RequestError(RequestErrorType.LIMIT,
                           f"request exceeds {limits.max_size_request} bytes",
                           limit="maxSizeRequest")
    document = decode_json(body, limits.max_json_depth)
    request = _parse_structure(document, limits)
    unknown = sorted(request.using - set(known_capabilities))
    if unknown:
        raise RequestError(RequestErrorType.UNKNOWN_CAPABILITY,
                           "unknown capabilities: " + ", ".join(unknown))
    return request


def decode_json(body: bytes, max_depth: int) -> Any:
    """UTF-8 I-JSON (RFC 7493, as §3.1 requires) → Python values, or notJSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_json("the body is not UTF-8") from None
    if json_depth(text) > max_depth:
        raise _not_json(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique_members,
                          parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise _not_json(f"not valid JSON: {error}") from None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):  # RFC 7493 §2.3: names MUST be unique
        raise ValueError("duplicate member name in an object")
    return members


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would become inf, which I-JSON cannot carry
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _parse_structure(document: Any, limits: Limits) -> Request:
    if not isinstance(document, dict):
        raise _not_request("the request is not a JSON object")
    using = document.get("using")
    if not isinstance(using, list) or not all(isinstance(item, str) for item in using):
        raise _not_request("'using' must be an array of strings")
    calls = document.get("methodCalls")
    if not isinstance(calls, list):
        raise _not_request("'methodCalls' must be an array")
    if len(calls) > limits.max_calls_in_request:
        raise RequestError(RequestErrorType.LIMIT,
                           f"more than {limits.max_calls_in_request} method calls",
                           limit="maxCallsInRequest")
    invocations = tuple(_parse_invocation(call, n) for n, call in enumerate(calls))
    created_ids = _parse_created_ids(document.get("createdIds"), limits)
    return Request(frozenset(using), invocations, created_ids, limits)


def _parse_invocation(call: Any, index: int) -> Invocation:
    # §3.2: a 3-element array [String, String[*], String]
    if not isinstance(call, list) or len(call) != 3:
        raise _not_request(f"methodCalls[{index}] is not a 3-element array")
    name, arguments, call_id = call
    if not isinstance(name, str):
        raise _not_request(f"methodCalls[{index}]: the method name is not a string")
    if not isinstance(arguments, dict):
        raise _not_request(f"methodCalls[{index}]: the arguments are not an object")
    if not isinstance(call_id, str):
        raise _not_request(f"methodCalls[{index}]: the method call id is not a string")
    return Invocation(name, arguments, call_id)


def _parse_created_ids(value: Any, limits: Limits) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _not_request("'createdIds' must be an object")
    if len(value) > limits.max_created_ids:
        raise RequestError(RequestErrorType.LIMIT,
                           f"createdIds has more than {limits.max_created_ids} entries",
                           limit="maxCreatedIds")
    for creation_id, real_id in value.items():  # §3.3: Id[Id]
        if not (is_id(creation_id) and is_id(real_id)):
            raise _not_request("'createdIds' must map Ids to Ids")
    return dict(value)


# -- calls, handlers and the registry -------------------------------------------------------


class RequestContext(Protocol):
    """What run_request needs of the caller's context; handlers may need more of it."""

    @property
    def session_state(self) -> str: ...


C = TypeVar("C", bound=RequestContext)

Response = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Call(Generic[C]):
    """One method call as a handler sees it.

    `arguments` are already reference-resolved (§3.7) and belong to the handler.
    `created_ids` is the request's one mutable creation-id map (§3.3): a handler that
    creates a record adds `creation id → real id` to it, and later calls see it.
    """

    name: str
    arguments: dict[str, Any]
    call_id: str
    using: frozenset[str]
    created_ids: dict[str, str]
    limits: Limits
    context: C


# A method may answer with several responses, e.g. /copy's implicit /set (§5.4).
Handler = Callable[[Call[C]], Awaitable[list[Response]]]


@dataclass(frozen=True, slots=True)
class Method(Generic[C]):
    name: str
    capability: str  # the `using` entry that enables it (§3.3)
    handler: Handler[C]


@dataclass(slots=True)
class MethodRegistry(Generic[C]):
    """Method name → (capability, handler). Registration happens once, at start-up."""

    methods: dict[str, Method[C]] = field(default_factory=dict)

    def register(self, name: str, capability: str, handler: Handler[C]) -> None:
        if name in self.methods:
            raise ValueError(f"JMAP method {name} registered twice")
        self.methods[name] = Method(name, capability, handler)

    def method(self, name: str, capability: str) -> Callable[[Handler[C]], Handler[C]]:
        """Decorator form of `register`."""
        def decorate(handler: Handler[C]) -> Handler[C]:
            self.register(name, capability, handler)
            return handler
        return decorate

    def lookup(self, name: str, using: Collection[str]) -> Method[C]:
        """The method, if known and enabled by `using`; unknownMethod otherwise (§3.6.2)."""
        method = self.methods.get(name)
        if method is None:
            raise MethodError(MethodErrorType.UNKNOWN_METHOD, f"no method {name}")
        if method.capability not in using:
            # §3.3: a method whose capability is not in `using` is unknown to the client
            raise MethodError(MethodErrorType.UNKNOWN_METHOD,
                              f"{name} needs {method.capability} in 'using'")
        return method

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(method.capability for method in self.methods.values())


async def handle_core_echo(call: Call[Any]) -> list[Response]:
    """Core/echo (§4): the arguments, unchanged."""
    return [("Core/echo", call.arguments)]


def register_core(registry: MethodRegistry[Any]) -> None:
    registry.register("Core/echo", CORE_CAPABILITY, handle_core_echo)


# -- result references (§3.7) ---------------------------------------------------------------


def _bad_reference(description: str) -> MethodError:
    return MethodError(MethodErrorType.INVALID_RESULT_REFERENCE, description)


def resolve_references(arguments: Mapping[str, Any], responses: list[list[Any]],
                       limits: Limits) -> dict[str, Any]:
    """Arguments with every `#name` replaced by `name` = the referenced value (§3.7)."""
    resolved = {key: value for key, value in arguments.items() if not key.startswith("#")}
    for key, reference in arguments.items():
        if not key.startswith("#"):
            continue
        name = key[1:]
        if name in arguments:  # §3.7: foo and #foo together
            raise invalid_arguments(f"argument {name} given both plainly and as #{name}")
        resolved[name] = _resolve_one(key, reference, responses, limits)
    return resolved


def _resolve_one(key: str, reference: Any, responses: list[list[Any]], limits: Limits) -> Any:
    if not isinstance(reference, dict) or not all(
            isinstance(reference.get(part), str) for part in ("resultOf", "name", "path")):
        raise _bad_reference(f"{key} is not a ResultReference {{resultOf, name, path}}")
    path = reference["path"]
    if len(path) > limits.max_reference_path:
        raise _bad_reference(f"{key}: path longer than {limits.max_reference_path}")
    # §3.7 step 1: the FIRST earlier response with that method call id...
    found = next((r for r in responses if r[2] == reference["resultOf"]), None)
    if found is None:
        raise _bad_reference(f"{key}: no earlier response has call id "
                             f"{reference['resultOf']!r}")
    if found[0] != reference["name"]:  # ...step 2: whose name must be the one given
        raise _bad_reference(f"{key}: call {reference['resultOf']!r} answered "
                             f"{found[0]!r}, not {reference['name']!r}")
    try:
        value = evaluate_result_path(found[1], path)
    except PointerError as error:
        raise _bad_reference(f"{key}: path {path!r} does not resolve: {error}") from None
    return copy.deepcopy(value)  # the handler owns its arguments; earlier responses stay


# -- running a request (§3.4) ---------------------------------------------------------------


async def run_request(request: Request, registry: MethodRegistry[C],
                      context: C) -> dict[str, Any]:
    """The Response object (§3.4) for a parsed request."""
    created_ids = dict(request.created_ids or {})
    responses: list[list[Any]] = []
    for invocation in request.method_calls:
        responses.extend(
            await _run_call(invocation, request, registry, context, created_ids, responses))
    answer: dict[str, Any] = {"methodResponses": responses,
                              "sessionState": context.session_state}
    if request.created_ids is not None:  # §3.4: only when the request had createdIds
        answer["createdIds"] = created_ids
    return answer


async def _run_call(invocation: Invocation, request: Request, registry: MethodRegistry[C],
                    context: C, created_ids: dict[str, str],
                    responses: list[list[Any]]) -> list[list[Any]]:
    call_id = invocation.call_id
    try:
        method = registry.lookup(invocation.name, request.using)
        arguments = resolve_references(invocation.arguments, responses, request.limits)
        call = Call(invocation.name, arguments, call_id, request.using, created_ids,
                    request.limits, context)
        produced = await method.handler(call)
    except MethodError as error:
        return [error.render(call_id)]
    except Exception:
        # §3.6.2 serverFail: the client learns that it failed, the log learns why
        log.exception("jmap: %s failed", invocation.name)
        return [MethodError(MethodErrorType.SERVER_FAIL).render(call_id)]
    return [[name, response, call_id] for name, response in produced]
