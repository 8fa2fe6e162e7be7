"""Per-sample squared gradient norms of LayerNorm and GroupNorm parameters, in closed form.

Both normalise each sample by its own statistics, so a sample's gradient depends on that sample
alone: with x_hat the normalised input and g the output gradient, d weight = sum g * x_hat and
d bias = sum g over every position the parameter is shared across. LayerNorm comes in two
layouts: the usual one normalises the last dimensions; ConvNeXt's LayerNorm2d (torchvision and
timm) normalises the channels of an NCHW map, dimension 1.

x_hat is not recomputed from the input: the layer's output y = x_hat * weight + bias gives
sum g * x_hat = (sum g * y - bias * sum g) / weight, two reductions over what the forward and
backward passes already hold. The caller passes y only where no weight is exactly 0 (one check
per query chunk for every layer, :func:`lplgrad.gradnorm.batched._outputs_readable`); without y
the statistics are recomputed from the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def channels_first_layer_norms() -> tuple[type, ...]:
    """The LayerNorm subclasses that normalise dimension 1 of an NCHW input (those installed)."""
    found: list[type] = []
    try:
        from torchvision.models.convnext import LayerNorm2d as TorchvisionLN2d

        found.append(TorchvisionLN2d)
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    try:
        from timm.layers import LayerNorm2d as TimmLN2d

        found.append(TimmLN2d)
    except ImportError:
        pass
    return tuple(found)


CHANNELS_FIRST = channels_first_layer_norms()


def _at_least_float32(t: Tensor) -> Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _affine_sq(x_hat: Tensor, g: Tensor, shared: tuple[int, ...], has_bias: bool) -> tuple[Tensor, Tensor | None]:
    """Squared norms of sum_shared(g * x_hat) and sum_shared(g), per sample. -> (B,), (B,) or None"""
    w = (g * x_hat).sum(shared) if shared else g * x_hat
    b = g.sum(shared) if shared else g
    flat = lambda t: t.reshape(t.shape[0], -1).pow(2).sum(1)  # noqa: E731
    return flat(w), flat(b) if has_bias else None


def _from_output(
    y: Tensor, g: Tensor, weight: Tensor, bias: Tensor | None, channel_dim: int | None
) -> tuple[Tensor, Tensor]:
    """sum(g * x_hat) and sum(g) over the positions sharing each parameter, from the output
    y = x_hat * weight + bias. channel_dim: where the parameters' single dimension lies in y
    (None: the trailing dims). -> (B, params), (B, params)"""
    B = y.shape[0]
    if channel_dim is None:  # parameters over the trailing dims: (B, positions, params)
        yf, gf = y.reshape(B, -1, weight.numel()), g.reshape(B, -1, weight.numel())
        gy, gs = torch.linalg.vecdot(gf, yf, dim=1), gf.sum(1)  # (B, params)
    else:  # (B, C, positions)
        yf, gf = y.reshape(B, y.shape[1], -1), g.reshape(B, g.shape[1], -1)
        gy, gs = torch.linalg.vecdot(gf, yf, dim=2), gf.sum(2)  # (B, C)
    w, b = weight.reshape(1, -1), (bias.reshape(1, -1) if bias is not None else 0.0)
    return (gy - b * gs) / w, gs


def layer_norm_sq(
    m: nn.LayerNorm, a: Tensor, g: Tensor, y: Tensor | None = None
) -> tuple[Tensor | None, Tensor | None]:
    """(weight, bias) per-sample squared gradient norms of a LayerNorm. a, g, y (its output, or
    None; given only if no weight is exactly 0): (B, ...) -> (B,)"""
    if isinstance(m, CHANNELS_FIRST):
        dims = (1,)  # NCHW, normalised over the channels at each position
    else:
        dims = tuple(range(a.dim() - len(m.normalized_shape), a.dim()))
    if not m.elementwise_affine:
        return None, None
    if y is not None:
        w, b = _from_output(
            _at_least_float32(y),
            _at_least_float32(g),
            m.weight.detach(),
            None if m.bias is None else m.bias.detach(),
            1 if dims == (1,) else None,
        )
        return w.pow(2).sum(1), b.pow(2).sum(1) if m.bias is not None else None
    a, g = _at_least_float32(a), _at_least_float32(g)
    mean = a.mean(dims, keepdim=True)
    var = a.var(dims, unbiased=False, keepdim=True)
    x_hat = (a - mean) * torch.rsqrt(var + m.eps)
    shared = tuple(d for d in range(1, a.dim()) if d not in dims)  # positions sharing one weight
    return _affine_sq(x_hat, g, shared, m.bias is not None)


def group_norm_sq(
    m: nn.GroupNorm, a: Tensor, g: Tensor, y: Tensor | None = None
) -> tuple[Tensor | None, Tensor | None]:
    """(weight, bias) per-sample squared gradient norms of a GroupNorm. a, g, y (its output, or
    None; given only if no weight is exactly 0): (B, C, ...) -> (B,)"""
    if not m.affine:
        return None, None
    if y is not None:
        w, b = _from_output(_at_least_float32(y), _at_least_float32(g), m.weight.detach(), m.bias.detach(), 1)
        return w.pow(2).sum(1), b.pow(2).sum(1)
    B, C = a.shape[:2]
    a, g = _at_least_float32(a), _at_least_float32(g)
    grouped = a.reshape(B, m.num_groups, -1)
    mean = grouped.mean(2, keepdim=True)
    var = grouped.var(2, unbiased=False, keepdim=True)
    x_hat = ((grouped - mean) * torch.rsqrt(var + m.eps)).reshape(a.shape)
    return _affine_sq(x_hat, g, tuple(range(2, a.dim())), m.bias is not None)
