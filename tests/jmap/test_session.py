"""RFC 8620 §2: the Session resource (jmap/session.py)."""

from __future__ import annotations

import json

import pytest

from postroom.jmap.core import CORE_CAPABILITY, Limits
from postroom.jmap.session import Account, SessionUrls, build_session

MAIL = "urn:ietf:params:jmap:mail"
DEFAULT_LIMITS = Limits()


def session(limits: Limits = DEFAULT_LIMITS, name: str = "alice@example.test") -> dict[str, object]:
    return build_session(
        username="alice@example.test",
        accounts={"A1": Account(name, capabilities={MAIL: {"maxMailboxDepth": 10}})},
        primary_accounts={MAIL: "A1"},
        urls=SessionUrls.under("https://mail.example.test/"),
        limits=limits,
        capabilities={MAIL: {}},
    )


def test_session_shape() -> None:
    built = session()
    assert set(built) == {"capabilities", "accounts", "primaryAccounts", "username", "apiUrl",
                          "downloadUrl", "uploadUrl", "eventSourceUrl", "state"}
    assert built["capabilities"] == {CORE_CAPABILITY: Limits().render_capability(), MAIL: {}}
    assert built["accounts"] == {"A1": {
        "name": "alice@example.test", "isPersonal": True, "isReadOnly": False,
        "accountCapabilities": {MAIL: {"maxMailboxDepth": 10}}}}
    assert built["primaryAccounts"] == {MAIL: "A1"}
    assert built["apiUrl"] == "https://mail.example.test/jmap/api/"
    json.dumps(built)


def test_url_templates_carry_the_rfc_variables() -> None:
    built = session()
    for variable in ("{accountId}", "{blobId}", "{type}", "{name}"):
        assert variable in str(built["downloadUrl"])
    assert "{accountId}" in str(built["uploadUrl"])
    for variable in ("{types}", "{closeafter}", "{ping}"):
        assert variable in str(built["eventSourceUrl"])


def test_state_is_stable_and_follows_content() -> None:
    assert session()["state"] == session()["state"]
    assert session()["state"] != session(name="Alice")["state"]
    assert session()["state"] != session(Limits(max_calls_in_request=8))["state"]


def test_primary_account_must_exist() -> None:
    with pytest.raises(ValueError):
        build_session(username="u", accounts={}, primary_accounts={MAIL: "A1"},
                      urls=SessionUrls.under("https://x.test"), limits=Limits())
