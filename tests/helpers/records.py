"""What the tests read back from a run: its folder, its rounds, and the per-sample loss they score."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lplgrad.losses import entropy
from lplgrad.records import read_rounds


def the_run(save_dir: Path, name: str = "*") -> Path:
    """The one run folder (``<save_dir>/<name>/version_*``) a test made; fails if there are more."""
    (run,) = list(Path(save_dir).glob(f"{name}/version_*"))
    return run


def rounds_of(save_dir: Path, name: str = "*") -> list[dict]:
    """The ``rounds.jsonl`` rows of the one run under ``save_dir``."""
    return read_rounds(the_run(save_dir, name) / "rounds.jsonl")


def sample_entropy(model, x):
    """The per-sample loss of the gradient-norm scores: the entropy of M's prediction. -> (B,)"""
    return entropy(model(x)[0])


def sd(*v: float) -> float:
    """Sample standard deviation, written out."""
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts."""
    with open(path) as f:
        return list(csv.DictReader(f))
