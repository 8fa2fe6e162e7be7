"""Scoring candidates in disjoint shards across processes, and selecting in one place."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lplgrad.strategies import QueryStrategy, select_top

AllGather = Callable[[Tensor], Tensor]  # (n, ...) on each process -> (world, n, ...)


def gather_padded(indices: Tensor, values: Tensor, world_size: int, all_gather: AllGather) -> tuple[Tensor, Tensor]:
    """Concatenate every process's (index, value) rows, whatever each one's row count.

    Rows are padded to the longest shard for the collective, the padding dropped after, and the
    result sorted by index so every process holds the same tensors. indices (n,), values (n, ...)
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
    return indices[order].cpu(), values[order].cpu()


def measure_all(
    learner: nn.Module,
    strategy: QueryStrategy,
    loader: DataLoader,
    device: torch.device,
    on_batch: Callable[[int], None] | None = None,
) -> Tensor:
    """``strategy.measure`` over a loader, M in eval mode, batch by batch. -> (n, ...)"""
    out = []
    for x, _ in loader:
        out.append(strategy.measure(learner, x.to(device)).detach())
        if on_batch is not None:
            on_batch(len(x))
    if not out:
        return torch.zeros(0, device=device)
    return torch.cat(out)


def shard(indices: Tensor, rank: int, world_size: int) -> Tensor:
    """The ``rank::world_size`` slice: disjoint shards that cover every index once."""
    return indices[rank::world_size]


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
