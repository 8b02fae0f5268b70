"""RFC 8620 §3: request parsing and its request-level errors (§3.6.1), the call loop with
method-level errors (§3.6.2), result references (§3.7) and createdIds (§3.3)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from postroom.jmap.core import (
    CORE_CAPABILITY,
    Call,
    Limits,
    MethodRegistry,
    Request,
    Response,
    parse_request,
    register_core,
    run_request,
)
from postroom.jmap.errors import MethodError, RequestError, SetError, render_set_errors

MAIL = "urn:ietf:params:jmap:mail"
KNOWN = (CORE_CAPABILITY, MAIL)
LIMITS = Limits()


@dataclass
class Context:
    session_state: str = "s1"
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def request_of(*calls: list[Any], using: list[str] | None = None,
               created_ids: dict[str, str] | None = None) -> Request:
    document: dict[str, Any] = {"using": using or [CORE_CAPABILITY, MAIL],
                                "methodCalls": list(calls)}
    if created_ids is not None:
        document["createdIds"] = created_ids
    return parse_request(body(document), LIMITS, KNOWN)


def request_error(raw: bytes, limits: Limits = LIMITS) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_request(raw, limits, KNOWN)
    return caught.value


# -- parse_request: the request-level errors (§3.6.1) ---------------------------------------


def test_a_good_request_parses() -> None:
    request = request_of(["Core/echo", {"x": 1}, "c1"], created_ids={"k1": "M1"})
    assert request.using == {CORE_CAPABILITY, MAIL}
    assert request.method_calls[0].name == "Core/echo"
    assert request.method_calls[0].arguments == {"x": 1}
    assert request.method_calls[0].call_id == "c1"
    assert request.created_ids == {"k1": "M1"}


def test_problem_details_rendering() -> None:
    error = request_error(b"{")
    assert error.render() == {"type": "urn:ietf:params:jmap:error:notJSON", "status": 400,
                              "detail": error.detail}
    assert error.status == 400


@pytest.mark.parametrize("raw", [
    b"{", b"", b"nope", b'{"using": [], "methodCalls": []} trailing',
    b'{"using": [], "methodCalls": [], "using": []}',  # I-JSON: duplicate names
    b'{"using": [], "methodCalls": [], "x": NaN}',
    b'{"using": [], "methodCalls": [], "x": 1e400}',
    b'{"using": [], "methodCalls": [], "x": ' + b"1" * 5000 + b"}",
    b"\xef\xbb\xbf{}",  # a BOM
])
def test_not_json(raw: bytes) -> None:
    assert error_type(raw) == "urn:ietf:params:jmap:error:notJSON"


def error_type(raw: bytes) -> str:
    return request_error(raw).type_uri


def test_not_utf8_is_not_json() -> None:
    raw = b'{"using": ["\xff"], "methodCalls": []}'
    assert error_type(raw) == "urn:ietf:params:jmap:error:notJSON"


def test_depth_limit() -> None:
    nested = {"using": [], "methodCalls": [["Core/echo", {"x": []}, "c"]]}
    # the request object, methodCalls, the invocation, the arguments, x = 5 levels
    assert parse_request(body(nested), Limits(max_json_depth=5), KNOWN)
    assert request_error(body(nested), Limits(max_json_depth=4)).kind == "notJSON"


def test_very_deep_json_is_refused_without_recursing() -> None:
    raw = b"[" * 200_000 + b"]" * 200_000
    assert request_error(raw).kind == "notJSON"


@pytest.mark.parametrize("document", [
    [],
    {"methodCalls": []},
    {"using": "urn:ietf:params:jmap:core", "methodCalls": []},
    {"using": [1], "methodCalls": []},
    {"using": []},
    {"using": [], "methodCalls": {}},
    {"using": [], "methodCalls": [["Core/echo", {}]]},
    {"using": [], "methodCalls": [["Core/echo", {}, "c", "extra"]]},
    {"using": [], "methodCalls": ["Core/echo"]},
    {"using": [], "methodCalls": [[1, {}, "c"]]},
    {"using": [], "methodCalls": [["Core/echo", [], "c"]]},
    {"using": [], "methodCalls": [["Core/echo", {}, 7]]},
    {"using": [], "methodCalls": [], "createdIds": []},
    {"using": [], "methodCalls": [], "createdIds": {"k1": 5}},
    {"using": [], "methodCalls": [], "createdIds": {"bad key": "M1"}},
])
def test_not_request(document: Any) -> None:
    assert error_type(body(document)) == "urn:ietf:params:jmap:error:notRequest"


def test_unknown_capability() -> None:
    error = request_error(body({"using": [CORE_CAPABILITY, "urn:example:nope"],
                                "methodCalls": []}))
    assert error.type_uri == "urn:ietf:params:jmap:error:unknownCapability"
    assert "urn:example:nope" in error.detail


def test_limit_max_size_request() -> None:
    raw = body({"using": [], "methodCalls": [["Core/echo", {"pad": "x" * 100}, "c"]]})
    assert parse_request(raw, Limits(max_size_request=len(raw)), KNOWN)
    error = request_error(raw, Limits(max_size_request=len(raw) - 1))
    assert error.render()["type"] == "urn:ietf:params:jmap:error:limit"
    assert error.render()["limit"] == "maxSizeRequest"


def test_limit_max_calls_in_request() -> None:
    calls = [["Core/echo", {}, f"c{n}"] for n in range(3)]
    assert parse_request(body({"using": [], "methodCalls": calls}),
                         Limits(max_calls_in_request=3), KNOWN)
    error = request_error(body({"using": [], "methodCalls": calls}),
                          Limits(max_calls_in_request=2))
    assert (error.kind, error.limit) == ("limit", "maxCallsInRequest")


def test_limit_created_ids() -> None:
    document = {"using": [], "methodCalls": [], "createdIds": {f"k{n}": "M" for n in range(3)}}
    error = request_error(body(document), Limits(max_created_ids=2))
    assert (error.kind, error.limit) == ("limit", "maxCreatedIds")


# -- the registry and the call loop (§3.4, §3.6.2) ------------------------------------------


def registry_with(**handlers: Any) -> MethodRegistry[Context]:
    registry: MethodRegistry[Context] = MethodRegistry()
    register_core(registry)
    for name, handler in handlers.items():
        registry.register(name.replace("_", "/"), MAIL, handler)
    return registry


def recorder(name: str, answer: dict[str, Any]) -> Any:
    async def handle(call: Call[Context]) -> list[Response]:
        call.context.seen.append((call.name, call.arguments))
        return [(name, answer)]
    return handle


async def run(request: Request, registry: MethodRegistry[Context],
              context: Context | None = None) -> dict[str, Any]:
    answer = await run_request(request, registry, context or Context())
    json.dumps(answer)  # the whole answer is JSON-ready
    return answer


async def test_echo_and_session_state() -> None:
    answer = await run(request_of(["Core/echo", {"hello": [1, 2]}, "c1"]), registry_with(),
                       Context(session_state="abc"))
    assert answer == {"methodResponses": [["Core/echo", {"hello": [1, 2]}, "c1"]],
                      "sessionState": "abc"}  # no createdIds: the request had none


async def test_unknown_method_and_the_next_call_still_runs() -> None:
    answer = await run(request_of(["Nope/get", {}, "c1"], ["Core/echo", {}, "c2"]),
                       registry_with())
    assert answer["methodResponses"][0][0] == "error"
    assert answer["methodResponses"][0][1]["type"] == "unknownMethod"
    assert answer["methodResponses"][0][2] == "c1"
    assert answer["methodResponses"][1] == ["Core/echo", {}, "c2"]


async def test_method_not_enabled_by_using_is_unknown() -> None:
    registry = registry_with(Mailbox_get=recorder("Mailbox/get", {}))
    answer = await run(request_of(["Mailbox/get", {}, "c1"], using=[CORE_CAPABILITY]),
                       registry)
    assert answer["methodResponses"][0][1]["type"] == "unknownMethod"


async def test_method_error_renders_with_extra_members() -> None:
    async def refuse(call: Call[Context]) -> list[Response]:
        raise MethodError("invalidArguments", "bad ids", arguments=["ids"])
    answer = await run(request_of(["Foo/get", {}, "c1"]), registry_with(Foo_get=refuse))
    assert answer["methodResponses"] == [
        ["error", {"type": "invalidArguments", "description": "bad ids",
                   "arguments": ["ids"]}, "c1"]]


async def test_server_fail_is_logged_never_leaked(caplog: pytest.LogCaptureFixture) -> None:
    async def explode(call: Call[Context]) -> list[Response]:
        raise RuntimeError("secret database detail")
    registry = registry_with(Foo_get=explode)
    with caplog.at_level(logging.ERROR, logger="postroom.jmap.core"):
        answer = await run(request_of(["Foo/get", {}, "c1"], ["Core/echo", {"n": 2}, "c2"]),
                           registry)
    assert answer["methodResponses"][0] == ["error", {"type": "serverFail"}, "c1"]
    assert answer["methodResponses"][1] == ["Core/echo", {"n": 2}, "c2"]
    assert "secret" not in json.dumps(answer)
    assert "secret database detail" in caplog.text


async def test_a_method_may_answer_twice_under_one_call_id() -> None:
    async def copy(call: Call[Context]) -> list[Response]:
        return [("Foo/copy", {"created": {}}), ("Foo/set", {"destroyed": ["a"]})]
    answer = await run(request_of(["Foo/copy", {}, "c1"]), registry_with(Foo_copy=copy))
    assert [(r[0], r[2]) for r in answer["methodResponses"]] == [("Foo/copy", "c1"),
                                                                ("Foo/set", "c1")]


def test_registry_refuses_a_second_registration() -> None:
    registry: MethodRegistry[Context] = MethodRegistry()

    @registry.method("Foo/get", MAIL)
    async def handle(call: Call[Context]) -> list[Response]:
        return []

    with pytest.raises(ValueError):
        registry.register("Foo/get", MAIL, handle)
    assert registry.capabilities == {MAIL}


# -- result references (§3.7) ---------------------------------------------------------------


def ref(result_of: str, name: str, path: str) -> dict[str, str]:
    return {"resultOf": result_of, "name": name, "path": path}


async def test_rfc8620_section_3_7_example() -> None:
    """The worked example of §3.7: query → get threadIds → Thread/get → Email/get."""
    registry = registry_with(
        Email_query=recorder("Email/query", {
            "accountId": "A1", "queryState": "abcdefg", "canCalculateChanges": True,
            "position": 0, "total": 101, "ids": ["msg1023", "msg223", "msg110", "msg93",
                                                 "msg91", "msg38", "msg36", "msg33",
                                                 "msg11", "msg1"]}),
        Thread_get=recorder("Thread/get", {
            "accountId": "A1", "state": "123456", "notFound": [],
            "list": [{"id": "trd194", "emailIds": ["msg1020", "msg1021", "msg1023"]},
                     {"id": "trd114", "emailIds": ["msg201", "msg223"]}]}),
    )

    async def email_get(call: Call[Context]) -> list[Response]:
        call.context.seen.append((call.name, call.arguments))
        threads = {"msg1023": "trd194", "msg223": "trd114"}
        return [("Email/get", {"accountId": "A1", "state": "123456", "notFound": [],
                               "list": [{"id": i, "threadId": threads.get(i, "trd" + i)}
                                        for i in call.arguments["ids"]]})]
    registry.register("Email/get", MAIL, email_get)
    request = request_of(
        ["Email/query", {"accountId": "A1", "filter": {"inMailbox": "id_of_inbox"},
                         "sort": [{"property": "receivedAt", "isAscending": False}],
                         "collapseThreads": True, "position": 0, "limit": 10,
                         "calculateTotal": True}, "t0"],
        ["Email/get", {"accountId": "A1", "#ids": ref("t0", "Email/query", "/ids"),
                       "properties": ["threadId"]}, "t1"],
        ["Thread/get", {"accountId": "A1",
                        "#ids": ref("t1", "Email/get", "/list/*/threadId")}, "t2"],
        ["Email/get", {"accountId": "A1",
                       "#ids": ref("t2", "Thread/get", "/list/*/emailIds"),
                       "properties": ["from", "receivedAt", "subject"]}, "t3"])
    context = Context()
    answer = await run(request, registry, context)
    assert [r[0] for r in answer["methodResponses"]] == [
        "Email/query", "Email/get", "Thread/get", "Email/get"]
    seen = dict(enumerate(arguments for _, arguments in context.seen))
    assert seen[1]["ids"][:2] == ["msg1023", "msg223"] and "#ids" not in seen[1]
    assert seen[2]["ids"][:2] == ["trd194", "trd114"]
    # /list/*/emailIds flattens the arrays of arrays into one array (§3.7)
    assert seen[3]["ids"] == ["msg1020", "msg1021", "msg1023", "msg201", "msg223"]


async def test_foo_and_hash_foo_together_is_invalid_arguments() -> None:
    request = request_of(["Core/echo", {"ids": []}, "c0"],
                         ["Core/echo", {"ids": [], "#ids": ref("c0", "Core/echo", "/ids")},
                          "c1"])
    answer = await run(request, registry_with())
    assert answer["methodResponses"][1] == [
        "error", {"type": "invalidArguments",
                  "description": answer["methodResponses"][1][1]["description"]}, "c1"]


@pytest.mark.parametrize("reference", [
    ref("c9", "Core/echo", "/ids"),  # no such call id
    ref("c1", "Core/echo", "/ids"),  # the call itself is not earlier
    ref("c0", "Foo/get", "/ids"),  # wrong name
    ref("c0", "Core/echo", "/nope"),  # path names nothing
    ref("c0", "Core/echo", "ids"),  # not a pointer
    ref("c0", "Core/echo", "/ids/7"),
    ref("c0", "Core/echo", "/" + "a" * 300),  # longer than max_reference_path
    {"resultOf": "c0", "name": "Core/echo"},  # no path
    {"resultOf": "c0", "name": "Core/echo", "path": 5},
    "c0",
])
async def test_invalid_result_reference(reference: Any) -> None:
    request = request_of(["Core/echo", {"ids": ["a"]}, "c0"],
                         ["Core/echo", {"#ids": reference}, "c1"])
    answer = await run(request, registry_with())
    assert answer["methodResponses"][1][0] == "error"
    assert answer["methodResponses"][1][1]["type"] == "invalidResultReference"
    assert answer["methodResponses"][1][2] == "c1"


async def test_reference_to_an_error_response_fails() -> None:
    request = request_of(["Nope/get", {}, "c0"],
                         ["Core/echo", {"#ids": ref("c0", "Nope/get", "/ids")}, "c1"])
    answer = await run(request, registry_with())
    assert answer["methodResponses"][1][1]["type"] == "invalidResultReference"


async def test_reference_uses_the_first_response_of_a_call_id() -> None:
    async def copy(call: Call[Context]) -> list[Response]:
        return [("Foo/copy", {"x": 1}), ("Foo/set", {"x": 2})]
    registry = registry_with(Foo_copy=copy)
    request = request_of(["Foo/copy", {}, "c0"],
                         ["Core/echo", {"#a": ref("c0", "Foo/copy", "/x")}, "c1"],
                         ["Core/echo", {"#a": ref("c0", "Foo/set", "/x")}, "c2"])
    answer = await run(request, registry)
    assert answer["methodResponses"][2] == ["Core/echo", {"a": 1}, "c1"]
    assert answer["methodResponses"][3][1]["type"] == "invalidResultReference"  # §3.7 step 2


async def test_resolved_values_are_copies() -> None:
    async def mutate(call: Call[Context]) -> list[Response]:
        call.arguments["ids"].append("mutated")
        return [("Foo/get", {})]
    registry = registry_with(Foo_get=mutate)
    request = request_of(["Core/echo", {"ids": ["a"]}, "c0"],
                         ["Foo/get", {"#ids": ref("c0", "Core/echo", "/ids")}, "c1"])
    answer = await run(request, registry)
    assert answer["methodResponses"][0] == ["Core/echo", {"ids": ["a"]}, "c0"]


# -- createdIds (§3.3) ----------------------------------------------------------------------


async def create_handler(call: Call[Context]) -> list[Response]:
    created = {}
    for creation_id in call.arguments.get("create", {}):
        real = f"M{len(call.created_ids) + 1}"
        call.created_ids[creation_id] = real
        created[creation_id] = {"id": real}
    return [("Foo/set", {"created": created, "seen": dict(call.created_ids)})]


async def test_created_ids_round_trip() -> None:
    request = request_of(["Foo/set", {"create": {"k2": {}}}, "c0"],
                         ["Foo/set", {"create": {"k3": {}}}, "c1"],
                         created_ids={"k1": "M0"})
    answer = await run(request, registry_with(Foo_set=create_handler))
    assert answer["createdIds"] == {"k1": "M0", "k2": "M2", "k3": "M3"}
    # the second call saw the first call's creation
    assert answer["methodResponses"][1][1]["seen"] == {"k1": "M0", "k2": "M2", "k3": "M3"}
    assert request.created_ids == {"k1": "M0"}  # the parsed request is not changed


async def test_no_created_ids_in_the_response_unless_requested() -> None:
    request = request_of(["Foo/set", {"create": {"k2": {}}}, "c0"])
    answer = await run(request, registry_with(Foo_set=create_handler))
    assert "createdIds" not in answer


async def test_end_to_end_from_bytes() -> None:
    raw = body({"using": [CORE_CAPABILITY], "methodCalls": [["Core/echo", {"a": "b"}, "0"]]})
    answer = await run(parse_request(raw, LIMITS, KNOWN), registry_with())
    assert answer["methodResponses"] == [["Core/echo", {"a": "b"}, "0"]]


def test_set_error_rendering() -> None:
    assert SetError.invalid_properties(["name", "role"]).render() == {
        "type": "invalidProperties", "properties": ["name", "role"]}
    assert SetError.already_exists("M1", "dup").render() == {
        "type": "alreadyExists", "description": "dup", "existingId": "M1"}
    assert SetError("overQuota", extra={"x": 1}).render() == {"type": "overQuota", "x": 1}
    assert render_set_errors({}) is None
    assert render_set_errors({"k": SetError("forbidden")}) == {"k": {"type": "forbidden"}}


def test_core_capability_object() -> None:
    assert Limits().render_capability() == {
        "maxSizeUpload": 50_000_000, "maxConcurrentUpload": 4, "maxSizeRequest": 10_000_000,
        "maxConcurrentRequests": 4, "maxCallsInRequest": 16, "maxObjectsInGet": 500,
        "maxObjectsInSet": 500,
        "collationAlgorithms": ["i;ascii-casemap", "i;ascii-numeric", "i;octet",
                                "i;unicode-casemap"]}
