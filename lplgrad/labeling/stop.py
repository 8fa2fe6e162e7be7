"""The stop signal in the labeling app (:mod:`lplgrad.stopping`): the trained network's predictions
on a fixed stop set of the folder's images, compared with the last trained round's.

The stop set is drawn once, seeded, from the folder's images and kept in ``<out>/stop_set.json``
(images added to the folder later do not change it; images gone are left out). Each trained
round writes its predictions to ``round_NNN/stop_predictions.json`` and its kappa to
``proposal.json`` (``stop_kappa``, ``stop_suggested``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lplgrad import stopping
from lplgrad.inference import run_eval
from lplgrad.labeling.checkpoint import round_dirs
from lplgrad.labeling.data import LabelFolderData
from lplgrad.records import atomic_write

STOP_SET, PREDICTIONS = "stop_set.json", "stop_predictions.json"


@dataclass
class StopOptions:
    """The stop signal: stabilizing predictions on a fixed stop set.

    Args:
        size: images in the stop set.
        threshold: kappa at or above which two rounds' predictions count as stable.
        rounds: stable rounds in a row before stopping is suggested.
    """

    size: int = 500
    threshold: float = stopping.THRESHOLD
    rounds: int = stopping.ROUNDS


@dataclass
class StopResult:
    files: dict[str, str]  # what to write: name -> JSON text (the stop set, if new, and the predictions)
    fields: dict[str, Any]  # stop_kappa, stop_suggested (for proposal.json)
    line: str  # for the console


def _stop_paths(out: Path, dm: LabelFolderData, size: int) -> tuple[list[str], bool]:
    """The stop set's image paths, and whether it was drawn now."""
    path = out / STOP_SET
    if path.is_file():
        return list(json.loads(path.read_text())["paths"]), False
    rows = stopping.stop_set(len(dm.files), size, dm.effective_seed)
    return [dm.files[i] for i in rows.tolist()], True


def _previous(out: Path, before: int) -> tuple[dict[str, str] | None, list[float | None]]:
    """The latest earlier round's stop-set predictions, and the kappas of the earlier rounds."""
    previous, kappas = None, []
    for r, d in round_dirs(out):
        if r >= before:
            break
        if (d / PREDICTIONS).is_file():
            previous = json.loads((d / PREDICTIONS).read_text())
            summary = d / "proposal.json"
            k = json.loads(summary.read_text()).get("stop_kappa") if summary.is_file() else None
            if k is not None:
                kappas.append(k)
    return previous, kappas


def stop_signal(out: Path, round_: int, dm: LabelFolderData, net: torch.nn.Module, device: torch.device,
                opts: StopOptions) -> StopResult:
    """This round's predictions on the stop set, compared with the last trained round's."""
    paths, new = _stop_paths(out, dm, opts.size)
    index = {f: i for i, f in enumerate(dm.files)}
    present = [p for p in paths if p in index]
    rows = torch.tensor([index[p] for p in present], dtype=torch.long)
    preds = torch.cat(run_eval(net, dm.pool_dataloader(rows), device, lambda x, _: net(x)[0].argmax(1).cpu()))
    now = {p: dm.classes[c] if c < len(dm.classes) else str(c) for p, c in zip(present, preds.tolist())}
    previous, kappas = _previous(out, round_)
    k = None
    if previous is not None:
        common = [p for p in present if p in previous]
        names = {c: i for i, c in enumerate(sorted(set(now.values()) | set(previous.values())))}
        if common:
            k = stopping.kappa(torch.tensor([names[now[p]] for p in common]),
                               torch.tensor([names[previous[p]] for p in common]))
            kappas.append(k)
    files = {PREDICTIONS: json.dumps(now, indent=0) + "\n"}
    if new:
        files[STOP_SET] = json.dumps({"seed": dm.effective_seed, "paths": paths}, indent=0) + "\n"
    suggested = stopping.stop_suggested(kappas, opts.threshold, opts.rounds)
    return StopResult(files, {"stop_kappa": k, "stop_suggested": suggested},
                      stopping.describe(k, kappas, opts.threshold, opts.rounds))


def write_stop_files(out: Path, rdir: Path, result: StopResult) -> None:
    for name, text in result.files.items():
        atomic_write((out if name == STOP_SET else rdir) / name, text)
