"""The active-learning rounds, run by a Callback inside one ``Trainer.fit``.

Each round: ``epochs_per_round`` epochs on the labeled set, test accuracy, then the query: the
data module draws the candidate subset S, every process scores its ``rank::world`` shard, the
(index, measure) pairs are gathered, and every process makes the same selection. The labeled set
grows by b (or what is left of the budget), the train loader is reloaded and fresh optimisers
and schedules are made; the weights carry over. The run ends when the budget is labeled.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lplgrad.data import ActiveDataModule
from lplgrad.errors import ConfigError
from lplgrad.evaluation import evaluate
from lplgrad.callbacks.base import RoundEnd, round_callbacks
from lplgrad.callbacks.process_state import every_rank, rng_state, set_rng_state, share_rank0_buffers, this_rank
from lplgrad.query import Placement, QueryProgress, QueryResult, query
from lplgrad.strategies import LPLgrad, QueryStrategy, check_learner
from lplgrad.records import atomic_write, write_candidates, write_labeled, write_rounds


class _ForwardProgress(QueryProgress):
    """The query's progress, passed on to the trainer's round callbacks."""

    def __init__(self, trainer: Trainer, learner: LightningModule) -> None:
        self.trainer, self.learner, self.callbacks = trainer, learner, round_callbacks(trainer)

    def start(self, total: int, what: str) -> None:
        for cb in self.callbacks:
            cb.on_query_start(self.trainer, self.learner, total, what)

    def advance(self, n: int) -> None:
        for cb in self.callbacks:
            cb.on_query_progress(self.trainer, self.learner, n)

    def end(self) -> None:
        for cb in self.callbacks:
            cb.on_query_end(self.trainer, self.learner)


class ActiveLearningLoop(Callback):
    """Runs the query rounds; owns the query strategy and ``trainer.fit_loop.max_epochs``.

    Args:
        strategy: how candidates are scored (higher = label first); the CLI links it from the
            top-level ``strategy`` option. Default: LPLgrad.
        epochs_per_round: training epochs on the labeled set in each round.
        save_candidates: write every round's candidates and scores to ``candidates/round_NNN.csv``.
    """

    def __init__(
        self, strategy: QueryStrategy | None = None, epochs_per_round: int = 200, save_candidates: bool = True
    ) -> None:
        if epochs_per_round < 1:
            raise ConfigError(f"loop.epochs_per_round must be positive, got {epochs_per_round}")
        self.strategy = strategy if strategy is not None else LPLgrad()
        self.epochs_per_round = epochs_per_round
        self.save_candidates = save_candidates
        self.round = 0
        self.round_start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self._round_t0 = 0.0
        self._reload_setting: int | None = None
        self.run_dir: Path | None = None

    # ---- state in checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # saved at the end of an epoch, with the random state the next epoch starts from, so that a
        # resumed run shuffles, augments and selects exactly as an uninterrupted one; under DDP
        # every process's state (each draws its own augmentations), "rng" is rank 0's
        states = every_rank(rng_state())
        return {
            "round": self.round,
            "round_start_epoch": self.round_start_epoch,
            "history": self.history,
            "rng": states[0],
            "rng_ranks": states,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = int(state["round"])
        self.round_start_epoch = int(state["round_start_epoch"])
        self.history = list(state["history"])
        mine = this_rank(state["rng_ranks"]) if "rng_ranks" in state else None
        if mine is not None or "rng" in state:  # older checkpoints: rank 0's state for every process
            set_rng_state(mine if mine is not None else state["rng"])

    # ---- hooks ----------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not isinstance(trainer.datamodule, ActiveDataModule):
            raise TypeError("the active-learning loop needs an lplgrad.data.ActiveDataModule as data")
        check_learner(self.strategy, pl_module)
        if trainer.datamodule.feature_cache != bool(getattr(pl_module, "feature_cache", False)):
            raise ConfigError("data.feature_cache and model.feature_cache must agree (the CLI links them)")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dm: ActiveDataModule = trainer.datamodule
        self.run_dir = Path(trainer.log_dir) if trainer.log_dir else None  # a collective: every rank
        left = dm.rounds_left()
        trainer.fit_loop.max_epochs = self.round_start_epoch + left * self.epochs_per_round
        rank_zero_info(
            f"Active learning: {self.round + left} rounds of {self.epochs_per_round} epochs, "
            f"{len(dm.split)} labeled of a pool of {dm.pool_size}, b={dm.query_size}, "
            f"S={dm.subset_size}, budget {dm.target_size}, strategy {self.strategy!r}"
        )
        if dm.feature_cache:  # the frozen part of M once per image, before any training step
            folder = Path(dm.feature_dir) if dm.feature_dir else self.run_dir / "features" if self.run_dir else None
            barrier = trainer.strategy.barrier if trainer.world_size > 1 else None
            for line in dm.cache_features(pl_module.net, pl_module.device, folder, trainer.global_rank, barrier):
                rank_zero_info(line)
        self._round_t0 = time.monotonic()
        pl_module.start_round(self.round, self.round_start_epoch)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._reload_setting is not None:  # the reloaded loader is in place: restore the setting
            trainer.reload_dataloaders_every_n_epochs = self._reload_setting
            self._reload_setting = None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch - self.round_start_epoch == self.epochs_per_round - 1:
            self._end_round(trainer, pl_module)

    # ---- one round's end ------------------------------------------------------------------
    def _end_round(self, trainer: Trainer, learner: LightningModule) -> None:
        dm: ActiveDataModule = trainer.datamodule
        train_seconds = time.monotonic() - self._round_t0
        rank, world = trainer.global_rank, trainer.world_size
        share_rank0_buffers(learner)
        metrics = evaluate(learner.net, dm.evaluation_dataloader(rank, world), dm.num_classes, learner.device)
        before = dm.split.labeled.clone()
        row: dict[str, Any] = {
            "round": self.round,
            "labeled": len(before),
            "test_acc": float(metrics["acc"]),
            "train_seconds": round(train_seconds, 3),
            "query_seconds": 0.0,
            "processes": world,
            "threads": torch.get_num_threads(),  # CPU results depend on it: part of what reproduces a run
            "queried": [],
        }
        k = dm.next_query_size()
        result = None
        if k > 0:
            t0 = time.monotonic()
            result = self.query(trainer, learner, k)
            row["query_seconds"] = round(time.monotonic() - t0, 3)
            row["queried"] = result.selected.tolist()
            dm.split.add(result.selected, self.round)
            self._check_processes_agree(trainer, dm.split.labeled, self.round)
            if trainer.is_global_zero and self.save_candidates and self.run_dir is not None:
                write_candidates(
                    self.run_dir / "candidates" / f"round_{self.round:03d}.csv",
                    result.candidates,
                    result.scores,
                    result.selected,
                )
        self.history.append(row)
        event = RoundEnd(
            self.round,
            before,
            dm.split.labeled.clone(),
            metrics,
            row["train_seconds"],
            row["query_seconds"],
            *((result.candidates, result.scores, result.selected) if result else ()),
        )
        for cb in round_callbacks(trainer):
            cb.on_round_end(trainer, learner, event)
        row.update(event.fields)
        self._record(trainer, row, event.lines, finished=k == 0)
        if k > 0:
            self.round += 1
            self.round_start_epoch = trainer.current_epoch + 1
            learner.advance_round(self.round, self.round_start_epoch)  # (or M and A anew: retrain_from_scratch)
            trainer.strategy.setup_optimizers(trainer)  # fresh optimisers and schedules
            self._reload_setting = trainer.reload_dataloaders_every_n_epochs
            trainer.reload_dataloaders_every_n_epochs = 1  # rebuild the train loader next epoch
        else:
            trainer.should_stop = True
        self._round_t0 = time.monotonic()

    def query(self, trainer: Trainer, learner: LightningModule, k: int) -> QueryResult:
        """Score this round's candidates, every process its shard, and select ``k`` of them."""
        dm: ActiveDataModule = trainer.datamodule
        where = Placement(
            learner.device,
            trainer.global_rank,
            trainer.world_size,
            trainer.strategy.all_gather,
            trainer.strategy.broadcast,
        )
        steps = int(trainer.num_training_batches) * self.epochs_per_round  # M's steps this round
        progress = _ForwardProgress(trainer, learner)
        return query(learner, self.strategy, dm.query_pool(), self.round, k, where, progress, steps)

    @staticmethod
    def _check_processes_agree(trainer: Trainer, labeled: torch.Tensor, round_: int) -> None:
        """Every process must hold the same labeled set after a query."""
        if trainer.world_size == 1:
            return
        everyone = trainer.strategy.all_gather(labeled.to(trainer.lightning_module.device))  # (world, n)
        if not all(torch.equal(everyone[0], everyone[r]) for r in range(everyone.shape[0])):
            raise RuntimeError(f"processes disagree on the labeled set after round {round_}")

    # ---- records --------------------------------------------------------------------------
    def _record(self, trainer: Trainer, row: dict[str, Any], notes: list[str], finished: bool) -> None:
        n = row["labeled"]
        for logger in trainer.loggers:
            logger.log_metrics(
                {
                    "al/test_acc": row["test_acc"],
                    "al/train_seconds": row["train_seconds"],
                    "al/query_seconds": row["query_seconds"],
                },
                step=n,
            )
            logger.log_metrics({"al/test_acc_by_round": row["test_acc"], "al/labeled": n}, step=row["round"])
        if not trainer.is_global_zero:
            return
        line = (
            f"Round {row['round']:>3} | labeled {n:>6} | test acc {100 * row['test_acc']:6.2f}% | "
            f"train {row['train_seconds']:8.1f}s | query {row['query_seconds']:7.1f}s"
        )
        bar = trainer.progress_bar_callback
        for text in (line, *notes):
            (bar.print if bar is not None and hasattr(bar, "print") else print)(text)
        run = self.run_dir
        if run is not None:
            dm: ActiveDataModule = trainer.datamodule
            write_rounds(run / "rounds.jsonl", self.history)
            split = dm.split
            write_labeled(run / "labeled.csv", split.labeled, split.labeled_round, dm.labels(split.labeled))
            if finished:
                atomic_write(
                    run / "finished.json",
                    json.dumps(
                        {
                            "rounds": len(self.history),
                            "labeled": n,
                            "final_test_acc": row["test_acc"],
                            "strategy": repr(self.strategy),
                        }
                    )
                    + "\n",
                )
