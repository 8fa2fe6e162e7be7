"""Reading a comparison's finished runs from ``OUT/runs/<method folder>/<version>/rounds.jsonl``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lplgrad.compare.methods import display_name, order_key
from lplgrad.records import read_rounds

Rows = list[dict[str, Any]]  # one run's rounds.jsonl
Runs = dict[str, dict[str, Rows]]  # method name -> run (seed folder name) -> rows


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def run_folders(out: str | Path) -> list[Path]:
    """Every run folder under ``OUT/runs`` (finished or not)."""
    runs = Path(out) / "runs"
    if not runs.is_dir():
        return []
    return sorted(
        (d for d in runs.glob("*/*") if d.is_dir()), key=lambda d: (_natural(d.parent.name), _natural(d.name))
    )


def unfinished(out: str | Path) -> list[Path]:
    """Run folders without ``finished.json`` (interrupted, failed, or still running)."""
    return [d for d in run_folders(out) if not (d / "finished.json").is_file()]


def load_runs(out: str | Path) -> Runs:
    """The rounds of every finished run, by method (in table order), then by seed folder."""
    runs: Runs = {}
    for d in run_folders(out):
        if (d / "finished.json").is_file() and (d / "rounds.jsonl").is_file():
            rows = read_rounds(d / "rounds.jsonl")
            if rows:
                runs.setdefault(display_name(d.parent.name), {})[d.name] = rows
    return {m: runs[m] for m in sorted(runs, key=order_key)}
