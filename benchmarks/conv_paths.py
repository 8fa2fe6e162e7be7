"""Per-sample squared norms of Conv2d weight gradients: the three ways, per layer shape.

Times the batch-folded-into-groups conv-backward-weight call, unfold + batched matmul, and the
ghost norm against the batch-summed weight gradient a training step computes, on ResNet-18's
3x3 layer shapes. Used to pick the rule in lplgrad.gradnorm on a device.

    python benchmarks/conv_paths.py [--device cuda] [--batch 256]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F


def grouped(a, g, w, s):
    b, c = a.shape[:2]
    o = g.shape[1]
    ww = w.new_empty(1, 1, 1, 1).expand(b * o, c, *w.shape[2:])
    gw = torch.ops.aten.convolution_backward(
        g.reshape(1, b * o, *g.shape[2:]), a.reshape(1, b * c, *a.shape[2:]), ww, None,
        [s, s], [1, 1], [1, 1], False, [0, 0], b, [False, True, False])[1]
    return gw.reshape(b, -1).pow(2).sum(1)


def unfold_bmm(a, g, w, s):
    u = F.unfold(a, 3, 1, 1, s)  # (B, d, T)
    return torch.bmm(g.flatten(2), u.transpose(1, 2)).pow(2).flatten(1).sum(1)


def ghost(a, g, w, s):
    u = F.unfold(a, 3, 1, 1, s)
    gf = g.flatten(2)
    return (torch.bmm(u.transpose(1, 2), u) * torch.bmm(gf.transpose(1, 2), gf)).flatten(1).sum(1)


def batch_wgrad(a, g, w, s):
    return torch.ops.aten.convolution_backward(g, a, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1,
                                               [False, True, False])[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"device {dev}, batch {a.batch}, ms per call")
    for c, h, o, s in [(64, 32, 64, 1), (64, 32, 128, 2), (128, 16, 128, 1), (128, 16, 256, 2),
                       (256, 8, 256, 1), (256, 8, 512, 2), (512, 4, 512, 1)]:
        x = torch.randn(a.batch, c, h, h, device=dev)
        w = torch.randn(o, c, 3, 3, device=dev)
        g = torch.randn(a.batch, o, h // s, h // s, device=dev)
        t = h // s * h // s
        row = []
        for f in (grouped, unfold_bmm, ghost, batch_wgrad):
            f(x, g, w, s)
            sync()
            t0 = time.perf_counter()
            for _ in range(a.reps):
                f(x, g, w, s)
            sync()
            row.append(f"{f.__name__}={(time.perf_counter() - t0) / a.reps * 1000:8.2f}")
        rule = "ghost" if t * (c * 9 + o) < o * c * 9 else "materialise"
        print(f"C{c:4d} H{h:3d} O{o:4d} stride {s}: " + " ".join(row) + f"  (rule: {rule})")


if __name__ == "__main__":
    main()
