from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.mail.utf7 import Utf7Error, decode_utf7, encode_utf7

VECTORS = [
    ("&Jjo-!", "☺!"),
    ("Entw&APw-rfe", "Entwürfe"),
    ("&-", "&"),
    ("A&-B", "A&B"),
    ("INBOX", "INBOX"),
    ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),
    ("&2D3eAA-", "\U0001f600"),  # surrogate pair
    ("", ""),
]


@pytest.mark.parametrize(("wire", "text"), VECTORS)
def test_known_vectors_both_ways(wire: str, text: str) -> None:
    assert decode_utf7(wire) == text
    assert encode_utf7(text) == wire


@pytest.mark.parametrize(
    "bad",
    [
        "&Jjo",  # unterminated
        "&Jjo-&AGE-",  # adjacent runs must be merged (and AGE encodes "a")
        "&AGE-",  # printable ASCII encoded in base64
        "&Jj=-",  # padding
        "&Jj/-",  # "/" instead of ","
        "&Jjp-",  # non-zero leftover bits
        "&2D0-",  # lone high surrogate
        "&AA-",  # odd byte count
        "ü",  # raw 8-bit
        "a\tb",  # control character
        "&Jjo!-",  # invalid base64 char
    ],
)
def test_strict_decoding_rejects(bad: str) -> None:
    with pytest.raises(Utf7Error):
        decode_utf7(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_round_trip(text: str) -> None:
    assert decode_utf7(encode_utf7(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_decode_only_raises_utf7error(text: str) -> None:
    with contextlib.suppress(Utf7Error):
        decode_utf7(text)
