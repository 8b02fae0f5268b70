"""The base subject of a message (RFC 5256 §2.1), what SORT SUBJECT and THREAD compare.

Owns `base_subject(text)`: the subject with reply/forward markers, mailing-list blobs
(`[list]`) and `(fwd)` trailers taken off, whitespace normalised.

Invariants:
- The caller decodes RFC 2047 encoded-words first (RFC 5256 §2.1 step 1); this module
  only works on text, sans-IO, and never raises.
- Work is linear in the length of the text: the steps move two indices over the one
  string and never re-scan what a step already consumed (a subject of 50,000 `re:` or
  `[x]` is as cheap as a short one). Every match is case-insensitive.
- The result compares with i;ascii-casemap by the caller (`sort keys`); it is returned
  with its case as written.
"""

from __future__ import annotations

import re

# RFC 5256 §5: subj-blob = "[" *BLOBCHAR "]" *WSP ; BLOBCHAR = any CHAR except "[" and "]"
_BLOB = r"\[[^\[\]]*+\] *+"
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
# subj-leader = (*subj-blob subj-refwd) / WSP
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:| ++", re.IGNORECASE)
_BLOB_RUN = re.compile(rf"(?:{_BLOB})++")
_LAST_BLOB = re.compile(rf"{_BLOB}\Z")
_WHITESPACE = re.compile(r"[ \t\r\n]+")
_FWD_TRAILER = "(fwd)"
_FWD_HEADER = "[fwd:"


def base_subject(text: str) -> str:
    """RFC 5256 §2.1 steps 1–7 over an already decoded subject."""
    text = _WHITESPACE.sub(" ", text)  # step 1: tabs, continuations, runs of spaces
    start, end = 0, len(text)
    while True:
        end = _strip_trailers(text, start, end)  # step 2
        start = _strip_leaders(text, start, end)  # steps 3-5
        # Step 6: "[fwd:" ... "]" around the rest: take it off and start again at step 2.
        if (end - start >= len(_FWD_HEADER) + 1 and text[end - 1] == "]"
                and text[start:start + len(_FWD_HEADER)].lower() == _FWD_HEADER):  # fmt: skip
            start, end = start + len(_FWD_HEADER), end - 1
            continue
        return text[start:end]  # step 7


def _strip_trailers(text: str, start: int, end: int) -> int:
    """Step 2: every trailing "(fwd)" and blank."""
    while end > start:
        if text[end - 1] == " ":
            end -= 1
        elif end - start >= len(_FWD_TRAILER) and \
                text[end - len(_FWD_TRAILER):end].lower() == _FWD_TRAILER:  # fmt: skip
            end -= len(_FWD_TRAILER)
        else:
            break
    return end


def _strip_leaders(text: str, start: int, end: int) -> int:
    """Steps 3 to 5: leaders ("re:", "fwd:", "[blob] re:", blanks), then a blob that
    leaves a non-empty rest, repeated while anything matches.

    A run of blobs not followed by a reply marker is removed whole, but for its last
    blob when nothing else follows: removing one blob at a time (step 4, then step 3
    over the rest again) ends the same way, one scan instead of one per blob."""
    while start < end:
        leader = _LEADER.match(text, start, end)
        if leader is not None and leader.end() > start:
            start = leader.end()
            continue
        run = _BLOB_RUN.match(text, start, end)
        if run is None:
            return start
        if run.end() < end:
            start = run.end()  # step 4: the rest is non-empty
            continue
        last = _LAST_BLOB.search(text, start, end)
        if last is None or last.start() == start:
            return start  # one blob and nothing after it: it is the subject
        start = last.start()
    return start
