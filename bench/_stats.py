"""How far a benchmark's median of noisy pairs can be trusted: a distribution-free interval.

The serving benches check the median of paired ratios or overheads (each pair: a baseline and
its arm, measured back to back) against a target. On a shared machine single pairs spread
over tens of points, so the median of a dozen of them moves by a few points between runs of
the same code; the interval printed beside it says by how much. It is the sign test's
interval: the ``k``-th smallest and the ``k``-th largest pair bracket the median of the pairs'
distribution with probability ``1 - 2 P(Binomial(n, 1/2) < k)``, whatever that distribution
is, as long as the pairs are independent.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import comb


def median_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """The narrowest sign-test interval of ``values`` that holds their distribution's median
    with at least ``confidence``; with too few values for that (fewer than 6 at 95%), their
    lowest and highest. Raises ``ValueError`` for no values or a confidence outside (0, 1)."""
    xs = sorted(values)
    n = len(xs)
    if not n:
        raise ValueError("no values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not between 0 and 1")
    # k: how many values may lie below the interval, the most with
    # 2 P(Binomial(n, 1/2) <= k - 1) <= 1 - confidence (exact integers, no rounding).
    allowed = (1 - confidence) * 2**n / 2
    k, below = 0, 0
    while k < n and below + comb(n, k) <= allowed:
        below += comb(n, k)
        k += 1
    if k == 0:
        return xs[0], xs[-1]
    return xs[k - 1], xs[n - k]
