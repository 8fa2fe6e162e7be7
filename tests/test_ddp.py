"""DDP: sharded scoring with a padded gather selects exactly what one process selects."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers.runs import HANG_S
from lplgrad.nets import SmallCNN
from lplgrad.query import gather_padded, measure, score_and_select, shard
from lplgrad.strategies import ScoreContext
from lplgrad.nets.dropout import attach_head_dropout
from lplgrad.strategies import BALD, BatchBALD, Coreset, Entropy, LPLgrad, ProbCover, Random
from helpers.tiny import DDP_TWO_CPU, tiny_fit_args
from helpers.records import rounds_of

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = {
    "LPLgrad": LPLgrad,
    "Coreset": Coreset,
    "Random": Random,
    "Entropy": Entropy,
    "BALD": BALD,
    "BatchBALD": BatchBALD,
    "ProbCover": ProbCover,
}


def learner() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Module()
    m.net = SmallCNN(5, 3, 4)
    m.head_dropout, m.round_index = attach_head_dropout(m.net, 0.5), 2  # for BALD and BatchBALD
    with torch.no_grad():
        m.net.train()
        m.net(torch.randn(16, 3, 12, 12))
    return m.eval()


def pool(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(n))


def select(name: str, n: int, k: int, rank: int, world: int, all_gather) -> torch.Tensor:
    model, images = learner(), pool(n)
    cand = torch.arange(1, n, 2)  # candidates: odd indices; labeled: the first few even ones
    labeled = torch.arange(0, 8, 2)
    strategy = STRATEGIES[name]()

    def measured(indices):
        mine = shard(indices, rank, world)
        loader = DataLoader(TensorDataset(images[mine], torch.zeros(len(mine))), batch_size=3)
        return gather_padded(mine, measure(model, strategy, loader, torch.device("cpu")), world, all_gather)

    cand_idx, cand_meas = measured(cand)
    lab_meas = measured(labeled)[1] if strategy.uses_labeled else None
    ctx = ScoreContext(0, len(labeled), k, torch.Generator().manual_seed(7), lab_meas)
    return score_and_select(strategy, cand_idx, cand_meas, ctx)[0]


def _worker(rank: int, world: int, port: int, name: str, n: int, k: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)

    def all_gather(t):
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        return torch.stack(parts)

    try:
        torch.save(select(name, n, k, rank, world, all_gather), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("n", [23, 30])  # 11 and 15 candidates: shards of unequal size
def test_two_process_selection_equals_one_process(tmp_path, name, n):
    single = select(name, n, 5, 0, 1, None)
    port = 29500 + (hash((name, n)) % 1000)
    mp.spawn(_worker, args=(2, port, name, n, 5, str(tmp_path / "sel")), nprocs=2, join=True)
    for r in range(2):
        assert torch.load(tmp_path / f"sel.{r}").tolist() == single.tolist()


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--strategy", "lplgrad.strategies.VAAL", "--strategy.init_args.width", "4"],
        ["--strategy", "lplgrad.strategies.WAAL", "--model.adversary", "lplgrad.adversary.WAALAdversary"],
    ],
    ids=["LPLgrad", "VAAL", "WAAL"],
)
def test_two_process_experiment(tmp_path, extra):
    """Both processes select the same images (the loop stops if they do not); VAAL's networks are
    trained on rank 0 and broadcast to the other; WAAL's critic steps with the processes' averaged
    gradients, so both query with the same critic."""
    cmd = [
        sys.executable,
        "-m",
        "lplgrad",
        *tiny_fit_args(tmp_path, *DDP_TWO_CPU, *extra, subset=61),
    ]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = rounds_of(tmp_path, "digits")
    # the loop all-gathers the labeled set after every query and stops if the processes disagree
    assert [r["labeled"] for r in rows] == [20, 35, 50] and all(r["processes"] == 2 for r in rows)
    queried = [i for r in rows for i in r["queried"]]
    assert len(queried) == len(set(queried)) == 30
