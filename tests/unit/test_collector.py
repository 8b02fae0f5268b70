"""collector.settle_collector, in a process of its own: it freezes and changes process-wide
settings, which the test process must keep at CPython's defaults."""

from __future__ import annotations

import subprocess
import sys

from postroom.collector import COLLECTOR_THRESHOLDS

_PROBE = """
import gc, json
from postroom.collector import settle_collector
class Node:
    pass
left = Node(); left.other = left  # start-up garbage: collected, not frozen
del left
before = gc.get_freeze_count()
settle_collector()
frozen = gc.get_freeze_count()
late = Node(); late.other = late  # a cycle made after settling is still collected
del late
found = gc.collect()
print(json.dumps([before, frozen, list(gc.get_threshold()), found]))
"""


def test_a_serving_process_freezes_its_start_and_raises_the_thresholds() -> None:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                            check=True, timeout=60)
    before, frozen, thresholds, found = __import__("json").loads(result.stdout)
    assert before == 0
    assert frozen > 1000  # the modules' objects, at least
    assert tuple(thresholds) == COLLECTOR_THRESHOLDS
    assert found >= 1  # the late cycle


def test_the_test_process_keeps_the_defaults() -> None:
    import gc
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)
