"""``python -m lplgrad fit --config configs/<dataset>.yaml``: LightningCLI with the rounds loop.

:class:`BaseCLI` and :func:`guarded` are shared with the labeling app (``python -m lplgrad.label``).
"""
from __future__ import annotations

import errno
import re
import sys
from argparse import ArgumentError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from jsonargparse import lazy_instance
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from lplgrad.allocator import keep_freed_memory
from lplgrad.callbacks import ActiveLearningLoop, QueryProgressBar, RoundCheckpoint, RoundFigures, StopSignal
from lplgrad.data import ActiveDataModule
from lplgrad.errors import ConfigError, LPLgradError, OutputError, RunExistsError
from lplgrad.module import ActiveLearner
from lplgrad.numerics import MathModes
from lplgrad.resume import LAST, check_resume, describe_changes, record_changes
from lplgrad.runfolder import RunFolder
from lplgrad.strategies import LPLgrad, QueryStrategy

SUBCOMMANDS = ("fit",)
#: LightningCLI's other subcommands, not offered: a run evaluates itself every round
NOT_OFFERED = ("validate", "test", "predict")
T = TypeVar("T")

#: LightningCLI's own optimiser options, which would replace M's and A's optimisers with one
#: optimiser over both: refused, with where the setting goes instead
TRAPS = {
    "optimizer": "--model.optimizer (M and A each get their own optimiser, made anew every round)",
    "lr_scheduler": "--model.scheduler (one schedule per optimiser; only M's is stepped unless --model.schedule_aux)",
}
_TRAP_OPTION = re.compile(r"^--(" + "|".join(TRAPS) + r")(?:[.=]|$)")

#: options that moved: the old key stops with one line naming the new one (command line or config file)
MOVED = {"model.strategy": "strategy (a top-level option: the rounds loop owns the query strategy, not the model)"}


def trap_message(key: str) -> str:
    return f"--{key} is not used by lplgrad: set {TRAPS[key]}"


def check_traps(args: Sequence[str]) -> None:
    """Refuse ``--optimizer`` / ``--lr_scheduler`` (and their ``.init_args`` forms) on the command line."""
    if args and args[0] in NOT_OFFERED:
        raise ConfigError(f"{args[0]} is not a command of lplgrad (only fit): every round's test accuracy is in the "
                          "run folder's rounds.jsonl, and python -m lplgrad.label proposes and predicts for a folder")
    for arg in args:
        m = _TRAP_OPTION.match(arg)
        if m:
            raise ConfigError(trap_message(m.group(1)))
    check_moved(args)


def _has_key(tree: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def check_moved(args: Sequence[str]) -> None:
    """Refuse a moved option (:data:`MOVED`) on the command line or in a ``--config`` file."""
    for old, new in MOVED.items():
        if any(a == f"--{old}" or a.startswith((f"--{old}.", f"--{old}=")) for a in args):
            raise ConfigError(f"--{old} has moved: set --{new}")
        for path in _config_files(args):
            try:
                tree = yaml.safe_load(Path(path).read_text())
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue  # named by the parser
            if _has_key(tree, old) or _has_key(tree, f"fit.{old}"):
                raise ConfigError(f"{path}: {old} has moved: set {new}")


class BaseCLI(LightningCLI):
    """What both applications' command lines share: the model's optimisers are its own
    (``auto_configure_optimizers`` off, LightningCLI's optimiser options refused), and the
    number of classes and input channels are linked from the data to the model."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        for key in TRAPS:  # accepted by the parser (config files too), refused before anything is built
            parser.add_argument(f"--{key}", type=Any, default=None, help=f"Not used: set {TRAPS[key]}.")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")
        parser.add_class_arguments(MathModes, "math", instantiate=False)
        parser.add_subclass_arguments(QueryStrategy, "strategy", default=lazy_instance(LPLgrad),
                                      help="The query strategy: how candidates are scored (higher = label first).")

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


def check_precision(cfg) -> None:
    """``16-mixed`` with A: Lightning's precision plugin steps each optimiser through the one
    GradScaler and updates its scale after each, so with M's and A's optimisers the scale moves
    twice per step and A is unscaled with a scale that M's step already changed. Refused;
    bf16-mixed needs no loss scaling."""
    precision = str(cfg.trainer.get("precision"))
    if precision in ("16-mixed", "16") and cfg.model.get("use_aux", True):
        raise ConfigError(f"trainer.precision {precision} with model.use_aux true would update the loss scale twice per "
                          "step (M's and A's optimisers share one GradScaler): use bf16-mixed, or 32")


class LPLgradCLI(BaseCLI):
    """``fit`` only (:data:`NOT_OFFERED`); the run folder is claimed (:class:`RunFolder`) and a
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
        parser.add_lightning_class_args(RoundFigures, "figures")
        parser.add_lightning_class_args(QueryProgressBar, "query_progress")
        parser.add_lightning_class_args(RoundCheckpoint, "checkpoint")
        parser.add_lightning_class_args(StopSignal, "stop")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="start anew in a run folder that already holds an experiment (the old folder is deleted)")
        parser.add_argument("--allow_config_change", type=bool, default=False,
                            help="resume although the configuration differs from the run's config.yaml in what "
                                 "changes training or selection (the changes go to config_changes.jsonl)")

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
            what = "a finished experiment:" if finished else "an unfinished experiment: resume it with --ckpt_path last,"
            raise RunExistsError(f"{run} already holds {what} start a new run folder (another "
                                 "trainer.logger.init_args.version), or pass --overwrite true to delete it")
        self.run_folder.clear()  # records, checkpoints, TensorBoard events and projector files: all of the old run


def worth_keeping(run: Path) -> bool:
    """A failed run's folder stays when it holds records or a checkpoint to resume from."""
    return (run / "rounds.jsonl").exists() or (run / "checkpoints" / LAST).exists()


ELSEWHERE = "start this one in another run folder (another trainer.logger.init_args.version)"


def _config_files(args: Sequence[str]) -> list[str]:
    files = []
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            files.append(args[i + 1])
        elif a.startswith("--config="):
            files.append(a.split("=", 1)[1])
    return files


def _name_bad_config(message: str, args: Sequence[str]) -> str:
    """jsonargparse's YAML error names no file: name the ``--config`` file that does not parse."""
    if "<unicode string>" not in message:
        return message
    for path in _config_files(args):
        try:
            yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError:
            return message.replace('in "<unicode string>"', f"in {path}").replace("<unicode string>", path)
        except OSError:
            continue
    return message


def _one_line(message: str) -> str:
    """jsonargparse's multi-line message condensed to the key and its most specific reason."""
    lines = [ln.strip(" -") for ln in message.splitlines() if ln.strip()]
    if not lines:
        return message
    key = lines[0].rstrip(":").replace("Parser key ", "").replace('"', "")
    for i, ln in enumerate(lines):
        if ln.startswith("Problem with given class_path") and i + 1 < len(lines):
            nested = lines[i + 1]
            if nested.startswith("Parser key") and i + 2 < len(lines):  # an init arg of that class
                inner = nested.rstrip(":").replace("Parser key ", "").replace('"', "")
                return f"{key}.init_args.{inner}: {lines[i + 2]}"
            return f"{key}: {ln.replace('Problem with given ', '').rstrip(':')}: {nested}"
    return f"{key}: {lines[1]}" if len(lines) > 1 else key


#: OSError numbers that mean the outputs cannot be written: a full disk or quota, a read-only or forbidden folder
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def guarded(prog: str, args: Sequence[str] | None, build: Callable[[], T], run_folder: RunFolder | None = None,
            worth_keeping: Callable[[Path], bool] = lambda _: True) -> T:
    """``build()``, with every expected failure turned into one ``<prog>: error: ...`` line on
    stderr and the exit code of docs/errors.md: an :class:`LPLgradError` (its ``exit_code``), a
    command-line error (2), or a folder that cannot be written (5). Refuses the trapped options
    first. ``run_folder``, if ``build`` claimed it, is released, and on any failure abandoned
    (removed when it was created and holds nothing ``worth_keeping``)."""
    try:
        check_traps(sys.argv[1:] if args is None else args)
        result = build()
    except BaseException as e:
        if run_folder is not None:
            run_folder.abandon(worth_keeping)
        if isinstance(e, OSError) and not isinstance(e, LPLgradError) and e.errno in WRITE_ERRNOS:
            e = OutputError(f"{e.filename or 'a file'}: {e.strerror}: the run stopped (free space or permissions?)")
        if isinstance(e, LPLgradError):
            print(f"{prog}: error: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None
        if isinstance(e, ArgumentError):  # an unknown option, class or value: one line, not the whole usage
            line = _name_bad_config(_one_line(str(e)), sys.argv[1:] if args is None else args)
            print(f"{prog}: error: {line} (see --help)", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    if run_folder is not None:
        run_folder.release()
    return result


def cli_main(args: list[str] | None = None, run: bool = True) -> LPLgradCLI:
    """Build (and with ``run``, execute) the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests).

    Expected failures (missing data, impossible sizes, an existing or busy run folder, a bad
    resume, a diverged loss, a bad option, a full disk) stop with one line on stderr
    (:func:`guarded`). Starts by keeping freed memory for reuse (:mod:`lplgrad.allocator`).
    """
    keep_freed_memory()
    folder = RunFolder(ELSEWHERE)
    return guarded("lplgrad", args, lambda: LPLgradCLI(
        ActiveLearner,
        ActiveDataModule,
        args=args,
        run=run,
        run_folder=folder,
        trainer_defaults={"max_epochs": -1, "num_sanity_val_steps": 0},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "python -m lplgrad", "exit_on_error": False,
                       **{c: {"exit_on_error": False} for c in SUBCOMMANDS}},
    ), folder, worth_keeping)
