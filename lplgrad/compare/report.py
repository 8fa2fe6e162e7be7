"""Writing every report file of a comparison into OUT."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lplgrad.compare import tables
from lplgrad.compare.aggregate import ablation_table, accuracy_table, aulc_table, labeled_sizes, timing_table
from lplgrad.compare.collect import Runs, load_runs
from lplgrad.compare.methods import ABLATION, METHODS
from lplgrad.compare.plot import plot_curves
from lplgrad.records import atomic_write


def write_report(
    out: str | Path,
    runs: Runs | None = None,
    at: Sequence[int] | None = None,
    title: str = "",
) -> list[Path]:
    """table, timing, aulc (.md and .csv), curves.png and, when both LPLgrad variants ran,
    ablation (.md and .csv), from the finished runs under ``OUT/runs`` (or ``runs``).

    at: labeled sizes of the accuracy table (default: every recorded size). Returns the paths."""
    out = Path(out)
    runs = load_runs(out) if runs is None else runs
    if not runs:
        raise ValueError(f"no finished runs under {out / 'runs'}")
    seeds = {m: len(by_seed) for m, by_seed in runs.items()}
    sizes = list(at) if at else labeled_sizes(runs)
    acc = accuracy_table(runs, sizes)
    timing = timing_table(runs)
    aulc = aulc_table(runs)

    def heading(what: str) -> str:
        return f"# {what}" + (f" ({title})" if title else "") + "\n\n"

    files = {
        "table.md": heading("Test accuracy") + tables.accuracy_md(acc, seeds),
        "table.csv": tables.accuracy_csv(acc, seeds),
        "timing.md": heading("Training and query time") + tables.timing_md(timing, seeds),
        "timing.csv": tables.timing_csv(timing, seeds),
        "aulc.md": heading("Area under the learning curve") + tables.aulc_md(aulc),
        "aulc.csv": tables.aulc_csv(aulc),
    }
    with_name, without_name = METHODS[0].name, ABLATION.name
    ab = ablation_table(runs, with_name, without_name)
    if ab is not None:
        files["ablation.md"] = heading("Ablation: with and without A") + tables.ablation_md(ab, with_name, without_name)
        files["ablation.csv"] = tables.ablation_csv(ab)
    else:  # no stale ablation table from an earlier report
        for name in ("ablation.md", "ablation.csv"):
            (out / name).unlink(missing_ok=True)
    written = []
    for name, text in files.items():
        atomic_write(out / name, text)
        written.append(out / name)
    written.append(plot_curves(runs, out / "curves.png", title))
    return written
