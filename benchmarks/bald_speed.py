"""BALD's and BatchBALD's query cost on Fashion-MNIST candidates, side by side in one process.

- BALD, dropout before the classifier only (``model.head_dropout 0.5``): the backbone runs once
  per image and the classifier T times, against one plain eval forward of the candidates
  (target: at most 1.5x);
- BALD with dropout inside the backbone (a Dropout2d appended to stages 2 and 3): T stacked copies
  per forward, against T plain eval forwards (target: at most 1.2x);
- BatchBALD: the greedy batch's time for growing b, after the T passes.

    python -m benchmarks.bald_speed                      # S = 2,000, T = 20, the README's ResNet-18
    python -m benchmarks.bald_speed --candidates 200 --batches 5 10   # a quick rehearsal
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from benchmarks.common import describe
from lplgrad.module import ActiveLearner
from lplgrad.nets import ResNet18
from lplgrad.strategies import BALD, BatchBALD
from lplgrad.strategies.base import ScoreContext


def candidates(n: int) -> torch.Tensor:
    """The first n Fashion-MNIST test images, normalised (random images when the data is missing)."""
    try:
        from lplgrad.datasets import FashionMNIST

        ds = FashionMNIST(root="data/fashion_mnist")
        images = ds.load(False).array[:n].float().div(255)  # (n, 1, 28, 28)
        return (images - ds.mean[0]) / ds.std[0]
    except Exception as e:  # noqa: BLE001 - a timing needs images of the right shape, not these ones
        print(f"(Fashion-MNIST not read: {e}; random images instead)")
        return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def learner(inner_dropout: bool) -> ActiveLearner:
    torch.manual_seed(0)
    m = ActiveLearner(lambda c, i: ResNet18(c, i, width=16), 10, 1, use_aux=False, head_dropout=0.5)
    if inner_dropout:
        m.net.layer2.append(nn.Dropout2d(0.1))
        m.net.layer3.append(nn.Dropout2d(0.1))
    return m.eval()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best(fns: dict, reps: int) -> dict:
    """Each function ``reps`` times, interleaved; the best time of each."""
    out = {k: float("inf") for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            out[k] = min(out[k], timed(fn))
    return out


def batched(fn, x: torch.Tensor, batch: int):
    def run():
        with torch.no_grad():
            for chunk in x.split(batch):
                fn(chunk)

    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=2000, help="S")
    ap.add_argument("--samples", type=int, default=20, help="T")
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batches", type=int, nargs="+", default=[10, 25, 50, 100], help="BatchBALD's b values")
    a = ap.parse_args(argv)
    print(describe(torch.device("cpu"), "default"))
    x, t = candidates(a.candidates), a.samples
    print(f"S = {len(x)} candidates, T = {t}, eval batch {a.eval_batch}")

    head = learner(False)
    bald = BALD(samples=t)
    r = best(
        {
            "plain": batched(lambda c: head.net(c), x, a.eval_batch),
            "bald": batched(lambda c: bald.measure(head, c), x, a.eval_batch),
        },
        a.reps,
    )
    print(
        f"dropout before the classifier: one eval forward {r['plain']:.3f} s, BALD (T={t}) {r['bald']:.3f} s, "
        f"ratio {r['bald'] / r['plain']:.2f} (target <= 1.5)"
    )

    inner = learner(True)
    r = best(
        {
            "plain_T": batched(lambda c: [inner.net(c) for _ in range(t)], x, a.eval_batch),
            "bald": batched(lambda c: bald.measure(inner, c), x, a.eval_batch),
        },
        a.reps,
    )
    print(
        f"dropout inside the backbone: T eval forwards {r['plain_T']:.3f} s, BALD (T stacked) {r['bald']:.3f} s, "
        f"ratio {r['bald'] / r['plain_T']:.2f} (target <= 1.2)"
    )

    bb = BatchBALD(samples=t)
    t0 = time.perf_counter()
    with torch.no_grad():
        log_probs = torch.cat([bb.measure(head, c) for c in x.split(a.eval_batch)])  # (S, T, C)
    passes = time.perf_counter() - t0
    print(f"BatchBALD (m = {bb.configurations} configurations): T passes {passes:.3f} s, then the greedy batch:")
    for b in a.batches:
        ctx = ScoreContext(0, 100, b, torch.Generator().manual_seed(0))
        s = timed(lambda: bb.scores(log_probs, ctx))
        print(f"  b = {b:>4}: {s:8.2f} s ({s / b:.3f} s a pick)")


if __name__ == "__main__":
    main()
