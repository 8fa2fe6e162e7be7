"""Coreset selection: k-center greedy without an N x N matrix against one that builds it.

Both sides run in this process on the same features and print their seconds, the ratio, and
whether they selected the same set. Usage: python benchmarks/coreset_speed.py [--device cuda]
"""
from __future__ import annotations

import argparse
import time

import torch

from lplgrad import allocator
from lplgrad.strategies.coreset import k_center_greedy
from machine import add_malloc_option, describe  # benchmarks/machine.py


def full_matrix_k_center(points: torch.Tensor, centres: torch.Tensor, k: int) -> torch.Tensor:
    """The common textbook version: one (N+M) x (N+M) distance matrix, then, every pick, the
    minimum over the candidate-to-centre block of it."""
    allp = torch.cat([points, centres])
    sq = allp.pow(2).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * allp @ allp.T).clamp_min_(0)  # (N+M, N+M)
    n = points.shape[0]
    is_centre = torch.zeros(len(allp), dtype=torch.bool, device=points.device)
    is_centre[n:] = True
    picked = []
    for _ in range(k):
        cand = torch.nonzero(~is_centre[:n]).flatten()
        block = dist[cand][:, is_centre]  # (n_cand, n_centres)
        j = int(cand[torch.argmax(block.min(1).values)])
        picked.append(j)
        is_centre[j] = True
    return torch.tensor(picked)


def full_matrix_running_min(points: torch.Tensor, centres: torch.Tensor, k: int) -> torch.Tensor:
    """A stronger full-matrix version: the same (N+M) x (N+M) matrix, but a running minimum
    updated from one matrix column per pick."""
    allp = torch.cat([points, centres])
    sq = allp.pow(2).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * allp @ allp.T).clamp_min_(0)  # (N+M, N+M)
    n = points.shape[0]
    nearest = dist[:n, n:].min(1).values if centres.shape[0] else torch.full((n,), float("inf"), device=points.device)
    picked = []
    for _ in range(k):
        j = int(torch.argmax(nearest))
        picked.append(j)
        nearest = torch.minimum(nearest, dist[:n, j])
        nearest[j] = -1.0
    return torch.tensor(picked)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    add_malloc_option(ap)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=1000)
    a = ap.parse_args()
    malloc = allocator.apply(a.malloc)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    # pooled ReLU features are non-negative: use |N(0, 1)| like them
    points = torch.randn(a.n, a.dim, generator=g).abs().to(dev)
    centres = torch.randn(a.m, a.dim, generator=g).abs().to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    k_center_greedy(points[:100], centres[:10], 5)
    sync()
    t = time.perf_counter()
    ours = k_center_greedy(points, centres, a.k)
    sync()
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref2 = full_matrix_running_min(points, centres, a.k)
    sync()
    t_ref2 = time.perf_counter() - t
    t = time.perf_counter()
    ref = full_matrix_k_center(points, centres, a.k)
    sync()
    t_ref = time.perf_counter() - t
    print(describe(dev, malloc))
    print(f"candidates {a.n}, labeled {a.m}, dim {a.dim}, k {a.k}")
    print(f"k-center greedy, no N x N matrix : {t_ours:8.3f} s")
    print(f"full matrix, min over the block  : {t_ref:8.3f} s   speed-up {t_ref / t_ours:6.1f}x   "
          f"same selected set: {set(ours.tolist()) == set(ref.tolist())}")
    print(f"full matrix, running minimum     : {t_ref2:8.3f} s   speed-up {t_ref2 / t_ours:6.1f}x   "
          f"same selected set: {set(ours.tolist()) == set(ref2.tolist())}")
    print(f"extra memory: ours O(N*D + N*{1024}) floats; full matrix (N+M)^2 = {(a.n + a.m) ** 2 * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
