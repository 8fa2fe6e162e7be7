"""The fixed cost of an epoch in ``fit``: time per epoch minus time in training steps.

A near-zero-compute model (the digits config, ResNet-18 of width 4, 8x8 images), 1,000 labels,
batch 128: eight steps of a few milliseconds, so whatever else an epoch does shows. For each
setting it runs one round of ``--epochs`` epochs through the real CLI and times every epoch
between the start of one and the start of the next, except the first (warm-up) and the last
(the round's end: test evaluation, figures). "steps" is the time from each batch's start hook to
its end hook (forward, backward, optimiser steps); the rest of the epoch is overhead: loading and
augmenting images, Lightning's loop, logging, checkpoints. The same steps on the same model in a
plain loop over in-memory tensors give the floor.

    python -m benchmarks.epoch_overhead.py            # this code: the default (tensor) path and the PIL path
    PYTHONPATH=/path/to/older/checkout python -m benchmarks.epoch_overhead.py --settings default   # an older version

The output is one table (milliseconds per epoch, median over the timed epochs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from benchmarks.common import EpochClock, add_malloc_option, describe, malloc_setting

ROOT = Path(__file__).resolve().parents[1]


#: the data paths of this code (an older checkout knows only "default", its PIL path)
SETTINGS = {"default": [], "pil": ["--data.in_memory", "false"]}


def cli_args(save_dir: str, labels: int, epochs: int, extra: list[str]) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs" / "digits.yaml"),
        "--trainer.logger.init_args.save_dir",
        save_dir,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--model.backbone.init_args.width",
        "4",
        "--data.initial_size",
        str(labels),
        "--data.budget",
        str(labels),
        "--data.batch_size",
        "128",
        "--loop.epochs_per_round",
        str(epochs),
        *extra,
    ]


def time_fit(labels: int, epochs: int, extra: list[str]) -> tuple[float, float]:
    """(median ms per epoch, median ms in steps per epoch) over epochs 1 .. epochs-2."""
    from lplgrad.cli import cli_main

    with tempfile.TemporaryDirectory() as tmp:
        cli = cli_main(cli_args(tmp, labels, epochs, extra), run=False)
        clock = EpochClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, cli.datamodule)
    walls = [b - a for a, b in zip(clock.starts[1:-1], clock.starts[2:])]
    return 1e3 * statistics.median(walls), 1e3 * statistics.median(clock.steps[1:-1])


def time_plain_loop(labels: int, epochs: int) -> float:
    """Median ms per epoch of the same model's steps over in-memory, pre-normalised tensors."""
    from lplgrad.cli import cli_main

    with tempfile.TemporaryDirectory() as tmp:
        cli = cli_main(cli_args(tmp, labels, epochs, []), run=False)
    learner, dm = cli.model, cli.datamodule
    dm.setup()
    idx = dm.split.labeled if hasattr(dm, "split") else dm.labeled  # older versions kept it on the module
    x = torch.stack([dm._eval_view[int(i)][0] for i in idx])  # (n, 1, 8, 8)
    y = dm.labels(idx)
    opts, _ = learner.configure_optimizers()
    learner.train()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(x))
        for s in range(0, len(x), 128):
            b = perm[s : s + 128]
            loss = learner.losses(x[b], y[b])[0]
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts:
                o.step()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[1:])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    add_malloc_option(p)
    args = p.parse_args(argv)

    print(describe(torch.device("cpu"), malloc_setting(args.malloc)))
    print(
        f"digits, ResNet-18 width 4, {args.labels} labels, batch 128, {args.epochs} epochs, median over "
        f"epochs 2..{args.epochs - 1}; lplgrad from {__import__('lplgrad').__file__}"
    )
    print(f"{'setting':<12} {'epoch ms':>9} {'steps ms':>9} {'overhead ms':>12}")
    for name in args.settings:
        epoch, steps = time_fit(args.labels, args.epochs, SETTINGS[name])
        print(f"{name:<12} {epoch:9.1f} {steps:9.1f} {epoch - steps:12.1f}")
    print(f"{'plain loop':<12} {time_plain_loop(args.labels, args.epochs):9.1f}")


if __name__ == "__main__":
    main()
