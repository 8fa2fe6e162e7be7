"""Training throughput of ``Trainer.fit`` on the ActiveLearner against a plain PyTorch loop.

Both sides train the same model (M + A with the ranking loss, two SGD optimisers) on the same
in-memory batches, in this process, alternating, and the script prints images per second and
the ratio. Usage: python -m benchmarks.train_speed.py [--device cuda] [--width 16] [--steps 200]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

from lplgrad.module import ActiveLearner
from lplgrad.nets import ResNet18
from benchmarks.common import add_malloc_option, describe, malloc_setting, one_epoch_trainer


def make(width: int, channels: int) -> ActiveLearner:
    torch.manual_seed(0)
    return ActiveLearner(backbone=lambda c, i: ResNet18(c, i, width), num_classes=10, in_channels=channels)


def plain_loop(model: ActiveLearner, loader: DataLoader, device: torch.device) -> None:
    """The same step by hand: forward, joint loss, backward, both optimisers."""
    model.to(device).train()
    opts = [
        torch.optim.SGD(g.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4) for g in (model.net, model.loss_head)
    ]
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = model.losses(x, y)[0]
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def lightning_fit(model: ActiveLearner, loader: DataLoader, device: torch.device) -> None:
    one_epoch_trainer(device.type).fit(model, loader)
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    add_malloc_option(ap)
    ap.add_argument("--width", type=int, default=16, help="ResNet-18 width (16: the Fashion-MNIST CPU config)")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    malloc = malloc_setting(a.malloc)
    warnings.filterwarnings("ignore")
    device = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    n = a.batch * a.steps
    data = TensorDataset(
        torch.randn(n, a.channels, a.size, a.size, generator=g), torch.randint(0, 10, (n,), generator=g)
    )
    loader = DataLoader(data, batch_size=a.batch, shuffle=False)
    base = make(a.width, a.channels)
    # warm-up of both paths (kernels, allocator)
    plain_loop(copy.deepcopy(base), DataLoader(TensorDataset(*data[: 4 * a.batch]), batch_size=a.batch), device)
    lightning_fit(copy.deepcopy(base), DataLoader(TensorDataset(*data[: 4 * a.batch]), batch_size=a.batch), device)
    times = {"plain": [], "fit": []}
    for _ in range(a.repeats):
        for name, fn in (("plain", plain_loop), ("fit", lightning_fit)):
            m = copy.deepcopy(base)
            t = time.perf_counter()
            fn(m, loader, device)
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(describe(device, malloc))
    print(
        f"ResNet-18 width {a.width}, {a.channels}x{a.size}x{a.size}, batch {a.batch}, {a.steps} steps, M + A, "
        f"best of {a.repeats}"
    )
    print(f"plain PyTorch loop : {n / best['plain']:8.1f} images/s")
    print(f"Trainer.fit        : {n / best['fit']:8.1f} images/s   -> fit / plain = {best['plain'] / best['fit']:.3f}x")


if __name__ == "__main__":
    main()
