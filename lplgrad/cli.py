"""``python -m lplgrad fit --config configs/<dataset>.yaml``: LightningCLI with the rounds loop.

:class:`BaseCLI` and :func:`guarded` are shared with the labeling app (``python -m lplgrad.label``).
"""
from __future__ import annotations

import re
import shutil
import sys
from argparse import ArgumentError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lightning.pytorch.cli import LightningCLI

from lplgrad.allocator import keep_freed_memory
from lplgrad.callbacks import ActiveLearningLoop, QueryProgressBar, RoundCheckpoint, RoundFigures, StopSignal
from lplgrad.data import ActiveDataModule
from lplgrad.errors import ConfigError, LPLgradError, RunExistsError
from lplgrad.module import ActiveLearner

SUBCOMMANDS = ("fit", "validate", "test", "predict")
T = TypeVar("T")

#: LightningCLI's own optimiser options, which would replace M's and A's optimisers with one
#: optimiser over both: refused, with where the setting goes instead
TRAPS = {
    "optimizer": "--model.optimizer (M and A each get their own optimiser, made anew every round)",
    "lr_scheduler": "--model.scheduler (one schedule per optimiser; only M's is stepped unless --model.schedule_aux)",
}
_TRAP_OPTION = re.compile(r"^--(" + "|".join(TRAPS) + r")(?:[.=]|$)")


def _latest_resumable(save_dir: str, name: str) -> str | None:
    """The newest ``save_dir/name/<version>`` with a checkpoints/last.ckpt and no finished.json."""
    runs = [d for d in Path(save_dir, name).glob("*") if (d / "checkpoints" / "last.ckpt").is_file()
            and not (d / "finished.json").exists()]
    return max(runs, key=lambda d: (d / "checkpoints" / "last.ckpt").stat().st_mtime).name if runs else None


def trap_message(key: str) -> str:
    return f"--{key} is not used by lplgrad: set {TRAPS[key]}"


def check_traps(args: Sequence[str]) -> None:
    """Refuse ``--optimizer`` / ``--lr_scheduler`` (and their ``.init_args`` forms) on the command line."""
    for arg in args:
        m = _TRAP_OPTION.match(arg)
        if m:
            raise ConfigError(trap_message(m.group(1)))


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

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        for key in TRAPS:
            if cfg is not None and cfg.get(key) is not None:
                raise ConfigError(trap_message(key))


class LPLgradCLI(BaseCLI):
    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(ActiveLearningLoop, "loop")
        parser.add_lightning_class_args(RoundFigures, "figures")
        parser.add_lightning_class_args(QueryProgressBar, "query_progress")
        parser.add_lightning_class_args(RoundCheckpoint, "checkpoint")
        parser.add_lightning_class_args(StopSignal, "stop")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="start anew in a run folder that already holds an experiment (the old folder is deleted)")

    def before_instantiate_classes(self) -> None:
        """``--ckpt_path last`` without a logger version resumes the newest unfinished run folder."""
        super().before_instantiate_classes()
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        if cfg is None or cfg.get("ckpt_path") != "last":
            return
        logger = cfg.trainer.get("logger")
        args = getattr(logger, "init_args", None)
        if args is None or "save_dir" not in args or args.get("version") is not None:
            return
        version = _latest_resumable(args.save_dir, args.get("name") or "lightning_logs")
        if version is not None:
            args.version = version

    def before_fit(self) -> None:
        cfg = self.config[self.subcommand]
        trainer = self.trainer
        if not trainer.is_global_zero or trainer.log_dir is None:
            return
        run = Path(trainer.log_dir)
        if cfg.get("ckpt_path") or not (run / "rounds.jsonl").exists():
            return
        if not cfg.get("overwrite"):
            what = "a finished" if (run / "finished.json").exists() else "an unfinished"
            raise RunExistsError(f"{run} already holds {what} experiment: resume it with --ckpt_path last, start a new "
                                 "run folder (another trainer.logger.init_args.version), or pass --overwrite true")
        shutil.rmtree(run)  # records, checkpoints, TensorBoard events and projector files: all of the old run


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


def guarded(prog: str, args: Sequence[str] | None, build: Callable[[], T]) -> T:
    """``build()``, with every expected failure turned into one ``<prog>: error: ...`` line on
    stderr and the exit code of docs/errors.md: an :class:`LPLgradError` (its ``exit_code``: 2,
    or 3 for a diverged loss) or a command-line error (2). Refuses the trapped options first."""
    try:
        check_traps(sys.argv[1:] if args is None else args)
        return build()
    except LPLgradError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    except ArgumentError as e:  # an unknown option, class or value: one line, not the whole usage
        print(f"{prog}: error: {_one_line(str(e))} (see --help)", file=sys.stderr)
        raise SystemExit(2) from None


def cli_main(args: list[str] | None = None, run: bool = True) -> LPLgradCLI:
    """Build (and with ``run``, execute) the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests).

    Expected failures (missing data, impossible sizes, an existing run, a diverged loss, a bad
    option) stop with one line on stderr (:func:`guarded`). Starts by keeping freed memory for
    reuse (:mod:`lplgrad.allocator`).
    """
    keep_freed_memory()
    return guarded("lplgrad", args, lambda: LPLgradCLI(
        ActiveLearner,
        ActiveDataModule,
        args=args,
        run=run,
        trainer_defaults={"max_epochs": -1, "num_sanity_val_steps": 0},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False, **{c: {"exit_on_error": False} for c in SUBCOMMANDS}},
    ))
