"""Training throughput (images/s) of ``Trainer.fit`` on the ActiveLearner with each speed setting:
fp32, bf16-mixed, channels_last, ``model.compile`` (and bf16 with channels_last), TF32 matrix
products (``--math.matmul_precision high``), and cuDNN benchmark mode (``--trainer.benchmark``).
Every setting starts from a run's defaults (lplgrad.numerics: full-float32 matrix products,
TF32 convolutions, no cuDNN benchmark).

The CIFAR-sized step of the paper (ResNet-18 width 64, 32x32, batch 128, M and A with their
optimisers) on random in-memory tensors, so that the data path plays no part. Each setting is
warmed up (compilation included) before it is timed.

    python -m benchmarks.speed_settings.py --device cuda
    python -m benchmarks.speed_settings.py --small          # CPU check: width 8, a few steps
"""

from __future__ import annotations

import argparse
import time

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, TensorDataset
from benchmarks.common import add_malloc_option, describe, malloc_setting


SETTINGS = {  # name: (trainer precision, module keyword arguments, matmul precision, cuDNN benchmark)
    "fp32": ("32-true", {}, "highest", False),
    "fp32 + TF32 matmul": ("32-true", {}, "high", False),
    "fp32 + cudnn.benchmark": ("32-true", {}, "highest", True),
    "bf16-mixed": ("bf16-mixed", {}, "highest", False),
    "channels_last": ("32-true", {"channels_last": True}, "highest", False),
    "bf16 + channels_last": ("bf16-mixed", {"channels_last": True}, "highest", False),
    "compile": ("32-true", {"compile": True}, "highest", False),
}


class StepClock(Callback):
    """Wall time of ``steps`` training batches after ``warmup`` of them, then stop.

    Batches are counted here: ``trainer.global_step`` counts optimiser steps, two per batch
    (M's and A's), which made the images/s twice the real figure.
    """

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.seen, self.t0, self.t1 = warmup, steps, 0, 0.0, 0.0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen == self.warmup:
            self._sync(pl_module)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen == self.warmup + self.steps:
            self._sync(pl_module)
            self.t1 = time.perf_counter()
            trainer.should_stop = True


def images_per_second(setting: str, width: int, batch: int, steps: int, warmup: int, device: torch.device) -> float:
    from lplgrad.module import ActiveLearner
    from lplgrad.nets import ResNet18
    from lplgrad.numerics import MathModes

    precision, kwargs, matmul, benchmark = SETTINGS[setting]
    MathModes(matmul_precision=matmul).apply()
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(batch * 8, 3, 32, 32, generator=g), torch.randint(0, 10, (batch * 8,), generator=g)
    )
    model = ActiveLearner(backbone=lambda c, i: ResNet18(c, i, width), num_classes=10, in_channels=3, **kwargs)
    clock = StepClock(warmup, steps)
    trainer = Trainer(
        accelerator=device.type,
        devices=1,
        precision=precision,
        max_epochs=-1,
        benchmark=benchmark,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
        num_sanity_val_steps=0,
    )
    trainer.fit(model, DataLoader(data, batch_size=batch, shuffle=True, drop_last=True))
    return batch * steps / (clock.t1 - clock.t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="CPU check: width 8, batch 32, 3 timed steps")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    add_malloc_option(ap)
    a = ap.parse_args(argv)

    device = torch.device(a.device)
    width, batch, steps, warmup = (8, 32, 3, 2) if a.small else (64, 128, 50, 10)
    print(describe(device, malloc_setting(a.malloc)))
    print(f"ResNet-18 width {width}, 32x32, batch {batch}, M + A; {steps} timed steps after {warmup}")
    base = None
    for name in a.settings:
        rate = images_per_second(name, width, batch, steps, warmup, device)
        base = base or rate
        print(f"{name:<22} {rate:10.0f} images/s   {rate / base:5.2f}x fp32")


if __name__ == "__main__":
    main()
