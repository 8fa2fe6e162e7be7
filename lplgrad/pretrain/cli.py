"""``python -m lplgrad pretrain --config configs/pretrain/<name>.yaml``: self-supervised
pretraining of an active-learning backbone on unlabelled images (docs/pretraining.md).

A LightningCLI of :class:`~lplgrad.pretrain.module.Pretrainer` and
:class:`~lplgrad.pretrain.data.PretrainData`, with Lightning's own ``ModelCheckpoint``
(``checkpoint``: one ``checkpoints/last.ckpt`` in the run folder, rewritten every epoch) and
:class:`~lplgrad.pretrain.report.PretrainReport` (``export``: the lines printed, ``backbone.pt``).
``--ckpt_path last`` resumes the run folder's checkpoint (the logger's ``version``, or without
one the newest unfinished run: :func:`lplgrad.resume.resolve_last`); a run folder that already
holds a pretraining is not started over without ``--overwrite true``. Every expected failure is
one ``lplgrad pretrain: error:`` line (:func:`lplgrad.guard.guarded`).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from lplgrad.allocator import keep_freed_memory
from lplgrad.errors import ConfigError, ResumeError, RunExistsError
from lplgrad.guard import guarded
from lplgrad.resume import LAST, resolve_last
from lplgrad.runfolder import RunFolder

PROG = "lplgrad pretrain"
ELSEWHERE = "start this one in another run folder (another trainer.logger.init_args.version)"
#: Lightning's ModelCheckpoint, as this run uses it: one file, checkpoints/last.ckpt, every epoch
CHECKPOINT_DEFAULTS = {
    "checkpoint.filename": Path(LAST).stem,
    "checkpoint.save_top_k": 1,
    "checkpoint.save_last": False,
    "checkpoint.enable_version_counter": False,
}
_OPTIMISER_OPTION = re.compile(r"^--(optimizer|lr_scheduler)(?:[.=]|$)")


class PretrainCLI(LightningCLI):
    """The pretraining's options: ``model`` (method, heads, loss, optimiser), ``data`` (images,
    views, batches), ``trainer`` (``max_epochs``: the epochs), ``checkpoint``, ``export``,
    ``ckpt_path`` and ``overwrite``."""

    def __init__(self, *args: Any, run_folder: RunFolder, **kwargs: Any) -> None:
        self.run_folder = run_folder
        super().__init__(*args, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        from lplgrad.pretrain.report import PretrainReport

        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")
        parser.link_arguments("model.method", "data.method", apply_on="parse")
        parser.link_arguments("data.batch_size", "model.batch_size", apply_on="parse")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)
        parser.add_lightning_class_args(PretrainReport, "export")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume: 'last' (the run folder's checkpoints/last.ckpt) or a checkpoint file",
        )
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="start anew in a run folder that already holds a pretraining (its files are deleted)",
        )

    def before_instantiate_classes(self) -> None:
        """Settings that cannot work, and the checkpoint to resume, checked before anything is built."""
        cfg = self.config
        epochs = cfg.trainer.get("max_epochs")
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"trainer.max_epochs must be a positive number of epochs, got {epochs}")
        if cfg.trainer.get("enable_checkpointing") is False:
            raise ConfigError(
                "trainer.enable_checkpointing false: pretraining saves checkpoints/last.ckpt (what --ckpt_path last "
                "resumes) with Lightning's ModelCheckpoint; save less often with --checkpoint.every_n_epochs N"
            )
        if cfg.get("ckpt_path") == "last":
            resolve_last(cfg)
        if cfg.get("ckpt_path") not in (None, "last"):
            check_pretraining_checkpoint(cfg.ckpt_path, cfg.model.method)

    def pretrain(self) -> None:
        """Claim the run folder (refusing to start over a pretraining), then ``trainer.fit``."""
        trainer, cfg = self.trainer, self.config
        if trainer.is_global_zero and trainer.log_dir is not None:
            run = Path(trainer.log_dir)
            self.run_folder.claim(run)
            if not cfg.get("ckpt_path") and holds_pretraining(run, self.export_name):
                if not cfg.get("overwrite"):
                    raise RunExistsError(
                        f"{run} already holds a pretraining: resume it with --ckpt_path last, start a new run "
                        "folder (another trainer.logger.init_args.version), or pass --overwrite true to delete it"
                    )
                self.run_folder.clear()
        trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=cfg.get("ckpt_path"))

    @property
    def export_name(self) -> str:
        return self.config.export.filename


def holds_pretraining(run: Path, weights: str) -> bool:
    """A run folder with a checkpoint, a weights file or a finished record in it."""
    from lplgrad.pretrain.report import FINISHED

    return any((run / f).exists() for f in (f"checkpoints/{LAST}", weights, FINISHED))


def worth_keeping(run: Path) -> bool:
    """A failed run's folder stays when it holds a checkpoint to resume from, or a finished run."""
    return holds_pretraining(run, "backbone.pt")


def check_pretraining_checkpoint(path: str, method: str) -> None:
    """One line for a checkpoint that is missing, unreadable, not a pretraining's, or another method's."""
    if not Path(path).is_file():
        raise ResumeError(f"--ckpt_path {path}: no such file")
    try:
        # mapped, not read: the check needs the pickled structure, and Lightning reads the tensors
        # (torch.load checks no checksum, so a full read would find no more damage)
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - whatever torch.load says, the file cannot be resumed from
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ResumeError(f"--ckpt_path {path} cannot be read (truncated or corrupt?): {first}") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "method" not in hparams or "state_dict" not in ckpt:
        raise ResumeError(f"--ckpt_path {path} is not a checkpoint of python -m lplgrad pretrain")
    if hparams["method"] != method:
        raise ResumeError(
            f"--ckpt_path {path} is a {hparams['method']} pretraining; this config's model.method is {method}"
        )


def refuse_optimizer_options(args: list[str]) -> None:
    """LightningCLI's ``--optimizer``/``--lr_scheduler`` are not offered: the recipe is fixed."""
    for arg in args:
        m = _OPTIMISER_OPTION.match(arg)
        if m:
            raise ConfigError(
                f"--{m.group(1)} is not an option of pretrain: set --model.lr, --model.momentum and "
                "--model.weight_decay (SGD with a cosine schedule over trainer.max_epochs)"
            )


def require_lightly() -> None:
    if importlib.util.find_spec("lightly") is None:
        raise ConfigError("pretraining needs lightly: pip install 'lplgrad[ssl]' (or pip install 'lightly>=1.6,<1.7')")


def cli_main(args: list[str] | None = None, run: bool = True) -> PretrainCLI:
    """Build (and with ``run``, pretrain) from ``args`` (the options after ``pretrain``;
    None: ``sys.argv[2:]``). Expected failures stop with one line on stderr and the exit code
    of docs/errors.md."""
    args = list(sys.argv[2:] if args is None else args)
    keep_freed_memory()
    try:
        refuse_optimizer_options(args)
        require_lightly()
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    folder = RunFolder(ELSEWHERE)

    def build() -> PretrainCLI:
        from lplgrad.pretrain.data import PretrainData
        from lplgrad.pretrain.module import Pretrainer

        with warnings.catch_warnings():  # the options come from sys.argv, after "pretrain": given as args on purpose
            warnings.filterwarnings("ignore", "LightningCLI's args parameter", UserWarning)
            cli = PretrainCLI(
                Pretrainer,
                PretrainData,
                args=args,
                run=False,
                run_folder=folder,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "python -m lplgrad pretrain", "exit_on_error": False},
            )
        if run:
            cli.pretrain()
        return cli

    return guarded(PROG, args, build, folder, worth_keeping, moved={})
