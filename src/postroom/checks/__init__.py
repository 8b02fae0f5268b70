"""Inbound checks: one interface, staged, returning verdicts the SMTP receiver merges.

The face of the package: `Check`, `Stage`, `Verdict`, `Symbol`, `Action`, `CheckReply`, `ACCEPT`,
`refuse`, `quarantine` (api.py) and `Pipeline` (pipeline.py). The built-in checks live
one per file (spf.py, spoofing.py, dmarc.py, headers.py); app.py lists them, in order,
in `inbound_checks`. Floor: services — imports delivery/, mailauth/, store.api and below,
never a protocol package.
"""

from postroom.checks.api import (
    ACCEPT,
    Action,
    Check,
    CheckReply,
    Stage,
    Symbol,
    Verdict,
    quarantine,
    refuse,
)
from postroom.checks.pipeline import Pipeline

__all__ = ["ACCEPT", "Action", "Check", "CheckReply", "Pipeline", "Stage", "Symbol",
           "Verdict", "quarantine", "refuse"]
