"""When the run is saved: one ``last.ckpt``, at the end of every round and, within a round, every
``every_minutes`` (at the end of the first epoch after that much time has passed).

Saving after every epoch, as Lightning's default does, costs a fixed time per epoch that a
round of small epochs cannot hide (0.18 s for the paper's 90 MB checkpoint, two files per epoch
with a top-k copy). A resume from any of these checkpoints is exact: each holds the rounds
loop's state and random state as of the end of its epoch (``ActiveLearningLoop.state_dict``),
and the work since the last one is redone identically.

Under DDP the save is a collective: every process must take the same decision, or some wait in
the save's barrier while the others start the next epoch's all-reduce. The clocks of the
processes differ, so rank 0's decision is broadcast to all (as Lightning's own time-based
``ModelCheckpoint`` does).
"""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer

from lplgrad.callbacks.base import RoundCallback, RoundEnd
from lplgrad.errors import ConfigError
from lplgrad.resume import LAST


class RoundCheckpoint(RoundCallback):
    """``checkpoints/last.ckpt``, overwritten (atomically, by ``Trainer.save_checkpoint``) at each
    save; no other file.

    It replaces Lightning's ``ModelCheckpoint``: the CLI builds the trainer with Lightning's own
    checkpointing off, and ``trainer.enable_checkpointing false`` turns this one off instead
    (:attr:`enabled`). Only Lightning's public API is used.

    Args:
        every_minutes: within a round, save at the end of the first epoch this long after the
            last save (0: every epoch). The end of every round is always saved.
        dirpath: the folder (default: ``<run folder>/checkpoints``).
    """

    def __init__(self, every_minutes: float = 10.0, dirpath: str | None = None) -> None:
        if every_minutes < 0:
            raise ConfigError(f"checkpoint.every_minutes must be 0 or more, got {every_minutes}")
        self.every_minutes = every_minutes
        self.dirpath = dirpath
        self.enabled = True
        self._round_ended = False
        self.clock = time.monotonic  # seconds; replaceable (tests skew one process's clock)
        self._last_save = self.clock()
        self._last_step: int | None = None
        self.saves = 0  # in this process

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:  # trainer.log_dir is rank 0's, broadcast: a collective, on every process
            self.dirpath = str(Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints")

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / LAST

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_save = self.clock()

    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, event: RoundEnd) -> None:
        self._round_ended = True  # saved at this epoch's end, after the rounds loop updated its state

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (
            not self.enabled
            or trainer.sanity_checking
            or trainer.fast_dev_run
            or self._last_step == trainer.global_step
        ):
            return
        due = self.clock() - self._last_save >= 60.0 * self.every_minutes
        if trainer.world_size > 1:
            due = trainer.strategy.broadcast(due, src=0)  # one decision for every process
        if self._round_ended or due:
            trainer.save_checkpoint(self.path, weights_only=False)  # the whole state; a collective: rank 0 writes
            self._round_ended = False
            self._last_save = self.clock()
            self._last_step = trainer.global_step
            self.saves += 1
