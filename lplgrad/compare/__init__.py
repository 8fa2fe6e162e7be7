"""The paper's multi-seed comparison as one command: ``python -m lplgrad.compare``.

``methods`` names the presets, ``sweep`` runs every (method, seed) as a subprocess, ``collect``
reads the finished runs, ``stats`` and ``aggregate`` turn them into numbers (pure functions),
``tables`` and ``plot`` render them, ``report`` writes every output file, ``cli`` is the command.
"""

from lplgrad.compare.aggregate import (
    ablation_table,
    accuracy_table,
    aulc_table,
    curve,
    labeled_sizes,
    reach_table,
    run_aulc,
    run_timing,
    timing_table,
)
from lplgrad.compare.collect import load_runs
from lplgrad.compare.methods import ABLATION, METHODS, Method, choose_methods
from lplgrad.compare.report import write_report
from lplgrad.compare.stats import Stat, mean_std
from lplgrad.compare.sweep import Job, plan, run_command, run_sweep

__all__ = [
    "ABLATION",
    "METHODS",
    "Job",
    "Method",
    "Stat",
    "ablation_table",
    "accuracy_table",
    "aulc_table",
    "choose_methods",
    "curve",
    "labeled_sizes",
    "load_runs",
    "mean_std",
    "plan",
    "reach_table",
    "run_aulc",
    "run_command",
    "run_sweep",
    "run_timing",
    "timing_table",
    "write_report",
]
