"""The rounds loop's events, and the callback base class that declares their hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


#: the fields of a round's ``rounds.jsonl`` row that the rounds loop writes itself
LOOP_FIELDS = frozenset(
    {"round", "labeled", "test_acc", "train_seconds", "query_seconds", "processes", "threads", "queried"}
)


@dataclass
class RoundEnd:
    """What a finished round hands to :meth:`RoundCallback.on_round_end`.

    A callback adds to the round's record in one way: :meth:`record` for fields of its
    ``rounds.jsonl`` row, :meth:`note` for lines printed under its console line.
    """

    round: int
    labeled_before: torch.Tensor  # (n,) the labeled set the round trained on (before its query), in order
    labeled_after: torch.Tensor  # (n + k,) the labeled set after the query (the same when nothing was queried)
    metrics: dict[str, torch.Tensor]  # test "acc", "per_class_acc" (C,), "confusion" (C, C)
    train_seconds: float
    query_seconds: float
    candidates: torch.Tensor | None = None  # (N,) candidate indices, ascending; None if no query
    scores: torch.Tensor | None = None  # (N,) their scores
    selected: torch.Tensor | None = None  # (k,) the queried indices, best first
    fields: dict[str, Any] = field(default_factory=dict)  # what callbacks added to the row (see record)
    lines: list[str] = field(default_factory=list)  # what callbacks added under the console line (see note)

    @property
    def labeled(self) -> int:
        """The size of the labeled set the round trained on."""
        return len(self.labeled_before)

    @property
    def step(self) -> int:
        """The x axis of per-round plots: the labeled-set size."""
        return self.labeled

    def record(self, **fields: Any) -> None:
        """Add JSON-serialisable fields to this round's row of ``rounds.jsonl``. A field the loop
        writes (:data:`LOOP_FIELDS`) or that another callback already added is refused."""
        taken = (LOOP_FIELDS | self.fields.keys()) & fields.keys()
        if taken:
            raise ValueError(f"round record fields {sorted(taken)} are already written")
        self.fields.update(fields)

    def note(self, line: str) -> None:
        """Print ``line`` under the round's console line (rank 0)."""
        self.lines.append(line)


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
