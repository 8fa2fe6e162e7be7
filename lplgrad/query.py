"""The query, as both applications run it: score a round's candidates and pick the best.

:func:`query` draws the round's candidate subset S from the :class:`~lplgrad.split.Split`, has
every process measure its ``rank::world`` shard (:func:`measure`), gathers the (index, measure)
pairs (:func:`gather_padded`) and turns them into scores and a selection identically on every
process (:func:`score_and_select`). Strategies say what they need with flags: ``uses_labeled``
(the labeled set is measured too) and ``needs_images`` (False: the loader yields no pixels).
With ``keep_logits`` it also returns the logits M computed while the candidates were measured
(:mod:`lplgrad.logits_tap`), for the labelling apps' predicted classes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lplgrad.inference import run_eval
from lplgrad.logits_tap import LogitsTap
from lplgrad.split import Split
from lplgrad.strategies.base import FitData, Learner, Measures, QueryStrategy, ScoreContext, select_top

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
    #: (N, classes) M's logits of the candidates, in ``candidates``' order, when the query was asked
    #: to keep them and the strategy ran M once per candidate without dropout; else None
    logits: Tensor | None = None


def map_measures(fn: Callable[[Tensor], Tensor], measures: Measures) -> Measures:
    """``fn`` applied to every tensor of a measures structure (a tensor or nested tuples of them)."""
    if isinstance(measures, tuple):
        return tuple(map_measures(fn, m) for m in measures)
    return fn(measures)


def concat_measures(batches: list[Measures]) -> Measures:
    """Batches' measures, row-concatenated tensor by tensor. [(B_i, ...)] -> (sum B_i, ...)"""
    if isinstance(batches[0], tuple):
        return tuple(concat_measures([b[i] for b in batches]) for i in range(len(batches[0])))
    return torch.cat(batches)


def _gather_rows(values: Tensor, counts: list[int], all_gather: AllGather) -> Tensor:
    """Every process's rows of ``values`` (n, ...), padded to the longest shard for the
    collective and the padding dropped after, in rank order."""
    pad = max(counts) - len(values)
    padded = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
    everyone = all_gather(padded)  # (world, longest, ...)
    return torch.cat([everyone[r, :c] for r, c in enumerate(counts)])


def gather_padded(
    indices: Tensor, values: Measures, world_size: int, all_gather: AllGather | None
) -> tuple[Tensor, Measures]:
    """Concatenate every process's (index, measures) rows, whatever each one's row count.

    The result is sorted by index so every process holds the same tensors. indices (n,), every
    tensor of values (n, ...). The indices come back on the CPU; the values stay on their device
    (a GPU's measures are scored there: k-center, distances, clustering inputs).
    """
    device = _first_tensor(values).device
    if world_size > 1:
        counts = all_gather(torch.tensor([len(indices)], device=device)).reshape(-1).tolist()  # (world,)
        indices = _gather_rows(indices.to(device), counts, all_gather)
        values = map_measures(lambda v: _gather_rows(v, counts, all_gather), values)
    order = torch.argsort(indices)
    return indices[order].cpu(), map_measures(lambda v: v[order.to(v.device)], values)


def _first_tensor(measures: Measures) -> Tensor:
    return _first_tensor(measures[0]) if isinstance(measures, tuple) else measures


def shard(indices: Tensor, rank: int, world_size: int) -> Tensor:
    """The ``rank::world_size`` slice: disjoint shards that cover every index once."""
    return indices[rank::world_size]


def measure(
    learner: Learner,
    strategy: QueryStrategy,
    loader: DataLoader,
    device: torch.device,
    on_batch: Callable[[int], None] | None = None,
    tap: LogitsTap | None = None,
) -> Measures:
    """``strategy.measure`` over a loader, ``learner`` in eval mode (``tap``: keeping M's logits
    of each batch). -> (n, ...), or a tuple of such"""

    def step(x: Tensor, _) -> Measures:
        with tap.batch(len(x)) if tap is not None else nullcontext():
            return map_measures(Tensor.detach, strategy.measure(learner, x))

    out = run_eval(learner, loader, device, step, on_batch)
    return concat_measures(out) if out else torch.zeros(0, device=device)


def score_and_select(
    strategy: QueryStrategy, cand_idx: Tensor, cand_measures: Measures, ctx: ScoreContext
) -> tuple[Tensor, Tensor]:
    """(selected indices (k,), scores of every candidate (N,)) from the gathered measures."""
    scores = strategy.scores(cand_measures, ctx).float().cpu()
    return select_top(cand_idx, scores, ctx.k), scores


@dataclass
class Placement:
    """Where this process measures: its device, its shard, and how the shards are gathered (one
    process: no collective)."""

    device: torch.device = torch.device("cpu")
    rank: int = 0
    world: int = 1
    all_gather: AllGather | None = None
    broadcast: Callable[[object, int], object] | None = None  # (object, source rank) -> rank 0's object


@dataclass
class QueryPool:
    """What a query draws from: the split (labeled set, pool, the round's candidate subset S), S's
    size (None: the whole unlabeled pool), and the loader over any pool indices."""

    split: Split
    subset_size: int | None
    loader_for: LoaderFor


def _measure_shard(
    learner: Learner,
    strategy: QueryStrategy,
    indices: Tensor,
    loader_for: LoaderFor,
    where: Placement,
    progress: QueryProgress,
    what: str,
    tap: LogitsTap | None = None,
) -> tuple[Tensor, Measures]:
    mine = shard(indices, where.rank, where.world)
    probe = mine if len(mine) else indices[:1]  # an empty shard still sends the right shape
    progress.start(len(probe), what)
    loader = loader_for(probe, strategy.needs_images)
    meas = measure(learner, strategy, loader, where.device, progress.advance, tap)
    progress.end()
    return gather_padded(mine, map_measures(lambda m: m[: len(mine)], meas), where.world, where.all_gather)


def fit_strategy(
    learner: Learner, strategy: QueryStrategy, pool: QueryPool, round_: int, where: Placement, train_steps: int
) -> None:
    """A strategy that ``trains`` fits its networks on rank 0 (seeded by the round: a resumed run
    fits them again identically); every process then installs rank 0's result, so that all
    measure with the same networks."""
    split = pool.split
    state = None
    if where.rank == 0:
        data = FitData(split.labeled, split.unlabeled(), pool.loader_for, where.device, train_steps)
        state = strategy.fit(learner, data, split.generator(round_, "fit"))
    if where.world > 1 and where.broadcast is not None:
        state = where.broadcast(state, 0)
    strategy.load_fitted(state, where.device)


def query(
    learner: Learner,
    strategy: QueryStrategy,
    pool: QueryPool,
    round_: int,
    k: int,
    where: Placement | None = None,
    progress: QueryProgress | None = None,
    train_steps: int = 0,
    keep_logits: bool = False,
) -> QueryResult:
    """Score round ``round_``'s candidates (S, or the whole pool) and select the ``k`` best. The
    same on every process; ``where`` says which shard of the measuring this one does.
    ``train_steps``: M's training steps this round (what a strategy that ``trains`` matches).
    ``keep_logits``: return M's logits of the candidates too, where they can be kept: in one
    process, from a strategy that does not sample M with dropout (see :class:`QueryResult`)."""
    where = where or Placement()
    progress = progress or QueryProgress()
    split = pool.split
    if strategy.trains:
        fit_strategy(learner, strategy, pool, round_, where, train_steps)
    cand = split.candidates(round_, pool.subset_size)
    tap = LogitsTap(learner.net) if keep_logits and where.world == 1 and not strategy.requires_dropout else None
    cand_idx, cand_meas = _measure_shard(learner, strategy, cand, pool.loader_for, where, progress, "candidates", tap)
    logits = tap.logits(len(cand)) if tap is not None else None
    if logits is not None:
        logits = logits[torch.argsort(cand)]  # in cand_idx's order: gather_padded sorts by index
    lab_meas = None
    if strategy.uses_labeled and len(split):
        _, lab_meas = _measure_shard(learner, strategy, split.labeled, pool.loader_for, where, progress, "labeled")
    ctx = ScoreContext(round_, len(split), k, split.generator(round_, "strategy"), lab_meas)
    selected, scores = score_and_select(strategy, cand_idx, cand_meas, ctx)
    return QueryResult(selected, cand_idx, scores, logits)
