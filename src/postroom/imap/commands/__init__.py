"""IMAP command handlers, one module per command family, and the dispatch table.

Owns `HANDLERS`: command dataclass → `async handler(ctx, command) -> Done`. STARTTLS and
IDLE are not here: they move bytes in ways only the session driver can (TLS upgrade,
waiting on the socket and the change feed at once), so `imap/session.py` runs them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from postroom.imap.commands import (
    append,
    auth,
    copymove,
    expunge,
    fetch,
    mailboxes,
    misc,
    search,
    select,
    store,
)
from postroom.imap.commands.context import Context, Done
from postroom.imap.wire import commands as c

Handler = Callable[[Context, Any], Awaitable[Done]]

HANDLERS: dict[type[c.Command], Handler] = {
    c.Capability: misc.handle_capability,
    c.Noop: misc.handle_noop,
    c.Check: misc.handle_noop,
    c.Logout: misc.handle_logout,
    c.Id: misc.handle_id,
    c.Enable: misc.handle_enable,
    c.Namespace: misc.handle_namespace,
    c.Login: auth.handle_login,
    c.Authenticate: auth.handle_authenticate,
    c.Select: select.handle_select,
    c.Examine: select.handle_select,
    c.Close: select.handle_close,
    c.Unselect: select.handle_close,
    c.Create: mailboxes.handle_create,
    c.Delete: mailboxes.handle_delete,
    c.Rename: mailboxes.handle_rename,
    c.Subscribe: mailboxes.handle_subscribe,
    c.Unsubscribe: mailboxes.handle_subscribe,
    c.List: mailboxes.handle_list,
    c.Lsub: mailboxes.handle_lsub,
    c.Status: mailboxes.handle_status,
    c.Append: append.handle_append,
    c.Expunge: expunge.handle_expunge,
    c.UidExpunge: expunge.handle_expunge,
    c.Search: search.handle_search,
    c.Fetch: fetch.handle_fetch,
    c.Store: store.handle_store,
    c.Copy: copymove.handle_copy,
    c.Move: copymove.handle_copy,
}

# RFC 9051 §7.5.1: no EXPUNGE while answering these (their numbers must stay valid).
NO_EXPUNGE_DURING = (c.Fetch, c.Store, c.Search)

__all__ = ["HANDLERS", "NO_EXPUNGE_DURING", "Context", "Done"]
