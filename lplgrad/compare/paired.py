"""Paired comparisons over seeds: runs with the same seed share their initial labeled set (and,
for methods that train the same way, their whole first round), so two methods are compared seed
by seed, on the differences, rather than on two independent means.

For each pair of methods and each measure (the AULC and the accuracy at chosen labeled sizes):
the mean of the per-seed differences, a 95% confidence interval for it from Student's t
distribution with n - 1 degrees of freedom, and how many seeds the first method won, tied (the
same value to 1e-9) and lost. With 3 to 5 seeds the t interval is wide; that width is the honest
answer to "is there a difference?". Pure functions; accuracies in percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scipy import stats

from lplgrad.compare.aggregate import accuracy_at, run_aulc
from lplgrad.compare.collect import Rows, Runs

TIE = 1e-9
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Paired:
    """Method a minus method b over the seeds both have."""

    n: int
    mean: float
    low: float | None  # the interval; None with a single seed
    high: float | None
    wins: int
    ties: int
    losses: int

    @property
    def includes_zero(self) -> bool:
        """True when the interval does not rule out "no difference" (always with one seed)."""
        return self.low is None or self.low <= 0.0 <= self.high


def t_interval(diffs: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean of ``diffs`` (None for fewer than 2 values)."""
    n = len(diffs)
    if n < 2:
        return None
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def paired(a: dict[str, float], b: dict[str, float]) -> Paired | None:
    """``a`` minus ``b`` over the seeds (keys) present in both; None when they share none."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    if not diffs:
        return None
    interval = t_interval(diffs)
    return Paired(
        len(diffs),
        math.fsum(diffs) / len(diffs),
        *(interval or (None, None)),
        sum(d > TIE for d in diffs),
        sum(abs(d) <= TIE for d in diffs),
        sum(d < -TIE for d in diffs),
    )


Measure = tuple[str, Callable[[Rows], float | None]]  # (column name, per-run value)


def measures(at: Sequence[int]) -> list[Measure]:
    """AULC and the accuracy at each labeled size of ``at``."""
    return [("AULC", run_aulc), *((f"acc@{s}", (lambda rows, s=s: accuracy_at(rows, s))) for s in at)]


def per_seed(by_seed: dict[str, Rows], value: Callable[[Rows], float | None]) -> dict[str, float]:
    return {seed: v for seed, rows in by_seed.items() if (v := value(rows)) is not None}


def pairs_to_compare(methods: Sequence[str], baseline: str, focus: str) -> list[tuple[str, str]]:
    """Every method against ``baseline``, then ``focus`` against every other method (no pair twice)."""
    out = [(m, baseline) for m in methods if m != baseline and baseline in methods]
    out += [(focus, m) for m in methods if focus in methods and m not in (focus, baseline)]
    return out


def paired_table(
    runs: Runs, at: Sequence[int], baseline: str, focus: str
) -> list[tuple[str, str, list[Paired | None]]]:
    """(a, b, one :class:`Paired` per measure) for each pair of :func:`pairs_to_compare`."""
    cols = measures(at)
    rows = []
    for a, b in pairs_to_compare(list(runs), baseline, focus):
        rows.append((a, b, [paired(per_seed(runs[a], f), per_seed(runs[b], f)) for _, f in cols]))
    return rows
