"""Per-sample gradient norms of a per-sample loss with respect to a model's parameters.

The LPLgrad query (paper Eq. 7-8, SPEC section 2) needs, for every candidate x, the gradient of
H(x) with respect to every parameter tensor of M, with M in eval mode. The authors compute it
one sample at a time; :func:`per_sample_sq_norms` gets the same numbers from one batched
forward pass and one backward pass that computes activation gradients only. Hooks capture each
layer's input and output gradient and reduce them to each sample's squared norm per tensor:

- Conv2d, high resolution: one conv-backward-weight call with the batch folded into the groups
  dimension gives every sample's weight gradient at the cost of the batch-summed one;
- Conv2d, low resolution: the "ghost norm" identity ||sum_t g_t u_t^T||^2 = sum_{t,s} (u_t.u_s)(g_t.g_s),
  chosen when T(d+p) < p*d (T positions, d inputs per filter, p output channels);
- BatchNorm in eval mode: closed form (sum of g * x_hat for the weight, sum of g for the bias);
- Linear: ||a|| * ||g|| for one position, the ghost identity for several.

:func:`per_sample_sq_norms_loop` is the one-sample-at-a-time definition (the oracle).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

SampleLoss = Callable[[nn.Module, Tensor], Tensor]  # (model, x (B, ...)) -> (B,)


class UnsupportedModel(RuntimeError):
    """The model has a layer whose per-sample gradient the batched hooks cannot compute."""


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def supports(model: nn.Module) -> str | None:
    """None when :func:`per_sample_sq_norms` handles ``model``, else the reason it does not."""
    for name, m in model.named_modules():
        own = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str) and m.padding != "valid":
                return f"{name}: Conv2d with padding={m.padding!r}"
        elif isinstance(m, _BN):
            if m.training or m.running_mean is None:
                return f"{name}: BatchNorm needs eval mode with running statistics"
        elif not isinstance(m, nn.Linear):
            return f"{name}: {type(m).__name__} has parameters"
    return None


def _conv_weight_sq(m: nn.Conv2d, a: Tensor, g: Tensor, max_bytes: int) -> Tensor:
    """Per-sample squared norm of a Conv2d weight gradient. a: (B, C, H, W), g: (B, O, H', W') -> (B,)"""
    B, C = a.shape[:2]
    O = g.shape[1]
    padding = 0 if m.padding == "valid" else m.padding
    if m.padding_mode != "zeros":
        a = F.pad(a, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding = 0
    kh, kw = m.kernel_size
    d = C // m.groups * kh * kw
    T = g.shape[2] * g.shape[3]
    if m.groups == 1 and T * (d + O) < O * d:
        # ghost norm: per-sample Gram matrices of unfolded inputs and of output gradients
        u = F.unfold(a, m.kernel_size, m.dilation, padding, m.stride)  # (B, d, T)
        gf = g.flatten(2)  # (B, O, T)
        uu = torch.bmm(u.transpose(1, 2), u)  # (B, T, T)
        gg = torch.bmm(gf.transpose(1, 2), gf)  # (B, T, T)
        return (uu * gg).flatten(1).sum(1)
    if a.is_cuda and m.groups == 1:
        # on a GPU a batched matmul of unfolded inputs beats the grouped-conv kernel (benchmarks/conv_paths.py)
        per_sample = (d * T + O * d) * a.element_size()
        step = max(1, min(B, max_bytes // max(per_sample, 1)))
        out = []
        for s in range(0, B, step):
            u = F.unfold(a[s : s + step], m.kernel_size, m.dilation, padding, m.stride)  # (b, d, T)
            gw = torch.bmm(g[s : s + step].flatten(2), u.transpose(1, 2))  # (b, O, d)
            out.append(gw.flatten(1).pow(2).sum(1))
        return torch.cat(out)
    # batch folded into groups: one weight-gradient call yields every sample's gradient
    per_sample = O * d * a.element_size()
    step = max(1, min(B, max_bytes // max(per_sample, 1)))
    out = []
    for s in range(0, B, step):
        ai, gi = a[s : s + step], g[s : s + step]
        b = ai.shape[0]
        w = m.weight.new_empty(1, 1, 1, 1).expand(b * O, C // m.groups, kh, kw)
        gw = torch.ops.aten.convolution_backward(
            gi.reshape(1, b * O, *gi.shape[2:]),
            ai.reshape(1, b * C, *ai.shape[2:]),
            w,
            None,
            m.stride,
            padding,
            m.dilation,
            False,
            [0, 0],
            m.groups * b,
            [False, True, False],
        )[1]  # (b * O, C/groups, kh, kw)
        out.append(gw.reshape(b, -1).pow(2).sum(1))
    return torch.cat(out)


def _linear_weight_sq(a: Tensor, g: Tensor) -> Tensor:
    """a: (B, ..., d), g: (B, ..., p) -> (B,)"""
    if a.dim() == 2:
        return a.pow(2).sum(1) * g.pow(2).sum(1)
    B = a.shape[0]
    a3, g3 = a.reshape(B, -1, a.shape[-1]), g.reshape(B, -1, g.shape[-1])  # (B, T, d), (B, T, p)
    T, d, p = a3.shape[1], a3.shape[2], g3.shape[2]
    if T * (d + p) < p * d:
        return (torch.bmm(a3, a3.transpose(1, 2)) * torch.bmm(g3, g3.transpose(1, 2))).flatten(1).sum(1)
    return torch.bmm(g3.transpose(1, 2), a3).pow(2).flatten(1).sum(1)  # (B, p, d) -> (B,)


def _bn_sq(m: nn.Module, a: Tensor, g: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Eval BatchNorm: d gamma = sum g * x_hat, d beta = sum g, per sample and channel.

    With x_hat = (a - mean) * invstd, sum g * x_hat = (sum g * a - mean * sum g) * invstd: one
    pass over the activations, x_hat never materialised. a, g: (B, C, ...) -> (B,), (B,)
    """
    dims = tuple(range(2, a.dim()))
    gs = g.sum(dims) if dims else g  # (B, C)
    ga = (g * a).sum(dims) if dims else g * a  # (B, C)
    w = (ga - m.running_mean * gs) * torch.rsqrt(m.running_var + m.eps)
    return w.pow(2).sum(1), gs.pow(2).sum(1)


def per_sample_sq_norms(
    model: nn.Module, x: Tensor, sample_loss: SampleLoss, max_bytes: int = 64 << 20
) -> Tensor:
    """Squared L2 norm of each sample's gradient, per trainable parameter tensor of ``model``.

    The model must be in eval mode (so that samples do not interact) and pass :func:`supports`.
    Columns follow ``model.parameters()`` order (trainable ones only). ``max_bytes`` bounds the
    per-sample weight gradients held at once by the high-resolution conv path.

    x: (B, ...) -> (B, n_tensors)
    """
    reason = supports(model)
    if reason is not None:
        raise UnsupportedModel(reason)
    params = _trainable(model)
    column = {id(p): i for i, p in enumerate(params)}
    B = x.shape[0]
    out = torch.zeros(B, len(params), device=x.device, dtype=torch.float32)
    calls: dict[nn.Module, int] = {}
    handles = []

    def on_forward(m: nn.Module, inputs: tuple, output: Tensor) -> None:
        calls[m] = calls.get(m, 0) + 1
        if calls[m] > 1:
            raise UnsupportedModel(f"{type(m).__name__} is called more than once per forward pass")
        a = inputs[0].detach()

        def on_grad(g: Tensor) -> None:
            g = g.detach()
            w_sq = b_sq = None
            if isinstance(m, nn.Conv2d):
                w_sq = _conv_weight_sq(m, a, g, max_bytes)
                if m.bias is not None:
                    b_sq = g.sum((2, 3)).pow(2).sum(1)
            elif isinstance(m, nn.Linear):
                w_sq = _linear_weight_sq(a, g)
                if m.bias is not None:
                    b_sq = g.reshape(B, -1, g.shape[-1]).sum(1).pow(2).sum(1)
            else:
                w_sq, b_sq = _bn_sq(m, a, g)
            for p, sq in ((getattr(m, "weight", None), w_sq), (getattr(m, "bias", None), b_sq)):
                if p is not None and sq is not None and id(p) in column:
                    out[:, column[id(p)]] += sq.float()

        if output.requires_grad:
            output.register_hook(on_grad)

    for m in model.modules():
        if any(p.requires_grad for p in m.parameters(recurse=False)):
            handles.append(m.register_forward_hook(on_forward))
    try:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            loss = sample_loss(model, xg).sum()
            # gradients of activations only: parameter gradients are not computed
            torch.autograd.grad(loss, xg)
    finally:
        for h in handles:
            h.remove()
    return out


def per_sample_sq_norms_loop(model: nn.Module, x: Tensor, sample_loss: SampleLoss) -> Tensor:
    """The definition, as the authors compute it: one sample, one backward pass, at a time.

    x: (B, ...) -> (B, n_tensors)
    """
    params = _trainable(model)
    rows = []
    with torch.enable_grad():
        for i in range(x.shape[0]):
            loss = sample_loss(model, x[i : i + 1]).sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            rows.append(
                torch.stack(
                    [g.pow(2).sum() if g is not None else loss.new_zeros(()) for g in grads]
                )
            )
    return torch.stack(rows)


def combine(sq: Tensor, norm: str = "per_tensor") -> Tensor:
    """Scores from per-tensor squared norms (B, n_tensors) -> (B,).

    ``per_tensor``: sum_t ||g_t||_2 (the authors' code); ``global``: sqrt(sum_t ||g_t||^2), the
    Frobenius norm of paper Eq. 8.
    """
    if norm == "per_tensor":
        return sq.clamp_min(0).sqrt().sum(1)
    if norm == "global":
        return sq.sum(1).clamp_min(0).sqrt()
    raise ValueError(f"norm must be 'per_tensor' or 'global', got {norm!r}")
