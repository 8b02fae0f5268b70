"""How a serving process runs Python's cyclic garbage collector (decision 0060).

Owns `settle_collector`, called once by each `postroom serve` process (the main one in
cli/, each worker in workerprocess.py) when it is ready to serve: the objects made while
starting (modules, configuration, the App, the store's connections) are moved out of the
collector's sight with `gc.freeze`, and the generation thresholds are raised from
CPython's 700/10/10 to COLLECTOR_THRESHOLDS.

Why (issue 22): a session in IDLE is about 90 objects the collector tracks (a dozen
coroutine frames, the TLS objects, the view's sets), so 10,000 of them are a million.
With the default thresholds, the objects of sessions woken together (one delivery wakes
every IDLE session of a mailbox at once) outlive a dozen young collections and are
promoted to the oldest generation, and that growth triggers a full collection over the
million: 0.7 s with the event loop stopped, in the middle of the wake-up. With a young
generation of 20,000 objects and a middle one collected every 50 of those, what a
wake-up allocates dies young; the full collections of a 10,000-connection run went
from twelve to one (bench/RESULTS.md, "Session of 2026-12-07, night").

Invariants:
- Reference counting still frees everything; only reference cycles wait for a collection,
  and every cycle made after `settle_collector` is still collected.
- Frozen objects are never examined again: a cycle among them that becomes garbage later
  is kept until the process ends. They are the process's own start-up objects, which live
  as long as it does.
- Only serving processes call it: tests and one-shot commands keep CPython's defaults.
"""

from __future__ import annotations

import gc

# (young, middle, old): a young collection after 20,000 more allocations than frees of
# tracked objects, a middle one every 50 young ones, the oldest considered every 20
# middle ones (and run only when it has grown by a quarter, CPython's own rule).
COLLECTOR_THRESHOLDS = (20_000, 50, 20)


def settle_collector() -> None:
    """Freeze what starting made and raise the thresholds (module doc)."""
    gc.collect()  # start-up's own garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
