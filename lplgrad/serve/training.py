"""One training of the backend, start to end, run by the worker thread (never in a request).

It reads the project as it is now (labeling config, every task with its annotations), fetches
the images it has not cached yet (:mod:`~lplgrad.serve.images`), writes the labels as the
labeling app's labels CSV, trains M and A with the labeling app's own code
(:func:`lplgrad.labeling.train.train`; too few labels: its cold-start strategy), scores every
unlabelled task with the strategy (:mod:`~lplgrad.serve.scoring`), posts one prediction of the
new model version per unlabelled task and makes it the project's model version, deletes this
backend's older predictions of those tasks (:mod:`~lplgrad.serve.cleanup`, unless
``--old_predictions keep``), and only then saves the checkpoint, the stop signal's files and the
state (so a training that fails halfway is simply done again). The audit tasks
(``--audit.size``) are left out of the labels and of the scoring, and a trained network gets the
stop signal and the audit estimate (:mod:`~lplgrad.serve.signals`)."""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from lplgrad.estimate import Interval
from lplgrad.labeling.checkpoint import CHECKPOINT, save_checkpoint
from lplgrad.labeling.outputs import config_text
from lplgrad.labeling.propose import propose
from lplgrad.labeling.stop import StopResult
from lplgrad.labeling.train import TrainingMode, train
from lplgrad.labeling.trained import CONFIG
from lplgrad.records import atomic_write
from lplgrad.serve.cleanup import delete_single, delete_whole, older_predictions
from lplgrad.serve.config import LabelConfig, make_cli, training_args
from lplgrad.serve.images import ImageCache
from lplgrad.serve.project import label_config, post_predictions, project_tasks, task_labels
from lplgrad.serve.scoring import rank_scores
from lplgrad.labeling.audit import AuditOptions
from lplgrad.serve.signals import audit_estimate, draw_audit, hold_out_audit, stop_signal
from lplgrad.serve.state import StateFile, version_name
from lplgrad.strategies import check_learner

log = logging.getLogger("lplgrad.serve")


@dataclass
class Scored:
    """What a training produced: task id -> (predicted class or None, score), best first; the
    labelled tasks it trained on; tasks skipped (unreadable image); whether M was trained; the
    audit tasks (those before and those drawn now) and, when trained, the audit estimate (None
    without an audit) and the stop signal; whether this backend's older predictions of the
    re-scored tasks are deleted (``--old_predictions``) and how many were."""

    scores: dict[int, tuple[str | None, float]] = field(default_factory=dict)
    labelled: int = 0
    skipped: list[str] = field(default_factory=list)
    trained: bool = False
    audit: list[int] = field(default_factory=list)
    drawn: int = 0
    estimate: Interval | None = None
    stop: StopResult | None = None
    delete_older: bool = True
    deleted: int = 0


def write_labels(path: Path, files: dict[int, str], labels: dict[int, str | None]) -> int:
    """The labels CSV of the training (``path,label`` for every labelled task with an image)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label"])
    rows = [(files[t], label) for t, label in labels.items() if label is not None and t in files]
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())
    return len(rows)


def score_open(out: Scored, learner, dm, training, version: int, device, task_of: dict[str, int]) -> None:
    """Rank every unlabelled task with the strategy (and the trained network's class) into
    ``out.scores`` (:mod:`~lplgrad.serve.scoring`)."""
    unlabeled = dm.split.unlabeled()
    if len(unlabeled):
        k = len(unlabeled)
        proposal = propose(learner, dm, training.strategy, k, version, device, training.steps, classify=out.trained)
        order = [task_of[dm.files[i]] for i in proposal.indices.tolist()]
        out.scores = rank_scores(order, proposal.predicted or [None] * len(order))


def train_and_score(
    args: list[str], state_dir: Path, config: LabelConfig, files, labels, version: int, audit: list[int]
) -> Scored:
    """Train on the cached images and their labels (the audit tasks' left out) and score the
    unlabelled ones that are not audit tasks; the checkpoint and the config that rebuilds it are
    saved as ``state_dir/model.ckpt.next`` and ``config.yaml.next`` (renamed once the predictions
    are posted). A trained network also gets the audit estimate and the stop signal."""
    audit = [t for t in audit if t in labels]  # tasks deleted since are forgotten
    held = set(audit)
    trained_on = {t: label for t, label in labels.items() if t not in held}
    out = Scored(labelled=write_labels(state_dir / "labels.csv", files, trained_on))
    cli = make_cli(training_args(args, state_dir, config.classes))
    cli.build()
    dm, learner, trainer = cli.datamodule, cli.model, cli.trainer
    out.skipped = [f"task {s.path.split('-', 1)[0]}: {s.reason}" for s in dm.scan.skipped]
    check_learner(cli.strategy, learner)
    options = AuditOptions.from_config(cli.config.audit)
    out.delete_older = cli.config.old_predictions == "delete"
    task_of = {name: task for task, name in files.items()}
    hold_out_audit(dm, task_of, audit, labels)
    drawn = draw_audit(dm, task_of, options.size, version)
    out.audit, out.drawn = [*audit, *drawn], len(drawn)
    training = train(trainer, learner, dm, version, None, cli.config.cold_start, cli.strategy)
    out.trained = training.mode is TrainingMode.TRAINED
    device = trainer.strategy.root_device
    learner.to(device)
    score_open(out, learner, dm, training, version, device, task_of)
    if out.trained:
        out.estimate = audit_estimate(learner.net, dm, device, options, out.audit)
        out.stop = stop_signal(state_dir, dm, learner.net, device, cli.config.stop, version)
    learner.cpu()
    labelled_paths = [dm.files[i] for i in dm.split.labeled.tolist()]
    save_checkpoint(state_dir / (CHECKPOINT + ".next"), learner, dm.classes, version, labelled_paths, out.trained)
    atomic_write(state_dir / (CONFIG + ".next"), config_text(cli) or "")
    return out


def signals_text(scored: Scored) -> str:
    """The log's words on the stop signal and the audit ("" when neither applies)."""
    parts = [scored.stop.line] if scored.stop else []
    if scored.estimate is not None:
        parts.append(f"Audit: {scored.estimate.describe()}")
    if scored.drawn:
        parts.append(f"{scored.drawn} open tasks drawn for the audit ({len(scored.audit)} in all, never predicted)")
    return "".join(f"; {p}" for p in parts)


def publish(live, config: LabelConfig, scored: Scored, name: str, tasks: list[dict], labels: dict) -> int:
    """Post the new version's predictions and make it the project's, deleting this backend's
    older predictions of the re-scored tasks and of the open audit tasks around it
    (:mod:`~lplgrad.serve.cleanup`). -> how many predictions were posted"""
    older = None
    if scored.delete_older:
        open_audit = {t for t in scored.audit if labels.get(t) is None}
        older = older_predictions(tasks, set(scored.scores) | open_audit)
        delete_whole(live, older)
    posted = post_predictions(live, config, scored.scores, name)
    if older is not None:
        scored.deleted = older.count - delete_single(live, older)
    return posted


def run_training(args: list[str], state: StateFile, open_live) -> Scored:
    """One training (see the module docstring); ``open_live()`` gives the project
    (:func:`~lplgrad.serve.project.open_project`). Raises LabelStudioError when Label Studio
    does not answer; the state is then unchanged."""
    t0 = time.monotonic()
    live = open_live()
    config = label_config(live)
    tasks = project_tasks(live)
    labels = task_labels(tasks, config)
    images = {t["id"]: t["data"].get(config.value_key) for t in tasks}
    cache = ImageCache(state.dir / "images", live.url, live.authorization())
    files, skipped = cache.fetch_all(images)
    version = state.read().version + 1
    scored = train_and_score(args, state.dir, config, files, labels, version, state.read().audit)
    scored.skipped[:0] = skipped
    name = version_name(version)
    posted = publish(live, config, scored, name, tasks, labels)
    for name_ in (CHECKPOINT, CONFIG):  # the network and the config that rebuilds it (lplgrad.labeling.trained)
        (state.dir / (name_ + ".next")).replace(state.dir / name_)
    for file, text in (scored.stop.files if scored.stop else {}).items():
        atomic_write(state.dir / file, text)
    first = next(iter(scored.scores), None)
    state.update(
        version=version,
        labels=scored.labelled,
        trained_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        skipped=scored.skipped,
        scores={str(t): [label, score] for t, (label, score) in scored.scores.items()},
        first_pick=first,
        last_error=None,
        audit=scored.audit,
        audit_estimate=scored.estimate.as_dict() if scored.estimate else None,
        **(scored.stop.fields if scored.stop else {"stop_kappa": None, "stop_suggested": False}),
    )
    log.info(
        "training %s: %d labelled tasks, %s; %d open tasks scored and predicted%s; %d skipped; %.1f s%s",
        name,
        scored.labelled,
        "trained" if scored.trained else "cold start (not trained)",
        posted,
        f", {scored.deleted} older predictions deleted" if scored.delete_older else "",
        len(scored.skipped),
        time.monotonic() - t0,
        signals_text(scored),
    )
    for line in scored.skipped:
        log.info("skipped: %s", line)
    return scored
