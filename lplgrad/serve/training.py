"""One training of the backend, start to end, run by the worker thread (never in a request).

It reads the project as it is now (labeling config, every task with its annotations), fetches
the images it has not cached yet (:mod:`~lplgrad.serve.images`), writes the labels as the
labeling app's labels CSV, trains M and A with the labeling app's own code
(:func:`lplgrad.labeling.train.train`; too few labels: its cold-start strategy), scores every
unlabelled task with the strategy (:func:`lplgrad.labeling.propose.propose`), posts one
prediction of the new model version per unlabelled task and makes it the project's model
version, and only then saves the checkpoint and the state (so a training that fails halfway is
simply done again)."""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from lplgrad.labeling.checkpoint import CHECKPOINT, save_checkpoint
from lplgrad.labeling.outputs import config_text
from lplgrad.labeling.propose import predict, propose
from lplgrad.labeling.train import TrainingMode, train
from lplgrad.labeling.trained import CONFIG
from lplgrad.records import atomic_write
from lplgrad.serve.config import LabelConfig, make_cli, training_args
from lplgrad.serve.images import ImageCache
from lplgrad.serve.project import label_config, post_predictions, task_labels
from lplgrad.serve.state import StateFile, version_name
from lplgrad.strategies import check_learner

log = logging.getLogger("lplgrad.serve")


@dataclass
class Scored:
    """What a training produced: task id -> (predicted class or None, score), best first; the
    labelled tasks it trained on; tasks skipped (unreadable image), and whether M was trained."""

    scores: dict[int, tuple[str | None, float]] = field(default_factory=dict)
    labelled: int = 0
    skipped: list[str] = field(default_factory=list)
    trained: bool = False


def write_labels(path: Path, files: dict[int, str], labels: dict[int, str | None]) -> int:
    """The labels CSV of the training (``path,label`` for every labelled task with an image)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label"])
    rows = [(files[t], label) for t, label in labels.items() if label is not None and t in files]
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())
    return len(rows)


def rank_scores(order: list[int], predicted: list[str | None]) -> dict[int, tuple[str | None, float]]:
    """Scores for the Data Manager: the strategy's k-th pick of n gets k / n, so that ascending
    "Prediction score" shows the most informative task first (and all scores are in (0, 1])."""
    n = len(order)
    return {task: (label, (k + 1) / n) for k, (task, label) in enumerate(zip(order, predicted))}


def train_and_score(args: list[str], state_dir: Path, config: LabelConfig, files, labels, version: int) -> Scored:
    """Train on the cached images and their labels and score the unlabelled ones; the
    checkpoint and the config that rebuilds it are saved as ``state_dir/model.ckpt.next`` and
    ``config.yaml.next`` (renamed once the predictions are posted)."""
    out = Scored(labelled=write_labels(state_dir / "labels.csv", files, labels))
    cli = make_cli(training_args(args, state_dir, config.classes))
    cli.build()
    dm, learner, trainer = cli.datamodule, cli.model, cli.trainer
    out.skipped = [f"task {s.path.split('-', 1)[0]}: {s.reason}" for s in dm.scan.skipped]
    check_learner(cli.strategy, learner)
    training = train(trainer, learner, dm, version, None, cli.config.cold_start, cli.strategy)
    out.trained = training.mode is TrainingMode.TRAINED
    device = trainer.strategy.root_device
    learner.to(device)
    task_of = {name: task for task, name in files.items()}
    unlabeled = dm.split.unlabeled()
    if len(unlabeled):
        proposal = propose(learner, dm, training.strategy, len(unlabeled), version, device, training.steps)
        if out.trained:
            predict(learner, dm, proposal, device)
        order = [task_of[dm.files[i]] for i in proposal.indices.tolist()]
        out.scores = rank_scores(order, proposal.predicted or [None] * len(order))
    learner.cpu()
    labelled_paths = [dm.files[i] for i in dm.split.labeled.tolist()]
    save_checkpoint(state_dir / (CHECKPOINT + ".next"), learner, dm.classes, version, labelled_paths, out.trained)
    atomic_write(state_dir / (CONFIG + ".next"), config_text(cli) or "")
    return out


def run_training(args: list[str], state: StateFile, open_live) -> Scored:
    """One training (see the module docstring); ``open_live()`` gives the project
    (:func:`~lplgrad.serve.project.open_project`). Raises LabelStudioError when Label Studio
    does not answer; the state is then unchanged."""
    t0 = time.monotonic()
    live = open_live()
    config = label_config(live)
    tasks = live.tasks()
    labels = task_labels(tasks, config)
    images = {t["id"]: t["data"].get(config.value_key) for t in tasks}
    cache = ImageCache(state.dir / "images", live.url, live.authorization())
    files, skipped = cache.fetch_all(images)
    version = state.read().version + 1
    scored = train_and_score(args, state.dir, config, files, labels, version)
    scored.skipped[:0] = skipped
    name = version_name(version)
    posted = post_predictions(live, config, scored.scores, name)
    for name_ in (CHECKPOINT, CONFIG):  # the network and the config that rebuilds it (lplgrad.labeling.trained)
        (state.dir / (name_ + ".next")).replace(state.dir / name_)
    first = next(iter(scored.scores), None)
    state.update(
        version=version,
        labels=scored.labelled,
        trained_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        skipped=scored.skipped,
        scores={str(t): [label, score] for t, (label, score) in scored.scores.items()},
        first_pick=first,
        last_error=None,
    )
    log.info(
        "training %s: %d labelled tasks, %s; %d open tasks scored and predicted; %d skipped; %.1f s",
        name,
        scored.labelled,
        "trained" if scored.trained else "cold start (not trained)",
        posted,
        len(scored.skipped),
        time.monotonic() - t0,
    )
    for line in scored.skipped:
        log.info("skipped: %s", line)
    return scored
