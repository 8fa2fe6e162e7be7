"""The rounds loop's events, and the callback base class that declares their hooks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


@dataclass
class RoundEnd:
    """What a finished round hands to :meth:`RoundCallback.on_round_end`."""

    round: int
    labeled: int  # labeled-set size the round trained on
    metrics: dict[str, torch.Tensor]  # test "acc", "per_class_acc" (C,), "confusion" (C, C)
    train_seconds: float
    query_seconds: float
    candidates: torch.Tensor | None = None  # (N,) candidate indices, ascending; None if no query
    scores: torch.Tensor | None = None  # (N,) their scores
    selected: torch.Tensor | None = None  # (k,) the queried indices
    extra: dict[str, Any] = field(default_factory=dict)  # fields callbacks add to the round's rounds.jsonl row
    notes: list[str] = field(default_factory=list)  # lines callbacks add under the round's console line

    @property
    def step(self) -> int:
        """The x axis of per-round plots: the labeled-set size."""
        return self.labeled


class RoundCallback(Callback):
    """A Lightning callback that also hears the active-learning rounds. Every hook is a no-op
    here; the rounds loop (:class:`~lplgrad.callbacks.loop.ActiveLearningLoop`) calls them on
    every callback of the trainer that derives from this class."""

    def on_round_end(self, trainer: Trainer, pl_module: LightningModule, event: RoundEnd) -> None:
        """A round finished: it was evaluated and, unless it was the last, its query was made."""

    def on_query_start(self, trainer: Trainer, pl_module: LightningModule, total: int, what: str) -> None:
        """This process is about to measure ``total`` samples of ``what`` ("candidates" or "labeled")."""

    def on_query_progress(self, trainer: Trainer, pl_module: LightningModule, n: int) -> None:
        """``n`` more samples were measured."""

    def on_query_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """That measuring pass is over."""


def round_callbacks(trainer: Trainer) -> list[RoundCallback]:
    return [cb for cb in trainer.callbacks if isinstance(cb, RoundCallback)]
