"""SearchSnippet/get (RFC 8621 §5; jmap/snippets.py) over a real store: what matched,
marked and HTML-escaped, null where nothing matched, and the method's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.jmap import snippets
from postroom.jmap.core import Limits
from tests.jmap.test_emails import Api, mail_config, message, open_api


@pytest.fixture
async def api(tmp_path: Path, server_cert: tuple[Path, Path]) -> AsyncIterator[Api]:
    async for opened in open_api(mail_config(tmp_path, server_cert), Limits(max_objects_in_get=3)):
        snippets.register(opened.registry)
        yield opened


async def test_subject_and_preview_mark_the_terms(api: Api) -> None:
    first = await api.deliver(message("Budget <draft> for Q3", body=(
        "Intro. " * 80 + "Here is the BUDGET & the plan.\r\n" + "Tail. " * 80)))
    second = await api.deliver(message("Lunch", body="nothing to see"))
    answer = await api.ok("SearchSnippet/get", emailIds=[first, second, "Enosuch"],
                          filter={"operator": "OR", "conditions": [
                              {"text": "budget"}, {"body": "plan"}]})
    assert answer["notFound"] == ["Enosuch"]
    one, two = answer["list"]
    assert one["emailId"] == first
    assert one["subject"] == "<mark>Budget</mark> &lt;draft&gt; for Q3"
    preview = one["preview"]
    assert "<mark>BUDGET</mark> &amp; the <mark>plan</mark>" in preview
    assert len(preview.replace("<mark>", "").replace("</mark>", "")) <= 255 + 20  # escapes
    assert two == {"emailId": second, "subject": None, "preview": None}


async def test_negated_and_non_text_conditions_give_no_terms(api: Api) -> None:
    email = await api.deliver(message("Budget", body="budget inside"))
    answer = await api.ok("SearchSnippet/get", emailIds=[email], filter={
        "operator": "AND", "conditions": [
            {"operator": "NOT", "conditions": [{"text": "budget"}]}, {"minSize": 1}]})
    assert answer["list"] == [{"emailId": email, "subject": None, "preview": None}]
    without = await api.ok("SearchSnippet/get", emailIds=[email])
    assert without["list"] == [{"emailId": email, "subject": None, "preview": None}]


async def test_the_methods_errors(api: Api) -> None:
    email = await api.deliver(message("x"))
    assert await api.error("SearchSnippet/get", emailIds=[email] * 4) == "requestTooLarge"
    assert await api.error("SearchSnippet/get", filter={"text": "x"}) == "invalidArguments"
    assert await api.error("SearchSnippet/get", emailIds=[email],
                           filter={"nosuch": 1}) == "unsupportedFilter"
    assert await api.error("SearchSnippet/get", emailIds=[email],
                           accountId="a999") == "accountNotFound"
    assert await api.error("SearchSnippet/get", emailIds=[email], limit=3) == "invalidArguments"


def test_highlighting_is_built_from_escaped_pieces() -> None:
    assert snippets.marked_subject("<b>x</b> & x", ["x"]) == (
        "&lt;b&gt;<mark>x</mark>&lt;/b&gt; &amp; <mark>x</mark>")
    assert snippets.marked_subject("aaa", ["aa", "a"]) == "<mark>aaa</mark>"  # merged
    assert snippets.marked_preview("no match here", ["zzz"]) is None
    terms = snippets.search_terms({"text": "A" * 1000}, ("text",))
    assert terms == ["a" * snippets.MAX_TERM_CHARS]
