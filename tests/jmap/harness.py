"""One JMAP account over a real store, for the method tests (issue 23): requests go
through the real parser (`parse_request`), registry and `run_request`, as over HTTP,
without the listener. Each test module registers the methods it exercises."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from postroom.jmap.context import MAIL, CallContext, JmapContext, jmap_account_id
from postroom.jmap.core import CORE_CAPABILITY, Limits, MethodRegistry, parse_request, run_request
from postroom.runtime import Runtime
from postroom.store.api import Account

Register = Callable[[MethodRegistry[CallContext]], None]


class JmapApi:
    def __init__(self, runtime: Runtime, account: Account, registers: Sequence[Register],
                 limits: Limits | None = None, using: Sequence[str] = (CORE_CAPABILITY, MAIL),
                 ) -> None:  # fmt: skip
        self.runtime = runtime
        self.store = runtime.store
        self.account = account
        self.account_id = jmap_account_id(account.id)
        self.limits = limits or Limits()
        self.using = list(using)
        self.registry: MethodRegistry[CallContext] = MethodRegistry()
        for register in registers:
            register(self.registry)
        self.context = CallContext(JmapContext(runtime, runtime.config, self.registry),
                                   account, self.account_id, "session-state")

    async def request(self, calls: list[list[Any]], created_ids: dict[str, str] | None = None,
                      using: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        """The whole Response object."""
        body: dict[str, Any] = {"using": self.using if using is None else using,
                                "methodCalls": calls}  # fmt: skip
        if created_ids is not None:
            body["createdIds"] = created_ids
        request = parse_request(json.dumps(body).encode(), self.limits,
                                self.registry.capabilities | {CORE_CAPABILITY})
        return await run_request(request, self.registry, self.context)

    async def call(self, name: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
        """One method call's first response: (its name, its arguments)."""
        arguments.setdefault("accountId", self.account_id)
        answer = (await self.request([[name, arguments, "c1"]]))["methodResponses"]
        assert answer[0][2] == "c1"
        return answer[0][0], answer[0][1]

    async def ok(self, name: str, **arguments: Any) -> dict[str, Any]:
        kind, response = await self.call(name, **arguments)
        assert kind == name, response
        return response

    async def error(self, name: str, **arguments: Any) -> str:
        kind, response = await self.call(name, **arguments)
        assert kind == "error", response
        return str(response["type"])
