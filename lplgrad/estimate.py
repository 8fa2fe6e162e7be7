"""Confidence intervals for an accuracy measured on a random sample (the labelling app's audit
sample: images drawn at random, labelled like any task, never trained on).

An accuracy measured on actively chosen images is biased (they were picked for being hard); one
measured on a seeded random sample is not, and k correct out of n is a binomial draw. Two
standard intervals for its success probability:

- Wilson's score interval (Wilson, JASA 1927): the p whose normal-approximation test accepts the
  observed k/n; good coverage even for small n and k near 0 or n.
- Clopper and Pearson's exact interval (Biometrika 1934): the p whose one-sided binomial tails
  are alpha/2 at k, by the beta quantiles; never below the nominal coverage, and wider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Interval:
    """An accuracy k / n with its confidence interval [low, high] at ``confidence``, by ``method``."""

    correct: int
    n: int
    low: float
    high: float
    confidence: float
    method: str

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def as_dict(self) -> dict:
        return {
            "correct": self.correct,
            "n": self.n,
            "accuracy": self.accuracy if self.n else None,  # JSON has no NaN
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "method": self.method,
        }

    def describe(self) -> str:
        """'87.50% [80.12%, 92.43%] (Wilson 95%, 35 of 40)'."""
        if not self.n:
            return "no audited image labelled yet"
        return (
            f"{100 * self.accuracy:.2f}% [{100 * self.low:.2f}%, {100 * self.high:.2f}%] "
            f"({self.method} {100 * self.confidence:g}%, {self.correct} of {self.n})"
        )


def _check(k: int, n: int, confidence: float) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= correct <= n, got {k} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def wilson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for k successes in n trials (n = 0: the whole [0, 1])."""
    _check(k, n, confidence)
    if n == 0:
        return Interval(k, n, 0.0, 1.0, confidence, "Wilson")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(k, n, max(0.0, centre - half), min(1.0, centre + half), confidence, "Wilson")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Clopper and Pearson's exact interval for k successes in n trials (n = 0: [0, 1])."""
    _check(k, n, confidence)
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(k, n, low, high, confidence, "Clopper-Pearson")


METHODS = {"wilson": wilson, "clopper-pearson": clopper_pearson}


def interval(k: int, n: int, confidence: float = 0.95, method: str = "wilson") -> Interval:
    """The interval of ``method`` ("wilson" or "clopper-pearson")."""
    if method not in METHODS:
        raise ValueError(f"unknown interval {method!r}; known: {', '.join(METHODS)}")
    return METHODS[method](k, n, confidence)
