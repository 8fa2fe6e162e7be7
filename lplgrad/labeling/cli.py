"""``python -m lplgrad.label``: train on the labeled images of a folder, propose the next ones to label.

One run is four steps: train (:mod:`~lplgrad.labeling.train`: the network on the labeled images,
from the last checkpoint with ``--resume``; with too few labels, a cold-start strategy instead),
propose (:mod:`~lplgrad.labeling.propose`: the experiment's query over the unlabeled images),
write (:mod:`~lplgrad.labeling.outputs`: ``<out>/round_NNN/``) and report
(:mod:`~lplgrad.labeling.report`: the console). The image folder is only read.

Model, strategy and trainer options are the main CLI's (``--model.*``, ``--strategy``,
``--trainer.*``, ``--config``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionYesNo
from lightning.pytorch import Callback, LightningModule, Trainer

from lplgrad.allocator import keep_freed_memory
from lplgrad.cli import BaseCLI, guarded
from lplgrad.errors import LabelingError
from lplgrad.labeling import report
from lplgrad.labeling.checkpoint import remove_partial_rounds, round_dirs, staged_round
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.label_studio import check_outside, import_export, local_files_prefix, merge_labels
from lplgrad.labeling.labels import check_labels_file, parse_classes, read_rows
from lplgrad.labeling.live import LiveProject, LiveSyncOptions, connect
from lplgrad.labeling.outputs import config_text, round_tasks, write_round
from lplgrad.labeling.stop import StopOptions, stop_signal, write_stop_files
from lplgrad.labeling.propose import Proposal, predict, propose
from lplgrad.labeling.report import say
from lplgrad.labeling.train import Training, starting_checkpoint, train
from lplgrad.module import ActiveLearner
from lplgrad.runfolder import RunFolder
from lplgrad.strategies import check_learner

SCAN_CACHE = "scan_cache.json"


class EpochInRound(Callback):
    """One labeling run is one round: the module's epoch within the round is the trainer's epoch
    (drives A's detaching after ``model.epoch_loss`` epochs and M's schedule). Prints a short
    progress line about every fifth of the epochs."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.epoch_in_round = trainer.current_epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        if total is None or total < 1 or (epoch % max(1, total // 5) and epoch != total):
            return
        m = trainer.callback_metrics
        loss, acc = m.get("train/loss"), m.get("train/acc")
        say(f"  epoch {epoch:>3}/{total}" + (f"  loss {float(loss):.3f}" if loss is not None else "")
            + (f"  accuracy {100 * float(acc):5.1f}%" if acc is not None else ""))


class LabelCLI(BaseCLI):
    """The labeling app's options; ``--out`` is claimed (:class:`RunFolder`) before anything is
    built, so that a second run on the same folder stops before it writes."""

    def __init__(self, *args: Any, run_folder: RunFolder, **kwargs: Any) -> None:
        self.run_folder = run_folder
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--images", type=str, required=True,
                            help="The folder of images (any depth; PNG, JPEG, ...). Only read.")
        parser.add_argument("--labels", type=str | None, default=None,
                            help="The labels CSV: a header 'path,label', then one row per labeled image, "
                                 "path relative to --images. Missing or empty: no labels yet.")
        parser.add_argument("--classes", type=str | list[str] | None, default=None,
                            help="The class names, 'a,b,c' or a file with one per line; rows with other "
                                 "classes are reported and skipped. Default: the classes in the CSV.")
        parser.add_argument("--out", type=str, default="labeling",
                            help="Output folder; each run writes <out>/round_NNN/. Must not be inside --images.")
        parser.add_argument("--resume", action=ActionYesNo, default=False,
                            help="Start from the network of the latest round in --out instead of a fresh one.")
        parser.add_argument("--resume_from", type=str | None, default=None,
                            help="Start from this checkpoint (a model.ckpt of an earlier round).")
        parser.add_argument("--cold_start", type=Literal["auto", "random", "coreset", "typiclust"], default="auto",
                            help="With too few labels to train: choose the batch at random (seeded), by Coreset "
                                 "(k-center greedy) or by TypiClust (typical images of the largest clusters) on the "
                                 "network's features; auto: TypiClust with a pretrained backbone, else random.")
        parser.add_argument("--url_prefix", type=str | None, default=None,
                            help="Label Studio: prepended to each path in data.image. Default: "
                                 "/data/local-files/?d=<name of the image folder>/ (local-files serving "
                                 "with the image folder's parent as document root).")
        parser.add_argument("--import_from", type=str | None, default=None,
                            help="Before anything else, append the labels of a Label Studio export "
                                 "(JSON, JSON-MIN or CSV) to --labels.")
        parser.add_class_arguments(LiveSyncOptions, "label_studio")
        parser.add_class_arguments(StopOptions, "stop")
        parser.link_arguments("images", "data.root")
        parser.link_arguments("out", "data.scan_cache", compute_fn=lambda out: str(Path(out) / SCAN_CACHE))
        parser.link_arguments("labels", "data.labels")
        parser.link_arguments("classes", "data.classes")

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        cfg = self.config
        images, out = Path(cfg.images).resolve(), Path(cfg.out).resolve()
        if out == images or images in out.parents:
            raise LabelingError(f"--out {cfg.out} is inside the image folder {cfg.images}: choose a folder "
                                f"outside it (the image folder is never written to)")
        check_labels_file(cfg.labels)
        self.run_folder.claim(out)
        for half in remove_partial_rounds(out):
            say(f"Removed {half}: a round that an earlier run did not finish writing (it is redone now)")
        prefix = cfg.url_prefix if cfg.url_prefix is not None else local_files_prefix(Path(cfg.images))
        self.live = None
        if cfg.label_studio.url:
            self.live = pull_labels(cfg, prefix)
        if cfg.import_from:
            if not cfg.labels:
                raise LabelingError("--import_from needs --labels: the CSV to append the imported labels to")
            got = import_export(cfg.import_from, cfg.labels, cfg.images, prefix)
            report.imported(cfg.import_from, cfg.labels, got.pairs, got.new, got.notes, got.changed)


def pull_labels(cfg, prefix: str) -> tuple[LiveProject, set[str]]:
    """Live sync, step 1 and 2 (:mod:`lplgrad.labeling.live`): every annotation of the project
    merged into the labels CSV. Returns the project and the image paths it has tasks for."""
    ls = cfg.label_studio
    if not ls.project:
        raise LabelingError("--label_studio.url needs --label_studio.project: a project id or title")
    if not cfg.labels:
        raise LabelingError("live sync needs --labels: the CSV the annotations are merged into")
    check_outside(cfg.labels, cfg.images, "--label_studio.url")
    classes = parse_classes(cfg.classes) or sorted({lab for _, _, lab in read_rows(cfg.labels) if lab}
                                                   if Path(cfg.labels).is_file() else set())
    live = connect(ls.url, ls.project, ls.key_env, classes)
    if cfg.url_prefix is None and live.serve_folder(Path(cfg.images)):  # the local-files URLs need it
        say(f"Label Studio: project {live.title!r} now serves {Path(cfg.images).resolve()} (a Local Files storage)")
    pairs, notes, existing = live.pull(prefix)
    got = merge_labels(pairs, notes, cfg.labels, cfg.images)
    report.pulled(live, cfg.labels, got.pairs, got.new, got.notes, got.changed)
    return live, existing


def _next_round(out: Path) -> int:
    rounds = round_dirs(out)
    return rounds[-1][0] + 1 if rounds else 1


def _propose(learner: ActiveLearner, dm: LabelFolderData, training: Training, round_: int, device) -> tuple[Proposal, float]:
    """The propose step: the next batch (with the network's guesses when it was trained), and its
    seconds. The network stays on ``device``."""
    t0 = time.monotonic()
    learner.to(device)
    if len(dm.split.unlabeled()):
        proposal = propose(learner, dm, training.strategy, dm.query_size, round_, device)
        if training.mode == "trained":
            predict(learner, dm, proposal, device)
    else:
        proposal = Proposal(dm.split.unlabeled()[:0], dm.split.unlabeled()[:0].float(), 0)
        say("Every image is labeled: nothing left to propose.")
    return proposal, time.monotonic() - t0


def run_round(cli: LabelCLI, args: list[str] | None) -> dict[str, Any]:
    """One labeling run: train, propose, write, report. Returns the summary (plus ``round_dir``)."""
    cfg, dm, learner, trainer = cli.config, cli.datamodule, cli.model, cli.trainer
    if trainer.num_devices > 1 or trainer.num_nodes > 1:
        raise LabelingError("python -m lplgrad.label runs on one device: set --trainer.devices 1")
    check_learner(cli.strategy, learner)
    out = Path(cfg.out)
    round_ = _next_round(out)
    rdir = out / f"round_{round_:03d}"
    report.inputs(dm)
    resumed = starting_checkpoint(cfg.resume, cfg.resume_from, out)
    training = train(trainer, learner, dm, round_, resumed, cfg.cold_start, cli.strategy)
    device = trainer.strategy.root_device
    proposal, query_seconds = _propose(learner, dm, training, round_, device)
    stop = stop_signal(out, round_, dm, learner.net, device, cfg.stop) if training.mode == "trained" else None
    learner.cpu()
    task_list = round_tasks(rdir, round_, dm, training, proposal, cfg.url_prefix)
    pushed = cli.live[0].push(task_list, cli.live[1]) if cli.live else None  # before any file of the round
    with staged_round(rdir) as stage:  # the round folder appears whole, or not at all
        summary = write_round(rdir, round_, dm, learner, training, proposal, task_list, cfg.url_prefix,
                              config_text(cli), trainer.max_epochs, query_seconds, args, stop.fields if stop else {},
                              stage=stage)
        if stop:
            write_stop_files(out, stage, stop)
    resume_hint = summary["checkpoint"] is not None and not cfg.resume
    report.proposal(rdir, summary, proposal.rows(dm.files), type(training.strategy).__name__, resume_hint,
                    live=cli.live is not None)
    if stop:
        say(stop.line)
    if cli.live:
        report.pushed(cli.live[0], pushed, len(task_list), resume_hint)
    summary["round_dir"] = str(rdir)
    return summary


def cli_main(args: list[str] | None = None) -> dict[str, Any]:
    """Run one labeling round; ``args`` replaces ``sys.argv[1:]`` (for tests). Returns the summary
    written to ``proposal.json`` (plus ``round_dir``). Expected failures stop with one
    ``lplgrad.label: error:`` line (:func:`lplgrad.cli.guarded`)."""
    keep_freed_memory()

    def build_and_run() -> dict[str, Any]:
        cli = LabelCLI(
            ActiveLearner,
            LabelFolderData,
            args=args,
            run=False,
            run_folder=folder,
            save_config_callback=None,
            trainer_defaults={"max_epochs": 40, "num_sanity_val_steps": 0, "logger": False,
                              "enable_checkpointing": False, "callbacks": [EpochInRound()]},
            parser_kwargs={"prog": "python -m lplgrad.label", "description": __doc__.split("\n")[0],
                           "exit_on_error": False},
        )
        return run_round(cli, args)

    folder = RunFolder("choose another --out folder")
    return guarded("lplgrad.label", args, build_and_run, folder, lambda out: bool(round_dirs(out)))
