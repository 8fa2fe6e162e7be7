"""What a whole run of the paper's protocol costs: lplgrad's pipeline against the authors'.

For a config (default: CIFAR-10, high budget: 10 rounds of 200 epochs, 1,000 -> 10,000 labels,
S = 25,000) it writes random images in the dataset's real on-disk format (nothing is
downloaded), then measures on one device, for both pipelines:

- seconds per training epoch at several labeled-set sizes (warm: the first epoch is not
  counted), fitted as a + b * n;
- the query of S candidates (the authors': one sample, one backward pass at a time, timed on a
  sample of S and scaled);
- the end of a round: test evaluation (lplgrad: also its per-round figures, records and the
  round's checkpoint).

and projects the wall time of the whole run: sum over rounds of epochs x epoch(n) + round end,
plus a query between rounds. The authors' pipeline is their script's data path (a torchvision
dataset with PIL transforms, a DataLoader over a SubsetRandomSampler, batch 128, no worker
processes, pinned memory, fp32) and their query; its model, losses and optimisers are lplgrad's
(the same computation), so the difference is the pipeline. lplgrad runs with its defaults for the
device (on a GPU: images kept on the device, batches augmented there).

    python -m benchmarks.protocol_cost.py --device cuda          # the paper's CIFAR-10 protocol
    python -m benchmarks.protocol_cost.py --small                # about a minute on a CPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, SubsetRandomSampler
from benchmarks.common import EpochClock, add_malloc_option, describe, malloc_setting

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Protocol:
    initial: int
    b: int
    budget: int
    subset: int
    epochs: int
    width: int
    batch: int = 128

    @property
    def sizes(self) -> list[int]:
        """The labeled-set size of every round."""
        return list(range(self.initial, self.budget + 1, self.b))


@dataclass
class Costs:
    epoch: dict[int, float]  # labeled size -> seconds per warm epoch
    query: float  # seconds to score S candidates
    round_end: float  # seconds at the end of each round (evaluation, records, figures, checkpoint)

    def epoch_at(self, n: int) -> float:
        """Least-squares line through the measured epochs, evaluated at n."""
        xs, ys = list(self.epoch), list(self.epoch.values())
        if len(xs) == 1:
            return ys[0] * n / xs[0]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        return max(0.0, my + slope * (n - mx))

    def project(self, p: Protocol) -> tuple[float, float, float]:
        """(training, querying, round ends) seconds of the whole run."""
        train = sum(p.epochs * self.epoch_at(n) for n in p.sizes)
        return train, self.query * (len(p.sizes) - 1), self.round_end * len(p.sizes)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- lplgrad ------------------------------------------------------------------------------------
def lplgrad_args(data: Path, save: str, p: Protocol, n: int, epochs: int, device: torch.device) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs" / "cifar10.yaml"),
        "--data.dataset.init_args.root",
        str(data),
        "--data.dataset.init_args.download",
        "false",
        "--trainer.logger.init_args.save_dir",
        save,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.accelerator",
        device.type,
        "--model.backbone.init_args.width",
        str(p.width),
        "--data.initial_size",
        str(n),
        "--data.budget",
        str(n),
        "--data.query_size",
        str(p.b),
        "--data.subset_size",
        str(p.subset),
        "--data.batch_size",
        str(p.batch),
        "--loop.epochs_per_round",
        str(epochs),
    ]


def lplgrad_costs(
    data: Path, p: Protocol, sizes: list[int], epochs: int, device: torch.device, extra: list[str]
) -> Costs:
    """Epochs timed between the starts of epochs 1 .. epochs + 1; the last epoch's extra time
    over the median epoch is the round's end."""
    from lplgrad.cli import cli_main
    from lplgrad.query import Placement, QueryPool, query

    per_epoch, ends = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            cli = cli_main(lplgrad_args(data, tmp, p, n, epochs + 2, device) + extra, run=False)
            clock = EpochClock()
            cli.trainer.callbacks.append(clock)
            cli.trainer.fit(cli.model, cli.datamodule)
            sync(device)
            done = time.perf_counter()
            walls = [b - a for a, b in zip(clock.starts[1:], clock.starts[2:])]  # epoch 0 warms up
            per_epoch[n] = statistics.median(walls)
            ends.append(done - clock.starts[-1] - per_epoch[n])  # the last epoch's extra: the round's end
        learner, dm = cli.model, cli.datamodule
        learner.to(device)
        warm = QueryPool(dm.split, 256, dm.pool_dataloader)
        query(learner, cli.strategy, warm, 0, p.b, Placement(device))  # warm-up
        sync(device)
        t = time.perf_counter()
        query(learner, cli.strategy, QueryPool(dm.split, p.subset, dm.pool_dataloader), 0, p.b, Placement(device))
        sync(device)
        q = time.perf_counter() - t
    return Costs(per_epoch, q, statistics.median(ends))


# ---- the authors' pipeline ----------------------------------------------------------------------
def authors_loaders(data: Path, labeled: list[int], batch: int, device: torch.device):
    from torchvision import datasets as tvd
    from torchvision import transforms as T

    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    train_tf = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4), T.ToTensor(), T.Normalize(mean, std)])
    test_tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    train = tvd.CIFAR10(str(data), train=True, download=False, transform=train_tf)
    unlabeled = tvd.CIFAR10(str(data), train=True, download=False, transform=test_tf)
    test = tvd.CIFAR10(str(data), train=False, download=False, transform=test_tf)
    pin = device.type == "cuda"
    return (
        DataLoader(train, batch_size=batch, sampler=SubsetRandomSampler(labeled), pin_memory=pin),
        unlabeled,
        DataLoader(test, batch_size=batch, pin_memory=pin),
    )


def authors_epoch(learner, opts, loader, device: torch.device) -> None:
    learner.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        for o in opts:
            o.zero_grad()
        loss = learner.losses(x, y)[0]
        loss.backward()
        for o in opts:
            o.step()


def authors_costs(
    data: Path, p: Protocol, sizes: list[int], epochs: int, device: torch.device, query_sample: int
) -> Costs:
    from lplgrad.gradnorm import combine, per_sample_sq_norms_loop
    from lplgrad.losses import entropy
    from lplgrad.module import ActiveLearner
    from lplgrad.nets import ResNet18

    learner = ActiveLearner(
        backbone=lambda c, i: ResNet18(c, i, p.width), num_classes=10, in_channels=3, epoch_loss=120
    ).to(device)
    opts = [
        torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for m in (learner.net, learner.loss_head)
    ]
    per_epoch = {}
    for n in sizes:
        train, unlabeled, test = authors_loaders(data, list(range(n)), p.batch, device)
        walls = []
        for _ in range(epochs + 1):
            sync(device)
            t = time.perf_counter()
            authors_epoch(learner, opts, train, device)
            sync(device)
            walls.append(time.perf_counter() - t)
        per_epoch[n] = statistics.median(walls[1:])
    learner.eval()
    sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        for x, y in test:
            (learner.net(x.to(device))[0].argmax(1) == y.to(device)).sum().item()
    sync(device)
    evaluation = time.perf_counter() - t
    sample = torch.utils.data.Subset(unlabeled, list(range(n, n + query_sample)))
    loader = DataLoader(sample, batch_size=1, pin_memory=device.type == "cuda")  # one sample at a time
    sync(device)
    t = time.perf_counter()
    for x, _ in loader:
        combine(per_sample_sq_norms_loop(learner.net, x.to(device), lambda m, v: entropy(m(v)[0])), "per_tensor")
    sync(device)
    q = (time.perf_counter() - t) * p.subset / query_sample
    return Costs(per_epoch, q, evaluation)


def report(name: str, c: Costs, p: Protocol) -> float:
    train, query, ends = c.project(p)
    total = train + query + ends
    epochs = ", ".join(f"{n}: {1e3 * s:.0f} ms" for n, s in c.epoch.items())
    print(f"{name:<9} epoch at labeled size {epochs}; query of S {c.query:.1f} s; round end {c.round_end:.2f} s")
    print(
        f"{'':<9} whole run: training {train / 3600:.2f} h + querying {query / 3600:.2f} h + round ends "
        f"{ends / 3600:.2f} h = {total / 3600:.2f} h"
    )
    return total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--small",
        action="store_true",
        help="a CPU-sized check (width 8, 5,000 images, 3 timed epochs per size): about a minute",
    )
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs per size (after one warm-up epoch)")
    ap.add_argument("--query-sample", type=int, default=None, help="samples the authors' query is timed on")
    add_malloc_option(ap)
    a = ap.parse_args(argv)
    from tests.helpers import synthetic  # tiny files in the datasets' real formats

    malloc = malloc_setting(a.malloc)
    device = torch.device(a.device)
    if a.small:
        p, sizes, per_batch = Protocol(200, 200, 1000, 1000, 200, 8), [200, 600, 1000], 1000  # no loader workers
        epochs, sample = a.epochs or 3, a.query_sample or 50
    else:
        p, sizes, per_batch = Protocol(1000, 1000, 10000, 25000, 200, 64), [1000, 5000, 10000], 10000
        epochs, sample = a.epochs or 2, a.query_sample or 500
    print(describe(device, malloc))
    print(
        f"protocol: {len(p.sizes)} rounds of {p.epochs} epochs, {p.initial} -> {p.budget} labels, b={p.b}, "
        f"S={p.subset}, ResNet-18 width {p.width}, batch {p.batch}; synthetic CIFAR-10 on disk "
        f"({5 * per_batch} train / {per_batch} test images)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar"
        synthetic.write_cifar10(data, per_batch=per_batch)
        t0 = time.perf_counter()
        with synthetic.checksums_skipped():
            ours = lplgrad_costs(data, p, sizes, epochs, device, ["--data.num_workers", "0"] if a.small else [])
            theirs = authors_costs(data, p, sizes, epochs, device, sample)
        measured = time.perf_counter() - t0
    total_ours = report("lplgrad", ours, p)
    total_theirs = report("authors", theirs, p)
    print(
        f"projected whole run: lplgrad {total_ours / 3600:.2f} h, authors' pipeline {total_theirs / 3600:.2f} h: "
        f"lplgrad {total_theirs / total_ours:.2f}x faster (measured in {measured:.0f} s)"
    )


if __name__ == "__main__":
    main()
