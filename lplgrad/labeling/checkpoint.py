"""The network a labeling run used, saved next to its proposal, and loaded to continue (``--resume``).

A checkpoint is a plain dict of tensors and strings (it loads with ``weights_only=True``):
``state_dict`` (M and A, as in Lightning checkpoints), ``classes`` (the class name of each
output of M's last layer), ``round``, ``labeled`` (the image paths it was trained on) and
``trained`` (False for an untrained network, e.g. a Coreset cold start).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from lplgrad.labeling.labels import LabelingError
from lplgrad.records import atomic_save

ROUND_DIR = re.compile(r"^round_(\d{3,})$")
PARTIAL = re.compile(r"^\.round_(\d{3,})\.partial$")
CHECKPOINT = "model.ckpt"


def round_dirs(out: Path) -> list[tuple[int, Path]]:
    """The ``round_NNN`` folders of an output folder, in round order."""
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := ROUND_DIR.match(p.name))]
    return sorted(found)


@contextmanager
def staged_round(rdir: Path) -> Iterator[Path]:
    """A hidden staging folder beside ``rdir`` to write the round into; renamed to ``rdir`` when
    the block ends without error, removed when it raises. A run killed in between leaves the
    staging folder, which :func:`remove_partial_rounds` clears and the next run redoes."""
    stage = rdir.with_name(f".{rdir.name}.partial")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
        os.rename(stage, rdir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def remove_partial_rounds(out: Path) -> list[Path]:
    """Remove the staging folders of rounds that were never finished; returns them."""
    if not out.is_dir():
        return []
    found = sorted(p for p in out.iterdir() if p.is_dir() and PARTIAL.match(p.name))
    for p in found:
        shutil.rmtree(p)
    return found


def latest_checkpoint(out: Path) -> Path | None:
    """The checkpoint of the latest round that saved one."""
    for _, d in reversed(round_dirs(out)):
        if (d / CHECKPOINT).is_file():
            return d / CHECKPOINT
    return None


def save_checkpoint(
    path: Path, learner: nn.Module, classes: list[str], round_: int, labeled: list[str], trained: bool
) -> None:
    state = {
        "state_dict": {k: v.detach().cpu() for k, v in learner.state_dict().items()},
        "classes": list(classes),
        "round": int(round_),
        "labeled": list(labeled),
        "trained": bool(trained),
    }
    atomic_save(state, path)


def _head_keys(learner: nn.Module) -> tuple[str, str] | None:
    """State-dict keys of M's last layer (weight, bias), whose rows are the classes."""
    head = getattr(getattr(learner, "net", None), "head", None)
    if not isinstance(head, nn.Linear):
        return None
    name = next((n for n, m in learner.named_modules() if m is head), None)
    return (f"{name}.weight", f"{name}.bias") if name is not None and head.bias is not None else None


def load_checkpoint(path: Path, learner: nn.Module, classes: list[str]) -> list[str]:
    """Load a checkpoint into ``learner`` whose outputs are ``classes``; returns notes for the console.

    The rows of M's last layer are matched to the classes by name: a class new since the
    checkpoint starts from the fresh layer's row, a class gone since is dropped.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights, old = dict(state["state_dict"]), list(state["classes"])
    except Exception as e:  # noqa: BLE001
        raise LabelingError(f"{path} is not a checkpoint written by python -m lplgrad.label: {e}") from None
    notes = []
    keys = _head_keys(learner)
    current = learner.state_dict()
    if keys is not None and all(k in weights for k in keys):
        n_out = current[keys[0]].shape[0]
        names = list(classes) + [f"<unused {i}>" for i in range(len(classes), n_out)]
        old_names = old + [f"<unused {i}>" for i in range(len(old), weights[keys[0]].shape[0])]
        if names != old_names:
            for k in keys:
                new = current[k].clone()
                for i, c in enumerate(names):
                    if c in old_names:
                        new[i] = weights[k][old_names.index(c)]
                weights[k] = new
            added = [c for c in classes if c not in old]
            gone = [c for c in old if c not in classes]
            notes.append(
                f"the classes changed since the checkpoint ({', '.join(old) or 'none'} -> "
                f"{', '.join(classes)}): last-layer rows matched by name"
                + (f"; new: {', '.join(added)}" if added else "")
                + (f"; gone: {', '.join(gone)}" if gone else "")
            )
    try:
        learner.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise LabelingError(
            f"{path} does not fit the configured model (another backbone, width, "
            f"use_aux or grayscale setting?): {first}"
        ) from None
    return notes
