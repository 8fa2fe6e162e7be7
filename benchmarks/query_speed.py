"""LPLgrad query throughput against the authors' one-sample loop and against a training step.

All sides run in this process, on the same model and inputs, and the script prints their
throughputs and ratios, the largest score differences (also against a float64 loop), and the
peak extra memory of the query. ``--scan`` adds S = 1k, 2k, 4k on ResNet-18 (time linear,
memory flat). Runs unchanged on a GPU with ``--device cuda``.

    python -m benchmarks.query_speed.py                       # both CIFAR-sized models, CPU
    python -m benchmarks.query_speed.py --device cuda --scan
    python -m benchmarks.query_speed.py --models torchvision-resnet50-224 torchvision-convnext_tiny-224 \
        --n 16 --loop-n 4 --f64-n 2 --reps 3 --loop-reps 1  # ImageNet-sized backbones, CPU
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn
from torch.nn import functional as F

from lplgrad.losses import entropy
from lplgrad.nets import ResNet18, TorchvisionNet
from lplgrad.numerics import MathModes
from lplgrad.strategies import EntGradNorm
from benchmarks.common import PeakMemory, add_malloc_option, describe, malloc_setting, sync

MODELS = {  # name: (backbone, input shape, classes)
    "resnet18-w64-32x32": (lambda: ResNet18(10, 3, 64), (3, 32, 32)),
    "fmnist-config-resnet18-w16-28x28": (lambda: ResNet18(10, 1, 16), (1, 28, 28)),
    "torchvision-resnet50-224": (lambda: TorchvisionNet(10, 3, "resnet50", image_size=64), (3, 224, 224)),
    "torchvision-convnext_tiny-224": (lambda: TorchvisionNet(10, 3, "convnext_tiny", image_size=64), (3, 224, 224)),
}
DEFAULT_MODELS = ["resnet18-w64-32x32", "fmnist-config-resnet18-w16-28x28"]  # the 224 ones: --models, small --n


class Learner(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net


MEMORY_NOTE = {  # on a CPU the figure is the rise of the resident set
    "default": "",
    "lplgrad": "; pages the allocator kept are reused: --malloc default gives the footprint",
}


def authors_loop(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One sample, one backward pass into .grad, then the sum of the per-tensor norms."""
    scores = []
    params = [p for p in net.parameters() if p.requires_grad]
    for i in range(len(x)):
        net.zero_grad(set_to_none=True)
        entropy(net(x[i : i + 1])[0]).sum().backward()
        scores.append(sum(p.grad.norm() for p in params if p.grad is not None))
    net.zero_grad(set_to_none=True)
    return torch.stack(scores).float()


def make_model(name: str, device: torch.device) -> tuple[nn.Module, tuple[int, ...]]:
    make, shape = MODELS[name]
    torch.manual_seed(0)
    net = make().to(device)
    net.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(3):
            net(torch.randn(32, *shape, device=device) * 1.5 + 0.2)
    return net.eval(), shape


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def best_of(fns: dict, reps: int, device: torch.device) -> tuple[dict, dict]:
    """Each function ``reps`` times, interleaved (a burst of noise hits all sides alike);
    the best time of each (noise only ever adds time) and each one's last output."""
    best, out = {}, {}
    for _ in range(reps):
        for name, fn in fns.items():
            t, out[name] = timed(fn, device)
            best[name] = min(best.get(name, float("inf")), t)
    return best, out


def bench_model(name: str, a: argparse.Namespace, device: torch.device) -> None:
    net, shape = make_model(name, device)
    g = torch.Generator().manual_seed(1)
    probe = torch.randn(1, *shape, device=device)
    chunk = EntGradNorm(chunk_size=a.chunk).resolve_chunk(net, probe)
    n = -(-a.n // chunk) * chunk  # whole chunks, so both sides see the same batch shapes
    x = torch.randn(n, *shape, generator=g).to(device)
    strat = EntGradNorm(chunk_size=chunk)
    learner = Learner(net)
    with PeakMemory(device) as mem:  # the first, cold call: every buffer is new
        strat.measure(learner, x[:chunk])

    train_net = copy.deepcopy(net).train()
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    tb = a.train_batch or chunk

    def train_steps() -> None:
        for s in range(0, n, tb):
            train_net.zero_grad(set_to_none=True)
            F.cross_entropy(train_net(x[s : s + tb])[0], y[s : s + tb]).backward()

    n_loop = min(a.loop_n, n)
    authors_loop(net, x[:2])
    train_steps()
    best, out = best_of({"fast": lambda: strat.measure(learner, x), "train": train_steps}, a.reps, device)
    best_loop, out_loop = best_of({"loop": lambda: authors_loop(net, x[:n_loop])}, a.loop_reps, device)
    fast, loop = out["fast"], out_loop["loop"]

    n64 = min(a.f64_n, n)
    net64 = copy.deepcopy(net).double()
    ref64 = authors_loop(net64, x[:n64].double()).double()

    def rel(u, v):
        return ((u.double().cpu() - v.double().cpu()).abs() / v.double().cpu().abs()).max().item()

    fast_sps, loop_sps, train_sps = n / best["fast"], n_loop / best_loop["loop"], n / best["train"]
    print(
        f"\n== {name}: {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters, chunk {chunk}, train batch {tb}, "
        f"{n} samples (loop: {n_loop}); best of {a.reps} interleaved runs (loop: {a.loop_reps})"
    )
    print(f"batched query (hooks)       : {fast_sps:8.2f} samples/s")
    print(f"authors' one-sample loop    : {loop_sps:8.2f} samples/s   -> batched / loop  = {fast_sps / loop_sps:5.2f}x")
    print(
        f"plain training step (limit) : {train_sps:8.2f} samples/s   -> batched / train = {fast_sps / train_sps:5.2f}x"
    )
    print(
        f"largest relative difference : batched vs loop {rel(fast[:n_loop], loop):.2e}, "
        f"batched vs float64 loop {rel(fast[:n64], ref64):.2e}, loop vs float64 loop {rel(loop[:n64], ref64):.2e}"
    )
    print(f"peak extra memory of query  : {mem.peak / 2**20:8.1f} MiB (one chunk, cold){MEMORY_NOTE[a.malloc]}")


def scan(a: argparse.Namespace, device: torch.device) -> None:
    net, shape = make_model("resnet18-w64-32x32", device)
    learner = Learner(net)
    strat = EntGradNorm(chunk_size=a.chunk)
    print("\n== S scan, resnet18-w64-32x32, default (automatic) chunk; the pool streams from host memory")
    for s in a.scan_sizes:
        g = torch.Generator().manual_seed(s)
        xs = torch.randn(s, *shape, generator=g)
        with PeakMemory(device) as mem:
            t, _ = timed(
                lambda: torch.cat([strat.measure(learner, xs[i : i + 256].to(device)) for i in range(0, s, 256)]),
                device,
            )
        print(f"S = {s:5d}: {t:8.1f} s ({s / t:6.2f} samples/s), peak extra memory {mem.peak / 2**20:7.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    add_malloc_option(ap)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    ap.add_argument("--n", type=int, default=256, help="samples scored by the batched query and the train step")
    ap.add_argument("--loop-n", type=int, default=64, help="samples scored by the one-sample loop")
    ap.add_argument("--f64-n", type=int, default=16, help="samples for the float64 reference")
    ap.add_argument("--chunk", type=int, default=None, help="query chunk (default: automatic)")
    ap.add_argument(
        "--train-batch",
        type=int,
        default=None,
        help="batch of the training step it is compared with (default: the query's chunk)",
    )
    ap.add_argument("--reps", type=int, default=5, help="interleaved runs of the query and the train step")
    ap.add_argument("--loop-reps", type=int, default=2, help="runs of the one-sample loop")
    ap.add_argument(
        "--matmul-precision",
        default="highest",
        choices=["highest", "high", "medium"],
        help="float32 matrix products, as a run's --math.matmul_precision (default: a run's default)",
    )
    ap.add_argument(
        "--cudnn-tf32",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TF32 convolutions, as a run's --math.cudnn_tf32 (default: on, a run's default)",
    )
    ap.add_argument("--scan", action="store_true")
    ap.add_argument("--scan-sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    a = ap.parse_args()
    malloc = malloc_setting(a.malloc)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    math = MathModes(a.matmul_precision, a.cudnn_tf32)
    math.apply()  # the settings a run takes (lplgrad.numerics)
    print(describe(device, malloc) + f"; {math}")
    for name in a.models:
        bench_model(name, a, device)
    if a.scan:
        scan(a, device)


if __name__ == "__main__":
    main()
