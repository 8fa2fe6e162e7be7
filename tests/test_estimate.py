"""The audit's confidence intervals against published values and against their definitions."""

import pytest
from scipy import optimize, stats

from lplgrad.estimate import clopper_pearson, interval, wilson


@pytest.mark.parametrize(
    "k,n,low,high",
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)],
)
def test_wilson_known_values(k, n, low, high):
    got = wilson(k, n)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


@pytest.mark.parametrize("k,n,low,high", [(0, 10, 0.0, 0.3085), (5, 10, 0.1871, 0.8129), (10, 10, 0.6915, 1.0)])
def test_clopper_pearson_known_values(k, n, low, high):
    got = clopper_pearson(k, n)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


@pytest.mark.parametrize("k,n", [(1, 7), (13, 40), (37, 40), (120, 133)])
def test_wilson_is_where_the_score_test_accepts(k, n):
    """|k/n - p| = z sqrt(p (1 - p) / n) at both ends: the interval's definition, solved numerically."""
    z = stats.norm.ppf(0.975)

    def f(p):
        return abs(k / n - p) - z * (p * (1 - p) / n) ** 0.5

    got = wilson(k, n)
    assert got.low == pytest.approx(optimize.brentq(f, 1e-12, k / n), abs=1e-9)
    assert got.high == pytest.approx(optimize.brentq(f, k / n, 1 - 1e-12), abs=1e-9)


@pytest.mark.parametrize("k,n", [(1, 7), (13, 40), (37, 40)])
def test_clopper_pearson_tails_are_alpha_over_two(k, n):
    got = clopper_pearson(k, n, 0.9)
    assert stats.binom.sf(k - 1, n, got.low) == pytest.approx(0.05, abs=1e-9)  # P(X >= k | low)
    assert stats.binom.cdf(k, n, got.high) == pytest.approx(0.05, abs=1e-9)  # P(X <= k | high)


def test_exact_is_wider_and_both_contain_the_estimate():
    w, cp = wilson(30, 40), clopper_pearson(30, 40)
    assert cp.low < w.low < 0.75 < w.high < cp.high


def test_description_and_bad_input():
    assert interval(35, 40).describe().startswith("87.50% [") and "(Wilson 95%, 35 of 40)" in wilson(35, 40).describe()
    assert wilson(0, 0).describe() == "no audited image labelled yet"
    with pytest.raises(ValueError):
        wilson(5, 4)
    with pytest.raises(ValueError):
        interval(1, 2, method="agresti")
