"""Admin pages of the outbound queue (issue 21): the list, one message's header and each
recipient's last error, retry now, and delete without a bounce.

Owns the pages and actions only; the verbs are outbound/admin.py's (`postroom queue
list|flush|delete`). A retry makes the message due and wakes this process's queue worker;
a row a worker has leased right now is left to it (outbound/admin.py's invariant).

Invariants: a message's header is read from its blob capped at MAX_HEADER_BYTES and
shown escaped, its body never; message ids in paths are capped and looked up, never
used as file names.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from postroom.mail.headers import parse_header_fields, split_message, unfold
from postroom.outbound.admin import delete_queued, flush_queue, list_queued
from postroom.store.errors import StorageFailure
from postroom.web.adminkit import ActionRefused, AdminForm, admin_action, admin_page, done, paginate
from postroom.web.context import WebContext
from postroom.web.render import render

QUEUE = "/admin/queue"
MAX_HEADER_BYTES = 64 * 1024
MAX_FIELDS = 200
MAX_ID = 200


def routes() -> list[BaseRoute]:
    return [admin_page(QUEUE, queue_page), admin_page(QUEUE + "/message", message_page),
            admin_action(QUEUE + "/retry", retry, QUEUE),
            admin_action(QUEUE + "/delete", delete, QUEUE)]


async def queue_page(request: Request, ctx: WebContext) -> Response:
    queued = await list_queued(ctx.runtime.store)
    return render(request, "admin_queue.html", section="queue",
                  page=paginate(request, queued), recipients=sum(
                      len(message.recipients) for message in queued))


async def message_page(request: Request, ctx: WebContext) -> Response:
    message_id = request.query_params.get("id", "")[:MAX_ID]
    entries = [entry for entry in await ctx.runtime.store.list_queue()
               if entry.message_id == message_id]
    if not entries:
        return render(request, "admin_queue_message.html", status_code=404,
                      section="queue", message_id=message_id, entries=[], fields=[],
                      problem="This message is no longer in the queue.")
    fields, problem = await _header_fields(ctx, entries[0].blob_id)
    return render(request, "admin_queue_message.html", section="queue",
                  message_id=message_id, entries=entries, fields=fields, problem=problem)


async def _header_fields(ctx: WebContext, blob_id: str) -> tuple[list[tuple[str, str]], str]:
    try:
        raw = await ctx.runtime.blobs.read(blob_id, limit=MAX_HEADER_BYTES)
    except (OSError, StorageFailure) as error:
        return [], f"The message could not be read: {error}"
    header, _ = split_message(raw)
    fields = [(field.name, unfold(field.value))
              for field in parse_header_fields(header)[:MAX_FIELDS] if field.name]
    return fields, ""


async def retry(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    message_id = form.text("message_id", required=False)[:MAX_ID] or None
    changed = await flush_queue(ctx.runtime.store, ctx.clock, message_id)
    if ctx.queue is not None:
        ctx.queue.kick()
    what = message_id or "every queued message"
    if message_id is not None and changed == 0:
        raise ActionRefused(f"{message_id} is not waiting (delivered, deleted, or being"
                            " delivered right now).")
    return await done(request, QUEUE, f"Retrying {what} now ({changed} recipient(s)).",
                      "queue.retry", message_id or "*", f"{changed} recipient(s)")


async def delete(request: Request, ctx: WebContext, form: AdminForm) -> Response:
    message_id = form.text("message_id")[:MAX_ID]
    removed = await delete_queued(ctx.runtime.store, message_id)
    if removed == 0:
        raise ActionRefused(f"no queued message {message_id}")
    return await done(request, QUEUE, f"Deleted {message_id} ({removed} recipient(s)),"
                      " no bounce sent.", "queue.delete", message_id,
                      f"{removed} recipient(s)")
