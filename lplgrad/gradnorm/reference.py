"""The definition of the per-sample gradient norms, and the two scores built from them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

SampleLoss = Callable[[nn.Module, Tensor], Tensor]  # (model, x (B, ...)) -> (B,)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The tensors whose per-sample gradients are measured: every trainable one, in order."""
    return [p for p in model.parameters() if p.requires_grad]


def per_sample_sq_norms_loop(
    model: nn.Module, x: Tensor, sample_loss: SampleLoss, params: list[nn.Parameter] | None = None
) -> Tensor:
    """The definition, as the authors compute it: one sample, one backward pass, at a time.

    ``params``: the tensors to take (default: every trainable one, in ``model.parameters()`` order).
    x: (B, ...) -> (B, len(params))
    """
    params = trainable(model) if params is None else params
    rows = []
    with torch.enable_grad():
        for i in range(x.shape[0]):
            loss = sample_loss(model, x[i : i + 1]).sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            rows.append(torch.stack([g.pow(2).sum() if g is not None else loss.new_zeros(()) for g in grads]))
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
