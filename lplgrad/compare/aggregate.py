"""The comparison's numbers from the runs' rounds: pure functions, accuracies in percent.

``runs`` maps a method to its runs (seed folder -> rows of rounds.jsonl), as
:func:`lplgrad.compare.collect.load_runs` returns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lplgrad.compare.collect import Rows, Runs
from lplgrad.compare.stats import Stat, mean_std


def labeled_sizes(runs: Runs) -> list[int]:
    """Every labeled-set size recorded by any run, ascending."""
    return sorted({int(r["labeled"]) for by_seed in runs.values() for rows in by_seed.values() for r in rows})


def accuracy_at(rows: Rows, size: int) -> float | None:
    """Test accuracy (%) of the run's round with ``size`` labeled samples, None if it has none."""
    hits = [r for r in rows if int(r["labeled"]) == size]
    return 100.0 * float(hits[-1]["test_acc"]) if hits else None


def _stat_at(by_seed: dict[str, Rows], size: int) -> Stat | None:
    values = [a for rows in by_seed.values() if (a := accuracy_at(rows, size)) is not None]
    return mean_std(values)


def accuracy_table(runs: Runs, sizes: Iterable[int]) -> dict[str, dict[int, Stat | None]]:
    """Mean and std over seeds of the test accuracy (%) per method at each labeled size (Table III)."""
    sizes = list(sizes)
    return {m: {s: _stat_at(by_seed, s) for s in sizes} for m, by_seed in runs.items()}


def curve(by_seed: dict[str, Rows]) -> list[tuple[int, Stat]]:
    """One method's learning curve: (labeled size, accuracy stat over the seeds that have it)."""
    sizes = sorted({int(r["labeled"]) for rows in by_seed.values() for r in rows})
    return [(s, _stat_at(by_seed, s)) for s in sizes]


def run_aulc(rows: Rows) -> float:
    """Area under one run's learning curve (trapezoids over the labeled size) divided by the
    labeled-size range: the curve's mean accuracy (%). A single round gives its accuracy."""
    pts = sorted((int(r["labeled"]), 100.0 * float(r["test_acc"])) for r in rows)
    if len(pts) == 1 or pts[-1][0] == pts[0][0]:
        return sum(a for _, a in pts) / len(pts)
    area = sum((x1 - x0) * (y0 + y1) / 2.0 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))
    return area / (pts[-1][0] - pts[0][0])


@dataclass(frozen=True)
class AulcRow:
    method: str
    aulc: Stat
    labeled_min: int
    labeled_max: int


def aulc_table(runs: Runs) -> list[AulcRow]:
    """AULC mean and std over seeds per method, best mean first."""
    rows = []
    for m, by_seed in runs.items():
        sizes = [int(r["labeled"]) for rs in by_seed.values() for r in rs]
        rows.append(AulcRow(m, mean_std([run_aulc(rs) for rs in by_seed.values()]), min(sizes), max(sizes)))
    return sorted(rows, key=lambda r: -r.aulc.mean)


def run_timing(rows: Rows) -> tuple[float, float, float]:
    """One run's (training seconds per round, query seconds per query round, total seconds).

    The query mean is over the rounds that queried (the last round of a run queries nothing)."""
    train = [float(r["train_seconds"]) for r in rows]
    query = [float(r["query_seconds"]) for r in rows if r.get("queried")]
    total = sum(train) + sum(float(r["query_seconds"]) for r in rows)
    return sum(train) / len(train), (sum(query) / len(query) if query else 0.0), total


@dataclass(frozen=True)
class Timing:
    train: Stat  # seconds of training per round
    query: Stat  # seconds of querying per query round
    total: Stat  # seconds of training and querying per run


def timing_table(runs: Runs) -> dict[str, Timing]:
    """Per method, mean and std over seeds of the per-run timings (paper Table IV)."""
    out = {}
    for m, by_seed in runs.items():
        t = [run_timing(rows) for rows in by_seed.values()]
        out[m] = Timing(*(mean_std([x[i] for x in t]) for i in range(3)))
    return out


def first_at_or_above(points: Iterable[tuple[int, float]], target: float) -> int | None:
    """The smallest labeled size whose accuracy (%) is at least ``target``; None if none is."""
    return min((size for size, acc in points if acc >= target), default=None)


@dataclass(frozen=True)
class Reach:
    method: str
    mean_curve: int | None  # the first labeled size at which the mean accuracy over the seeds is >= target
    by_seed: dict[str, int | None]  # each seed's first labeled size at or above target
    largest: int  # the largest labeled size recorded: "not reached" means not by this many labels


def reach_table(runs: Runs, target: float) -> list[Reach]:
    """Labels each method needs to reach ``target`` % test accuracy: on its mean curve over the seeds
    (issue 26's measure) and seed by seed. Fewest first; methods that never reach it last."""
    rows = []
    for m, by_seed in runs.items():
        points = [(size, stat.mean) for size, stat in curve(by_seed) if stat is not None]
        seeds = {
            seed: first_at_or_above(((int(r["labeled"]), 100.0 * float(r["test_acc"])) for r in rs), target)
            for seed, rs in by_seed.items()
        }
        rows.append(Reach(m, first_at_or_above(points, target), seeds, max(size for size, _ in points)))
    return sorted(rows, key=lambda r: (r.mean_curve is None, r.mean_curve or 0))


def nearest_size(sizes: Sequence[int], target: float) -> int:
    """The recorded size closest to ``target``; a tie goes to the smaller size."""
    return min(sizes, key=lambda s: (abs(s - target), s))


FRACTIONS: tuple[tuple[str, float], ...] = (("1/3 of budget", 1 / 3), ("1/2 of budget", 1 / 2), ("entire budget", 1.0))


@dataclass(frozen=True)
class Ablation:
    budget: int  # the annotation budget: the largest labeled size of either variant
    columns: list[tuple[str, int]]  # (fraction label, labeled size used)
    with_aux: list[Stat | None]
    without_aux: list[Stat | None]

    @property
    def difference(self) -> list[float | None]:
        """Mean with A minus mean without A, per column (percentage points)."""
        return [a.mean - b.mean if a and b else None for a, b in zip(self.with_aux, self.without_aux)]


def ablation_table(
    runs: Runs,
    with_name: str = "LPLgrad",
    without_name: str = "LPLgrad w/o A",
    fractions: Sequence[tuple[str, float]] = FRACTIONS,
) -> Ablation | None:
    """Accuracy with and without A at fractions of the budget (Tables V/VI); None unless both ran.

    Each fraction f uses the recorded labeled size nearest to f times the budget."""
    if with_name not in runs or without_name not in runs:
        return None
    both = {with_name: runs[with_name], without_name: runs[without_name]}
    sizes = labeled_sizes(both)
    budget = sizes[-1]
    columns = [(label, nearest_size(sizes, f * budget)) for label, f in fractions]
    return Ablation(
        budget,
        columns,
        [_stat_at(runs[with_name], s) for _, s in columns],
        [_stat_at(runs[without_name], s) for _, s in columns],
    )
