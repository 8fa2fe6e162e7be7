"""``python -m lplgrad.label``: train on the labeled images of a folder, propose the next ones to label.

The command line is parsed first, with nothing read, written or fetched; then
:func:`~lplgrad.labeling.round.label_round` runs the round's steps: prepare, pull (Label Studio),
import, scan, train (:mod:`~lplgrad.labeling.train`: the network on the labeled images, from the
last checkpoint with ``--resume``; with too few labels, a cold-start strategy instead), propose
(:mod:`~lplgrad.labeling.propose`: the experiment's query over the unlabeled images), write
(:mod:`~lplgrad.labeling.outputs`: ``<out>/round_NNN/``), push and report
(:mod:`~lplgrad.labeling.report`: the console). The image folder is only read.

Model, strategy and trainer options are the main CLI's (``--model.*``, ``--strategy``,
``--trainer.*``, ``--config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionYesNo
from lightning.pytorch import Callback, LightningModule, Trainer

from lplgrad.allocator import keep_freed_memory
from lplgrad.cli import BaseCLI
from lplgrad.guard import guarded
from lplgrad.labeling.checkpoint import round_dirs
from lplgrad.labeling.data import LabelFolderData
from lplgrad.labeling.audit import AuditOptions
from lplgrad.labeling.live import LiveSyncOptions
from lplgrad.labeling.stop import StopOptions
from lplgrad.labeling.report import say
from lplgrad.labeling.round import label_round
from lplgrad.module import ActiveLearner
from lplgrad.runfolder import RunFolder

SCAN_CACHE = "scan_cache.json"
FEATURES = "features"  # the feature cache's folder in --out (data.feature_cache)


class EpochLines(Callback):
    """A short progress line about every fifth of the epochs (one labeling run is one round, so
    the module counts the round's epochs from 0 without being told)."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        if total is None or total < 1 or (epoch % max(1, total // 5) and epoch != total):
            return
        m = trainer.callback_metrics
        loss, acc = m.get("train/loss"), m.get("train/acc")
        say(
            f"  epoch {epoch:>3}/{total}"
            + (f"  loss {float(loss):.3f}" if loss is not None else "")
            + (f"  accuracy {100 * float(acc):5.1f}%" if acc is not None else "")
        )


class LabelCLI(BaseCLI):
    """The labeling app's options; ``--out`` is claimed (:class:`RunFolder`) before anything is
    built, so that a second run on the same folder stops before it writes."""

    def __init__(self, *args: Any, run_folder: RunFolder, **kwargs: Any) -> None:
        self.run_folder = run_folder
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        add_folder_options(parser)
        add_round_options(parser)
        parser.add_class_arguments(LiveSyncOptions, "label_studio")
        parser.add_class_arguments(StopOptions, "stop")
        parser.add_class_arguments(AuditOptions, "audit")
        parser.link_arguments("images", "data.root")
        parser.link_arguments("out", "data.scan_cache", compute_fn=lambda out: str(Path(out) / SCAN_CACHE))
        parser.link_arguments("out", "data.audit_from")
        parser.link_arguments("out", "data.feature_dir", compute_fn=lambda out: str(Path(out) / FEATURES))
        parser.link_arguments("labels", "data.labels")
        parser.link_arguments("classes", "data.classes")

    def instantiate_classes(self) -> None:
        """Deferred: :func:`~lplgrad.labeling.round.label_round` builds the classes with
        :meth:`build` after its first steps (the data module scans the folder when it is built,
        and live sync must merge the labels first)."""

    def build(self) -> None:
        """Build the data module, the model and the trainer (the scan of the image folder)."""
        super().instantiate_classes()


def add_folder_options(parser) -> None:
    """The images, their labels and classes, and the output folder."""
    parser.add_argument(
        "--images", type=str, required=True, help="The folder of images (any depth; PNG, JPEG, ...). Only read."
    )
    parser.add_argument(
        "--labels",
        type=str | None,
        default=None,
        help="The labels CSV: a header 'path,label', then one row per labeled image, "
        "path relative to --images. Missing or empty: no labels yet.",
    )
    parser.add_argument(
        "--classes",
        type=str | list[str] | None,
        default=None,
        help="The class names, 'a,b,c' or a file with one per line; rows with other "
        "classes are reported and skipped. Default: the classes in the CSV.",
    )
    parser.add_argument(
        "--out",
        type=str,
        default="labeling",
        help="Output folder; each run writes <out>/round_NNN/. Must not be inside --images.",
    )


def add_round_options(parser) -> None:
    """How the round starts (a fresh or resumed network, the cold start) and what it exchanges with Label Studio."""
    parser.add_argument(
        "--resume",
        action=ActionYesNo,
        default=False,
        help="Start from the network of the latest round in --out instead of a fresh one.",
    )
    parser.add_argument(
        "--resume_from",
        type=str | None,
        default=None,
        help="Start from this checkpoint (a model.ckpt of an earlier round).",
    )
    parser.add_argument(
        "--cold_start",
        type=Literal["auto", "random", "coreset", "typiclust"],
        default="auto",
        help="With too few labels to train: choose the batch at random (seeded), by Coreset "
        "(k-center greedy) or by TypiClust (typical images of the largest clusters) on the "
        "network's features; auto: TypiClust with a pretrained backbone, else random.",
    )
    parser.add_argument(
        "--url_prefix",
        type=str | None,
        default=None,
        help="Label Studio: prepended to each path in data.image. Default: "
        "/data/local-files/?d=<name of the image folder>/ (local-files serving "
        "with the image folder's parent as document root).",
    )
    parser.add_argument(
        "--import_from",
        type=str | None,
        default=None,
        help="Before anything else, append the labels of a Label Studio export (JSON, JSON-MIN or CSV) to --labels.",
    )


def cli_main(args: list[str] | None = None) -> dict[str, Any]:
    """Run one labeling round; ``args`` replaces ``sys.argv[1:]`` (for tests). Returns the summary
    written to ``proposal.json`` (plus ``round_dir``). Expected failures stop with one
    ``lplgrad.label: error:`` line (:func:`lplgrad.guard.guarded`)."""
    keep_freed_memory()

    def build_and_run() -> dict[str, Any]:
        cli = LabelCLI(
            ActiveLearner,
            LabelFolderData,
            args=args,
            run=False,
            run_folder=folder,
            save_config_callback=None,
            trainer_defaults={
                "max_epochs": 40,
                "num_sanity_val_steps": 0,
                "logger": False,
                "enable_checkpointing": False,
                "callbacks": [EpochLines()],
            },
            parser_kwargs={
                "prog": "python -m lplgrad.label",
                "description": __doc__.split("\n")[0],
                "exit_on_error": False,
            },
        )
        return label_round(cli, args)

    folder = RunFolder("choose another --out folder")
    return guarded("lplgrad.label", args, build_and_run, folder, lambda out: bool(round_dirs(out)))
