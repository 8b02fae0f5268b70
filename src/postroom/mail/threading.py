"""Message threading, RFC 5256 §3: ORDEREDSUBJECT and REFERENCES, as pure functions.

Owns turning a list of `ThreadInput` (one per message that matched the THREAD search:
its number, Message-ID, References, base subject, sent date) into a forest of `Node`s,
and rendering that forest as RFC 5256 §4 `thread-list`s. The caller extracts the header
values (imap/commands/thread.py); nothing here reads a message.

Invariants:
- Every input message appears exactly once in the result; dummies (containers for a
  referenced Message-ID whose message is not in the set) have `number == 0` and are
  pruned as §3 (REFERENCES) steps 3 and 4 say, so a rendered thread never names one
  except as the parent of several threads that share it (`((3)(5))`).
- Linking never makes a cycle (§3 step 1A: "if they are not already linked, and if
  this would not introduce a loop"); a duplicate Message-ID makes the later message
  behave as if it had none (§3 step 1A note), a message without one gets a unique key.
- Ties in sent date fall back to the number (the sequence number or UID the caller
  gives), so the output is deterministic (§2.2: "ordered by sequence number").
- Bounded: references beyond MAX_REFERENCES per message are ignored (the most recent
  are kept: they carry the parent), and the tree is built and walked without recursion
  so a 100,000-deep reply chain cannot exhaust Python's stack.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MAX_REFERENCES = 100
MAX_DEPTH = 10_000  # ancestor walks; deeper links are treated as loops


@dataclass(frozen=True, slots=True)
class ThreadInput:
    number: int  # sequence number or UID: what the response names
    message_id: str  # without angle brackets, "" when missing or unparsable
    references: tuple[str, ...]  # References (else the first In-Reply-To id), oldest first
    base_subject: str  # RFC 5256 §2.1
    is_reply: bool  # the subject had a reply/forward marker removed (§2.1 step 6 / §3 5.C)
    sent: dt.datetime  # §2.2: the Date: header, else the internal date (aware)


@dataclass(slots=True, eq=False)
class Node:
    message: ThreadInput | None  # None: a dummy
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    @property
    def number(self) -> int:
        return self.message.number if self.message is not None else 0


def _sort_key(node: Node) -> tuple[dt.datetime, int]:
    """§3 step 4: a dummy sorts by its first child's date (children are sorted first)."""
    current = node
    while current.message is None and current.children:
        current = current.children[0]
    if current.message is None:
        return (dt.datetime.min.replace(tzinfo=dt.UTC), 0)
    return (current.message.sent, current.message.number)


# -- ORDEREDSUBJECT ------------------------------------------------------------------
def ordered_subject(messages: Iterable[ThreadInput]) -> list[Node]:
    """§3 ORDEREDSUBJECT: sorted by base subject then sent date; each run of one base
    subject is a thread whose first message is the parent of all the others; threads
    ordered by the sent date of their first message."""
    ordered = sorted(messages, key=lambda m: (m.base_subject, m.sent, m.number))
    threads: list[Node] = []
    current_subject: str | None = None
    for message in ordered:
        node = Node(message)
        if threads and message.base_subject == current_subject:
            root = threads[-1]
            node.parent = root
            root.children.append(node)
        else:
            threads.append(node)
            current_subject = message.base_subject
    threads.sort(key=_sort_key)
    return threads


# -- REFERENCES ----------------------------------------------------------------------
def references(messages: Sequence[ThreadInput]) -> list[Node]:
    """§3 REFERENCES, steps 1 to 6."""
    table: dict[str, Node] = {}
    for index, message in enumerate(messages):
        _link_message(table, message, index)
    roots = [node for node in table.values() if node.parent is None]
    roots = _prune(roots)
    _sort_children(roots)
    roots.sort(key=_sort_key)
    roots = _group_by_subject(roots)
    _sort_children(roots)
    roots.sort(key=_sort_key)
    return roots


def _is_ancestor(candidate: Node, node: Node) -> bool:
    """True when `candidate` is `node` or one of its ancestors — or when that cannot be
    ruled out within MAX_DEPTH steps (then the link is not made, as for a loop). A
    container without children is nobody's ancestor, which keeps ordinary linking O(1)."""
    if candidate is node:
        return True
    if not candidate.children:
        return False
    current: Node | None = node
    for _ in range(MAX_DEPTH):
        if current is None:
            return False
        if current is candidate:
            return True
        current = current.parent
    return True


def _set_parent(child: Node, parent: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _link_message(table: dict[str, Node], message: ThreadInput, index: int) -> None:
    # Step 1A: the references, linked oldest to newest where that makes no loop and the
    # child has no parent yet.
    chain: list[Node] = []
    for ref in message.references[-MAX_REFERENCES:]:
        node = table.get(ref)
        if node is None:
            node = table[ref] = Node(None)
        if chain:
            parent = chain[-1]
            if node.parent is None and node is not parent and not _is_ancestor(node, parent):
                _set_parent(node, parent)
        chain.append(node)
    # Step 1B: the message's own container; a duplicate or missing id gets its own key.
    key = message.message_id
    own = table.get(key) if key else None
    if own is None or own.message is not None:
        key = key if key and own is None else f"\0unique-{index}"
        own = table[key] = Node(message)
    else:
        own.message = message
    # Step 1C: its parent is the last reference (replacing any earlier one), loops aside.
    if chain:
        parent = chain[-1]
        if parent is not own and not _is_ancestor(own, parent):
            if own.parent is not parent:
                _set_parent(own, parent)
        elif own.parent is not None:
            own.parent.children.remove(own)
            own.parent = None
    elif own.parent is not None:
        own.parent.children.remove(own)
        own.parent = None


def _prune(roots: list[Node]) -> list[Node]:
    """Step 3 (and 2): dummies without children go; a dummy's children take its place,
    except at the root where a dummy with several children stays."""
    result: list[Node] = []
    for root in roots:
        result.extend(_pruned(root, is_root=True))
    return result


def _pruned(node: Node, *, is_root: bool) -> list[Node]:
    # Post-order without recursion: rebuild each node's children list from its pruned kids.
    stack: list[tuple[Node, bool]] = [(node, False)]
    replacement: dict[int, list[Node]] = {}
    while stack:
        current, visited = stack.pop()
        if not visited:
            stack.append((current, True))
            stack.extend((child, False) for child in current.children)
            continue
        kids: list[Node] = []
        for child in current.children:
            kids.extend(replacement.pop(id(child)))
        for kid in kids:
            kid.parent = current
        current.children = kids
        top = current is node and is_root
        if current.message is not None:
            replacement[id(current)] = [current]
        elif not kids:
            replacement[id(current)] = []
        elif top and len(kids) > 1:
            replacement[id(current)] = [current]
        else:
            replacement[id(current)] = kids
    result = replacement[id(node)]
    if is_root:
        for kept in result:
            kept.parent = None
    return result


def _sort_children(roots: list[Node]) -> None:
    """Step 6: every level in sent-date order."""
    stack = list(roots)
    while stack:
        node = stack.pop()
        node.children.sort(key=_sort_key)
        stack.extend(node.children)


def _subject_of(root: Node) -> tuple[str, bool]:
    message = root.message
    if message is None and root.children:
        message = root.children[0].message
    if message is None:
        return "", False
    return message.base_subject, message.is_reply


def _group_by_subject(roots: list[Node]) -> list[Node]:
    """Step 5: roots that share a base subject become one thread (rules 5.A to 5.E)."""
    table: dict[str, Node] = {}
    for root in roots:  # 5.B: choose the representative for each subject
        subject, is_reply = _subject_of(root)
        if not subject:
            continue
        old = table.get(subject)
        if old is None:
            table[subject] = root
            continue
        old_is_reply = _subject_of(old)[1]
        if (root.message is None and old.message is not None) or (
                old_is_reply and not is_reply and old.message is not None):
            table[subject] = root
    result: list[Node] = []
    for root in roots:  # 5.C: merge into the representative
        subject, is_reply = _subject_of(root)
        target = table.get(subject) if subject else None
        if target is None or target is root:
            result.append(root)
            continue
        _merge(target, root, is_reply)
    return result


def _merge(target: Node, root: Node, is_reply: bool) -> None:
    target_is_reply = _subject_of(target)[1]
    if target.message is None and root.message is None:
        for child in list(root.children):  # both dummies: children join
            _set_parent(child, target)
    elif target.message is None:
        _set_parent(root, target)  # a message under the dummy
    elif root.message is None:
        # The representative is a message and this root a dummy: adopt its children.
        for child in list(root.children):
            _set_parent(child, target)
    elif is_reply and not target_is_reply:
        _set_parent(root, target)  # a reply becomes a child of the original
    else:
        # 5.C last case: neither is the other's reply; a new dummy holds both and takes
        # the representative's place (done in place so the root list keeps its order).
        original = Node(target.message, None, target.children)
        for child in original.children:
            child.parent = original
        target.message, target.children = None, []
        _set_parent(original, target)
        _set_parent(root, target)


# -- rendering -------------------------------------------------------------------------
def render_threads(roots: Sequence[Node]) -> str:
    """RFC 5256 §4: `(a b (c)(d))` per thread, concatenated (no separators)."""
    return "".join(_render(root) for root in roots)


def _render(root: Node) -> str:
    parts: list[str] = []
    # Iterative: (node, phase). A chain of single children prints as `a b c`; several
    # children print as nested lists.
    stack: list[object] = [")", root, "("]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        assert isinstance(item, Node)
        node = item
        if node.message is not None:
            if parts[-1] != "(":
                parts.append(" ")
            parts.append(str(node.number))
        if len(node.children) == 1:
            stack.append(node.children[0])
        elif node.children:
            for child in reversed(node.children):
                stack.extend([")", child, "("])
            if node.message is not None:
                stack.append(" ")
    return "".join(parts)
