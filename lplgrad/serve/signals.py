"""The backend's two signals after a training, by the labelling app's rules.

- The stop signal (:mod:`lplgrad.labeling.stop`): the trained network's predictions on a fixed,
  seeded stop set of the cached images (``state_dir/stop_set.json``, drawn at the first trained
  training), compared by Cohen's kappa with those of the last trained training that had another
  number of labels (:func:`~lplgrad.labeling.stop.label_chain`). ``state_dir/stop_history.json``
  keeps that chain: one entry (version, labels, predictions) per number of labels.
- The audit sample (:mod:`lplgrad.labeling.audit`, ``--audit.size N``): each training draws N
  open tasks at random (seeded by the run's seed and the version); the state keeps their ids.
  They are held out of the split, so they are never trained on and never scored (so never
  predicted); once labelled, they measure the new network's accuracy, with its interval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lplgrad.estimate import Interval
from lplgrad.labeling.audit import AuditOptions, draw, estimate
from lplgrad.labeling.stop import StopOptions, StopResult, label_chain, stop_result, stop_set_predictions

STOP_HISTORY = "stop_history.json"


def hold_out_audit(dm, task_of: dict[str, int], audit: list[int], labels: dict[int, str | None]) -> None:
    """Hold the audit tasks' images out of ``dm``'s split (they are not in the labels CSV, so they
    are unlabelled there) and give those that have a label its class as their target: the
    labelling app's state, where a labelled audit image has a target but is not trained on."""
    wanted = set(audit)
    rows = [i for i, f in enumerate(dm.files) if task_of.get(f) in wanted]
    dm.split.hold_out(torch.tensor(rows, dtype=torch.long))
    index = {c: k for k, c in enumerate(dm.classes)}
    for i in rows:
        label = labels.get(task_of[dm.files[i]])
        if label in index:
            dm.targets[i] = index[label]


def draw_audit(dm, task_of: dict[str, int], size: int, version: int) -> list[int]:
    """This training's draw: ``size`` open tasks at random (:func:`lplgrad.labeling.audit.draw`,
    seeded by the run's seed and ``version``), held out of ``dm``'s split. -> their task ids"""
    open_rows = [i for i in dm.split.unlabeled().tolist() if dm.files[i] in task_of]
    drawn = draw(torch.tensor(open_rows, dtype=torch.long), size, dm.effective_seed, version)
    dm.split.hold_out(drawn)
    return [task_of[dm.files[i]] for i in drawn.tolist()]


def audit_estimate(net, dm, device: torch.device, options: AuditOptions, audit: list[int]) -> Interval | None:
    """The network's accuracy on the labelled audit tasks with its interval; None without an audit."""
    if options.size == 0 and not audit:
        return None
    return estimate(net, dm, device, options)


def _history(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / STOP_HISTORY
    return json.loads(path.read_text())["trainings"] if path.is_file() else []


def stop_signal(state_dir: Path, dm, net, device: torch.device, opts: StopOptions, version: int) -> StopResult:
    """This training's predictions on the stop set, compared with the last trained training's
    that had another number of labels. The files to write once the training is posted:
    ``stop_history.json`` and, when drawn now, ``stop_set.json``."""
    paths, new, now = stop_set_predictions(state_dir, dm, net, device, opts.size)
    entry = {"version": version, "labels": len(dm.split), "predictions": now}
    chain = label_chain([(h["labels"], h) for h in _history(state_dir)], (entry["labels"], entry))
    files = {STOP_HISTORY: json.dumps({"trainings": chain}, indent=0) + "\n"}
    return stop_result([c["predictions"] for c in chain], files, dm, paths, new, opts)
