"""Coreset selection: k-center greedy without an N x N matrix against versions that build it,
and against lplgrad's previous version (one matrix-vector product per pick).

All run in this process on the same features and print their seconds (best of ``--repeat``,
after a warm-up), the ratio, and whether they selected the same points in the same order.
Usage: python -m benchmarks.coreset_speed.py [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from lplgrad.strategies.coreset import k_center_greedy
from benchmarks.common import add_malloc_option, describe, malloc_setting


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


def gemv_per_pick(points: torch.Tensor, centres: torch.Tensor, k: int) -> torch.Tensor:
    """lplgrad's previous k-center greedy: a running minimum updated by one matrix-vector product per pick."""
    n = points.shape[0]
    sq = points.pow(2).sum(1)
    nearest = torch.full((n,), float("inf"), device=points.device)
    for s in range(0, centres.shape[0], 1024):
        c = centres[s : s + 1024]
        d = (sq[:, None] - 2.0 * points @ c.T + c.pow(2).sum(1)[None, :]).clamp_min_(0)
        nearest = torch.minimum(nearest, d.min(1).values)
    picked = torch.empty(k, dtype=torch.long, device=points.device)
    for i in range(k):
        j = torch.argmax(nearest)
        picked[i] = j
        torch.minimum(nearest, (sq + sq[j] - 2.0 * (points @ points[j])).clamp_min_(0), out=nearest)
        nearest[j] = -1.0
    return picked


def best_of(fn, repeat: int, sync) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    add_malloc_option(ap)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-slowest", action="store_true", help="leave out the full matrix with a min over the block")
    a = ap.parse_args()
    malloc = malloc_setting(a.malloc)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    # pooled ReLU features are non-negative: use |N(0, 1)| like them
    points = torch.randn(a.n, a.dim, generator=g).abs().to(dev)
    centres = torch.randn(a.m, a.dim, generator=g).abs().to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for fn in (k_center_greedy, gemv_per_pick, full_matrix_running_min):  # warm-up
        fn(points[:100], centres[:10], 5)
    sides = {
        "k-center greedy, blocks of likely picks (lplgrad)": lambda: k_center_greedy(points, centres, a.k),
        "one matrix-vector product per pick (previous)": lambda: gemv_per_pick(points, centres, a.k),
        "full matrix, running minimum": lambda: full_matrix_running_min(points, centres, a.k),
        "full matrix, min over the block": lambda: full_matrix_k_center(points, centres, a.k),
    }
    if a.skip_slowest:
        del sides["full matrix, min over the block"]
    print(describe(dev, malloc))
    print(f"candidates {a.n}, labeled {a.m}, dim {a.dim}, k {a.k}, best of {a.repeat} (the slowest side: 1 run)")
    ours_t, ours = best_of(sides.pop("k-center greedy, blocks of likely picks (lplgrad)"), a.repeat, sync)
    print(f"{'k-center greedy, blocks of likely picks (lplgrad)':<52}: {ours_t:8.3f} s")
    for name, fn in sides.items():
        t, sel = best_of(fn, 1 if "block" in name else a.repeat, sync)
        same = (
            "same picks in the same order"
            if torch.equal(sel.cpu(), ours.cpu())
            else "same set of picks"
            if set(sel.tolist()) == set(ours.tolist())
            else f"{len(set(sel.tolist()) & set(ours.tolist()))} of {a.k} picks in common"
        )
        print(f"{name:<52}: {t:8.3f} s   lplgrad is {t / ours_t:6.1f}x faster   {same}")
    print(f"extra memory: lplgrad O(N*D + 256*N) floats; full matrix (N+M)^2 = {(a.n + a.m) ** 2 * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
