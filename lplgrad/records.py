"""Files an experiment leaves in its run folder, each written atomically (temporary file + rename)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file renamed over ``path``: a crash leaves the old file or
    the new one, and a failed save no temporary file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves either the old file or the new one; a
    failed write (a full disk) leaves the old file and no temporary one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_rounds(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """rounds.jsonl: one JSON object per finished round."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_rounds(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_candidates(path: str | Path, indices: Tensor, scores: Tensor, selected: Tensor) -> None:
    """candidates/round_NNN.csv: every candidate of a round, its score, and whether it was picked."""
    chosen = set(selected.tolist())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "score", "selected"])
    for i, s in zip(indices.tolist(), scores.tolist()):
        w.writerow([i, repr(float(s)), int(i in chosen)])
    atomic_write(path, buf.getvalue())


def write_labeled(path: str | Path, indices: Tensor, rounds: Tensor, labels: Tensor) -> None:
    """labeled.csv: every labeled index, the round after which it was added (-1: initial), its label."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "round", "label"])
    w.writerows(zip(indices.tolist(), rounds.tolist(), labels.tolist()))
    atomic_write(path, buf.getvalue())
