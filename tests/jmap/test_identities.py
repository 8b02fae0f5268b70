"""Identity/get, /changes and /set (RFC 8621 §6; jmap/identities.py) over a real store:
the default identities are exactly the addresses SMTP submission lets the user send as
under SPOOF_PROTECTION (the account, aliases and catch-alls reaching it), and the
identity records and their /changes live in the store (migration 0030)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from postroom.checks.spoofing import SpoofingCheck
from postroom.jmap import identities
from postroom.store import jmapidentities_api
from postroom.store.errors import CannotCalculateChanges
from postroom.store.jmapidentities_api import IdentityFields, JmapKind
from tests.conftest import make_config
from tests.jmap.identitykit import Api
from tests.support.runtime import open_runtime

ALICE = "alice@example.test"
BOB = "bob@example.test"


async def open_api(tmp_path: Path, server_cert: tuple[Path, Path],
                   **overrides: object) -> AsyncIterator[Api]:  # fmt: skip
    async with open_runtime(make_config(tmp_path, server_cert, **overrides)) as runtime:
        store = runtime.store
        alice = await store.create_account(ALICE, "not-a-hash")
        await store.create_account(BOB, "not-a-hash")
        await store.add_alias("sales@example.test", ALICE)  # reaches alice
        await store.add_alias("team@example.test", "sales@example.test")  # through sales
        await store.add_alias("help@example.test", BOB)  # bob's, not alice's
        await store.add_alias("@other.test", ALICE)  # a catch-all of alice
        await store.add_alias("taken@other.test", BOB)  # shadows the catch-all
        yield Api(runtime, alice)


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(tmp_path, server_cert):
        yield opened


async def listed(api: Api) -> dict[str, dict[str, Any]]:
    """The identities by address, a default one winning over one the user added."""
    response = await api.ok("Identity/get", ids=None)
    ordered = sorted(response["list"], key=lambda one: not one["mayDelete"])
    return {one["email"]: one for one in ordered}


async def test_default_identities_are_what_submission_may_send_as(api: Api) -> None:
    found = await listed(api)
    assert sorted(found) == ["*@other.test", ALICE, "sales@example.test", "team@example.test"]
    assert all(one["mayDelete"] is False and one["name"] == "" for one in found.values())
    assert found[ALICE] == {"id": found[ALICE]["id"], "name": "", "email": ALICE,
                            "replyTo": None, "bcc": None, "textSignature": "",
                            "htmlSignature": "", "mayDelete": False}
    owns = SpoofingCheck(api.runtime.config, api.store).owns
    for address in ("sales@example.test", "team@example.test", "any@other.test"):
        assert await owns(ALICE, address)
    for address in ("help@example.test", "taken@other.test", BOB):
        assert not await owns(ALICE, address)
    again = await api.ok("Identity/get", ids=[found[ALICE]["id"], "I999", "nonsense"],
                         properties=["email"])
    assert again["list"] == [{"id": found[ALICE]["id"], "email": ALICE}]
    assert again["notFound"] == ["I999", "nonsense"]


async def test_create_update_destroy_and_their_errors(api: Api) -> None:
    response = await api.ok("Identity/set", create={
        "work": {"email": "Sales@Example.TEST", "name": "Alice at Sales",
                 "replyTo": [{"name": "Sales", "email": "sales@example.test"}],
                 "textSignature": "-- \nAlice"},
        "theirs": {"email": "help@example.test"},
        "elsewhere": {"email": "someone@remote.test"},
        "wild": {"email": "*@example.test"},
        "server": {"email": ALICE, "mayDelete": True},
        "junk": {"email": "not an address"},
        "badreply": {"email": ALICE, "bcc": [{"email": 3}]}})
    created = response["created"]["work"]
    assert created["mayDelete"] is True
    for key in ("theirs", "elsewhere", "wild"):
        assert response["notCreated"][key]["type"] == "forbiddenFrom", key
    assert response["notCreated"]["server"]["properties"] == ["mayDelete"]
    assert response["notCreated"]["junk"]["properties"] == ["email"]
    assert response["notCreated"]["badreply"]["properties"] == ["bcc"]
    work = (await api.ok("Identity/get", ids=[created["id"]]))["list"][0]
    assert work["email"] == "sales@example.test" and work["name"] == "Alice at Sales"
    assert work["replyTo"] == [{"name": "Sales", "email": "sales@example.test"}]
    default_id = (await listed(api))[ALICE]["id"]
    update = await api.ok("Identity/set", update={
        created["id"]: {"name": "Sales desk", "replyTo": None},
        default_id: {"htmlSignature": "<b>Alice</b>"},
        "I999": {"name": "x"}})
    assert update["updated"] == {created["id"]: None, default_id: None}
    assert update["notUpdated"]["I999"]["type"] == "notFound"
    for patch, names in (({"email": BOB}, ["email"]), ({"mayDelete": False}, ["mayDelete"]),
                         ({"name": 5}, ["name"]), ({"colour": "red"}, ["colour"]),
                         ({"textSignature": "x" * (identities.MAX_SIGNATURE + 1)},
                          ["textSignature"])):
        error = await api.set_error("Identity/set", "notUpdated", created["id"],
                                    update={created["id"]: patch})
        assert (error["type"], error["properties"]) == ("invalidProperties", names), patch
    assert (await api.ok("Identity/get", ids=[default_id]))["list"][0]["htmlSignature"] \
        == "<b>Alice</b>"
    gone = await api.ok("Identity/set", destroy=[created["id"], default_id, "I999"])
    assert gone["destroyed"] == [created["id"]]
    assert gone["notDestroyed"][default_id]["type"] == "forbidden"
    assert gone["notDestroyed"]["I999"]["type"] == "notFound"
    assert sorted(await listed(api)) == ["*@other.test", ALICE, "sales@example.test",
                                         "team@example.test"]


async def test_creation_references_and_state_checks(api: Api) -> None:
    state = (await api.ok("Identity/get"))["state"]
    answers = await api.responses([
        ["Identity/set", {"accountId": api.account_id, "ifInState": state,
                          "create": {"k1": {"email": ALICE, "name": "Second"}}}, "a"],
        ["Identity/set", {"accountId": api.account_id, "update": {"#k1": {"name": "Renamed"}},
                          "destroy": ["#nope"]}, "b"],
        ["Identity/get", {"accountId": api.account_id, "ids": ["#k1"]}, "c"]])
    created_id = answers[0][1]["created"]["k1"]["id"]
    assert answers[1][1]["updated"] == {created_id: None}
    assert answers[1][1]["notDestroyed"]["#nope"]["type"] == "notFound"
    assert answers[2][0] == "error"  # get takes ids, not creation references
    assert await api.error("Identity/set", ifInState=state,
                           update={created_id: {"name": "x"}}) == "stateMismatch"
    assert await api.error("Identity/set", accountId="a999") == "accountNotFound"
    assert await api.error("Identity/get", properties=["colour"]) == "invalidArguments"


async def test_changes_follow_sets_and_aliases(api: Api) -> None:
    first = (await api.ok("Identity/get"))["state"]
    made = (await api.ok("Identity/set", create={"k": {"email": ALICE}}))["created"]["k"]["id"]
    default_id = (await listed(api))[ALICE]["id"]
    await api.ok("Identity/set", update={default_id: {"name": "Alice"}})
    await api.store.add_alias("new@example.test", ALICE)
    await api.store.delete_alias("team@example.test")
    changes = await api.ok("Identity/changes", sinceState=first)
    new_id = (await listed(api))["new@example.test"]["id"]
    assert changes["oldState"] == first
    assert sorted(changes["created"]) == sorted([made, new_id])
    assert changes["updated"] == [default_id]
    assert len(changes["destroyed"]) == 1 and changes["hasMoreChanges"] is False
    assert "team@example.test" not in await listed(api)
    latest = await api.ok("Identity/changes", sinceState=changes["newState"])
    assert (latest["created"], latest["updated"], latest["destroyed"]) == ([], [], [])
    await api.ok("Identity/set", destroy=[made])
    short = await api.ok("Identity/changes", sinceState=first)
    assert made not in short["created"] and made not in short["destroyed"]  # came and went
    for since in ("999999", "x", "-1", ""):
        assert await api.error("Identity/changes", sinceState=since) == "cannotCalculateChanges"
    assert await api.error("Identity/changes", sinceState=first,
                           maxChanges=1) == "cannotCalculateChanges"
    assert await api.error("Identity/changes", sinceState=first,
                           maxChanges=0) == "invalidArguments"


async def test_identities_added_are_limited(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identities, "MAX_IDENTITIES", 2)
    response = await api.ok("Identity/set", create={
        str(n): {"email": ALICE, "name": str(n)} for n in range(3)})
    assert sorted(response["created"]) == ["0", "1"]
    assert response["notCreated"]["2"]["type"] == "overQuota"


async def test_without_spoof_protection_any_address_may_be_added(
        tmp_path: Path, server_cert: tuple[Path, Path]) -> None:
    async for api in open_api(tmp_path, server_cert, SPOOF_PROTECTION=0):
        response = await api.ok("Identity/set", create={
            "a": {"email": BOB}, "b": {"email": "someone@remote.test"}})
        assert sorted(response["created"]) == ["a", "b"]
        assert sorted(await listed(api)) == ["*@other.test", ALICE, BOB, "sales@example.test",
                                             "someone@remote.test", "team@example.test"]


async def test_tombstones_are_pruned(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("postroom.store.sql.jmapidentities.TOMBSTONES_KEPT", 2)
    assert jmapidentities_api.TOMBSTONES_KEPT == 200  # the store module's own copy is used
    store, account_id = api.store, api.account.id
    await api.ok("Identity/get")
    made = [await store.jmap_create_identity(account_id, ALICE, IdentityFields(name=str(n)),
                                             10) for n in range(4)]
    state, _ = await store.jmap_identities(account_id)
    for one in made:
        assert one is not None
        assert await store.jmap_destroy_identity(account_id, one.id)
    with pytest.raises(CannotCalculateChanges):  # the first two tombstones are gone
        await store.jmap_object_changes(account_id, JmapKind.IDENTITY, str(state))
    last_two = await store.jmap_object_changes(account_id, JmapKind.IDENTITY, str(state + 2))
    assert last_two.destroyed == [made[2].id, made[3].id]  # type: ignore[union-attr]
    assert await store.jmap_update_identity(account_id, made[0].id,  # type: ignore[union-attr]
                                            IdentityFields()) is None
