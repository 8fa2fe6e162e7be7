"""Per-sample squared norms of Conv2d weight gradients: each path of lplgrad.gradnorm.conv, per
layer shape, against the batch-summed weight gradient a training step computes.

Runs on ResNet-18's layer shapes (CIFAR-style, 32x32 input) at the query's automatic chunk and
marks the path :func:`path_for` takes; ``--depthwise`` adds ConvNeXt-Tiny's depthwise 7x7 layers
at 224x224 input (each stage's size). Best of ``--reps`` calls, in milliseconds; "-" marks a path
that does not apply to the layer.

    python -m benchmarks.conv_paths.py [--device cuda] [--batch 256] [--depthwise --batch 8]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from lplgrad.gradnorm.conv import PATHS, conv_weight_sq, is_depthwise, path_for
from benchmarks.common import add_malloc_option, describe, malloc_setting

LAYERS = [  # (in channels, input size, out channels, kernel, stride, groups)
    (3, 32, 64, 3, 1, 1),
    (64, 32, 64, 3, 1, 1),
    (64, 32, 128, 3, 2, 1),
    (64, 32, 128, 1, 2, 1),
    (128, 16, 128, 3, 1, 1),
    (128, 16, 256, 3, 2, 1),
    (128, 16, 256, 1, 2, 1),
    (256, 8, 256, 3, 1, 1),
    (256, 8, 512, 3, 2, 1),
    (512, 4, 512, 3, 1, 1),
]
DEPTHWISE = [(c, h, c, 7, 1, c) for c, h in ((96, 56), (192, 28), (384, 14), (768, 7))]  # ConvNeXt-Tiny at 224


def best_ms(fn, reps: int, sync) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    add_malloc_option(ap)
    ap.add_argument("--batch", type=int, default=31, help="31: the automatic query chunk of ResNet-18 on a CPU")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--depthwise", action="store_true", help="also ConvNeXt-Tiny's depthwise layers")
    a = ap.parse_args()
    malloc = malloc_setting(a.malloc)
    dev = torch.device(a.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(describe(dev, malloc))
    print(f"batch {a.batch}; ms per call, best of {a.reps}; * = the path the rule takes")
    for c, h, o, k, s, groups in LAYERS + (DEPTHWISE if a.depthwise else []):
        m = nn.Conv2d(c, o, k, s, k // 2, groups=groups, bias=False).to(dev)
        x = torch.randn(a.batch, c, h, h, device=dev)
        g = torch.randn(a.batch, o, h // s, h // s, device=dev)
        rule = path_for(m, x, g)
        row = [
            f"{p}{'*' if p == rule else ' '}="
            + (
                f"{best_ms(lambda: conv_weight_sq(m, x, g, 64 << 20, p), a.reps, sync):8.2f}"
                if applies(p, groups, c)
                else f"{'-':>8s}"
            )
            for p in PATHS
        ]
        wgrad = best_ms(
            lambda: torch.ops.aten.convolution_backward(
                g, x, m.weight, None, m.stride, m.padding, m.dilation, False, [0, 0], groups, [False, True, False]
            ),
            a.reps,
            sync,
        )
        print(f"C{c:4d} H{h:3d} O{o:4d} k{k} s{s} g{groups:<3d}: " + " ".join(row) + f"  batch_wgrad={wgrad:7.2f}")


def applies(path: str, groups: int, c_in: int) -> bool:
    return {"ghost": groups == 1, "unfold": groups == 1, "depthwise": is_depthwise(groups, c_in)}.get(path, True)


if __name__ == "__main__":
    main()
