"""The audit sample: an honest estimate of the network's accuracy while labelling.

Accuracy on the actively chosen labels is biased: those images were picked for being hard, and
the network was trained on them. So, with ``--audit.size N``, every round also draws N images at
random from the unlabeled pool (seeded by the round), apart from the active batch. They are
labelled like any task (``to_label_audit.csv``; in Label Studio, tasks with ``audit: true`` and no
prediction, so that the network's guess does not sway the annotator) but never trained on and
never proposed: the data module holds them out of the split. Each trained round measures the
network on the audit images that have a label and reports the accuracy with a confidence
interval (:mod:`lplgrad.estimate`: Wilson, or Clopper-Pearson), in the console, ``proposal.json``
and TensorBoard (``OUT/tensorboard``, ``audit/*`` by round).

A round's draw is written in its own folder (``round_NNN/audit_drawn.csv``), so it exists exactly
when the round does; the audit set is every round folder's draw.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lplgrad.errors import LabelingError
from lplgrad.estimate import METHODS, Interval, interval
from lplgrad.inference import run_eval
from lplgrad.labeling.checkpoint import round_dirs
from lplgrad.labeling.label_studio import image_url
from lplgrad.records import atomic_write
from lplgrad.split import round_generator

DRAWN = "audit_drawn.csv"
TO_LABEL = "to_label_audit.csv"


@dataclass
class AuditOptions:
    """The audit sample (off with ``size`` 0).

    Args:
        size: images drawn at random each round to estimate the accuracy (never trained on).
        confidence: the interval's confidence level.
        interval: "wilson" (Wilson's score interval) or "clopper-pearson" (exact).
    """

    size: int = 0
    confidence: float = 0.95
    interval: str = "wilson"

    @classmethod
    def from_config(cls, section) -> AuditOptions:
        """The checked options of a parsed command line's ``audit`` section."""
        options = cls(**section.as_dict())
        options.check()
        return options

    def check(self) -> None:
        if self.size < 0:
            raise LabelingError(f"audit.size must be 0 or more, got {self.size}")
        if not 0 < self.confidence < 1:
            raise LabelingError(f"audit.confidence must be between 0 and 1, got {self.confidence}")
        if self.interval not in METHODS:
            raise LabelingError(f"audit.interval must be one of {', '.join(METHODS)}, got {self.interval!r}")


def audit_paths(out: str | Path | None) -> list[str]:
    """Every image drawn for the audit by the rounds written in ``out``, in the order drawn."""
    if out is None:
        return []
    paths: list[str] = []
    for _, rdir in round_dirs(Path(out)):
        if (rdir / DRAWN).is_file():
            with open(rdir / DRAWN, newline="", encoding="utf-8") as f:
                paths += [row["path"] for row in csv.DictReader(f)]
    return paths


def draw(unlabeled: Tensor, size: int, seed: int, round_: int) -> Tensor:
    """``size`` pool indices drawn at random from ``unlabeled`` with the run's "audit" stream of
    the round (:func:`lplgrad.split.round_generator`). -> (<= size,)"""
    g = round_generator(seed, round_, "audit")
    return unlabeled[torch.randperm(len(unlabeled), generator=g)[:size]]


def estimate(net, dm, device: torch.device, options: AuditOptions) -> Interval:
    """The network's accuracy on the audit images that have a label, with its interval."""
    audit = dm.split.held_out
    audit = audit[dm.targets[audit] >= 0]
    correct, n = 0, len(audit)
    if n:
        preds = run_eval(
            net, dm.pool_dataloader(audit), device, lambda x, _: net(x)[0][:, : len(dm.classes)].argmax(1).cpu()
        )
        correct = int((torch.cat(preds) == dm.targets[audit]).sum())
    return interval(correct, n, options.confidence, options.interval)


def write_drawn(stage: Path, paths: list[str], round_: int) -> None:
    """The round's draw (``audit_drawn.csv``) and the list to label (``to_label_audit.csv``)."""
    for name in (DRAWN, TO_LABEL):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "round"])
        w.writerows([p, round_] for p in paths)
        atomic_write(stage / name, buf.getvalue())


def audit_tasks(paths: list[str], prefix: str, round_: int) -> list[dict[str, Any]]:
    """Label Studio tasks for the drawn images: ``audit: true`` and no prediction."""
    return [
        {"data": {"image": image_url(prefix, p), "path": p, "round": round_, "audit": True}, "meta": {"audit": True}}
        for p in paths
    ]


def log_tensorboard(out: Path, round_: int, got: Interval) -> None:
    """``audit/accuracy``, ``audit/low``, ``audit/high`` and ``audit/labelled`` at step ``round_``."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(Path(out) / "tensorboard")) as w:
        for name, value in (("accuracy", got.accuracy), ("low", got.low), ("high", got.high), ("labelled", got.n)):
            w.add_scalar(f"audit/{name}", value, round_)


@dataclass
class AuditRound:
    """This round's audit: the estimate (None: the network was not trained, or no audit) and the
    images drawn now."""

    estimate: Interval | None
    drawn: list[str]

    @property
    def fields(self) -> dict[str, Any]:
        """What ``proposal.json`` says of it."""
        return {
            "audit": {
                "estimate": None if self.estimate is None else self.estimate.as_dict(),
                "drawn": self.drawn,
                "to_label": TO_LABEL if self.drawn else None,
            }
        }

    def line(self) -> str:
        what = "not trained this round" if self.estimate is None else self.estimate.describe()
        return (
            f"Audit: accuracy on the randomly drawn, labelled audit images: {what}; "
            f"{len(self.drawn)} more drawn this round ({TO_LABEL})"
        )


def audit_round(options: AuditOptions, dm, net, trained: bool, round_: int, device, out: Path) -> AuditRound | None:
    """Measure the network on the audit images labelled so far (when it was trained), then draw
    this round's audit images and hold them out of the pool (so the proposal leaves them out).
    None when there is no audit (``size`` 0 and none drawn before)."""
    if options.size == 0 and len(dm.split.held_out) == 0:
        return None
    got = estimate(net, dm, device, options) if trained else None
    if got is not None:
        log_tensorboard(out, round_, got)
    drawn = draw(dm.split.unlabeled(), options.size, dm.effective_seed, round_)
    dm.split.hold_out(drawn)
    return AuditRound(got, [dm.files[i] for i in drawn.tolist()])
