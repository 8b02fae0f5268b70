"""Recipient resolution against the real store: accounts, aliases, catch-all, loops."""

from __future__ import annotations

import pytest

from postroom.accounts.passwords import hash_password
from postroom.delivery import recipients
from postroom.delivery.local import deliver_local
from postroom.delivery.recipients import resolve_recipient
from postroom.errors import TryLater
from postroom.runtime import Runtime


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password("pw")  # once: argon2 per test would dominate the run time


@pytest.fixture
async def world(runtime: Runtime, password_hash: str) -> Runtime:
    for address in ("a@x.test", "b@x.test", "c@y.test"):
        await runtime.store.create_account(address, password_hash)
    store = runtime.store
    await store.add_alias("team@x.test", "a@x.test")
    await store.add_alias("team@x.test", "b@x.test")
    await store.add_alias("nested@x.test", "team@x.test")
    await store.add_alias("nested@x.test", "a@x.test")  # duplicate via two paths
    await store.add_alias("mixed@x.test", "c@y.test")
    await store.add_alias("mixed@x.test", "friend@remote.example")
    await store.add_alias("loop1@x.test", "loop2@x.test")
    await store.add_alias("loop2@x.test", "loop1@x.test")
    await store.add_alias("@y.test", "c@y.test")
    await store.add_alias("exact@y.test", "a@x.test")
    return runtime


async def addresses(runtime: Runtime, address: str) -> tuple[list[str], list[str]]:
    resolution = await resolve_recipient(runtime.store, address)
    return sorted(t.address for t in resolution.local), list(resolution.remote)


async def test_account_is_itself(world: Runtime) -> None:
    assert await addresses(world, "A@X.Test") == (["a@x.test"], [])


async def test_alias_targets_recursive_and_deduplicated(world: Runtime) -> None:
    assert await addresses(world, "team@x.test") == (["a@x.test", "b@x.test"], [])
    assert await addresses(world, "nested@x.test") == (["a@x.test", "b@x.test"], [])


async def test_alias_with_remote_target(world: Runtime) -> None:
    assert await addresses(world, "mixed@x.test") == (["c@y.test"], ["friend@remote.example"])


async def test_catch_all_only_without_account_or_exact_alias(world: Runtime) -> None:
    assert await addresses(world, "whatever@y.test") == (["c@y.test"], [])
    assert await addresses(world, "exact@y.test") == (["a@x.test"], [])


async def test_loop_and_unknown(world: Runtime) -> None:
    loop = await resolve_recipient(world.store, "loop1@x.test")
    assert loop.is_unknown
    unknown = await resolve_recipient(world.store, "nobody@x.test")
    assert unknown.is_unknown and unknown.is_local_domain


async def test_depth_limit(world: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(5):
        await world.store.add_alias(f"d{n}@x.test", f"d{n + 1}@x.test")
    await world.store.add_alias("d5@x.test", "a@x.test")
    assert await addresses(world, "d0@x.test") == (["a@x.test"], [])
    monkeypatch.setattr(recipients, "MAX_ALIAS_DEPTH", 3)
    assert (await resolve_recipient(world.store, "d0@x.test")).is_unknown


async def test_remote_and_non_local_forms(world: Runtime) -> None:
    remote = await resolve_recipient(world.store, "someone@remote.example")
    assert remote.is_remote and remote.remote == ("someone@remote.example",)
    assert (await resolve_recipient(world.store, "a@[127.0.0.1]")).is_remote
    for trick in ("a%remote.example@x.test", "a!b@x.test", '"a b"@x.test'):
        assert (await resolve_recipient(world.store, trick)).is_unknown, trick


async def test_deliver_local_falls_back_to_inbox(world: Runtime) -> None:
    account = await world.store.get_account("a@x.test")
    assert account is not None
    blob = await world.blobs.put(b"Subject: x\r\n\r\nbody\r\n")
    junk = await deliver_local(world.store, account.id, blob, 22, "", mailbox="Junk")
    missing = await deliver_local(world.store, account.id, blob, 22, "", mailbox="Nope",
                                  flags=frozenset({"\\Seen"}))
    inbox = await world.store.get_mailbox(account.id, "INBOX")
    junk_box = await world.store.get_mailbox(account.id, "Junk")
    assert inbox is not None and junk_box is not None
    assert junk.mailbox_id == junk_box.id
    assert missing.mailbox_id == inbox.id and missing.flags == frozenset({"\\Seen"})
    with pytest.raises(TryLater):
        await deliver_local(world.store, 999_999, blob, 22, "")
