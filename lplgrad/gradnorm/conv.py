"""Per-sample squared norms of Conv2d weight gradients from a layer's input and output gradient.

Sample n's weight gradient is G_n = sum_t g_n[:, t] u_n[:, t]^T (u_t: the unfolded input patch of
output position t, d = C/groups * kh * kw entries; g_t: the output gradient, p channels). Two
ways to get ||G_n||^2, chosen per layer by multiply-adds (:func:`choose_path`):

- ghost norm, ||G_n||^2 = sum_{t,t'} (u_t . u_t')(g_t . g_t'), with every u_t . u_t' read off the
  Gram matrix of the *input* over its positions (no unfold): u_t . u_t' is a sum over kernel
  offsets of input-Gram entries, one strided slice per offset (:func:`conv_ghost_sq`);
- materialise G_n: on a CPU, one oneDNN weight-gradient call with the batch folded into the
  groups; on a GPU, unfold and a batched matmul;
- depthwise layers (one input channel per filter, as in ConvNeXt, MobileNet, EfficientNet), on a
  CPU: G_n is a *forward* convolution of the padded input with g_n as its kernel, the batch folded
  into the groups (:func:`_materialise_depthwise`; 6-11x faster there than the weight-gradient
  call, which oneDNN runs on a slow path for thousands of single-channel groups).

Per-layer costs: ``benchmarks/conv_paths.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _valid(n_out: int, n_in: int, pad: int, offset: int, stride: int) -> tuple[int, int]:
    """Output positions o whose input index stride*o + offset - pad lies in [0, n_in): (first, count)."""
    first = max(0, -(-(pad - offset) // stride))
    last = min(n_out - 1, (n_in - 1 + pad - offset) // stride)
    return first, max(0, last - first + 1)


def _offset_sum(gram: Tensor, axis: int, n_out: int, k: int, stride: int, pad: int, dil: int) -> Tensor:
    """Sum over the k kernel offsets along the paired axes (axis, axis + 2) of a positional Gram.

    gram[..., a, ..., a', ...] over input positions -> out[..., o, ..., o', ...] over output
    positions, out[o, o'] = sum_i gram[stride*o + i*dil - pad, stride*o' + i*dil - pad] (zero
    padding: entries outside the input contribute nothing).
    """
    n_in = gram.shape[axis]
    shape = list(gram.shape)
    shape[axis] = shape[axis + 2] = n_out
    out = gram.new_zeros(shape)
    for i in range(k):
        first, n = _valid(n_out, n_in, pad, i * dil, stride)
        if n == 0:
            continue
        start = stride * first + i * dil - pad
        src, dst = [slice(None)] * gram.dim(), [slice(None)] * gram.dim()
        src[axis] = src[axis + 2] = slice(start, start + stride * (n - 1) + 1, stride)
        dst[axis] = dst[axis + 2] = slice(first, first + n)
        out[tuple(dst)] += gram[tuple(src)]
    return out


def conv_ghost_sq(a: Tensor, g: Tensor, kernel, stride, padding, dilation) -> Tensor:
    """Ghost norm of a groups=1 Conv2d from the input's positional Gram matrix.

    a: (B, C, H, W) zero-padded implicitly by ``padding``; g: (B, p, Ho, Wo) -> (B,)
    """
    B, C, H, W = a.shape
    p, Ho, Wo = g.shape[1:]
    xf = a.reshape(B, C, H * W)
    gram = torch.matmul(xf.transpose(1, 2), xf).view(B, H, W, H, W)  # u.u' per input position pair
    # separable over the kernel: first the column offsets, then the row offsets
    v = _offset_sum(gram, 2, Wo, kernel[1], stride[1], padding[1], dilation[1])  # (B, H, Wo, H, Wo)
    del gram
    uu = _offset_sum(v, 1, Ho, kernel[0], stride[0], padding[0], dilation[0])  # (B, Ho, Wo, Ho, Wo)
    del v
    gf = g.reshape(B, p, Ho * Wo)
    gg = torch.matmul(gf.transpose(1, 2), gf)  # (B, T, T)
    return torch.linalg.vecdot(uu.view(B, -1), gg.view(B, -1))


def _sq_norm_rows(t: Tensor, rows: int) -> Tensor:
    """Squared L2 norm of each of ``rows`` equal slices along dim 0, no temporary copy. -> (rows,)"""
    per = torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim()))).square()  # (t.shape[0],)
    return per.view(rows, -1).sum(1)


class Geometry(NamedTuple):
    """What the weight gradient depends on besides the tensors."""

    weight: Tensor  # (p, C/groups, kh, kw); read for its shape
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


def _wgrad(g: Tensor, a: Tensor, weight: Tensor, c: Geometry, groups: int) -> Tensor:
    return torch.ops.aten.convolution_backward(
        g, a, weight, None, c.stride, c.padding, c.dilation, False, [0, 0], groups, [False, True, False]
    )[1]


def _materialise_grouped(a: Tensor, g: Tensor, c: Geometry, max_bytes: int) -> Tensor:
    """The batch folded into the groups: one weight-gradient call yields every sample's. -> (B,)"""
    B, C = a.shape[:2]
    p = g.shape[1]
    per_sample = c.weight[0].numel() * p * a.element_size()
    step = max(1, min(B, max_bytes // max(per_sample, 1)))
    out = []
    for s in range(0, B, step):
        ai, gi = a[s : s + step].contiguous(), g[s : s + step].contiguous()
        b = ai.shape[0]
        w = c.weight.new_empty(1, 1, 1, 1).expand(b * p, *c.weight.shape[1:])
        gw = _wgrad(gi.view(1, b * p, *gi.shape[2:]), ai.view(1, b * C, *ai.shape[2:]), w, c, c.groups * b)
        out.append(_sq_norm_rows(gw, b))  # gw: (b * p, C/groups, kh, kw)
    return torch.cat(out)


def _materialise_depthwise(a: Tensor, g: Tensor, c: Geometry, max_bytes: int) -> Tensor:
    """Filters that read one input channel each (any channel multiplier m). Sample n's gradient,
    G_n[o, i, j] = sum_{h,w} g_n[o, h, w] a_n[o // m, s h + d i - pad, s w + d j - pad], is a forward
    convolution of the padded input with g_n as the kernel: the layer's stride s becomes the
    dilation, its dilation d the stride; the batch folds into the groups. -> (B,)"""
    if c.weight.shape[1] != 1:
        raise ValueError("the depthwise path needs one input channel per filter")
    B, C = a.shape[:2]
    p, Ho, Wo = g.shape[1:]
    (kh, kw), (ph, pw) = c.weight.shape[2:], c.padding
    # the padded rows and columns the layer reads: the kernel's output is then exactly kh x kw
    rows = c.stride[0] * (Ho - 1) + c.dilation[0] * (kh - 1) + 1
    cols = c.stride[1] * (Wo - 1) + c.dilation[1] * (kw - 1) + 1
    step = max(1, min(B, max_bytes // max((C * rows * cols + p * Ho * Wo) * a.element_size(), 1)))
    out = []
    for s in range(0, B, step):
        ai = F.pad(a[s : s + step], (pw, pw, ph, ph))[:, :, :rows, :cols].contiguous()  # (b, C, rows, cols)
        b = ai.shape[0]
        kernel = g[s : s + step].reshape(b * p, 1, Ho, Wo)
        gw = F.conv2d(ai.view(1, b * C, rows, cols), kernel, stride=c.dilation, dilation=c.stride, groups=b * C)
        out.append(gw.reshape(b, -1).pow(2).sum(1))  # gw: (1, b * p, kh, kw)
    return torch.cat(out)


def _materialise_unfold(a: Tensor, g: Tensor, c: Geometry, max_bytes: int) -> Tensor:
    """Unfold and a batched matmul (groups=1; the GPU path). -> (B,)"""
    B, p, T = a.shape[0], g.shape[1], g.shape[2] * g.shape[3]
    d = c.weight[0].numel()
    step = max(1, min(B, max_bytes // max((d * T + p * d) * a.element_size(), 1)))
    out = []
    for s in range(0, B, step):
        u = F.unfold(a[s : s + step], c.weight.shape[2:], c.dilation, c.padding, c.stride)  # (b, d, T)
        gw = torch.matmul(g[s : s + step].flatten(2), u.transpose(1, 2))  # (b, p, d)
        out.append(torch.linalg.vector_norm(gw, dim=(1, 2)).square())
    return torch.cat(out)


PATHS = ("ghost", "grouped", "unfold", "depthwise")


def ghost_is_cheaper(c_in: int, n_in: int, c_out: int, n_out: int, d: int) -> bool:
    """The ghost norm's two Gram matrices (c_in channels over n_in input positions, c_out over
    n_out output positions) need fewer multiply-adds than the n_out x c_out x d per-sample
    gradient. A Linear over T positions is the case n_in = n_out = T, c_in = d."""
    return n_in * n_in * c_in + n_out * n_out * c_out < c_out * d * n_out


def is_depthwise(groups: int, c_in: int) -> bool:
    """One input channel per filter, over more than one group (a one-channel stem is not)."""
    return groups > 1 and groups == c_in


def choose_path(groups: int, c_in: int, n_in: int, c_out: int, n_out: int, d: int, device: torch.device) -> str:
    """The cheapest way for a layer: c_in channels at n_in input positions actually read, c_out
    channels at n_out output positions, d inputs per filter. The ghost norm when it is cheaper
    (:func:`ghost_is_cheaper`), else materialise; a depthwise layer (groups == c_in) on a CPU by
    the forward convolution. On a GPU grouped layers keep the weight-gradient call (the forward
    convolution's large kernels are unmeasured there)."""
    if groups == 1 and ghost_is_cheaper(c_in, n_in, c_out, n_out, d):
        return "ghost"
    if device.type == "cuda":
        return "unfold" if groups == 1 else "grouped"
    return "depthwise" if is_depthwise(groups, c_in) else "grouped"


def _as_read(m: nn.Conv2d, a: Tensor, g: Tensor) -> tuple[Tensor, Geometry]:
    """The input as the convolution reads it, and the geometry over it: non-zero padding modes
    applied; a 1x1 convolution reads every stride-th position only, so its input is subsampled
    (stride 1, no padding after)."""
    padding = (0, 0) if m.padding == "valid" else tuple(m.padding)
    stride = tuple(m.stride)
    if m.padding_mode != "zeros":
        a = F.pad(a, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding = (0, 0)
    if tuple(m.kernel_size) == (1, 1):
        if padding != (0, 0):
            a = F.pad(a, (padding[1], padding[1], padding[0], padding[0]))
        a = a[:, :, :: stride[0], :: stride[1]][:, :, : g.shape[2], : g.shape[3]]
        stride, padding = (1, 1), (0, 0)
    return a, Geometry(m.weight, stride, padding, tuple(m.dilation), m.groups)


def _path(a: Tensor, g: Tensor, c: Geometry) -> str:
    """:func:`choose_path` for an input as read (:func:`_as_read`)."""
    return choose_path(
        c.groups,
        a.shape[1],
        a.shape[2] * a.shape[3],
        g.shape[1],
        g.shape[2] * g.shape[3],
        c.weight[0].numel(),
        a.device,
    )


def path_for(m: nn.Conv2d, a: Tensor, g: Tensor) -> str:
    """The path :func:`conv_weight_sq` takes for this layer and these shapes."""
    read, c = _as_read(m, a, g)
    return _path(read, g, c)


def conv_weight_sq(m: nn.Conv2d, a: Tensor, g: Tensor, max_bytes: int, path: str | None = None) -> Tensor:
    """Per-sample squared norm of a Conv2d weight gradient; ``path`` forces one of :data:`PATHS`
    (default: :func:`path_for`). a: (B, C, H, W), g: (B, p, Ho, Wo) -> (B,)"""
    a, c = _as_read(m, a, g)
    if path is None:
        path = _path(a, g, c)
    B, H, W = a.shape[0], a.shape[2], a.shape[3]
    if path == "ghost":
        if c.groups != 1:
            raise ValueError("the ghost norm path needs groups=1")
        # a slice of the batch at a time: its Gram matrices stay within max_bytes
        step = max(1, min(B, max_bytes // max(3 * (H * W) ** 2 * a.element_size(), 1)))
        return torch.cat(
            [
                conv_ghost_sq(a[s : s + step], g[s : s + step], c.weight.shape[2:], c.stride, c.padding, c.dilation)
                for s in range(0, B, step)
            ]
        )
    if path == "unfold":
        if c.groups != 1:
            raise ValueError("the unfold path needs groups=1")
        return _materialise_unfold(a, g, c, max_bytes)
    if path == "grouped":
        return _materialise_grouped(a, g, c, max_bytes)
    if path == "depthwise":
        return _materialise_depthwise(a, g, c, max_bytes)
    raise ValueError(f"path must be one of {PATHS}, got {path!r}")
