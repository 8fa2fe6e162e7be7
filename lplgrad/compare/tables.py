"""Rendering the comparison's numbers as Markdown tables and CSV text."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from lplgrad.compare.aggregate import Ablation, AulcRow, Reach, Timing
from lplgrad.compare.paired import Paired
from lplgrad.compare.stats import Stat

DASH = "–"


def cell(stat: Stat | None, seeds: int | None = None, digits: int = 2) -> str:
    """``mean ± std``; a single value has no std; ``(n=k)`` when fewer than ``seeds`` runs have it."""
    if stat is None:
        return DASH
    text = f"{stat.mean:.{digits}f}" + (f" ± {stat.std:.{digits}f}" if stat.std is not None else "")
    return text + (f" (n={stat.n})" if seeds is not None and stat.n < seeds else "")


def num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], align_first: int = 1) -> str:
    """A Markdown table; columns after the first ``align_first`` are right-aligned."""
    rule = ["---"] * align_first + ["---:"] * (len(header) - align_first)
    lines = [header, rule, *rows]
    return "".join("| " + " | ".join(str(c) for c in line) + " |\n" for line in lines)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _stat_cols(s: Stat | None) -> list[str]:
    return [num(s.mean if s else None), num(s.std if s else None)]


# ---- Table III: accuracy at labeled sizes ------------------------------------------------------
def accuracy_md(table: dict[str, dict[int, Stat | None]], seeds: dict[str, int]) -> str:
    sizes = list(next(iter(table.values())).keys()) if table else []
    head = (
        "Test accuracy (%) by labeled-set size: mean ± sample std over the seeds "
        "(`(n=k)`: only k seeds reached that size).\n\n"
    )
    rows = [[m, seeds[m], *(cell(t[s], seeds[m]) for s in sizes)] for m, t in table.items()]
    return head + markdown(["method", "seeds", *(str(s) for s in sizes)], rows)


def accuracy_csv(table: dict[str, dict[int, Stat | None]], seeds: dict[str, int]) -> str:
    sizes = list(next(iter(table.values())).keys()) if table else []
    header = ["method", "seeds"] + [f"{k}@{s}" for s in sizes for k in ("mean", "std", "n")]
    rows = []
    for m, t in table.items():
        row: list[object] = [m, seeds[m]]
        for s in sizes:
            row += [*_stat_cols(t[s]), t[s].n if t[s] else 0]
        rows.append(row)
    return csv_text(header, rows)


# ---- Table IV: time per round ------------------------------------------------------------------
TIMING_HEADER = ["method", "seeds", "train s / round", "query s / query round", "total s / run"]


def timing_md(table: dict[str, Timing], seeds: dict[str, int]) -> str:
    head = (
        "Seconds of training per round, of querying per round that queried, and of both per run: "
        "mean ± sample std over the seeds.\n\n"
    )
    rows = [
        [m, seeds[m], cell(t.train, digits=1), cell(t.query, digits=1), cell(t.total, digits=1)]
        for m, t in table.items()
    ]
    return head + markdown(TIMING_HEADER, rows)


def timing_csv(table: dict[str, Timing], seeds: dict[str, int]) -> str:
    header = ["method", "seeds", "train_mean", "train_std", "query_mean", "query_std", "total_mean", "total_std"]
    rows = [[m, seeds[m], *_stat_cols(t.train), *_stat_cols(t.query), *_stat_cols(t.total)] for m, t in table.items()]
    return csv_text(header, rows)


# ---- AULC ---------------------------------------------------------------------------------------
def aulc_md(rows: list[AulcRow]) -> str:
    head = (
        "Area under the learning curve (trapezoids over the labeled-set size, divided by its range: "
        "the curve's mean test accuracy, %), mean ± sample std over the seeds, best first.\n\n"
    )
    body = [[i, r.method, r.aulc.n, cell(r.aulc), f"{r.labeled_min}–{r.labeled_max}"] for i, r in enumerate(rows, 1)]
    return head + markdown(["rank", "method", "seeds", "AULC (%)", "labeled"], body, align_first=2)


def aulc_csv(rows: list[AulcRow]) -> str:
    header = ["rank", "method", "seeds", "aulc_mean", "aulc_std", "labeled_min", "labeled_max"]
    body = [[i, r.method, r.aulc.n, *_stat_cols(r.aulc), r.labeled_min, r.labeled_max] for i, r in enumerate(rows, 1)]
    return csv_text(header, body)


# ---- Tables V/VI: with and without A -----------------------------------------------------------
def ablation_md(ab: Ablation, with_name: str, without_name: str) -> str:
    head = (
        f"Test accuracy (%) of {with_name} (with A) and {without_name} (M trained alone) at fractions of "
        f"the annotation budget ({ab.budget}; the nearest recorded labeled size in brackets). A is the auxiliary loss-prediction model. Mean ± sample std "
        "over the seeds.\n\n"
    )
    header = ["", *(f"{label} ({size})" for label, size in ab.columns)]
    diff = [DASH if d is None else f"{d:+.2f}" for d in ab.difference]
    rows = [
        [f"with A ({with_name})", *(cell(s) for s in ab.with_aux)],
        [f"w/o A ({without_name})", *(cell(s) for s in ab.without_aux)],
        ["difference (with − w/o)", *diff],
    ]
    return head + markdown(header, rows)


def ablation_csv(ab: Ablation) -> str:
    header = ["fraction", "labeled", "with_mean", "with_std", "without_mean", "without_std", "difference"]
    rows = [
        [label, size, *_stat_cols(w), *_stat_cols(wo), num(d)]
        for (label, size), w, wo, d in zip(ab.columns, ab.with_aux, ab.without_aux, ab.difference)
    ]
    return csv_text(header, rows)


# ---- paired differences over seeds --------------------------------------------------------------
INCLUDES_ZERO = "°"


def paired_cell(p: Paired | None) -> str:
    """``+1.23 [-0.50, +2.96] 3/0/2`` (mean difference, 95% interval, wins/ties/losses over seeds),
    marked ``°`` when the interval includes 0."""
    if p is None:
        return DASH
    interval = f" [{p.low:+.2f}, {p.high:+.2f}]" if p.low is not None else ""
    return f"{p.mean:+.2f}{interval} {p.wins}/{p.ties}/{p.losses}" + (f" {INCLUDES_ZERO}" if p.includes_zero else "")


def paired_md(rows: list[tuple[str, str, list[Paired | None]]], columns: list[str]) -> str:
    head = (
        "Paired differences over seeds, first method minus second, in percentage points: the mean of the "
        "per-seed differences, its 95% confidence interval (Student t, n - 1 degrees of freedom) and "
        f"wins/ties/losses of the first method over the seeds. {INCLUDES_ZERO}: the interval includes 0 (no "
        "difference shown with these seeds). Runs with the same seed start from the same labeled set.\n\n"
    )
    body = [
        [f"{a} − {b}", str(max((p.n for p in ps if p), default=0)), *(paired_cell(p) for p in ps)] for a, b, ps in rows
    ]
    return head + markdown(["comparison", "seeds", *columns], body, align_first=1)


def paired_csv(rows: list[tuple[str, str, list[Paired | None]]], columns: list[str]) -> str:
    header = ["a", "b", "measure", "n", "mean", "low", "high", "includes_zero", "wins", "ties", "losses"]
    body = []
    for a, b, ps in rows:
        for col, p in zip(columns, ps):
            if p is not None:
                body.append(
                    [
                        a,
                        b,
                        col,
                        p.n,
                        num(p.mean),
                        num(p.low),
                        num(p.high),
                        int(p.includes_zero),
                        p.wins,
                        p.ties,
                        p.losses,
                    ]
                )
    return csv_text(header, body)


# ---- labels needed to reach a test accuracy --------------------------------------------------
def _labels(n: int | None, largest: int) -> str:
    return f"> {largest:,}" if n is None else f"{n:,}"


def reach_md(rows: list[Reach], target: float) -> str:
    head = (
        f"Labels needed to reach {target:g}% test accuracy: the first labeled-set size at which the mean "
        f"accuracy over the seeds is {target:g}% or more, and each seed's own first size (`> N`: not "
        "reached by the largest size recorded).\n\n"
    )
    body = [
        [
            r.method,
            len(r.by_seed),
            _labels(r.mean_curve, r.largest),
            ", ".join(f"{s}: {_labels(n, r.largest)}" for s, n in r.by_seed.items()),
        ]
        for r in rows
    ]
    return head + markdown(["method", "seeds", "labels (mean curve)", "labels by seed"], body, align_first=1)


def reach_csv(rows: list[Reach], target: float) -> str:
    """One row per method and seed (seed ``mean`` for the mean curve); ``labels`` empty when not reached."""
    body = []
    for r in rows:
        body.append([r.method, "mean", target, "" if r.mean_curve is None else r.mean_curve, r.largest])
        body += [[r.method, s, target, "" if n is None else n, r.largest] for s, n in r.by_seed.items()]
    return csv_text(["method", "seed", "target", "labels", "largest_labeled"], body)
