"""Self-supervised pretraining's cost (issue 26, docs/benchmarks.md): images/s of SimCLR's and
BYOL's training step against a plain supervised training step of the same network and batch,
side by side in this process, and images/s of making the two views.

Every side is ``Trainer.fit`` for ``--steps`` steps on in-memory tensors (the views made once,
beforehand, so that only the step is timed), the same Trainer settings, the sides alternating
for ``--reps`` rounds after one warm-up fit each:

- supervised: ``net`` (the pretraining's backbone, built as ``configs/pretrain/
  fashion_mnist_simclr.yaml`` builds it) and cross-entropy on a batch of B images and labels,
  SGD with momentum (what an active-learning round's M does, without A);
- simclr / byol: :class:`lplgrad.pretrain.module.Pretrainer`'s own ``training_step`` on a batch
  of B view pairs (2B images through the backbone; BYOL also 2B through its momentum copy
  without gradients).

Images/s counts the B source images of a step on every side, so the ratio is what a pretraining
epoch costs against a supervised epoch over the same images. The views: lightly's transform
(:func:`lplgrad.pretrain.views.two_views`) on Fashion-MNIST's PIL images, one process, which
the data loader's workers do during pretraining.

    python -m benchmarks.pretrain_speed                 # Fashion-MNIST's config: width 16, 28x28, B = 256
    python -m benchmarks.pretrain_speed --steps 2 --reps 1 --batch 32     # a rehearsal
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import torch
from lightning.pytorch import LightningModule
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import add_malloc_option, describe, malloc_setting, one_epoch_trainer
from lplgrad.datasets import FashionMNIST
from lplgrad.nets import ResNet18
from lplgrad.pretrain.module import Pretrainer
from lplgrad.pretrain.views import two_views


class Supervised(LightningModule):
    """The same backbone trained with cross-entropy and SGD (lr 0.03, momentum 0.9, wd 5e-4)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = ResNet18(10, 1, width)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x)[0], y)  # lplgrad ResNets return (logits, stage features)

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)


def fit(module: LightningModule, loader: DataLoader) -> float:
    """Seconds of ``Trainer.fit`` for one epoch of ``loader`` (the Trainer built outside the clock)."""
    trainer = one_epoch_trainer("cpu")
    t = time.perf_counter()
    trainer.fit(module, loader)
    return time.perf_counter() - t


def fashion_images(n: int) -> list:
    """The first ``n`` Fashion-MNIST training images as PIL images (data/fashion_mnist)."""
    split = FashionMNIST(root="data/fashion_mnist", download=False).load(train=True)
    return [split.image(i) for i in range(n)]


def make_views(images: list, method: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(view 0s, view 1s) of ``images`` (N, 1, 28, 28) each, and the seconds it took."""
    views = two_views(method, FashionMNIST.image_size, FashionMNIST.mean, FashionMNIST.std)
    t = time.perf_counter()
    pairs = [views(im) for im in images]
    seconds = time.perf_counter() - t
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=256, help="B: images (view pairs) per step")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed fit")
    ap.add_argument("--reps", type=int, default=3, help="timed fits per side (alternating)")
    ap.add_argument("--threads", type=int, default=None)
    add_malloc_option(ap)
    a = ap.parse_args()
    allocator = malloc_setting(a.malloc)
    if a.threads:
        torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no start-up lines per fit
    print(describe(torch.device("cpu"), allocator))
    n = a.batch * a.steps
    images = fashion_images(n)
    print(
        f"backbone: lplgrad ResNet-18 width {a.width}, 1x28x28 (configs/pretrain/fashion_mnist_simclr.yaml); "
        f"B = {a.batch}, {a.steps} steps a fit, {a.reps} timed fits a side after one warm-up"
    )
    x0, x1, view_s = {}, {}, {}
    for method in ("simclr", "byol"):
        x0[method], x1[method], view_s[method] = make_views(images, method)
        print(f"views ({method}, lightly, one process): {n / view_s[method]:8.0f} images/s (two views each)")
    y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))
    loaders = {"supervised": DataLoader(TensorDataset(x0["simclr"], y), batch_size=a.batch)}
    for method in ("simclr", "byol"):
        loaders[method] = DataLoader(TensorDataset(x0[method], x1[method]), batch_size=a.batch)
    torch.manual_seed(0)
    modules = {"supervised": Supervised(a.width)}
    for method in ("simclr", "byol"):
        modules[method] = Pretrainer(lambda c, i: ResNet18(c, i, a.width), 10, 1, method=method, batch_size=a.batch)
    times = {k: [] for k in modules}
    for k in modules:  # warm-up
        fit(modules[k], loaders[k])
    for _ in range(a.reps):
        for k in modules:
            times[k].append(fit(modules[k], loaders[k]))
    best = {k: min(v) for k, v in times.items()}
    for k, v in times.items():
        rate = n / best[k]
        print(
            f"{k:>10} step: {rate:8.1f} images/s ({', '.join(f'{t:.2f}' for t in v)} s per fit; "
            f"{best['supervised'] / best[k]:.2f}x the supervised step's images/s)"
        )


if __name__ == "__main__":
    main()
