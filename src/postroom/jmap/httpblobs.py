"""JMAP uploads and downloads (issue 23, RFC 8620 §6.1, §6.2).

Owns `handle_upload` (POST /jmap/upload/{accountId}/) and `handle_download`
(GET /jmap/download/{accountId}/{blobId}/{name}?accept=type), which jmap/http.py routes
after authentication, and the sweep of old uploads.

Decisions and invariants:
- An upload streams into the blob store (`BlobStore.writer`) as it arrives and is cut
  off past maxSizeUpload (413: §6.1 leaves the refusal to HTTP); at most
  maxConcurrentUpload run per account at once. It is then a row of `jmap_uploads`, its
  uploader's for at least UPLOAD_TTL; every upload first checks that the account has
  not uploaded more than UPLOAD_ALLOWANCE bytes within UPLOAD_TTL (a disk is finite).
- Sweeping is lazy: an upload sweeps expired uploads (SWEEP_BATCH at most) when the
  last sweep is SWEEP_EVERY old. Expired rows may therefore stay a while where nobody
  uploads (still downloadable: "at least" 24 h); no timer task is needed, and the blob
  of a swept upload is released only when no message, queue entry or other upload
  names it (the store's blob-in-use checks count `jmap_uploads`).
- A download serves a blob the account holds — one of its uploads, or the body of a
  message in one of its mailboxes — or a part of such a message (blobids.py spells the
  id). Anything else, another account's blob included, is 404: "not yours" looks like
  "not there".
- The answer is always an attachment (Content-Disposition, RFC 6266, the name quoted
  and RFC 8187-encoded), so a browser never renders a hostile HTML part on this site;
  its type is the client's `accept` when that is a well-formed media type, else
  application/octet-stream; blobs never change, so `Cache-Control: private, immutable`
  (§6.2's advice).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import urllib.parse

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from postroom.jmap.blobids import parse_blob_id
from postroom.jmap.context import JmapContext, jmap_account_id
from postroom.jmap.emailbody import part_content
from postroom.jmap.errors import RequestError, RequestErrorType
from postroom.jmap.httpanswers import problem, render_request_error
from postroom.mail.mimetree import MessageMeta, parse_message
from postroom.store.api import Account
from postroom.store.jmapuploads_api import JmapUpload

log = logging.getLogger("postroom.jmap")

UPLOAD_TTL = dt.timedelta(hours=24)  # an upload is usable at least this long (§6.1)
UPLOAD_ALLOWANCE = 2 << 30  # bytes one account may upload within UPLOAD_TTL
SWEEP_EVERY = 60.0  # seconds between sweeps of expired uploads
SWEEP_BATCH = 500  # uploads one sweep removes at most
PARSE_ON_LOOP = 128 * 1024  # message bytes a part download decodes on the event loop
MAX_NAME = 255  # characters of a download's file name kept
CACHE_CONTROL = "private, immutable, max-age=31536000"
DEFAULT_TYPE = "application/octet-stream"
_RESTRICTED = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 §4.2 restricted-name
_TYPE = re.compile(rf"{_RESTRICTED}/{_RESTRICTED}")
_CHARSET = re.compile(r"\s*charset\s*=\s*\"?([A-Za-z0-9_.:-]{1,40})\"?\s*", re.IGNORECASE)


def media_type(value: str | None) -> str | None:
    """`value` as "type/subtype", lower case, with its charset parameter if it has a
    well-formed one (other parameters dropped); None when the type is malformed."""
    kind, *parameters = (value or "").split(";")
    kind = kind.strip().lower()
    if not _TYPE.fullmatch(kind):
        return None
    for parameter in parameters:
        charset = _CHARSET.fullmatch(parameter)
        if charset is not None:
            return f"{kind}; charset={charset.group(1)}"
    return kind


def content_disposition(name: str) -> str:
    """attachment with the name twice: plain ASCII for old clients, RFC 8187 UTF-8."""
    cleaned = "".join("_" if char in '/\\"' else char for char in name
                      if char.isprintable())[:MAX_NAME].strip() or "download"
    plain = cleaned.encode("ascii", "replace").decode("ascii").replace("?", "_")
    encoded = urllib.parse.quote(cleaned, safe="")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}"


def _not_found() -> Response:
    return problem(404, "No such blob in this account.")


def _too_large(detail: str) -> Response:
    response = problem(413, detail)
    response.headers["connection"] = "close"  # the unread rest of the body is not skipped
    return response


# -- upload (§6.1) ------------------------------------------------------------------------


async def handle_upload(ctx: JmapContext, request: Request, account: Account) -> Response:
    if request.path_params["accountId"] != jmap_account_id(account.id):
        return _not_found()
    with ctx.uploads.slot(account.id) as is_admitted:
        if not is_admitted:
            error = RequestError(RequestErrorType.LIMIT, "more than"
                                 f" {ctx.limits.max_concurrent_upload} uploads at once",
                                 limit="maxConcurrentUpload")
            return render_request_error(error)
        answer = await _upload(ctx, request, account)
    await sweep_if_due(ctx)
    return answer


async def _upload(ctx: JmapContext, request: Request, account: Account) -> Response:
    limit = ctx.limits.max_size_upload
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        return _too_large(f"uploads are at most {limit} bytes (maxSizeUpload)")
    now = ctx.clock.now()
    used = await ctx.runtime.store.jmap_upload_bytes(account.id, now - UPLOAD_TTL)
    room = UPLOAD_ALLOWANCE - used
    if room <= 0 or (announced.isdigit() and int(announced) > room):
        return _too_large("this account uploaded too much in the last 24 hours")
    stored = await _store_body(ctx, request, min(limit, room))
    if stored is None:
        return _too_large(f"uploads are at most {min(limit, room)} bytes")
    blob_id, size = stored
    kind = media_type(request.headers.get("content-type")) or DEFAULT_TYPE
    await ctx.runtime.store.add_jmap_upload(JmapUpload(account.id, blob_id, kind, size, now))
    log.info("jmap upload account=%s blob=%s size=%d", account.address, blob_id, size)
    # §6.1: the account, the new blob's id, its type and size; 201 as a resource was made
    return JSONResponse({"accountId": jmap_account_id(account.id), "blobId": blob_id,
                         "type": kind, "size": size}, 201)


async def _store_body(ctx: JmapContext, request: Request, cap: int) -> tuple[str, int] | None:
    """The body as a durable blob: (its id, its size); None (nothing kept) past `cap`."""
    writer = ctx.runtime.blobs.writer()
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                await writer.abort()
                return None
            if chunk:
                await writer.write(chunk)
        return await writer.commit(), size
    except BaseException:
        await writer.abort()
        raise


async def sweep_if_due(ctx: JmapContext) -> None:
    """Remove uploads older than UPLOAD_TTL, when the last sweep is SWEEP_EVERY old."""
    moment = time.monotonic()
    if moment - ctx.uploads_swept_at < SWEEP_EVERY:
        return
    ctx.uploads_swept_at = moment
    try:
        swept = await ctx.runtime.store.expire_jmap_uploads(ctx.clock.now() - UPLOAD_TTL,
                                                            SWEEP_BATCH)
    except Exception:  # the next upload tries again; the upload itself succeeded
        log.exception("jmap: sweeping old uploads failed")
        return
    if swept:
        log.info("jmap: %d upload(s) older than %s swept", swept, UPLOAD_TTL)


# -- download (§6.2) ----------------------------------------------------------------------


async def handle_download(ctx: JmapContext, request: Request, account: Account) -> Response:
    if request.path_params["accountId"] != jmap_account_id(account.id):
        return _not_found()
    parsed = parse_blob_id(request.path_params["blobId"])
    if parsed is None:
        return _not_found()
    blob_id, part_id = parsed
    if part_id is None:
        data = await _whole_blob(ctx, account, blob_id)
    else:
        data = await _part_blob(ctx, account, blob_id, part_id)
    if data is None:
        return _not_found()
    kind = media_type(request.query_params.get("accept")) or DEFAULT_TYPE
    # Content-Type as a header, not media_type: Starlette would add a charset to text/*.
    return Response(data, headers={
        "content-type": kind, "cache-control": CACHE_CONTROL,
        "content-disposition": content_disposition(request.path_params["name"])})


async def _whole_blob(ctx: JmapContext, account: Account, blob_id: str) -> bytes | None:
    if not await ctx.runtime.store.account_holds_blob(account.id, blob_id):
        return None
    try:
        return await ctx.runtime.blobs.read(blob_id)
    except FileNotFoundError:  # expunged and released since the check
        return None


async def _part_blob(ctx: JmapContext, account: Account, blob_id: str,
                     part_id: str) -> bytes | None:
    meta_text = await ctx.runtime.store.message_meta_for_blob(account.id, blob_id)
    if meta_text is None:
        return None
    try:
        raw = await ctx.runtime.blobs.read(blob_id)
    except FileNotFoundError:
        return None
    if len(raw) <= PARSE_ON_LOOP:
        return _decoded_part(raw, meta_text, part_id)
    return await asyncio.to_thread(_decoded_part, raw, meta_text, part_id)


def _decoded_part(raw: bytes, meta_text: str, part_id: str) -> bytes | None:
    try:
        meta = MessageMeta.from_json(meta_text)
    except (ValueError, KeyError, TypeError, IndexError):  # none stored (old rows): parse
        meta = parse_message(raw)
    return part_content(raw, meta, part_id)
