"""The per-account learning junk filter (issue 18): tokens.py (a message as tokens,
sans-IO), classifier.py (Robinson/Fisher arithmetic, sans-IO), service.py (`JunkFilter`:
training on IMAP moves, from sent mail and by the CLI; `JunkScorer`: scoring at delivery).
Floor: services — imports delivery.transit, mailauth, store and below.
"""

from __future__ import annotations

from postroom.junk.service import JunkFilter, JunkScorer, judgement

__all__ = ["JunkFilter", "JunkScorer", "judgement"]
