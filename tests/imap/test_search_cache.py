"""The SEARCH content cache (issue 8): search content by blob id, bounded, LRU."""

from __future__ import annotations

from postroom.imap.commands.search import ContentCache, _Content


def content(header: bytes, body: str | None = None) -> _Content:
    return _Content(header=header, body_text=body)


def test_header_only_content_does_not_answer_a_body_search() -> None:
    cache = ContentCache(max_chars=10_000)
    cache.put("a", content(b"Subject: x\r\n\r\n"))
    assert cache.get("a", with_body=False) is not None
    assert cache.get("a", with_body=True) is None
    full = content(b"Subject: x\r\n\r\n", "hello")
    cache.put("a", full)
    assert cache.get("a", with_body=True) is full
    assert cache.get("a", with_body=False) is full


def test_least_recently_used_goes_first_when_over_the_bound() -> None:
    cache = ContentCache(max_chars=8 * 100)  # each entry below costs 2 * 50 = 100
    for name in "abcdefgh":
        cache.put(name, content(b"h" * 10, "b" * 40))
    assert cache.get("a", with_body=True) is not None  # now the most recently used
    cache.put("i", content(b"h" * 10, "b" * 40))
    assert cache.get("b", with_body=True) is None  # the oldest unused one went
    assert all(cache.get(name, with_body=True) is not None for name in "acdefghi")


def test_a_message_too_big_for_the_cache_is_not_kept() -> None:
    cache = ContentCache(max_chars=800)
    cache.put("small", content(b"h", "b"))
    cache.put("huge", content(b"h" * 100, "b" * 100))  # more than an eighth of the bound
    assert cache.get("huge", with_body=True) is None
    assert cache.get("small", with_body=True) is not None


def test_folded_texts_are_computed_once_and_match_case_insensitively() -> None:
    item = content(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n", "Hello WORLD")
    assert item.folded_body() == "hello world"
    assert item.folded_body() is item.folded_body()
    assert "grüsse" in item.folded_header()  # RFC 2047 decoded, then case-folded
