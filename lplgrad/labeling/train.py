"""The train step of a labeling run: from which network it starts, and training it (or, with too
few labels, choosing the cold-start strategy that picks the first batch without training)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from lightning.pytorch import Trainer

from lplgrad.errors import LabelingError
from lplgrad.labeling.checkpoint import latest_checkpoint, load_checkpoint
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.report import listed, say
from lplgrad.module import ActiveLearner
from lplgrad.strategies import Coreset, QueryStrategy, Random, TypiClust

COLD_START = {"random": Random, "coreset": Coreset, "typiclust": TypiClust}
HOW = {
    "random": "at random (seed {seed}, round {round})",
    "coreset": "by Coreset (k-center greedy) on the features of the {net} network",
    "typiclust": "by TypiClust (the most typical images of the largest clusters) on the features of the {net} network",
}


def cold_start_choice(cold_start: str, learner: ActiveLearner) -> str:
    """``auto``: TypiClust when the backbone starts from pretrained weights (its features already
    group similar images), a seeded random batch otherwise."""
    if cold_start != "auto":
        return cold_start
    return "typiclust" if getattr(learner.net, "pretrained", False) else "random"


class TrainingMode(str, Enum):
    """How the network that scores the pool got there this run."""

    TRAINED = "trained"  # trained on the labeled images
    COLD_START = "cold_start"  # not trained: too few labels, a cold-start strategy picks the batch


@dataclass
class Training:
    """What scores the pool, and how the network got there."""

    strategy: QueryStrategy
    mode: TrainingMode
    reason: str | None  # why a cold start
    resumed: Path | None  # the checkpoint the network started from
    accuracy: float | None  # on the augmented labeled images, at the last epoch
    seconds: float
    steps: int = 0  # M's training steps (what a strategy that trains, VAAL, matches)


def starting_checkpoint(resume: bool, resume_from: str | None, out: Path) -> Path | None:
    """``--resume_from``, or with ``--resume`` the latest round's checkpoint in ``out`` (if any)."""
    if resume_from:
        path = Path(resume_from)
        if not path.is_file():
            raise LabelingError(f"--resume_from {path}: no such file")
        return path
    if resume:
        path = latest_checkpoint(out)
        if path is None:
            say(f"Resume: no checkpoint in {out} yet: starting from a fresh network")
        return path
    return None


def train(
    trainer: Trainer,
    learner: ActiveLearner,
    dm: LabelFolderData,
    round_: int,
    resumed: Path | None,
    cold_start: str,
    strategy: QueryStrategy,
) -> Training:
    """Load ``resumed`` into the network, then train it on the labeled images and return
    ``strategy``; with too few labels, train nothing and return the ``cold_start`` strategy instead.
    With ``data.feature_cache``, the frozen part's rows are computed (or read) first, from the
    network as loaded."""
    if resumed is not None:
        say(f"Resume: starting from {resumed}")
        listed(load_checkpoint(resumed, learner, dm.classes))
    if dm.feature_cache:
        folder = Path(dm.feature_dir) if dm.feature_dir else None
        for line in dm.cache_features(learner.net, trainer.strategy.root_device, folder):
            say(line)
    reason = dm.cold_start_reason()
    t0 = time.monotonic()
    if reason is not None:
        choice = cold_start_choice(cold_start, learner)
        net = "checkpoint's" if resumed else "pretrained" if getattr(learner.net, "pretrained", False) else "untrained"
        how = HOW[choice].format(seed=dm.effective_seed, round=round_, net=net)
        say(f"Cold start: {reason}. The network is not trained; this batch is chosen {how}.")
        return Training(COLD_START[choice](), TrainingMode.COLD_START, reason, resumed, None, time.monotonic() - t0)
    say(
        f"Training: round {round_}, {len(dm.split)} labeled images in {len(dm.classes)} classes, "
        f"{trainer.max_epochs} epochs, {'from ' + str(resumed) if resumed else 'from a fresh network'} "
        f"(loss and accuracy on the {'cached features of the' if dm.feature_cache else 'augmented'} labeled images):"
    )
    trainer.fit(learner, datamodule=dm)
    acc = trainer.callback_metrics.get("train/acc")
    steps = int(trainer.num_training_batches) * int(trainer.max_epochs)
    return Training(
        strategy, TrainingMode.TRAINED, None, resumed, None if acc is None else float(acc), time.monotonic() - t0, steps
    )
