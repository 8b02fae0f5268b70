"""Admin pages for who receives mail (issue 21): domains, accounts, aliases and
catch-alls.

Owns the pages and actions only; every rule is the services' — accounts/service.py (the
email and alias verbs the CLI uses too), accounts/quota.py (quotas), the store's
AccountStateStore (disabled accounts) and WebStore (admin flag, web sessions).

Invariants: a password reset or a disable ends the account's web sessions; deleting an
account asks for its address typed again; an admin cannot disable, demote or delete the
account they are logged in with (no locking oneself out).
"""

from __future__ import annotations

from collections import Counter

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from postroom.accounts.quota import QuotaPolicy, clear_quota, render_size, set_quota
from postroom.config import parse_size
from postroom.mail.address import parse_address
from postroom.mailauth.keys import list_keys
from postroom.web.adminkit import (
    ActionRefused,
    AdminForm,
    admin_action,
    admin_page,
    done,
    paginate,
    query_text,
)
from postroom.web.context import WebContext
from postroom.web.render import render
from postroom.web.sessions import require_admin

ACCOUNTS = "/admin/accounts"
ALIASES = "/admin/aliases"
MAX_QUOTA = 2**50  # 1024T: far above any disk, far below a BIGINT


def routes() -> list[BaseRoute]:
    return [
        admin_page("/admin/domains", domains_page),
        admin_page(ACCOUNTS, accounts_page),
        admin_action(ACCOUNTS + "/create", create_account, ACCOUNTS),
        admin_action(ACCOUNTS + "/password", reset_password, ACCOUNTS),
        admin_action(ACCOUNTS + "/quota", change_quota, ACCOUNTS),
        admin_action(ACCOUNTS + "/state", change_state, ACCOUNTS),
        admin_action(ACCOUNTS + "/delete", delete_account, ACCOUNTS),
        admin_page(ALIASES, aliases_page),
        admin_action(ALIASES + "/create", create_alias, ALIASES),
        admin_action(ALIASES + "/delete", delete_alias, ALIASES),
    ]


# -- domains -------------------------------------------------------------------------------
async def domains_page(request: Request, ctx: WebContext) -> Response:
    store = ctx.runtime.store
    accounts = Counter(summary.address.rpartition("@")[2]
                       for summary in await store.list_accounts())
    aliases = Counter(alias.source.rpartition("@")[2] for alias in await store.list_aliases())
    keys: dict[str, list[str]] = {}
    for key in list_keys(ctx.config.data_dir / "dkim"):
        keys.setdefault(key.domain, []).append(key.selector)
    names = sorted(set(await store.list_domains()) | set(aliases) | set(keys))
    rows = [(name, accounts[name], aliases[name], sorted(keys.get(name, [])))
            for name in names]
    return render(request, "admin_domains.html", section="domains",
                  page=paginate(request, rows))


# -- accounts ------------------------------------------------------------------------------
async def accounts_page(request: Request, ctx: WebContext) -> Response:
    store = ctx.runtime.store
    search = query_text(request).lower()
    policy = QuotaPolicy.from_config(ctx.config)
    quotas = {usage.address: usage for usage in await store.list_quotas()}
    disabled = set(await store.list_disabled_accounts())
    admins = set(await store.list_admins())
    rows = []
    for summary in await store.list_accounts():
        if search and search not in summary.address:
            continue
        usage = quotas.get(summary.address)
        limit = policy.storage_limit(usage.setting.storage if usage else None)
        rows.append({"address": summary.address, "messages": summary.message_count,
                     "size": render_size(summary.total_size),
                     "quota": render_size(limit) if limit else "none",
                     "is_own_quota": usage is not None and usage.setting.storage is not None,
                     "is_disabled": summary.address in disabled,
                     "is_admin": summary.address in admins})
    return render(request, "admin_accounts.html", section="accounts", q=search,
                  page=paginate(request, rows), me=require_admin(request).address)


async def create_account(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    address, password = form.text("address"), form.text("password", strip=False)
    account = await ctx.runtime.accounts.add_account(address, password)
    if form.is_checked("is_admin"):
        await ctx.runtime.store.set_admin(account.address, True)
    detail = "admin" if form.is_checked("is_admin") else ""
    return await done(request, ACCOUNTS, f"Created {account.address}.", "account.create",
                      account.address, detail)


async def reset_password(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    address = _canonical(form.text("address"))
    await ctx.runtime.accounts.update_password(address, form.text("password", strip=False))
    await ctx.runtime.store.delete_web_sessions_of(address)
    return await done(request, ACCOUNTS, f"New password set for {address}.",
                      "account.password", address)


async def change_quota(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    address = _canonical(form.text("address"))
    size = form.text("size", required=False).lower()
    store = ctx.runtime.store
    if await store.get_account(address) is None:
        raise ActionRefused(f"no account {address}")
    if size in {"", "default"}:
        await clear_quota(store, address)
        return await done(request, ACCOUNTS, f"{address} has the default quota again.",
                          "account.quota", address, "default")
    storage = parse_size(size)  # ValueError: shown as it is
    if storage > MAX_QUOTA:
        raise ActionRefused(f"{size}: at most {render_size(MAX_QUOTA)}")
    await set_quota(store, QuotaPolicy.from_config(ctx.config), address, storage)
    shown = render_size(storage) if storage else "no own limit"
    return await done(request, ACCOUNTS, f"Quota of {address}: {shown}.", "account.quota",
                      address, shown)


async def change_state(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    """Disable/enable an account, or grant/revoke the admin role."""
    address = _canonical(form.text("address"))
    change = form.text("change")
    if address == require_admin(request).address and change in {"disable", "revoke"}:
        raise ActionRefused("You cannot lock out the account you are logged in with.")
    if change in {"disable", "enable"}:
        await ctx.runtime.accounts.set_disabled(address, change == "disable")
        if change == "disable":
            await ctx.runtime.store.delete_web_sessions_of(address)
        message = f"{address} is {change}d."
    elif change in {"grant", "revoke"}:
        if await ctx.runtime.store.get_account(address) is None:
            raise ActionRefused(f"no account {address}")
        await ctx.runtime.store.set_admin(address, change == "grant")
        message = (f"{address} is an administrator now." if change == "grant"
                   else f"{address} is no longer an administrator.")
    else:
        raise ActionRefused(f"unknown change {change!r}")
    action = {"disable": "account.disable", "enable": "account.enable",
              "grant": "admin.grant", "revoke": "admin.revoke"}[change]
    return await done(request, ACCOUNTS, message, action, address)


async def delete_account(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    address = _canonical(form.text("address"))
    if form.text("confirm", required=False).lower() != address:
        raise ActionRefused(f"To delete {address}, type its address in the confirmation box.")
    if address == require_admin(request).address:
        raise ActionRefused("You cannot delete the account you are logged in with.")
    await ctx.runtime.store.delete_web_sessions_of(address)
    await ctx.runtime.accounts.delete_account(address)
    return await done(request, ACCOUNTS, f"Deleted {address} and its mail.",
                      "account.delete", address)


# -- aliases -------------------------------------------------------------------------------
async def aliases_page(request: Request, ctx: WebContext) -> Response:
    search = query_text(request).lower()
    aliases = [alias for alias in await ctx.runtime.accounts.list_aliases()
               if not search or search in alias.source or search in alias.target]
    return render(request, "admin_aliases.html", section="aliases", q=search,
                  page=paginate(request, aliases))


async def create_alias(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    alias = await ctx.runtime.accounts.add_alias(form.text("source"), form.text("target"))
    kind = "catch-all" if alias.source.startswith("@") else "alias"
    return await done(request, ALIASES, f"Created {kind} {alias.source} → {alias.target}.",
                      "alias.create", alias.source, alias.target)


async def delete_alias(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    source, target = form.text("source"), form.text("target")
    await ctx.runtime.accounts.delete_alias(source, target)
    return await done(request, ALIASES, f"Deleted {source} → {target}.", "alias.delete",
                      source, target)


def _canonical(address: str) -> str:
    return str(parse_address(address))
