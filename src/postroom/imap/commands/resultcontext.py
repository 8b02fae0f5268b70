"""CONTEXT=SEARCH and CONTEXT=SORT result contexts (RFC 5267 §4): SEARCH/SORT RETURN
(UPDATE) keeps the result live, and the session tells the client how it changes with
unsolicited `* ESEARCH (TAG "t") [UID] ADDTO (pos set) / REMOVEFROM (pos set)`.

Owns `ResultContexts` (one per session and selected mailbox, on `Context.result_contexts`)
and `ResultContext` (one command's live result).

Invariants:
- A session holds at most MAX_UPDATE_CONTEXTS; past it the command is answered in full,
  with an untagged `NO [NOUPDATE "tag"]`, and nothing is kept (RFC 5267 §4.3.1). UPDATE
  with the tag of a live context is BAD (§4.3, tag reuse).
- Contexts belong to the mailbox selected when they were made: selecting again (or
  CLOSE/UNSELECT) ends them all (§4.3).
- Updates go out with the session's other untagged updates (`Context.send_updates`) and
  only when EXPUNGE may be sent, so the sequence numbers they name are the client's:
  REMOVEFROM for messages being expunged before their EXPUNGE (`send_removals`, §4.3.4),
  everything else after EXPUNGE/EXISTS/FETCH (`send`, §4.3.3: ADDTO after EXISTS).
  Nothing is recomputed unless the view changed (its MODSEQ baseline, size or pending
  expunges).
- Positions (§4.3.3, §4.3.4): 0 for SEARCH contexts; for SORT the 1-based place of the
  message in the sorted result, REMOVEFROM before removal (highest place first), ADDTO
  after insertion (lowest place first), so the client applies them one after another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from postroom.errors import BadSyntax
from postroom.imap.commands.context import Context
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.search import ordered_set, render_esearch_data

MAX_UPDATE_CONTEXTS = 8
Recompute = Callable[[Context], Awaitable[list[int]]]


@dataclass(slots=True)
class ResultContext:
    tag: str
    is_uid: bool
    is_sorted: bool
    recompute: Recompute  # the result now, in its order (criteria and sort kept inside)
    uids: list[int]  # the result as the client knows it


class ResultContexts:
    """The live contexts of one session's selected mailbox (see the module docstring)."""

    def __init__(self, view: SelectedMailbox) -> None:
        self.view = view
        self.contexts: dict[str, ResultContext] = {}
        self._state = _state_of(view)

    def has(self, tag: str) -> bool:
        return tag in self.contexts

    def add(self, context: ResultContext) -> bool:
        """Keep `context`; False when the session holds too many already."""
        if context.tag not in self.contexts and len(self.contexts) >= MAX_UPDATE_CONTEXTS:
            return False
        self.contexts[context.tag] = context
        return True

    def cancel(self, tags: tuple[str, ...]) -> None:
        for tag in tags:
            self.contexts.pop(tag, None)

    async def send_removals(self, ctx: Context) -> None:
        """REMOVEFROM for the messages about to be expunged, while their sequence numbers
        still hold (RFC 5267 §4.3.4: before the EXPUNGE)."""
        gone = self.view.pending_expunge
        if ctx.selected is not self.view or not gone:
            return
        lines: list[bytes] = []
        for context in self.contexts.values():
            if any(uid in gone for uid in context.uids):
                kept = [uid for uid in context.uids if uid not in gone]
                lines.extend(_changes(self.view, context, kept))
                context.uids = kept
        if lines:
            await ctx.write(b"".join(lines))

    async def send(self, ctx: Context) -> None:
        """Send what changed in each context since the client last heard of it; end
        them all when their mailbox is no longer the selected one (RFC 5267 §4.2)."""
        if ctx.selected is not self.view:
            ctx.result_contexts = None
            return
        state = _state_of(self.view)
        if state == self._state:
            return
        self._state = state
        lines: list[bytes] = []
        for context in list(self.contexts.values()):
            try:
                fresh = await context.recompute(ctx)
            except BadSyntax:
                # A sequence set the mailbox no longer has: the context cannot continue.
                del self.contexts[context.tag]
                lines.append(f'* NO [NOUPDATE "{context.tag}"] context ended\r\n'.encode())
                continue
            lines.extend(_changes(self.view, context, fresh))
            context.uids = fresh
        if lines:
            await ctx.write(b"".join(lines))


def contexts_of(ctx: Context, view: SelectedMailbox) -> ResultContexts:
    """The session's contexts for `view`, new ones when another mailbox had them."""
    current = ctx.result_contexts
    if not isinstance(current, ResultContexts) or current.view is not view:
        current = ResultContexts(view)
        ctx.result_contexts = current
    return current


def _state_of(view: SelectedMailbox) -> tuple[int, int, int]:
    return view.baseline, len(view.uids), len(view.pending_expunge)


def _changes(view: SelectedMailbox, context: ResultContext, fresh: list[int]) -> list[bytes]:
    old_set, new_set = set(context.uids), set(fresh)
    removed = [uid for uid in context.uids if uid not in new_set]
    added = [uid for uid in fresh if uid not in old_set]
    if not removed and not added:
        return []
    items: list[tuple[str, str]] = []
    if context.is_sorted:
        items += _sorted_removals(view, context, removed)
        items += _sorted_additions(view, context, fresh, old_set)
    else:
        gone = _named(view, context.is_uid, sorted(removed))
        if gone:
            items.append(("REMOVEFROM", f"(0 {ordered_set(gone)})"))
        new = _named(view, context.is_uid, sorted(added))
        if new:
            items.append(("ADDTO", f"(0 {ordered_set(new)})"))
    if not items:
        return []
    return [render_esearch_data(context.tag, is_uid=context.is_uid, items=items)]


def _sorted_removals(view: SelectedMailbox, context: ResultContext, removed: list[int]
                     ) -> list[tuple[str, str]]:  # fmt: skip
    places = {uid: place for place, uid in enumerate(context.uids, start=1)}
    items: list[tuple[str, str]] = []
    for uid in sorted(removed, key=places.__getitem__, reverse=True):
        named = _named(view, context.is_uid, [uid])
        if named:
            items.append(("REMOVEFROM", f"({places[uid]} {named[0]})"))
    return items


def _sorted_additions(view: SelectedMailbox, context: ResultContext, fresh: list[int],
                      old_set: set[int]) -> list[tuple[str, str]]:  # fmt: skip
    """After the removals the client holds `fresh` without the new messages; each ADDTO
    names the place a new one takes, lowest first."""
    items: list[tuple[str, str]] = []
    for place, uid in enumerate(fresh, start=1):
        if uid not in old_set:
            named = _named(view, context.is_uid, [uid])
            if named:
                items.append(("ADDTO", f"({place} {named[0]})"))
    return items


def _named(view: SelectedMailbox, is_uid: bool, uids: list[int]) -> list[int]:
    """How the context names these messages: UIDs, or sequence numbers of those the
    client still has."""
    if is_uid:
        return uids
    return [seq for seq in (view.seq_of(uid) for uid in uids) if seq]


def refuse_tag_reuse(ctx: Context, view: SelectedMailbox, tag: str) -> None:
    """RFC 5267 §4.3: UPDATE under the tag of a live context is BAD."""
    if contexts_of(ctx, view).has(tag):
        raise BadSyntax("tag reuse: an UPDATE context has this tag")


async def keep_updating(ctx: Context, view: SelectedMailbox, tag: str, is_uid: bool,
                        uids: list[int], recompute: Recompute, *,
                        is_sorted: bool = False) -> None:  # fmt: skip
    """RFC 5267 §4.3 RETURN (UPDATE): keep the result live, or say `* NO [NOUPDATE]`
    when the session holds too many contexts already (§4.3.1)."""
    context = ResultContext(tag, is_uid, is_sorted, recompute, list(uids))
    if not contexts_of(ctx, view).add(context):
        await ctx.write(f'* NO [NOUPDATE "{tag}"] too many contexts to update\r\n'.encode())
