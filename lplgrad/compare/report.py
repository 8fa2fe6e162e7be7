"""Writing every report file of a comparison into OUT, and the settings that made them.

``report.json`` keeps the report's settings (labeled sizes, baseline, title, whether timings
are shown), so that ``python -m lplgrad.compare --collect-only --out OUT`` writes every table and
figure again exactly from the run records under ``OUT/runs``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lplgrad.compare import tables
from lplgrad.compare.aggregate import (
    ablation_table,
    accuracy_table,
    aulc_table,
    labeled_sizes,
    reach_table,
    timing_table,
)
from lplgrad.compare.collect import Runs, load_runs
from lplgrad.compare.methods import ABLATION, METHODS
from lplgrad.compare.paired import measures, paired_table
from lplgrad.compare.plot import plot_curves
from lplgrad.records import atomic_write

SETTINGS = "report.json"
TABLES = ("table", "timing", "aulc", "paired", "ablation", "reach")  # each as .md and .csv


@dataclass
class ReportSettings:
    at: list[int] = field(default_factory=list)  # labeled sizes of the accuracy and paired tables (empty: all)
    baseline: str = "Random"  # every method is compared with it, seed by seed
    title: str = ""
    timing: bool = True  # false when the runs shared their machine (their times are not comparable)
    focus: str = "LPLgrad"  # compared with every other method, seed by seed
    reach: float | None = None  # a test accuracy (%): reach.md says how many labels each method needs for it

    def save(self, out: Path) -> None:
        settings = asdict(self)
        if settings["reach"] is None:  # as written before the option existed: older reports stay byte for byte
            del settings["reach"]
        atomic_write(out / SETTINGS, json.dumps(settings, indent=2) + "\n")

    @classmethod
    def load(cls, out: Path) -> ReportSettings | None:
        path = Path(out) / SETTINGS
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def missing_note(missing: Sequence[str]) -> str:
    """The line under each Markdown table while runs of the sweep are not finished."""
    if not missing:
        return ""
    return f"\nNot finished yet, left out of this table ({len(missing)}): " + ", ".join(missing) + ".\n"


def report_files(runs: Runs, s: ReportSettings, missing: Sequence[str] = ()) -> dict[str, str]:
    """Every table of the report as text, by file name; each Markdown table names the ``missing`` runs."""
    seeds = {m: len(by_seed) for m, by_seed in runs.items()}
    sizes = list(s.at) if s.at else labeled_sizes(runs)

    def heading(what: str) -> str:
        return f"# {what}" + (f" ({s.title})" if s.title else "") + "\n\n"

    acc, aulc = accuracy_table(runs, sizes), aulc_table(runs)
    columns = [name for name, _ in measures(sizes)]
    paired = paired_table(runs, sizes, s.baseline, s.focus)
    files = {
        "table.md": heading("Test accuracy") + tables.accuracy_md(acc, seeds),
        "table.csv": tables.accuracy_csv(acc, seeds),
        "aulc.md": heading("Area under the learning curve") + tables.aulc_md(aulc),
        "aulc.csv": tables.aulc_csv(aulc),
        "paired.md": heading("Paired differences over seeds") + tables.paired_md(paired, columns),
        "paired.csv": tables.paired_csv(paired, columns),
    }
    if s.timing:
        timing = timing_table(runs)
        files["timing.md"] = heading("Training and query time") + tables.timing_md(timing, seeds)
        files["timing.csv"] = tables.timing_csv(timing, seeds)
    if s.reach is not None:
        reach = reach_table(runs, s.reach)
        files["reach.md"] = heading(f"Labels to reach {s.reach:g}%") + tables.reach_md(reach, s.reach)
        files["reach.csv"] = tables.reach_csv(reach, s.reach)
    ab = ablation_table(runs, METHODS[0].name, ABLATION.name)
    if ab is not None:
        files["ablation.md"] = heading("Ablation: with and without A") + tables.ablation_md(
            ab, METHODS[0].name, ABLATION.name
        )
        files["ablation.csv"] = tables.ablation_csv(ab)
    note = missing_note(missing)
    return {name: text + note if name.endswith(".md") else text for name, text in files.items()}


def write_report(
    out: str | Path,
    runs: Runs | None = None,
    at: Sequence[int] | None = None,
    title: str = "",
    baseline: str = "Random",
    timing: bool = True,
    focus: str = "LPLgrad",
    missing: Sequence[str] = (),
    reach: float | None = None,
) -> list[Path]:
    """Every report file (tables as .md and .csv, ``curves.png``, ``report.json``) from the
    finished runs under ``OUT/runs`` (or ``runs``); a table that no longer applies (the ablation
    without both variants, timings turned off, no ``reach`` target) is removed. Returns the paths written."""
    out = Path(out)
    runs = load_runs(out) if runs is None else runs
    if not runs:
        raise ValueError(f"no finished runs under {out / 'runs'}")
    settings = ReportSettings(list(at or []), baseline, title, timing, focus, reach)
    files = report_files(runs, settings, missing)
    for name in TABLES:
        for ext in (".md", ".csv"):
            if name + ext not in files:
                (out / (name + ext)).unlink(missing_ok=True)
    written = []
    for name, text in files.items():
        atomic_write(out / name, text)
        written.append(out / name)
    written.append(plot_curves(runs, out / "curves.png", title))
    settings.save(out)
    written.append(out / SETTINGS)
    return written
