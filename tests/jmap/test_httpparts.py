"""The pure parts of JMAP over HTTP (issue 23): accountIds, blobIds of messages and
parts, download names (RFC 6266/8187) and media types (RFC 6838), the per-account gate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.jmap.blobids import parse_blob_id, part_blob_id
from postroom.jmap.context import ConcurrencyGate, jmap_account_id, parse_jmap_account_id
from postroom.jmap.httpblobs import content_disposition, media_type
from postroom.jmap.types import is_id

PART_IDS = st.lists(st.integers(1, 10**6), min_size=1, max_size=8).map(
    lambda numbers: ".".join(map(str, numbers)))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**63 - 1))
def test_account_ids_round_trip_and_are_jmap_ids(number: int) -> None:
    text = jmap_account_id(number)
    assert is_id(text) and parse_jmap_account_id(text) == number


@pytest.mark.parametrize("text", ["", "a", "b1", "a01", "aZ", "a-1", "a" + "z" * 14])
def test_other_texts_name_no_account(text: str) -> None:
    assert parse_jmap_account_id(text) is None


@settings(max_examples=200, deadline=None)
@given(st.text("0123456789abcdef", min_size=32, max_size=32), st.booleans(), PART_IDS)
def test_part_blob_ids_round_trip_and_are_jmap_ids(hex_id: str, inline: bool,
                                                   part: str) -> None:
    blob = ("i" if inline else "") + hex_id
    text = part_blob_id(blob, part)
    assert is_id(text)
    assert parse_blob_id(text) == (blob, part)
    assert parse_blob_id(blob) == (blob, None)


@pytest.mark.parametrize("text", ["", "_1", "abc_", "abc_0", "abc_1.2", "abc_1--2",
                                  "ab-c", "abc_1_2", "x" * 201])
def test_malformed_blob_ids_name_nothing(text: str) -> None:
    assert parse_blob_id(text) is None


@pytest.mark.parametrize(("given_name", "header"), [
    ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
    ("été.txt", "attachment; filename=\"_t_.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt"),
    ('a"b\\c/d\r\n.txt', "attachment; filename=\"a_b_c_d.txt\"; filename*=UTF-8''a_b_c_d.txt"),
    ("", "attachment; filename=\"download\"; filename*=UTF-8''download"),
])
def test_download_names_are_quoted_and_encoded(given_name: str, header: str) -> None:
    assert content_disposition(given_name) == header


@pytest.mark.parametrize(("value", "expected"), [
    ("image/PNG", "image/png"),
    ("text/plain; charset=UTF-8", "text/plain; charset=UTF-8"),
    ('text/plain; format=flowed; charset="us-ascii"', "text/plain; charset=us-ascii"),
    ("application/vnd.ms-excel", "application/vnd.ms-excel"),
    ("text/html; charset=<x>", "text/html"),
    ("<script>", None), ("text", None), ("text/", None), ("a/b/c", None), ("", None),
    (None, None),
])
def test_media_types_are_checked(value: str | None, expected: str | None) -> None:
    assert media_type(value) == expected


def test_the_gate_counts_per_account_and_forgets_idle_ones() -> None:
    gate = ConcurrencyGate(2)
    with gate.slot(1) as first, gate.slot(1) as second, gate.slot(1) as third:
        assert (first, second, third) == (True, True, False)
        with gate.slot(2) as other:
            assert other
    with gate.slot(1) as again:
        assert again
    assert gate._busy == {}
