"""The junk classifier's arithmetic (sans-IO): Gary Robinson's token probabilities combined
with Fisher's method, as SpamBayes and mox do.

Owns `token_probability` and `spam_probability`. For a token seen in `s` of `S` spam and
`h` of `H` ham messages: p = (s/S) / (s/S + h/H); Robinson's degree of belief
f = (STRENGTH * ASSUMED + n * p) / (STRENGTH + n), n = s + h, so a rare token stays near
ASSUMED (0.5). The `MAX_INTERESTING` tokens farthest from 0.5 (and at least
`MIN_DISTANCE` from it) are combined: S' = 1 - C⁻¹(-2 Σ ln(1 - f), 2k) (spamminess),
H' = 1 - C⁻¹(-2 Σ ln f, 2k) (hamminess), and the message's probability is
(1 + S' - H') / 2 — 0 for ham, 1 for spam, 0.5 when the evidence is mixed or absent.
C⁻¹ is the chi-square survival function with even degrees of freedom (closed form).

Invariants: probabilities stay in [0.01, 0.99] per token so no single token decides;
the result is in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable

STRENGTH = 1.0  # Robinson's s
ASSUMED = 0.5  # Robinson's x
MIN_DISTANCE = 0.1  # a token nearer 0.5 than this tells nothing
MAX_INTERESTING = 150
CLAMP = (0.01, 0.99)


def token_probability(spam: int, ham: int, total_spam: int, total_ham: int) -> float:
    """Robinson's f(w) for a token seen in `spam` spam and `ham` ham messages."""
    spam_ratio = spam / total_spam if total_spam else 0.0
    ham_ratio = ham / total_ham if total_ham else 0.0
    if spam_ratio + ham_ratio == 0:
        return ASSUMED
    p = spam_ratio / (spam_ratio + ham_ratio)
    n = spam + ham
    f = (STRENGTH * ASSUMED + n * p) / (STRENGTH + n)
    return min(max(f, CLAMP[0]), CLAMP[1])


def chi2_survival(chi: float, degrees: int) -> float:
    """P(X >= chi) for X chi-square distributed with an even number of degrees."""
    m = chi / 2.0
    term = total = math.exp(-m)
    for i in range(1, degrees // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def interesting(probabilities: Iterable[float]) -> list[float]:
    strong = [p for p in probabilities if abs(p - 0.5) >= MIN_DISTANCE]
    strong.sort(key=lambda p: abs(p - 0.5), reverse=True)
    return strong[:MAX_INTERESTING]


def spam_probability(probabilities: Iterable[float]) -> float:
    """Fisher's combination of the interesting token probabilities (module docstring)."""
    chosen = interesting(probabilities)
    if not chosen:
        return 0.5
    k = len(chosen)
    spamminess = 1.0 - chi2_survival(-2.0 * sum(math.log(1.0 - p) for p in chosen), 2 * k)
    hamminess = 1.0 - chi2_survival(-2.0 * sum(math.log(p) for p in chosen), 2 * k)
    return (1.0 + spamminess - hamminess) / 2.0
