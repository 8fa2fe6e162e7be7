"""Every sample's per-tensor squared gradient norm from one batched forward and backward pass.

The LPLgrad query (paper Eq. 7-8, docs/method.md §3) needs, for every candidate x, the gradient of
H(x) with respect to every parameter tensor of M, with M in eval mode. The authors compute it
one sample at a time (:func:`lplgrad.gradnorm.per_sample_sq_norms_loop`). Here one forward pass
records each layer's input, one backward pass computes activation gradients only (no parameter
gradient), and a hook on each layer's output reduces (input, output gradient) to each sample's
squared norm per parameter tensor: Conv2d in :mod:`lplgrad.gradnorm.conv`, Linear and eval
BatchNorm in :mod:`lplgrad.gradnorm.layers`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from lplgrad.gradnorm.conv import conv_weight_sq
from lplgrad.gradnorm.layers import bn_affine, bn_sq, linear_bias_sq, linear_weight_sq

SampleLoss = Callable[[nn.Module, Tensor], Tensor]  # (model, x (B, ...)) -> (B,)

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class UnsupportedModel(RuntimeError):
    """The model has a layer whose per-sample gradient the batched hooks cannot compute."""


def trainable(model: nn.Module) -> list[nn.Parameter]:
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


def default_max_bytes(device: torch.device) -> int:
    """How much a layer's reduction may hold at once: 64 MiB on a CPU (cache-sized slices of the
    batch are faster there); on a GPU up to an eighth of the free memory, at most 2 GiB, so that
    each reduction is a few large kernels rather than a loop of small ones."""
    if device.type == "cuda":
        return int(min(2 << 30, torch.cuda.mem_get_info(device)[0] // 8))
    return 64 << 20


def _layer_sq(m: nn.Module, a: Tensor, g: Tensor, max_bytes: int) -> tuple[Tensor | None, Tensor | None]:
    """(weight, bias) per-sample squared norms of one layer. a: layer input, g: output gradient."""
    if isinstance(m, nn.Conv2d):
        b_sq = g.sum((2, 3)).pow(2).sum(1) if m.bias is not None else None
        return conv_weight_sq(m, a, g, max_bytes), b_sq
    if isinstance(m, nn.Linear):
        return linear_weight_sq(a, g), linear_bias_sq(g) if m.bias is not None else None
    return bn_sq(m, a, g, None if a.is_cuda else 1 << 18)


@contextmanager
def _batchnorm_as_affine(model: nn.Module) -> Iterator[None]:
    """Eval BatchNorm layers compute x * scale + shift while the block runs: the same values, and
    a backward pass of one multiply instead of the batch-norm backward kernel."""
    patched = [m for m in model.modules() if isinstance(m, _BN) and "forward" not in vars(m)]
    for m in patched:
        m.forward = partial(bn_affine, m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def per_sample_sq_norms(
    model: nn.Module, x: Tensor, sample_loss: SampleLoss, max_bytes: int | None = None
) -> Tensor:
    """Squared L2 norm of each sample's gradient, per trainable parameter tensor of ``model``.

    The model must be in eval mode (so that samples do not interact) and pass :func:`supports`.
    Columns follow ``model.parameters()`` order (trainable ones only). ``max_bytes`` bounds the
    per-sample gradients and Gram matrices a layer holds at once (default:
    :func:`default_max_bytes`).

    x: (B, ...) -> (B, n_tensors)
    """
    reason = supports(model)
    if reason is not None:
        raise UnsupportedModel(reason)
    if max_bytes is None:
        max_bytes = default_max_bytes(x.device)
    column = {id(p): i for i, p in enumerate(trainable(model))}
    out = torch.zeros(x.shape[0], len(column), device=x.device, dtype=torch.float32)
    calls: dict[nn.Module, int] = {}

    def on_forward(m: nn.Module, inputs: tuple, output: Tensor) -> None:
        calls[m] = calls.get(m, 0) + 1
        if calls[m] > 1:
            raise UnsupportedModel(f"{type(m).__name__} is called more than once per forward pass")
        a = inputs[0].detach()

        def on_grad(g: Tensor) -> None:
            sqs = _layer_sq(m, a, g.detach(), max_bytes)
            for p, sq in zip((getattr(m, "weight", None), getattr(m, "bias", None)), sqs):
                if p is not None and sq is not None and id(p) in column:
                    out[:, column[id(p)]] += sq.float()

        if output.requires_grad:
            output.register_hook(on_grad)

    handles = [
        m.register_forward_hook(on_forward)
        for m in model.modules()
        if any(p.requires_grad for p in m.parameters(recurse=False))
    ]
    try:
        with torch.enable_grad(), _batchnorm_as_affine(model):
            xg = x.detach().requires_grad_(True)
            loss = sample_loss(model, xg).sum()
            # gradients of activations only: parameter gradients are not computed
            torch.autograd.grad(loss, xg)
    finally:
        for h in handles:
            h.remove()
    return out
