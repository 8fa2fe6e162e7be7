"""Where an LPLgrad query spends its time: each hooked layer type's per-sample reduction, timed
inside one query chunk, next to the whole query, the query without reductions (forward and
activation-gradient backward only) and a training step, all in this process.

``--depthwise-as-grouped`` also runs the query with depthwise convolutions on the older path
(the batched weight-gradient call), side by side.

    python -m benchmarks.query_layers.py --models torchvision-convnext_tiny-224 --depthwise-as-grouped
"""

from __future__ import annotations

import argparse
import collections
import copy
import time

import torch
from benchmarks.query_speed import MODELS, Learner, best_of, make_model
from torch import nn
from torch.nn import functional as F

import lplgrad.gradnorm.batched as batched
import lplgrad.gradnorm.conv as conv
from lplgrad.strategies import EntGradNorm
from benchmarks.common import add_malloc_option, describe, malloc_setting

LAYER_SQ, CHOOSE_PATH = batched._layer_sq, conv.choose_path


def layer_kind(m: nn.Module, a: torch.Tensor) -> str:
    if isinstance(m, nn.Conv2d):
        kind = "depthwise" if conv.is_depthwise(m.groups, m.in_channels) else f"groups={m.groups}"
        return f"Conv2d {kind} k={m.kernel_size[0]}"
    if isinstance(m, nn.Linear):
        return f"Linear at {a[0].numel() // a.shape[-1]} positions"
    return type(m).__name__


def timed_reductions(times: dict[str, float]):
    def layer_sq(m, a, g, max_bytes, y=None):
        t = time.perf_counter()
        out = LAYER_SQ(m, a, g, max_bytes, y)
        times[layer_kind(m, a)] += time.perf_counter() - t
        return out

    return layer_sq


def as_grouped(*args) -> str:
    path = CHOOSE_PATH(*args)
    return "grouped" if path == "depthwise" else path


def bench(name: str, a: argparse.Namespace) -> None:
    net, shape = make_model(name, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(a.batch, *shape, generator=g), torch.randint(0, 10, (a.batch,), generator=g)
    strat, learner, train_net = EntGradNorm(chunk_size=a.batch), Learner(net), copy.deepcopy(net).train()

    def train() -> None:
        train_net.zero_grad(set_to_none=True)
        F.cross_entropy(train_net(x)[0], y).backward()

    def query(layer_sq=LAYER_SQ, choose=CHOOSE_PATH):
        def run():
            batched._layer_sq, conv.choose_path = layer_sq, choose
            try:
                return strat.measure(learner, x)
            finally:
                batched._layer_sq, conv.choose_path = LAYER_SQ, CHOOSE_PATH

        return run

    fns = {"training step": train, "query": query(), "query without reductions": query(lambda *_a, **_k: (None, None))}
    if a.depthwise_as_grouped:
        fns["query, depthwise as grouped"] = query(choose=as_grouped)
    for f in fns.values():  # warm-up: oneDNN primitives, allocator pages
        f()
    best, _ = best_of(fns, a.reps, torch.device("cpu"))
    print(f"\n== {name}, batch {a.batch}: seconds per call, best of {a.reps} interleaved")
    for k, v in best.items():
        print(f"{k:32s} {v:7.3f} s   query speed / training-step speed = {best['training step'] / v:5.2f}x")
    for label, choose in [("", CHOOSE_PATH)] + (
        [(", depthwise as grouped", as_grouped)] if a.depthwise_as_grouped else []
    ):
        times: dict[str, float] = collections.defaultdict(float)
        query(timed_reductions(times), choose)()
        print(f"reductions inside one query{label} (timed once), by layer type:")
        for k, v in sorted(times.items(), key=lambda kv: -kv[1]):
            print(f"  {k:40s} {v * 1000:8.1f} ms")
        print(f"  {'all':40s} {sum(times.values()) * 1000:8.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    add_malloc_option(ap)
    ap.add_argument("--models", nargs="+", default=["torchvision-convnext_tiny-224"], choices=list(MODELS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--depthwise-as-grouped", action="store_true")
    a = ap.parse_args()
    print(describe(torch.device("cpu"), malloc_setting(a.malloc)))
    for name in a.models:
        bench(name, a)


if __name__ == "__main__":
    main()
