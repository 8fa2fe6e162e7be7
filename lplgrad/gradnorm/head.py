"""Per-sample gradient norms when M's classifier is all that trains, in closed form.

With the backbone frozen below its classifier (``trainable_stages 0``), M's trainable parameters
are the classifier's z = W a + b alone. For a per-sample loss l(z) with g = dl/dz, the gradient
is dl/dW = g a^T, a rank-one matrix whose Frobenius norm is ||g|| ||a||, and dl/db = g
(Goodfellow 2015, "Efficient per-example gradient computations"; the one-position case of
:func:`lplgrad.gradnorm.layers.linear_weight_sq`). So each sample's squared norms per tensor are
(||g||^2 ||a||^2, ||g||^2): the ``per_tensor`` score is ||g|| (||a|| + 1) and the ``global`` one
||g|| sqrt(||a||^2 + 1) (:func:`lplgrad.gradnorm.reference.combine`). One forward pass gives a
(the classifier's input) and z; g of the entropy is read off z alone, B x C values: no backward
pass through M at all. With the feature cache, that forward pass is the classifier on the
cached rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lplgrad.gradnorm.layers import linear_bias_sq, linear_weight_sq
from lplgrad.gradnorm.reference import trainable
from lplgrad.nets.classifier_input import classifier_inputs


def head_only(model: nn.Module) -> bool:
    """Whether the trainable parameters of ``model`` are exactly its classifier's (``model.head``,
    an ``nn.Linear``: its weight, and its bias if it has one)."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        return False
    own = [head.weight] + ([head.bias] if head.bias is not None else [])
    params = trainable(model)
    return len(params) == len(own) and all(p is q for p, q in zip(params, own)) and all(p.requires_grad for p in own)


def linear_head_sq_norms(a: Tensor, g: Tensor, bias: bool = True) -> Tensor:
    """Per-sample squared gradient norms of a linear layer's weight and bias, in closed form
    (module docstring). a: (B, D) its input, g: (B, C) the loss's gradient w.r.t. its output ->
    (B, 2): ||g||^2 ||a||^2, ||g||^2 ((B, 1) without a bias)"""
    cols = [linear_weight_sq(a, g)] + ([linear_bias_sq(g)] if bias else [])
    return torch.stack([c.float() for c in cols], 1)


def logit_grads(logits: Tensor, loss: Callable[[Tensor], Tensor]) -> Tensor:
    """Each row's gradient of the per-sample ``loss`` with respect to its own logits (a row's
    loss reads only that row). (B, C) -> (B, C)"""
    with torch.enable_grad():
        z = logits.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(z).sum(), z)
    return g


def per_sample_sq_norms_head(model: nn.Module, x: Tensor, loss: Callable[[Tensor], Tensor]) -> Tensor | None:
    """The per-sample squared gradient norms of ``loss`` (of the logits) with respect to M's
    trainable tensors when they are its classifier's alone (:func:`head_only`), in the columns
    of :func:`lplgrad.gradnorm.per_sample_sq_norms`; None when the classifier sees more than one
    position per sample (the batched path then applies). x: (B, ...) -> (B, 1 or 2)"""
    with classifier_inputs(model) as seen, torch.no_grad():
        logits, _ = model(x)
    a = seen[-1]
    if a.dim() != 2:
        return None
    return linear_head_sq_norms(a, logit_grads(logits, loss), model.head.bias is not None)
