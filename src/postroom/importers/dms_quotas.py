"""docker-mailserver's `config/dovecot-quotas.cf` (`setup quota set`), for the importer
(issue 17).

Owns reading `user@domain:2G` lines (the size as Dovecot reads it: bytes, or K/M/G/T
binary units, `config.parse_size`) and applying one account's quota after its mail is
in, with the note the report gets when the imported mail is over the quota. The import
never drops mail for a quota: a user over it receives no new mail until they make room,
and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from postroom.accounts.quota import QuotaPolicy, Room, render_size, set_quota
from postroom.config import parse_size
from postroom.errors import BadSyntax
from postroom.mail.address import parse_address
from postroom.store.api import Store

QUOTAS_FILE = "dovecot-quotas.cf"
Skip = Callable[[str, str], None]  # (where, reason) into the import report


@dataclass(frozen=True, slots=True)
class SourceQuota:
    address: str
    storage: int  # bytes; 0: no limit of its own
    where: str


def parse_quotas(lines: Iterable[tuple[str, str]], skip: Skip) -> dict[str, SourceQuota]:
    """address → quota from (`where`, line) pairs; bad or repeated lines are skipped."""
    quotas: dict[str, SourceQuota] = {}
    for where, line in lines:
        address_text, _, size_text = line.rpartition(":")
        try:
            if not address_text:
                raise BadSyntax("expected user@domain:SIZE (e.g. user@example.com:2G)")
            address = str(parse_address(address_text.strip()))
            storage = parse_size(size_text)
        except (BadSyntax, ValueError) as error:
            skip(where, str(error))
            continue
        if address in quotas:
            skip(where, f"{address} appears again (first at {quotas[address].where})")
            continue
        quotas[address] = SourceQuota(address, storage, where)
    return quotas


async def import_quota(store: Store, policy: QuotaPolicy, quota: SourceQuota,
                       account_id: int | None, skip: Skip, *,
                       is_dry_run: bool) -> bool | None:  # fmt: skip
    """Give the account `quota` (`account_id` None: a new account in a dry run). True
    when set (or it would be), False when it was already, None when refused (noted)."""
    messages = None
    if account_id is not None:
        setting = (await store.account_quota(account_id)).setting
        if setting.storage == quota.storage:
            return False
        messages = setting.messages
    if policy.cap and quota.storage > policy.cap:
        skip(quota.where, f"quota not imported: {render_size(quota.storage)} is above "
                          f"POSTFIX_MAILBOX_SIZE_LIMIT ({render_size(policy.cap)})")
        return None
    if account_id is not None and not is_dry_run:
        await set_quota(store, policy, quota.address, quota.storage, messages)
    return True


async def note_over_quota(store: Store, policy: QuotaPolicy, account_id: int, where: str,
                          skip: Skip) -> None:  # fmt: skip
    """Report an account whose imported mail is over its quota (imported all the same)."""
    room = Room(await store.account_quota(account_id), policy)
    if not room.is_over:
        return
    limits = [render_size(room.storage_limit)] if room.storage_limit else []
    limits += [f"{room.message_limit} messages"] if room.message_limit else []
    skip(where, f"over its quota ({', '.join(limits)}) after the import: it holds "
                f"{render_size(room.usage.size)} in {room.usage.messages} messages. All its "
                "mail was imported, but new mail is refused until it is under the quota "
                "(`postroom quota set` raises it)")
