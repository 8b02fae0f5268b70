"""The verified-login cache on its own: hits only for the same password and the same stored
hash within the TTL, LRU bound, off switch, and the AUTH_CACHE_* keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.accounts.authcache import AuthCache
from postroom.clock import ManualClock
from postroom.config import ConfigError, load_config

USER = "user@example.test"
HASH = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


def test_hit_needs_the_same_password_and_the_same_stored_hash() -> None:
    cache = AuthCache(3600, 10, ManualClock())
    assert not cache.is_verified(USER, HASH, "secret")  # nothing remembered yet
    cache.remember(USER, HASH, "secret")
    assert cache.is_verified(USER, HASH, "secret")
    assert not cache.is_verified(USER, HASH, "Secret")
    assert not cache.is_verified("other@example.test", HASH, "secret")
    assert cache.is_verified(USER, HASH, "secret")  # a wrong guess does not evict the entry
    # The password changed (another process, or `email update`): the entry is dead.
    assert not cache.is_verified(USER, HASH + "x", "secret")
    assert not cache.is_verified(USER, HASH, "secret")
    assert len(cache) == 0


def test_entries_expire_after_the_ttl_and_hits_do_not_extend_them() -> None:
    clock = ManualClock()
    cache = AuthCache(60, 10, clock)
    cache.remember(USER, HASH, "secret")
    clock.advance(59)
    assert cache.is_verified(USER, HASH, "secret")
    clock.advance(1)
    assert not cache.is_verified(USER, HASH, "secret")
    assert len(cache) == 0


def test_least_recently_used_entry_goes_first() -> None:
    cache = AuthCache(3600, 2, ManualClock())
    cache.remember("a@example.test", HASH, "pa")
    cache.remember("b@example.test", HASH, "pb")
    assert cache.is_verified("a@example.test", HASH, "pa")  # a is now the most recent
    cache.remember("c@example.test", HASH, "pc")
    assert len(cache) == 2
    assert not cache.is_verified("b@example.test", HASH, "pb")
    assert cache.is_verified("a@example.test", HASH, "pa")
    assert cache.is_verified("c@example.test", HASH, "pc")


def test_forget_drops_an_entry() -> None:
    cache = AuthCache(3600, 10, ManualClock())
    cache.remember(USER, HASH, "secret")
    cache.forget(USER)
    cache.forget(USER)  # forgetting twice is harmless
    assert not cache.is_verified(USER, HASH, "secret")


@pytest.mark.parametrize(("ttl", "size"), [(0, 10), (3600, 0)])
def test_zero_turns_the_cache_off(ttl: int, size: int) -> None:
    cache = AuthCache(ttl, size, ManualClock())
    assert not cache.is_enabled
    cache.remember(USER, HASH, "secret")
    assert len(cache) == 0
    assert not cache.is_verified(USER, HASH, "secret")


def test_the_password_is_not_kept_and_keys_differ_per_process() -> None:
    password = "a rather distinctive password"
    first, second = AuthCache(3600, 10), AuthCache(3600, 10)
    first.remember(USER, HASH, password)
    second.remember(USER, HASH, password)
    held = [vars(first)] + [
        {name: getattr(entry, name) for name in entry.__slots__}
        for entry in first._entries.values()
    ]
    assert password not in repr(held)
    assert password.encode() not in repr(held).encode()
    # Each cache (each process) has its own random key: digests are not comparable.
    assert first._entries[USER].digest != second._entries[USER].digest
    assert not second.is_verified(USER, HASH, "guess")


def test_config_keys(tmp_path: Path) -> None:
    defaults = load_config(_env(tmp_path, ""), {}).config
    assert (defaults.auth_cache_ttl, defaults.auth_cache_size) == (3600, 10_000)
    config = load_config(_env(tmp_path, "AUTH_CACHE_TTL=15m\nAUTH_CACHE_SIZE=50\n"), {}).config
    assert (config.auth_cache_ttl, config.auth_cache_size) == (900, 50)
    cache = AuthCache.from_config(config)
    assert cache.is_enabled
    off = load_config(_env(tmp_path, "AUTH_CACHE_TTL=0\n"), {}).config
    assert not AuthCache.from_config(off).is_enabled


@pytest.mark.parametrize(("line", "key"), [
    ("AUTH_CACHE_TTL=-5", "AUTH_CACHE_TTL"),
    ("AUTH_CACHE_TTL=soon", "AUTH_CACHE_TTL"),
    ("AUTH_CACHE_SIZE=-1", "AUTH_CACHE_SIZE"),
    ("AUTH_CACHE_SIZE=many", "AUTH_CACHE_SIZE"),
])
def test_bad_values_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^config: {key}:"):
        load_config(_env(tmp_path, line + "\n"), {})


def _env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "postroom.env"
    path.write_text(text)
    return path
