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

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lplgrad.callbacks.base import RoundCallback, RoundEnd
from lplgrad.errors import ConfigError


class RoundCheckpoint(ModelCheckpoint, RoundCallback):
    """``checkpoints/last.ckpt``, overwritten (atomically) at each save; no other file.

    Args:
        every_minutes: within a round, save at the end of the first epoch this long after the
            last save (0: every epoch). The end of every round is always saved.
        dirpath: the folder (default: ``<run folder>/checkpoints``).
    """

    def __init__(self, every_minutes: float = 10.0, dirpath: str | None = None) -> None:
        if every_minutes < 0:
            raise ConfigError(f"checkpoint.every_minutes must be 0 or more, got {every_minutes}")
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, enable_version_counter=False)
        self.every_minutes = every_minutes
        self._round_ended = False
        self.clock = time.monotonic  # seconds; replaceable (tests skew one process's clock)
        self._last_save = self.clock()
        self.saves = 0  # in this process

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_save = self.clock()

    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, event: RoundEnd) -> None:
        self._round_ended = True  # saved at this epoch's end, after the rounds loop updated its state

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        due = self.clock() - self._last_save >= 60.0 * self.every_minutes
        if trainer.world_size > 1:
            due = trainer.strategy.broadcast(due, src=0)  # one decision for every process
        if self._round_ended or due:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._round_ended = False
            self._last_save = self.clock()
            self.saves += 1
