"""The stop signal in ``fit``: stabilizing predictions on a fixed stop set (:mod:`lplgrad.stopping`),
per round in ``rounds.jsonl`` (``stop_kappa``, ``stop_suggested``), TensorBoard (``al/stop_kappa``)
and the console."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from lplgrad import stopping
from lplgrad.callbacks.base import RoundCallback, RoundEnd
from lplgrad.sampling import run_seed
from lplgrad.errors import ConfigError
from lplgrad.inference import run_eval


class StopSignal(RoundCallback):
    """Cohen's kappa between consecutive rounds' predictions on ``size`` seeded pool images.

    Args:
        size: images in the stop set (fixed for the run, drawn from the whole pool).
        threshold, rounds: stop is suggested once kappa has stayed at or above ``threshold`` for
            ``rounds`` rounds in a row.

    Listed in the config's ``trainer.callbacks`` (configs/fashion_mnist.yaml); a run without it
    has no stop signal.
    """

    def __init__(self, size: int = 1000, threshold: float = stopping.THRESHOLD, rounds: int = stopping.ROUNDS) -> None:
        if size < 1 or rounds < 1 or not 0.0 < threshold <= 1.0:
            raise ConfigError(
                f"StopSignal: size and rounds must be positive and threshold in (0, 1], got size {size}, "
                f"rounds {rounds}, threshold {threshold}"
            )
        self.size, self.threshold, self.rounds = size, threshold, rounds
        self.previous: torch.Tensor | None = None  # the last round's predictions on the stop set
        self.kappas: list[float | None] = []

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous, "kappas": list(self.kappas)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous, self.kappas = state["previous"], list(state["kappas"])

    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, event: RoundEnd) -> None:
        dm = trainer.datamodule
        rows = stopping.stop_set(dm.pool_size, self.size, run_seed(dm.seed))
        net = pl_module.net
        with torch.random.fork_rng(devices=[]):  # DataLoader iterators draw seeds from the global stream
            preds = torch.cat(
                run_eval(net, dm.pool_dataloader(rows), pl_module.device, lambda x, _: net(x)[0].argmax(1).cpu())
            )
        k = None if self.previous is None else stopping.kappa(preds, self.previous)
        self.previous = preds
        if k is not None:
            self.kappas.append(k)
        suggested = stopping.stop_suggested(self.kappas, self.threshold, self.rounds)
        event.record(stop_kappa=k, stop_suggested=suggested)
        if k is not None:
            for logger in trainer.loggers:
                logger.log_metrics({"al/stop_kappa": k}, step=event.step)
        event.note(stopping.describe(k, self.kappas, self.threshold, self.rounds))
