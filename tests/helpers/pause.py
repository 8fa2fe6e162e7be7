"""A callback that stops a run at a chosen event and waits to be killed: tests that SIGKILL a
run wait for its marker file, never for a time.

Given on the command line with :func:`pause_args`, so that the resume command (without them)
is the run's own command.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer

from lplgrad.callbacks.base import RoundCallback

#: the longest a paused run waits for its kill before it exits with an error (a broken test, not a hang)
PATIENCE_S = 3600


class PauseAt(RoundCallback):
    """At the start of global epoch ``epoch`` (``at="epoch_start"``: the previous epoch, and its
    checkpoint if one was due, are done), after batch ``batch`` of that epoch (``"batch_end"``),
    or at the first progress of a query made during that epoch (``"query"``): write ``marker``
    and wait. With ``once``, a run that finds ``marker`` already written does not pause (a
    requeued job runs its command again, pause options included)."""

    def __init__(self, marker: str, epoch: int, at: str = "epoch_start", batch: int = 0, once: bool = False) -> None:
        if at not in ("epoch_start", "batch_end", "query"):
            raise ValueError(f"at: epoch_start, batch_end or query, not {at!r}")
        self.marker, self.epoch, self.at, self.batch = Path(marker), epoch, at, batch
        self.skip = once and self.marker.exists()  # paused before: this is the run again

    def _pause(self, trainer: Trainer) -> None:
        if self.skip:
            return
        tmp = self.marker.with_name(self.marker.name + ".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "epoch": trainer.current_epoch, "at": self.at}))
        os.replace(tmp, self.marker)
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
        os._exit(99)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at == "epoch_start" and trainer.current_epoch == self.epoch:
            self._pause(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.at == "batch_end" and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self._pause(trainer)

    def on_query_progress(self, trainer: Trainer, pl_module: LightningModule, n: int) -> None:
        if self.at == "query" and trainer.current_epoch == self.epoch:
            self._pause(trainer)


def pause_args(marker: Path, epoch: int, at: str = "epoch_start", batch: int = 0, once: bool = False) -> list[str]:
    """The command-line options that add :class:`PauseAt` to a ``fit`` run."""
    spec = {
        "class_path": "helpers.pause.PauseAt",
        "init_args": {"marker": str(marker), "epoch": epoch, "at": at, "batch": batch, "once": once},
    }
    return ["--trainer.callbacks+", json.dumps(spec)]
