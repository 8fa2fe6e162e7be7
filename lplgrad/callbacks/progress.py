"""A console progress bar for the query phase, in the style of Lightning's training bar."""

from __future__ import annotations

import sys

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from tqdm import tqdm

from lplgrad.callbacks.base import RoundCallback


class QueryProgressBar(RoundCallback):
    """Shows how many samples of the query have been scored, under the training bar.

    The rounds loop calls :meth:`on_query_start` before scoring ``what`` ("candidates", or
    "labeled" for strategies that measure the labeled set too), :meth:`on_query_progress` after
    each batch and :meth:`on_query_end`. Only global rank 0 shows a bar (its total is its
    own shard under DDP), and only when Lightning's tqdm progress bar is on
    (``trainer.enable_progress_bar`` and a :class:`TQDMProgressBar` with a positive refresh rate).
    Listed in the config's ``trainer.callbacks`` (configs/fashion_mnist.yaml).
    """

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.total = 0
        self.done = 0
        self.what = ""
        self.finished: list[tuple[str, int, int]] = []  # (what, total, counted) of every query phase on rank 0

    def _shows(self, trainer: Trainer) -> TQDMProgressBar | None:
        cb = trainer.progress_bar_callback
        if not trainer.is_global_zero or not isinstance(cb, TQDMProgressBar) or not cb.is_enabled:
            return None
        return cb

    def on_query_start(self, trainer: Trainer, pl_module: LightningModule, total: int, what: str) -> None:
        self._close()
        if not trainer.is_global_zero:
            return
        self.total, self.done, self.what = int(total), 0, what
        main = self._shows(trainer)
        if main is None:
            return
        round_ = getattr(pl_module, "round_index", None)
        desc = f"Round {round_} query" if round_ is not None else "Query"
        self.bar = tqdm(
            desc=f"{desc} ({what})",
            total=self.total,
            position=2 * main.process_position + 1,  # where Lightning puts its validation bar
            leave=False,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=TQDMProgressBar.BAR_FORMAT,
            unit="img",
        )

    def on_query_progress(self, trainer: Trainer, pl_module: LightningModule, n: int) -> None:
        if not trainer.is_global_zero:
            return
        self.done += int(n)
        if self.bar is not None:
            self.bar.update(int(n))

    def on_query_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.finished.append((self.what, self.total, self.done))
        if self.bar is not None:
            self.bar.refresh()  # the final count, however fast the query was
        self._close()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._close()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
