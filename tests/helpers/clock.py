"""A callback that skews one process's clock as :class:`~lplgrad.callbacks.RoundCheckpoint` reads
it, so that under DDP only that process finds a timed save due."""

from __future__ import annotations

import time

from lightning.pytorch import Callback, LightningModule, Trainer

from lplgrad.callbacks import RoundCheckpoint


class SkewClock(Callback):
    """On global rank ``rank``, the checkpoint's clock runs ``hours`` ahead after every save."""

    def __init__(self, rank: int, hours: float = 1000.0) -> None:
        self.rank, self.hours = rank, hours

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.global_rank != self.rank:
            return
        for cb in trainer.callbacks:
            if isinstance(cb, RoundCheckpoint):
                start = time.monotonic()
                saved = [0]

                def skewed(cb=cb):  # every call after a save is "hours" later than the last
                    saved[0] += 1
                    return start + saved[0] * self.hours * 3600.0

                cb.clock = skewed
