"""Per-sample squared gradient norms of Linear and eval-mode BatchNorm parameters, in closed form."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lplgrad.gradnorm.conv import ghost_is_cheaper


def linear_weight_sq(a: Tensor, g: Tensor) -> Tensor:
    """||sum_t g_t a_t^T||^2 per sample: ||a|| * ||g|| for one position, else the cheaper of the
    ghost identity and the materialised gradient. a: (B, ..., d), g: (B, ..., p) -> (B,)"""
    if a.dim() == 2:
        return a.pow(2).sum(1) * g.pow(2).sum(1)
    B = a.shape[0]
    a3, g3 = a.reshape(B, -1, a.shape[-1]), g.reshape(B, -1, g.shape[-1])  # (B, T, d), (B, T, p)
    T, d, p = a3.shape[1], a3.shape[2], g3.shape[2]
    if ghost_is_cheaper(d, T, p, T, d):
        aa = torch.matmul(a3, a3.transpose(1, 2))  # (B, T, T)
        gg = torch.matmul(g3, g3.transpose(1, 2))  # (B, T, T)
        return torch.linalg.vecdot(aa.flatten(1), gg.flatten(1))
    return torch.linalg.vector_norm(torch.matmul(g3.transpose(1, 2), a3), dim=(1, 2)).square()  # (B, p, d)


def linear_bias_sq(g: Tensor) -> Tensor:
    """g: (B, ..., p) -> (B,)"""
    return g.reshape(g.shape[0], -1, g.shape[-1]).sum(1).pow(2).sum(1)


def bn_scale_shift(m: nn.Module) -> tuple[Tensor, Tensor]:
    """Eval BatchNorm as y = x * scale + shift, per channel. -> (C,), (C,), detached"""
    scale = torch.rsqrt(m.running_var + m.eps)
    if m.weight is not None:
        scale = scale * m.weight
    shift = -m.running_mean * scale
    if m.bias is not None:
        shift = shift + m.bias
    return scale.detach(), shift.detach()


def bn_affine(m: nn.Module, x: Tensor) -> Tensor:
    """The eval BatchNorm output as one fused multiply-add, whose backward is one multiply (the
    eval-mode batch-norm backward kernel is several times slower on a CPU). x: (B, C, ...)"""
    scale, shift = bn_scale_shift(m)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape))


def bn_sq(m: nn.Module, a: Tensor, g: Tensor, block: int | None = 1 << 18) -> tuple[Tensor, Tensor]:
    """Eval BatchNorm: d gamma = sum g * x_hat, d beta = sum g, per sample and channel.

    With x_hat = (a - mean) * invstd, sum g * x_hat = (sum g * a - mean * sum g) * invstd: one
    pass over the activations, x_hat never materialised. ``block``: elements of the product
    formed at once (None: the whole batch in one call, as on a GPU, where each call is a kernel
    launch). a, g: (B, C, ...) -> (B,), (B,)
    """
    B, C = a.shape[:2]
    if a.dim() > 2:
        gf, af = g.reshape(B, C, -1), a.reshape(B, C, -1)
        gs = gf.sum(2)  # (B, C)
        # sum_t g * a, a slice of the batch at a time: a small temporary, no fresh pages per call
        step = B if block is None else max(1, block // (C * gf.shape[2]))
        ga = torch.cat([torch.linalg.vecdot(gf[s : s + step], af[s : s + step]) for s in range(0, B, step)])
    else:
        gs, ga = g, g * a
    w = (ga - m.running_mean * gs) * torch.rsqrt(m.running_var + m.eps)
    return w.pow(2).sum(1), gs.pow(2).sum(1)
