"""What every admin page shares (issue 21): the admin-only route, pagination, and the
shape of an action — CSRF-checked form, the change, the audit entry, a redirect.

Owns `admin_page` (GET: require_admin, then the page), `admin_action` (POST: require_admin,
`checked_form`, the change; a refused change comes back as an error message on the page
it came from, never a traceback), `paginate` and the form readers.

Invariants: no admin change happens without a matching CSRF token and an audit entry
(the action's `audit` call runs only after the change succeeded); every list an admin
page shows is cut into pages of at most PAGE_SIZE rows; every form field read is capped
at MAX_FIELD characters (a longer one is refused, not cut).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from postroom.errors import PostroomError
from postroom.web.audit import audit
from postroom.web.context import WebContext, context
from postroom.web.forms import checked_form
from postroom.web.render import redirect
from postroom.web.sessions import require_admin

log = logging.getLogger("postroom.web.admin")
T = TypeVar("T")
PAGE_SIZE = 50
MAX_FIELD = 1024  # characters of one form field (the longest password: accounts/service.py)
MAX_QUERY = 200  # characters of a search box

Page = Callable[[Request, WebContext], Awaitable[Response]]
Action = Callable[[Request, WebContext, "AdminForm"], Awaitable[Response]]


class ActionRefused(Exception):
    """An admin action that cannot be done as asked; its text is shown on the page."""


@dataclass(frozen=True, slots=True)
class Paged(Generic[T]):
    items: Sequence[T]
    page: int
    pages: int
    total: int


def paginate(request: Request, items: Sequence[T]) -> Paged[T]:
    """The page `?page=N` (1-based, clamped) of `items`."""
    pages = max(1, math.ceil(len(items) / PAGE_SIZE))
    try:
        page = int(request.query_params.get("page", "1")[:9])
    except ValueError:
        page = 1
    page = min(max(page, 1), pages)
    start = (page - 1) * PAGE_SIZE
    return Paged(items[start:start + PAGE_SIZE], page, pages, len(items))


def query_text(request: Request, name: str = "q") -> str:
    return request.query_params.get(name, "")[:MAX_QUERY].strip()


class AdminForm:
    """A checked form's fields, each a stripped string capped at MAX_FIELD."""

    def __init__(self, form: FormData) -> None:
        self._form = form

    def text(self, name: str, *, required: bool = True, strip: bool = True) -> str:
        value = self._form.get(name)
        text = value if isinstance(value, str) else ""
        if len(text) > MAX_FIELD:  # refused, never cut: a cut password would be wrong
            raise ActionRefused(f"{name.replace('_', ' ')}: at most {MAX_FIELD} characters")
        text = text.strip() if strip else text
        if required and not text:
            raise ActionRefused(f"{name.replace('_', ' ')}: this field is required")
        return text

    def is_checked(self, name: str) -> bool:
        return self._form.get(name) not in (None, "", "0")


def admin_page(path: str, page: Page) -> Route:
    """A GET page for administrators only (logged out: /login; a user: 403)."""
    async def endpoint(request: Request) -> Response:
        require_admin(request)
        return await page(request, context(request))
    return Route(path, endpoint, methods=["GET"])


def admin_action(path: str, action: Action, back: str | Callable[[AdminForm], str]
                 ) -> Route:
    """A POST action for administrators: CSRF checked before any field is read; a
    refusal (ours, or the services' BadSyntax/Refused/NotFound) goes back to `back`
    (a path, or one made from the form) as an error message."""
    async def endpoint(request: Request) -> Response:
        require_admin(request)
        form = AdminForm(await checked_form(request))
        try:
            return await action(request, context(request), form)
        except (ActionRefused, PostroomError, ValueError) as error:
            url = back if isinstance(back, str) else back(form)
            return redirect(url, str(error) or type(error).__name__, "error")
    return Route(path, endpoint, methods=["POST"])


async def done(request: Request, back: str, message: str, action: str, target: str,
               detail: str = "") -> Response:
    """After a change succeeded: its audit entry, then the page `back` with `message`."""
    await audit(request, action, target, detail)
    return redirect(back, message)
