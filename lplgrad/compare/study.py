"""``python -m lplgrad.compare.study SPEC.json``: a paired study of two arms, row by row.

A study compares run folders made by ``python -m lplgrad.compare`` (``<out>/runs/<method>/seed<S>``):
each row of the spec names an arm A and an arm B (two method folders, relative to the spec's
folder) and the table shows, for the test accuracy of each run's last round: A and B (mean ±
sample std over seeds) and A - B paired by seed (mean, 95% Student-t interval, wins/ties/losses;
:mod:`lplgrad.compare.paired`). With ``"x"`` values on the rows, a plot of A - B against x is
drawn too. The tables (.md, .csv) and the plot are written next to the spec, from the committed
records only, so the command regenerates them exactly.

Spec::

    {"title": "...", "a": "with A", "b": "without A", "x_label": "labeled images",
     "tables": [{"name": "by_size", "plot": "difference.png",
                 "rows": [{"label": "100", "x": 100, "a": "aux_by_size/n100/runs/LPLgrad",
                           "b": "aux_by_size/n100/runs/LPLgrad-wo-A"}, ...]}]}
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from lplgrad.compare import tables
from lplgrad.compare.paired import Paired, paired
from lplgrad.compare.stats import Stat, mean_std
from lplgrad.records import atomic_write, read_rounds


def final_accuracies(method_dir: Path) -> dict[str, float]:
    """Seed folder -> test accuracy (%) of the last round, for every finished run in ``method_dir``."""
    out = {}
    for run in sorted(p for p in Path(method_dir).glob("*") if (p / "finished.json").is_file()):
        rows = read_rounds(run / "rounds.jsonl")
        if rows:
            out[run.name] = 100.0 * float(rows[-1]["test_acc"])
    return out


@dataclass(frozen=True)
class Row:
    label: str
    x: float | None
    a: Stat | None
    b: Stat | None
    diff: Paired | None


def study_rows(base: Path, rows: list[dict]) -> list[Row]:
    out = []
    for r in rows:
        a, b = final_accuracies(base / r["a"]), final_accuracies(base / r["b"])
        out.append(Row(r["label"], r.get("x"), mean_std(list(a.values())), mean_std(list(b.values())), paired(a, b)))
    return out


def study_md(title: str, a: str, b: str, rows: list[Row]) -> str:
    head = (
        f"# {title}\n\nTest accuracy (%) after training, mean ± sample std over seeds, and {a} − {b} paired by "
        "seed (same seed: the same labeled images): mean difference in percentage points, its 95% "
        "confidence interval (Student t, n - 1 degrees of freedom), wins/ties/losses of "
        f"{a} over the seeds. {tables.INCLUDES_ZERO}: the interval includes 0.\n\n"
    )
    body = [
        [r.label, str(r.diff.n if r.diff else 0), tables.cell(r.a), tables.cell(r.b), tables.paired_cell(r.diff)]
        for r in rows
    ]
    return head + tables.markdown(["", "seeds", a, b, f"{a} − {b}"], body)


def study_csv(rows: list[Row]) -> str:
    header = [
        "label",
        "x",
        "n",
        "a_mean",
        "a_std",
        "b_mean",
        "b_std",
        "diff_mean",
        "diff_low",
        "diff_high",
        "includes_zero",
        "wins",
        "ties",
        "losses",
    ]
    body = []
    for r in rows:
        d = r.diff
        body.append(
            [
                r.label,
                "" if r.x is None else r.x,
                d.n if d else 0,
                *tables._stat_cols(r.a),
                *tables._stat_cols(r.b),
                *(tables.num(v) for v in ((d.mean, d.low, d.high) if d else (None,) * 3)),
                int(d.includes_zero) if d else "",
                *((d.wins, d.ties, d.losses) if d else ("", "", "")),
            ]
        )
    return tables.csv_text(header, body)


def plot_difference(rows: list[Row], path: Path, a: str, b: str, x_label: str, title: str) -> Path:
    """A - B with its 95% interval against x (log scale), one point per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.x is not None and r.diff is not None]
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=110)
    xs, ys = [r.x for r in pts], [r.diff.mean for r in pts]
    lo = [r.diff.mean - r.diff.low if r.diff.low is not None else 0.0 for r in pts]
    hi = [r.diff.high - r.diff.mean if r.diff.high is not None else 0.0 for r in pts]
    ax.axhline(0.0, color="gray", lw=1)
    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label=f"{a} − {b} (mean, 95% interval)")
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(int(x)) if float(x).is_integer() else str(x) for x in xs])
    ax.set_xlabel(x_label)
    ax.set_ylabel("test accuracy difference (points)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_study(spec_path: Path) -> list[Path]:
    spec = json.loads(Path(spec_path).read_text())
    base = Path(spec_path).parent
    written = []
    for t in spec["tables"]:
        rows = study_rows(base, t["rows"])
        title = t.get("title", spec["title"])
        for ext, text in ((".md", study_md(title, spec["a"], spec["b"], rows)), (".csv", study_csv(rows))):
            atomic_write(base / (t["name"] + ext), text)
            written.append(base / (t["name"] + ext))
        if t.get("plot"):
            written.append(
                plot_difference(rows, base / t["plot"], spec["a"], spec["b"], spec.get("x_label", "x"), title)
            )
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lplgrad.compare.study", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", type=Path, help="the study's JSON spec; tables and plots are written next to it")
    a = p.parse_args(argv)
    if not a.spec.is_file():
        print(f"lplgrad.compare.study: error: {a.spec} not found", file=sys.stderr)
        return 2
    for path in write_study(a.spec):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
