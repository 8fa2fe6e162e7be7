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


def _trained_rounds(out: Path, before: int) -> list[tuple[int, Path]]:
    """(labeled-set size, predictions file) of each earlier trained round, in round order."""
    found = []
    for r, d in round_dirs(out):
        if r >= before:
            break
        summary = d / "proposal.json"
        if (d / PREDICTIONS).is_file() and summary.is_file():
            found.append((int(json.loads(summary.read_text())["labeled"]), d / PREDICTIONS))
    return found


def label_chain(rounds: list[tuple[int, Any]], now: tuple[int, Any]) -> list[Any]:
    """The predictions the signal compares, one per labeled-set size: a rerun that added no
    label since the round before stands in for that round (the later run wins), so it never
    counts as a stable round of its own."""
    chain: list[tuple[int, Any]] = []
    for entry in [*rounds, now]:
        if chain and chain[-1][0] == entry[0]:
            chain[-1] = entry
        else:
            chain.append(entry)
    return [preds for _, preds in chain]


def _kappa(a: dict[str, str], b: dict[str, str]) -> float | None:
    common = [p for p in a if p in b]
    if not common:
        return None
    names = {c: i for i, c in enumerate(sorted(set(a.values()) | set(b.values())))}
    return stopping.kappa(torch.tensor([names[a[p]] for p in common]), torch.tensor([names[b[p]] for p in common]))


def stop_signal(
    out: Path, round_: int, dm: LabelFolderData, net: torch.nn.Module, device: torch.device, opts: StopOptions
) -> StopResult:
    """This round's predictions on the stop set, compared with those of the last trained round
    with another number of labels (:func:`label_chain`)."""
    paths, new, now = stop_set_predictions(out, dm, net, device, opts.size)
    chain = label_chain(_trained_rounds(out, round_), (len(dm.split), now))
    chain = [json.loads(p.read_text()) if isinstance(p, Path) else p for p in chain]
    return stop_result(chain, {PREDICTIONS: json.dumps(now, indent=0) + "\n"}, dm, paths, new, opts)


def stop_set_predictions(
    out: Path, dm: LabelFolderData, net: torch.nn.Module, device: torch.device, size: int
) -> tuple[list[str], bool, dict[str, str]]:
    """The stop set's paths (kept in ``out``), whether it was drawn now, and the network's class
    for each of its images present in the folder."""
    paths, new = _stop_paths(out, dm, size)
    index = {f: i for i, f in enumerate(dm.files)}
    present = [p for p in paths if p in index]
    rows = torch.tensor([index[p] for p in present], dtype=torch.long)
    preds = torch.cat(run_eval(net, dm.pool_dataloader(rows), device, lambda x, _: net(x)[0].argmax(1).cpu()))
    return paths, new, {p: dm.classes[c] if c < len(dm.classes) else str(c) for p, c in zip(present, preds.tolist())}


def stop_result(
    chain: list[dict[str, str]], files: dict[str, str], dm: LabelFolderData, paths: list[str], new: bool, opts
) -> StopResult:
    """The signal from the chain of predictions, oldest first (:func:`label_chain`): kappa between
    the last two, the suggestion, the console line; ``files`` gains the stop set when drawn now."""
    kappas = [_kappa(a, b) for a, b in zip(chain[1:], chain[:-1])]
    k = kappas[-1] if kappas else None
    kappas = [x for x in kappas if x is not None]
    if new:
        files[STOP_SET] = json.dumps({"seed": dm.effective_seed, "paths": paths}, indent=0) + "\n"
    suggested = stopping.stop_suggested(kappas, opts.threshold, opts.rounds)
    return StopResult(
        files, {"stop_kappa": k, "stop_suggested": suggested}, stopping.describe(k, kappas, opts.threshold, opts.rounds)
    )
