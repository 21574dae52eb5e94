"""The interval the metering bench prints beside its median (``bench/_stats.py``)."""

from __future__ import annotations

import statistics
from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench._stats import median_interval

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_the_interval_is_the_sign_tests_order_statistics() -> None:
    # The textbook 95% intervals: n = 12 -> 3rd and 10th values, n = 18 -> 5th and 14th.
    assert median_interval(range(1, 13)) == (3, 10)
    assert median_interval(range(1, 19)) == (5, 14)


def test_too_few_values_give_the_widest_interval() -> None:
    # 5 values cannot hold the median with 95% (2 / 2**5 = 6.25% outside): all of them.
    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 2.0])
def test_a_confidence_outside_zero_and_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        median_interval([1.0, 2.0], bad)


def test_no_values_are_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        median_interval([])


@given(st.lists(finite, min_size=1, max_size=60), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_the_interval_holds_the_median_within_the_values(values: list[float],
                                                         confidence: float) -> None:
    low, high = median_interval(values, confidence)
    assert min(values) <= low <= statistics.median(values) <= high <= max(values)


@given(st.integers(min_value=6, max_value=80), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_the_coverage_is_at_least_the_confidence_and_the_interval_the_narrowest(
        n: int, confidence: float) -> None:
    # Ranks stand for the values: the interval's ranks give its exact coverage, which must
    # reach the confidence, and one rank narrower on each side must not.
    low, high = median_interval(range(n), confidence)
    k = low + 1  # values at or below the interval's low end

    def coverage(k: int) -> float:
        return 1 - 2 * sum(comb(n, i) for i in range(k)) / 2**n

    assert high == n - k
    if k > 1 or coverage(1) >= confidence:
        assert coverage(k) >= confidence
        assert coverage(k + 1) < confidence
