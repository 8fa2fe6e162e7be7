"""The query, as both applications run it: score a round's candidates and pick the best.

:func:`query` draws the round's candidate subset S from the :class:`~lplgrad.split.Split`, has
every process measure its ``rank::world`` shard (:func:`measure`), gathers the (index, measure)
pairs (:func:`gather_padded`) and turns them into scores and a selection identically on every
process (:func:`score_and_select`). Strategies say what they need with flags: ``uses_labeled``
(the labeled set is measured too) and ``needs_images`` (False: the loader yields no pixels).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lplgrad.inference import run_eval
from lplgrad.split import Split
from lplgrad.strategies import QueryStrategy, select_top

AllGather = Callable[[Tensor], Tensor]  # (n, ...) on each process -> (world, n, ...)
LoaderFor = Callable[[Tensor, bool], DataLoader]  # (pool indices, with images?) -> their loader, in order


class QueryProgress:
    """What the query reports while it measures; the rounds loop forwards it to its callbacks."""

    def start(self, total: int, what: str) -> None:
        """``total`` samples of ``what`` ("candidates" or "labeled") are about to be measured."""

    def advance(self, n: int) -> None:
        """``n`` more samples were measured."""

    def end(self) -> None:
        """That measuring pass is over."""


@dataclass
class QueryResult:
    selected: Tensor  # (k,) pool indices, best first
    candidates: Tensor  # (N,) the scored pool indices, ascending
    scores: Tensor  # (N,) their scores (higher = label first)


def gather_padded(indices: Tensor, values: Tensor, world_size: int, all_gather: AllGather | None) -> tuple[Tensor, Tensor]:
    """Concatenate every process's (index, value) rows, whatever each one's row count.

    Rows are padded to the longest shard for the collective, the padding dropped after, and the
    result sorted by index so every process holds the same tensors. indices (n,), values (n, ...)
    The indices come back on the CPU; the values stay on their device (a GPU's measures are
    scored there: k-center, distances, clustering inputs).
    """
    if world_size > 1:
        n = torch.tensor([len(indices)], device=values.device)
        counts = all_gather(n).reshape(-1).tolist()  # (world,)
        longest = max(counts)
        pad = longest - len(indices)
        idx = torch.cat([indices.to(values.device), indices.new_full((pad,), -1).to(values.device)])
        val = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
        all_idx, all_val = all_gather(idx), all_gather(val)  # (world, longest), (world, longest, ...)
        indices = torch.cat([all_idx[r, :c] for r, c in enumerate(counts)])
        values = torch.cat([all_val[r, :c] for r, c in enumerate(counts)])
    order = torch.argsort(indices)
    return indices[order].cpu(), values[order.to(values.device)]


def shard(indices: Tensor, rank: int, world_size: int) -> Tensor:
    """The ``rank::world_size`` slice: disjoint shards that cover every index once."""
    return indices[rank::world_size]


def measure(learner: nn.Module, strategy: QueryStrategy, loader: DataLoader, device: torch.device,
            on_batch: Callable[[int], None] | None = None) -> Tensor:
    """``strategy.measure`` over a loader, ``learner`` in eval mode. -> (n, ...)"""
    out = run_eval(learner, loader, device, lambda x, _: strategy.measure(learner, x).detach(), on_batch)
    return torch.cat(out) if out else torch.zeros(0, device=device)


def score_and_select(
    strategy: QueryStrategy,
    cand_idx: Tensor,
    cand_measures: Tensor,
    labeled_measures: Tensor | None,
    k: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """(selected indices (k,), scores of every candidate (N,)) from the gathered measures."""
    scores = strategy.scores(cand_measures, labeled_measures, k, generator).float().cpu()
    return select_top(cand_idx, scores, k), scores


@dataclass
class Sharding:
    """Which shard this process measures, and how the shards are gathered (one process: no collective)."""

    rank: int = 0
    world: int = 1
    all_gather: AllGather | None = None


def _measure_shard(learner: nn.Module, strategy: QueryStrategy, indices: Tensor, loader_for: LoaderFor,
                   device: torch.device, sharding: Sharding, progress: QueryProgress, what: str) -> tuple[Tensor, Tensor]:
    mine = shard(indices, sharding.rank, sharding.world)
    probe = mine if len(mine) else indices[:1]  # an empty shard still sends the right shape
    progress.start(len(probe), what)
    meas = measure(learner, strategy, loader_for(probe, strategy.needs_images), device, progress.advance)
    progress.end()
    return gather_padded(mine, meas[: len(mine)], sharding.world, sharding.all_gather)


def query(
    learner: nn.Module,
    strategy: QueryStrategy,
    split: Split,
    round_: int,
    k: int,
    subset_size: int | None,
    loader_for: LoaderFor,
    device: torch.device,
    sharding: Sharding | None = None,
    progress: QueryProgress | None = None,
) -> QueryResult:
    """Score round ``round_``'s candidates (S of ``subset_size``, or the whole pool) and select
    the ``k`` best. The same on every process; ``sharding`` splits the measuring between them."""
    sharding = sharding or Sharding()
    progress = progress or QueryProgress()
    cand = split.candidates(round_, subset_size)
    cand_idx, cand_meas = _measure_shard(learner, strategy, cand, loader_for, device, sharding, progress, "candidates")
    lab_meas = None
    if strategy.uses_labeled and len(split):
        _, lab_meas = _measure_shard(learner, strategy, split.labeled, loader_for, device, sharding, progress, "labeled")
    selected, scores = score_and_select(strategy, cand_idx, cand_meas, lab_meas, k,
                                        split.generator(round_, "strategy"))
    return QueryResult(selected, cand_idx, scores)
