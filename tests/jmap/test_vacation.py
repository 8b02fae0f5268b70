"""VacationResponse (RFC 8621 §8; jmap/vacation.py): the singleton read and written
through the managed Sieve script the web self-service page keeps (accounts/mailrules.py).

Handler-level tests run requests through `core.run_request` over a real store; the last
one drives a whole App over real HTTPS: the vacation page and JMAP show each other's
settings."""

from __future__ import annotations

import html
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.accounts.mailrules import MANAGED_NAME, MailRulesService, Vacation
from postroom.accounts.sievescripts import SieveScripts
from postroom.jmap import vacation
from tests.conftest import make_config
from tests.jmap.httpclient import CORE, JmapClient, basic
from tests.jmap.identitykit import Api
from tests.support.runtime import open_runtime
from tests.web.conftest import USER, StartWebApp, WebClient, login

ADDRESS = "alice@example.test"
VACATION = "urn:ietf:params:jmap:vacationresponse"


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    config = make_config(tmp_path, server_cert, TZ="Europe/Paris")
    async with open_runtime(config) as runtime:
        yield Api(runtime, await runtime.store.create_account(ADDRESS, "not-a-hash"))


def rules(api: Api) -> MailRulesService:
    """The service the self-service page reads and saves with (web/selfservicekit.py)."""
    return MailRulesService(api.store, SieveScripts(api.runtime.config, api.store))


async def singleton(api: Api) -> dict[str, object]:
    response = await api.ok("VacationResponse/get", ids=None)
    (found,) = response["list"]
    return dict(found)


async def test_get_without_settings_is_off_and_empty(api: Api) -> None:
    assert await singleton(api) == {
        "id": "singleton", "isEnabled": False, "fromDate": None, "toDate": None,
        "subject": None, "textBody": None, "htmlBody": None}
    response = await api.ok("VacationResponse/get", ids=["singleton", "other", "singleton"],
                            properties=["isEnabled"])
    assert response["list"] == [{"id": "singleton", "isEnabled": False}]
    assert response["notFound"] == ["other"]
    assert await api.error("VacationResponse/get", properties=["nope"]) == "invalidArguments"
    assert await api.error("VacationResponse/get", accountId="a999") == "accountNotFound"


async def test_set_writes_the_page_settings_and_the_active_script(api: Api) -> None:
    before = (await api.ok("VacationResponse/get"))["state"]
    response = await api.ok("VacationResponse/set", ifInState=before, update={"singleton": {
        "isEnabled": True, "subject": "Away", "textBody": "Back on Monday.",
        "fromDate": "2026-07-31T22:00:00Z", "toDate": "2026-08-15T22:00:00Z"}})
    assert response["updated"] == {"singleton": None}  # stored exactly as sent
    assert response["oldState"] == before != response["newState"]
    state = await rules(api).state(api.account.id)
    # Paris is UTC+2 in summer: those instants are the midnights of 1 and 16 August.
    assert state.rules.vacation == Vacation(True, "2026-08-01", "2026-08-15", "Away",
                                            "Back on Monday.", 7)
    assert state.is_in_force
    assert await api.store.active_sieve_script(api.account.id) is not None
    assert (await api.store.active_sieve_script(api.account.id))[0] == MANAGED_NAME  # type: ignore[index]
    assert await singleton(api) == {
        "id": "singleton", "isEnabled": True, "fromDate": "2026-07-31T22:00:00Z",
        "toDate": "2026-08-15T22:00:00Z", "subject": "Away", "textBody": "Back on Monday.",
        "htmlBody": None}
    assert (await api.ok("VacationResponse/get"))["state"] == response["newState"]


async def test_page_settings_show_in_jmap_and_dates_round_to_days(api: Api) -> None:
    await rules(api).save(api.account.id, vacation=Vacation(True, "2026-12-20", "", "",
                                                            "Gone fishing.", 3))
    assert await singleton(api) == {
        "id": "singleton", "isEnabled": True, "fromDate": "2026-12-19T23:00:00Z",
        "toDate": None, "subject": None, "textBody": "Gone fishing.", "htmlBody": None}
    response = await api.ok("VacationResponse/set", update={"singleton": {
        "fromDate": "2026-12-21T09:30:00Z", "toDate": "2026-12-24T12:00:00Z"}})
    assert response["updated"] == {"singleton": {"fromDate": "2026-12-20T23:00:00Z",
                                                 "toDate": "2026-12-24T23:00:00Z"}}
    saved = (await rules(api).state(api.account.id)).rules.vacation
    assert (saved.start, saved.end, saved.days) == ("2026-12-21", "2026-12-24", 3)


async def test_html_only_text_and_turning_it_off(api: Api) -> None:
    response = await api.ok("VacationResponse/set", update={"singleton": {
        "isEnabled": True, "htmlBody": "<p>I am <b>away</b></p><p>until May.</p>"}})
    assert response["updated"] == {"singleton": {"textBody": "I am away until May.",
                                                 "htmlBody": None}}
    off = await api.ok("VacationResponse/set", update={"singleton": {"isEnabled": False}})
    assert off["updated"] == {"singleton": {"textBody": None}}  # the page forgets it too
    assert await api.store.active_sieve_script(api.account.id) is None
    assert (await singleton(api))["isEnabled"] is False


async def test_another_active_script_means_not_enabled(api: Api) -> None:
    await rules(api).save(api.account.id, vacation=Vacation(True, "", "", "", "Away.", 7))
    scripts = SieveScripts(api.runtime.config, api.store)
    await scripts.put(api.account.id, "mine", 'require "fileinto";\nkeep;\n')
    await scripts.activate(api.account.id, "mine")
    assert (await singleton(api))["isEnabled"] is False  # delivery runs "mine" alone
    await api.ok("VacationResponse/set", update={"singleton": {"isEnabled": True}})
    state = await rules(api).state(api.account.id)
    assert state.is_in_force and state.rules.wraps == "mine"  # included, not replaced


async def test_set_errors(api: Api) -> None:
    response = await api.ok("VacationResponse/set", create={"new": {"isEnabled": True}},
                            destroy=["singleton"], update={"other": {"isEnabled": True}})
    assert response["notCreated"]["new"]["type"] == "singleton"
    assert response["notDestroyed"]["singleton"]["type"] == "singleton"
    assert response["notUpdated"]["other"]["type"] == "notFound"
    for patch, names in (({"isEnabled": "yes"}, ["isEnabled"]),
                         ({"fromDate": "2026-01-01"}, ["fromDate"]),
                         ({"toDate": "2026-01-01T00:00:00+01:00"}, ["toDate"]),
                         ({"fromDate": "2026-02-01T00:00:00Z",
                           "toDate": "2026-01-01T00:00:00Z"}, ["fromDate", "toDate"]),
                         ({"subject": "x" * 201}, ["subject"]),
                         ({"textBody": 7}, ["textBody"]),
                         ({"isEnabled": True}, ["textBody"]),  # enabled needs a text
                         ({"isEnabled": True, "textBody": "x" * 4001}, ["textBody"]),
                         ({"colour": "red"}, ["colour"]), ({"id": "x"}, ["id"])):
        error = await api.set_error("VacationResponse/set", "notUpdated", "singleton",
                                    update={"singleton": patch})
        assert error["type"] == "invalidProperties", patch
        assert error["properties"] == names, patch
    assert await singleton(api) == {  # nothing was written
        "id": "singleton", "isEnabled": False, "fromDate": None, "toDate": None,
        "subject": None, "textBody": None, "htmlBody": None}
    assert await api.error("VacationResponse/set", ifInState="stale",
                           update={"singleton": {"isEnabled": False}}) == "stateMismatch"
    kind, _ = await api.call("VacationResponse/get")
    assert kind == "VacationResponse/get"
    (answer,) = await api.responses([["VacationResponse/get", {"accountId": api.account_id},
                                    "c"]], using=[CORE])
    assert answer[1]["type"] == "unknownMethod"  # §8: only with the capability in use


def test_the_page_and_jmap_agree_over_https(web_app: StartWebApp,
                                            client_tls: ssl.SSLContext) -> None:
    with web_app() as app:
        assert app.app.jmap is not None
        registry = app.app.jmap.registry
        if "VacationResponse/get" not in registry.methods:  # until app.py wires it
            vacation.register(registry)
        page = WebClient(app, client_tls)
        assert login(page, USER).status == 303
        shown = page.get("/me/vacation")
        saved = page.post("/me/vacation", {
            "csrf_token": shown.csrf(), "is_on": "on", "start": "2026-08-01", "end": "",
            "subject": 'Away "until" Monday', "text": "See you soon.", "days": "5"})
        assert saved.status == 303
        client = JmapClient(app, client_tls, basic())
        account_id = next(iter(client.session().json()["accounts"]))
        reply = client.api([["VacationResponse/get", {"accountId": account_id}, "0"]],
                           using=[CORE, VACATION]).json()
        (found,) = reply["methodResponses"][0][1]["list"]
        assert (found["isEnabled"], found["subject"], found["textBody"], found["toDate"]) \
            == (True, 'Away "until" Monday', "See you soon.", None)
        assert found["fromDate"] == "2026-08-01T00:00:00Z"  # TZ is UTC here
        update = client.api([["VacationResponse/set", {"accountId": account_id, "update": {
            "singleton": {"textBody": "Written over JMAP.", "subject": None}}}, "0"]],
            using=[CORE, VACATION]).json()
        assert update["methodResponses"][0][1]["updated"] == {"singleton": None}
        body = html.unescape(page.get("/me/vacation").body)
        assert "Written over JMAP." in body and "until" not in body
        assert 'value="2026-08-01"' in body
