"""One labeling round as steps, run after the command line is parsed (nothing is read, written or
fetched while parsing): prepare, pull (Label Studio), import, scan, check that Label Studio
serves the images, train, propose, push, write, report. Each step returns what the next ones
need."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lplgrad.errors import LabelingError
from lplgrad.labeling import report
from lplgrad.labeling.audit import AuditOptions, audit_round
from lplgrad.labeling.checkpoint import remove_partial_rounds, round_dirs, staged_round
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.label_studio import check_outside, import_export, local_files_prefix
from lplgrad.labeling.labels import check_labels_file, parse_classes, read_rows
from lplgrad.labeling.live import LiveProject, connect
from lplgrad.labeling.outputs import LabelRound, config_text, round_tasks, write_round
from lplgrad.labeling.propose import Proposal, propose
from lplgrad.labeling.report import say
from lplgrad.labeling.served import LOCAL_FILES, check_served
from lplgrad.labeling.snapshot import snapshot_labels
from lplgrad.labeling.stop import stop_signal
from lplgrad.labeling.train import Training, TrainingMode, starting_checkpoint, train
from lplgrad.module import ActiveLearner
from lplgrad.runfolder import RunFolder
from lplgrad.strategies import check_learner


@dataclass
class Prepared:
    """The output folder, claimed and cleared of half-written rounds, and the Label Studio URL
    prefix of the image paths (``--url_prefix``, or the local-files one)."""

    out: Path
    prefix: str


@dataclass
class LiveSession:
    """A Label Studio project in live sync, and the image paths it already has tasks for."""

    project: LiveProject
    existing: set[str]


def prepare(cfg, run_folder: RunFolder) -> Prepared:
    """Check the folders and the labels CSV, claim ``--out`` and remove half-written rounds."""
    images, out = Path(cfg.images).resolve(), Path(cfg.out).resolve()
    if out == images or images in out.parents:
        raise LabelingError(
            f"--out {cfg.out} is inside the image folder {cfg.images}: choose a folder "
            f"outside it (the image folder is never written to)"
        )
    check_labels_file(cfg.labels)
    run_folder.claim(out)
    for half in remove_partial_rounds(out):
        say(f"Removed {half}: a round that an earlier run did not finish writing (it is redone now)")
    prefix = cfg.url_prefix if cfg.url_prefix is not None else local_files_prefix(Path(cfg.images))
    return Prepared(Path(cfg.out), prefix)


def pull(cfg, prefix: str) -> LiveSession:
    """Live sync, steps 1 and 2 (:mod:`lplgrad.labeling.live`): the labels CSV rewritten as a
    snapshot of the project's labels (:mod:`lplgrad.labeling.snapshot`)."""
    ls = cfg.label_studio
    if not ls.project:
        raise LabelingError("--label_studio.url needs --label_studio.project: a project id or title")
    if not cfg.labels:
        raise LabelingError("live sync needs --labels: the CSV that holds the project's labels")
    check_outside(cfg.labels, cfg.images, "--label_studio.url")
    classes = parse_classes(cfg.classes) or sorted(
        {lab for _, _, lab in read_rows(cfg.labels) if lab} if Path(cfg.labels).is_file() else set()
    )
    live = connect(ls.url, ls.project, ls.key_env, classes)
    if prefix.startswith(LOCAL_FILES) and live.serve_folder(Path(cfg.images)):  # the local-files URLs need it
        say(f"Label Studio: project {live.title!r} now serves {Path(cfg.images).resolve()} (a Local Files storage)")
    pulled = live.pull(prefix)
    snap = snapshot_labels(cfg.labels, cfg.images, pulled.truth)
    snap.notes[:0] = pulled.notes
    report.pulled(live, cfg.labels, pulled, snap)
    return LiveSession(live, set(pulled.truth))


def check_images_served(live: LiveSession, cfg, prepared: Prepared, files: list[str]) -> None:
    """Live sync, step 3: Label Studio serves the folder's images at the tasks' URLs (checked on
    one image, once per Label Studio, project and URL prefix; :mod:`lplgrad.labeling.served`)."""
    line = check_served(live.project, Path(cfg.images), prepared.prefix, files[0] if files else None, prepared.out)
    if line:
        say(line)


def import_labels(cfg, prefix: str) -> None:
    """``--import_from``: a Label Studio export's labels appended to the labels CSV."""
    if not cfg.labels:
        raise LabelingError("--import_from needs --labels: the CSV to append the imported labels to")
    got = import_export(cfg.import_from, cfg.labels, cfg.images, prefix)
    report.imported(cfg.import_from, cfg.labels, got.pairs, got.new, got.notes, got.changed)


def next_round(out: Path) -> int:
    rounds = round_dirs(out)
    return rounds[-1][0] + 1 if rounds else 1


def propose_step(
    learner: ActiveLearner, dm: LabelFolderData, training: Training, round_: int, device
) -> tuple[Proposal, float]:
    """The next batch (with the network's guesses when it was trained), and its seconds. The
    network stays on ``device``."""
    t0 = time.monotonic()
    learner.to(device)
    if len(dm.split.unlabeled()):
        trained = training.mode is TrainingMode.TRAINED
        proposal = propose(learner, dm, training.strategy, dm.query_size, round_, device, training.steps, trained)
    else:
        proposal = Proposal(dm.split.unlabeled()[:0], dm.split.unlabeled()[:0].float(), 0)
        say("Every image is labeled: nothing left to propose.")
    return proposal, time.monotonic() - t0


def label_round(cli, args: list[str] | None) -> dict[str, Any]:
    """One labeling run, step by step. Returns the summary written to ``proposal.json`` (plus
    ``round_dir``)."""
    cfg = cli.config
    prepared = prepare(cfg, cli.run_folder)
    live = pull(cfg, prepared.prefix) if cfg.label_studio.url else None
    if cfg.import_from:
        import_labels(cfg, prepared.prefix)
    cli.build()  # the scan: the data module lists and decodes the folder and joins the labels
    dm, learner, trainer = cli.datamodule, cli.model, cli.trainer
    if live:
        check_images_served(live, cfg, prepared, dm.files)
    if trainer.num_devices > 1 or trainer.num_nodes > 1:
        raise LabelingError("python -m lplgrad.label runs on one device: set --trainer.devices 1")
    check_learner(cli.strategy, learner)
    audit_options = AuditOptions.from_config(cfg.audit)
    round_ = next_round(prepared.out)
    rdir = prepared.out / f"round_{round_:03d}"
    report.inputs(dm)
    resumed = starting_checkpoint(cfg.resume, cfg.resume_from, prepared.out)
    training = train(trainer, learner, dm, round_, resumed, cfg.cold_start, cli.strategy)
    device = trainer.strategy.root_device
    trained = training.mode is TrainingMode.TRAINED
    audit = audit_round(audit_options, dm, learner.net.to(device), trained, round_, device, prepared.out)
    proposal, query_seconds = propose_step(learner, dm, training, round_, device)
    lr = LabelRound(round_, rdir, prepared.prefix, training, proposal, query_seconds, audit=audit)
    lr.stop = stop_signal(prepared.out, round_, dm, learner.net, device, cfg.stop) if lr.trained else None
    learner.cpu()
    lr.tasks = round_tasks(lr, dm)
    pushed = live.project.push(lr.tasks, live.existing) if live else None  # before any file of the round
    with staged_round(rdir) as stage:  # the round folder appears whole, or not at all
        summary = write_round(lr, dm, learner, config_text(cli), trainer.max_epochs, args, stage)
    resume_hint = summary["checkpoint"] is not None and not cfg.resume
    report.proposal(
        rdir, summary, proposal.rows(dm.files), type(training.strategy).__name__, resume_hint, live=live is not None
    )
    if lr.stop:
        say(lr.stop.line)
    if lr.audit:
        say(lr.audit.line())
    if live:
        report.pushed(live.project, pushed, len(lr.tasks), resume_hint)
    summary["round_dir"] = str(rdir)
    return summary
