"""What an ESEARCH answer of SEARCH or SORT says (RFC 4731 §3.1, RFC 5267 §3.2, RFC 9394
§3.1-3.2, RFC 7162 §3.1.5), and what SAVE keeps (RFC 5182 §2.4, RFC 9394 §3.2).

Owns `Answer` (the result of one command, in its order: mailbox order for SEARCH, sort
order for SORT), `esearch_items` and `saved_result`; and `refuse_program`, the checks
SEARCH and SORT make before running a program (charset, MAX_SEARCH_KEYS).

Invariants:
- MIN and MAX are the first and last result in the answer's order: the lowest and
  highest for SEARCH, the first and last sorted for SORT (RFC 5267 §3.2).
- ALL keeps the answer's order (`ordered_set`): only ascending neighbours share a range.
- PARTIAL positions count in the answer's order; its data is the range as requested and
  the results in it, or NIL (RFC 9394 §3.1).
- MODSEQ (when the criteria have a MODSEQ key) is the highest mod-sequence of the
  messages the answer returns: every match with ALL or COUNT, else only the MIN/MAX
  message and the PARTIAL ones (RFC 4731 §3.2, RFC 7162 §3.1.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postroom.imap.commands.context import Context, Done
from postroom.imap.selected import SelectedMailbox
from postroom.imap.wire.search import (
    PartialRange,
    SearchKey,
    charset_codec,
    count_keys,
    ordered_set,
)

_ALL_WANTED = frozenset({"ALL", "COUNT"})


@dataclass(frozen=True, slots=True)
class Answer:
    uids: Sequence[int]  # every result, in the answer's order
    numbers: Sequence[int]  # the same as the client names them (UIDs or sequence numbers)
    options: frozenset[str]
    partial: PartialRange | None = None

    @classmethod
    def of(cls, view: SelectedMailbox, uids: Sequence[int], *, is_uid: bool,
           options: Sequence[str], partial: PartialRange | None) -> Answer:  # fmt: skip
        numbers = list(uids) if is_uid else [view.seq_of(uid) for uid in uids]
        return cls(uids, numbers, frozenset(options), partial)

    def returned_uids(self) -> Sequence[int]:
        """The messages the answer names (see the module invariants)."""
        if self.options & _ALL_WANTED or not self.uids:
            return self.uids
        picked: list[int] = []
        if "MIN" in self.options:
            picked.append(self.uids[0])
        if "MAX" in self.options:
            picked.append(self.uids[-1])
        if self.partial is not None:
            picked.extend(self.partial.pick(self.uids))
        return picked


def esearch_items(answer: Answer, modseqs: dict[int, int] | None) -> list[tuple[str, str]]:
    """The ESEARCH data items, in RFC 4731's order; `modseqs` given when the criteria
    have a MODSEQ key (RFC 7162 §3.1.5)."""
    items: list[tuple[str, str]] = []
    numbers, options = answer.numbers, answer.options
    if numbers and "MIN" in options:
        items.append(("MIN", str(numbers[0])))
    if numbers and "MAX" in options:
        items.append(("MAX", str(numbers[-1])))
    if numbers and "ALL" in options:
        items.append(("ALL", ordered_set(numbers)))  # RFC 4731 §3.1: none when empty
    if "COUNT" in options:
        items.append(("COUNT", str(len(numbers))))
    if answer.partial is not None:
        picked = answer.partial.pick(numbers)
        shown = ordered_set(picked) if picked else "NIL"  # RFC 9394 §3.1
        items.append(("PARTIAL", f"({answer.partial.render()} {shown})"))
    if modseqs is not None:
        highest = max((modseqs.get(uid, 0) for uid in answer.returned_uids()), default=0)
        if highest:
            items.append(("MODSEQ", str(highest)))
    return items


def saved_result(answer: Answer) -> tuple[int, ...]:
    """SAVE (RFC 5182 §2.4, RFC 9394 §3.2 Table 1): every match with ALL or COUNT or
    without MIN/MAX/PARTIAL; else the MIN/MAX and PARTIAL messages. As UIDs, ascending."""
    if not answer.options & {"MIN", "MAX"} and answer.partial is None:
        return tuple(sorted(answer.uids))
    return tuple(sorted(set(answer.returned_uids())))


# What NO [BADCHARSET (...)] lists: the common ones; any name a Python codec decodes works.
ADVERTISED_CHARSETS = ("UTF-8", "US-ASCII", "ISO-8859-1", "ISO-8859-15", "WINDOWS-1252",
                       "KOI8-R", "GB2312", "BIG5", "SHIFT_JIS", "EUC-JP", "EUC-KR")  # fmt: skip


def refuse_program(ctx: Context, charset: str | None, criteria: SearchKey) -> Done | None:
    """NO [BADCHARSET] for a charset no codec decodes (RFC 9051 §6.4.4), NO [LIMIT] past
    MAX_SEARCH_KEYS; None when the program may run. Shared with SORT."""
    if charset is not None and charset_codec(charset) is None:
        return Done("unsupported charset", "BADCHARSET", (list(ADVERTISED_CHARSETS),),
                    status="NO")  # fmt: skip
    limit = ctx.runtime.config.max_search_keys
    if count_keys(criteria) > limit:
        # RFC 9051 §7.1: LIMIT is a well-formed request over an implementation limit (NO);
        # BAD would tell the client its syntax was wrong.
        return Done(f"more than {limit} search keys", "LIMIT", status="NO")
    return None
