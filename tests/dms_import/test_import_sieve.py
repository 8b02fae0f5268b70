"""Issue 19 on import: each user's Sieve scripts (ManageSieve's `home/sieve/`, the active
one named by `.dovecot.sieve`, or docker-mailserver's `config/USER.dovecot.sieve`) and the
global before/after scripts come over; broken ones are reported; re-imports add nothing."""

from __future__ import annotations

from pathlib import Path

from postroom.importers.dms_import import import_docker_mailserver
from postroom.importers.dms_sieve import SieveLimits
from postroom.runtime import Runtime
from tests.dms_import.dms_folder import ALICE, ALICE_PW, BOB, BOB_PW, sha512_crypt


def build_source(root: Path) -> Path:
    config = root / "config"
    config.mkdir(parents=True)
    (config / "postfix-accounts.cf").write_text(
        f"{ALICE}|{{SHA512-CRYPT}}{sha512_crypt(ALICE_PW, 'Ab3dE6gH')}\n"
        f"{BOB}|{{SHA512-CRYPT}}{sha512_crypt(BOB_PW, 'xYz09876')}\n")
    (config / "before.dovecot.sieve").write_text(
        'require "fileinto";\nif header :contains "X-Spam" "Yes" { fileinto "Junk"; stop; }\n')
    (config / "after.dovecot.sieve").write_text("keep;\n")
    local, _, domain = ALICE.partition("@")
    home = root / "mail-data" / domain / local / "home"
    (home / "sieve").mkdir(parents=True)
    (home / "sieve" / "lists.sieve").write_text('require "fileinto";\nfileinto "Lists";\n')
    (home / "sieve" / "spare.sieve").write_text("discard;\n")
    (home / "sieve" / "broken.sieve").write_text('fileinto "x";\n')  # no require
    (home / ".dovecot.sieve").symlink_to("sieve/lists.sieve")
    bob_local = BOB.partition("@")[0]
    (root / "mail-data" / domain / bob_local).mkdir(parents=True)
    (config / f"{BOB}.dovecot.sieve").write_text('require "vacation";\nvacation "away";\n')
    return root


async def test_scripts_come_over_with_the_active_one(tmp_path: Path, runtime: Runtime) -> None:
    source = build_source(tmp_path / "dms")
    store = runtime.store
    report = await import_docker_mailserver(source, store, runtime.blobs, tmp_path / "keys",
                                            sieve=SieveLimits(scripts=20))  # fmt: skip
    alice = await store.get_account(ALICE)
    bob = await store.get_account(BOB)
    assert alice is not None and bob is not None
    listed = await store.list_sieve_scripts(alice.id)
    assert [(info.name, info.is_active) for info in listed] == [("lists", True),
                                                                ("spare", False)]
    assert await store.active_sieve_script(bob.id) == ("main", 'require "vacation";\n'
                                                               'vacation "away";\n')
    assert await store.get_global_sieve_script("before") is not None
    assert await store.get_global_sieve_script("after") == "keep;\n"
    assert report.sieve_scripts.new == 5
    broken = [item for item in report.skipped if item.where.endswith("broken.sieve")]
    assert broken and "line 1, column 1" in broken[0].reason
    again = await import_docker_mailserver(source, store, runtime.blobs, tmp_path / "keys")
    assert (again.sieve_scripts.new, again.sieve_scripts.present) == (0, 5)


async def test_script_limits_are_respected(tmp_path: Path, runtime: Runtime) -> None:
    source = build_source(tmp_path / "dms")
    report = await import_docker_mailserver(source, runtime.store, runtime.blobs,
                                            tmp_path / "keys",
                                            sieve=SieveLimits(scripts=1, script_size=30))
    alice = await runtime.store.get_account(ALICE)
    assert alice is not None
    listed = await runtime.store.list_sieve_scripts(alice.id)
    assert [info.name for info in listed] == ["spare"]  # lists.sieve is over 30 bytes
    reasons = " ".join(item.reason for item in report.skipped)
    assert "SIEVE_MAX_SCRIPT_SIZE" in reasons
