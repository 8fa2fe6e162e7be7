"""``python -m lplgrad fit --config configs/<dataset>.yaml``: LightningCLI with the rounds loop.

:class:`BaseCLI` is shared with the labeling app (``python -m lplgrad.label``); the checks before
parsing and the one-line failures are in :mod:`lplgrad.guard`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import lazy_instance
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from lplgrad.allocator import keep_freed_memory
from lplgrad.callbacks import ActiveLearningLoop, RoundCheckpoint
from lplgrad.data import ActiveDataModule
from lplgrad.errors import ConfigError, RunExistsError
from lplgrad.guard import MOVED, TRAPS, guarded, trap_message
from lplgrad.module import ActiveLearner
from lplgrad.numerics import MathModes
from lplgrad.resume import LAST, check_resume, describe_changes, record_changes
from lplgrad.runfolder import RunFolder
from lplgrad.strategies import LPLgrad, QueryStrategy

SUBCOMMANDS = ("fit",)

_LISTED = (
    "trainer.callbacks, as {} with its init_args (an optional callback is listed in the config, "
    "as configs/fashion_mnist.yaml does)"
)
#: options of ``fit`` that moved (and those of both applications, :data:`lplgrad.guard.MOVED`)
FIT_MOVED = {
    **MOVED,
    "figures": _LISTED.format("lplgrad.callbacks.RoundFigures"),
    "query_progress": _LISTED.format("lplgrad.callbacks.QueryProgressBar"),
    "stop": _LISTED.format("lplgrad.callbacks.StopSignal"),
}


class BaseCLI(LightningCLI):
    """What both applications' command lines share: the model's optimisers are its own
    (``auto_configure_optimizers`` off, LightningCLI's optimiser options refused), and the
    number of classes, the input channels and the feature cache are linked from the data to the model."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        for key in TRAPS:  # accepted by the parser (config files too), refused before anything is built
            parser.add_argument(f"--{key}", type=Any, default=None, help=f"Not used: set {TRAPS[key]}.")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")
        parser.link_arguments("data.feature_cache", "model.feature_cache", apply_on="parse")
        parser.link_arguments("seed_everything", "data.seed", compute_fn=split_seed, apply_on="parse")
        parser.add_class_arguments(MathModes, "math", instantiate=False)
        parser.add_subclass_arguments(
            QueryStrategy,
            "strategy",
            default=lazy_instance(LPLgrad),
            help="The query strategy: how candidates are scored (higher = label first).",
        )

    @property
    def strategy(self) -> QueryStrategy:
        """The query strategy, as built from the ``strategy`` option."""
        cfg = self.config_init.get(self.subcommand) if self.subcommand else self.config_init
        return cfg.strategy

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        for key in TRAPS:
            if cfg is not None and cfg.get(key) is not None:
                raise ConfigError(trap_message(key))
        if cfg is not None:
            check_precision(cfg)
            MathModes(**cfg.math).apply()
            if cfg.data.get("seed") is None and cfg.get("seed_everything") is not False:
                cfg.data.seed = int(cfg.seed_everything)  # the seed LightningCLI picked for seed_everything: true


def split_seed(seed_everything: bool | int) -> int | None:
    """The data's seed (the initial set, every round's S, random choices), linked from
    ``seed_everything``: its value, or None for ``true`` (the seed LightningCLI picks after
    parsing is set before the data is built, in :meth:`BaseCLI.before_instantiate_classes`) and
    ``false`` (the data's default, 0)."""
    return None if isinstance(seed_everything, bool) else seed_everything


def check_precision(cfg) -> None:
    """``16-mixed`` with A: Lightning's precision plugin steps each optimiser through the one
    GradScaler and updates its scale after each, so with M's and A's optimisers the scale moves
    twice per step and A is unscaled with a scale that M's step already changed. Refused;
    bf16-mixed needs no loss scaling."""
    precision = str(cfg.trainer.get("precision"))
    if precision in ("16-mixed", "16") and cfg.model.get("use_aux", True):
        raise ConfigError(
            f"trainer.precision {precision} with model.use_aux true would update the loss scale twice per "
            "step (M's and A's optimisers share one GradScaler): use bf16-mixed, or 32"
        )


class LPLgradCLI(BaseCLI):
    """``fit`` only (:data:`lplgrad.guard.NOT_OFFERED`); the run folder is claimed (:class:`RunFolder`) and a
    resume checked (:mod:`lplgrad.resume`) before anything is written."""

    def __init__(self, *args: Any, run_folder: RunFolder | None = None, **kwargs: Any) -> None:
        self.run_folder = run_folder if run_folder is not None else RunFolder(ELSEWHERE)
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(ActiveLearningLoop, "loop")
        parser.link_arguments("strategy", "loop.strategy", apply_on="instantiate")
        parser.add_lightning_class_args(RoundCheckpoint, "checkpoint")
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="start anew in a run folder that already holds an experiment (the old folder is deleted)",
        )
        parser.add_argument(
            "--allow_config_change",
            type=bool,
            default=False,
            help="resume although the configuration differs from the run's config.yaml in what "
            "changes training or selection (the changes go to config_changes.jsonl)",
        )

    def instantiate_trainer(self, **kwargs: Any):
        """The trainer, with Lightning's own checkpointing off: :class:`RoundCheckpoint` saves the
        run, and ``trainer.enable_checkpointing false`` turns it off."""
        sub = self.subcommand
        cfg = self.config_init[sub] if sub else self.config_init
        cfg.checkpoint.enabled = cfg.trainer.get("enable_checkpointing") is not False
        return super().instantiate_trainer(**{"enable_checkpointing": False, **kwargs})

    def parse_arguments(self, parser, args) -> None:
        """Parse, then check a resume (:func:`lplgrad.resume.check_resume`) before LightningCLI
        reads the checkpoint's hyperparameters: ``--ckpt_path last`` becomes the run's file."""
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        self.resume_changes: dict[str, tuple[Any, Any]] = {}
        if cfg.get("ckpt_path"):
            now = yaml.safe_load(parser.dump(self.config, skip_none=False))
            self.resume_changes = check_resume(cfg, now[sub] if sub else now)

    def before_fit(self) -> None:
        """Claim the run folder, then refuse to write over an experiment (or record a resume's
        accepted changes)."""
        cfg = self.config[self.subcommand]
        trainer = self.trainer
        if not trainer.is_global_zero or trainer.log_dir is None:
            return
        run = Path(trainer.log_dir)
        self.run_folder.claim(run)
        if cfg.get("ckpt_path"):
            record_changes(run, self.resume_changes)
            for line in describe_changes(self.resume_changes):
                rank_zero_info(f"Resumed with a changed setting (--allow_config_change): {line}")
            return
        if not (run / "rounds.jsonl").exists() and not (run / "checkpoints" / LAST).exists():
            return
        if not cfg.get("overwrite"):
            finished = (run / "finished.json").exists()
            what = (
                "a finished experiment:" if finished else "an unfinished experiment: resume it with --ckpt_path last,"
            )
            raise RunExistsError(
                f"{run} already holds {what} start a new run folder (another "
                "trainer.logger.init_args.version), or pass --overwrite true to delete it"
            )
        self.run_folder.clear()  # records, checkpoints, TensorBoard events and projector files: all of the old run


def worth_keeping(run: Path) -> bool:
    """A failed run's folder stays when it holds records or a checkpoint to resume from."""
    return (run / "rounds.jsonl").exists() or (run / "checkpoints" / LAST).exists()


ELSEWHERE = "start this one in another run folder (another trainer.logger.init_args.version)"


def cli_main(args: list[str] | None = None, run: bool = True) -> LPLgradCLI:
    """Build (and with ``run``, execute) the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests).

    Expected failures (missing data, impossible sizes, an existing or busy run folder, a bad
    resume, a diverged loss, a bad option, a full disk) stop with one line on stderr
    (:func:`guarded`). Starts by keeping freed memory for reuse (:mod:`lplgrad.allocator`).
    ``pretrain`` as the first argument runs :mod:`lplgrad.pretrain.cli` instead (docs/pretraining.md).
    """
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["pretrain"]:
        from lplgrad.pretrain.cli import cli_main as pretrain_main

        return pretrain_main(argv[1:], run=run)
    keep_freed_memory()
    folder = RunFolder(ELSEWHERE)
    return guarded(
        "lplgrad",
        args,
        lambda: LPLgradCLI(
            ActiveLearner,
            ActiveDataModule,
            args=args,
            run=run,
            run_folder=folder,
            trainer_defaults={"max_epochs": -1, "num_sanity_val_steps": 0},
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "prog": "python -m lplgrad",
                "exit_on_error": False,
                **{c: {"exit_on_error": False} for c in SUBCOMMANDS},
            },
        ),
        folder,
        worth_keeping,
        FIT_MOVED,
    )
