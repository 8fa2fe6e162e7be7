"""Parameters that a module's forward uses directly rather than through a hooked layer: a vision
transformer's position embedding and class token, ConvNeXt's layer scale.

No layer hook sees their per-sample gradient, but each is shared by the whole batch through
broadcasting, so it can be replaced, for one forward pass, by a per-sample copy: its leading size
1 becomes the batch (``pos_embed`` (1, T, D) -> (B, T, D)), or a batch dimension goes in front
(``layer_scale`` (C, 1, 1) -> (B, C, 1, 1)). The gradient of the summed loss with respect to the
copy is then, row by row, each sample's gradient. Where a copy does not fit how the parameter is
used (timm's ConvNeXt reshapes its layer scale; the per-sample losses no longer come out as
(B,) or the forward fails), those tensors alone get per-sample gradients from ``torch.func``
(``vmap`` of ``grad``: one vectorised pass), and where that fails too, from the one-sample loop
(:func:`lplgrad.gradnorm.reference.per_sample_sq_norms_loop`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Direct:
    name: str  # qualified parameter name
    owner: nn.Module
    attr: str  # the parameter's name on its owner
    param: nn.Parameter


def direct_parameters(model: nn.Module, hooked: set[nn.Module]) -> list[Direct]:
    """Every trainable parameter whose owner is not one of the ``hooked`` layers, in
    ``model.parameters()`` order."""
    found = []
    for mod_name, m in model.named_modules():
        if m in hooked:
            continue
        for attr, p in m.named_parameters(recurse=False):
            if p.requires_grad:
                found.append(Direct(f"{mod_name}.{attr}" if mod_name else attr, m, attr, p))
    return found


def per_sample_copy(p: Tensor, batch: int) -> Tensor:
    """A leaf holding ``batch`` copies of ``p``: its leading size 1 made the batch, else a batch
    dimension put in front."""
    shape = (batch, *p.shape[1:]) if p.dim() and p.shape[0] == 1 else (batch, *p.shape)
    return p.detach().reshape(1, *shape[1:]).expand(shape).clone().requires_grad_(True)


@contextmanager
def per_sample_copies(direct: list[Direct], batch: int) -> Iterator[list[Tensor]]:
    """Inside the block each direct parameter is replaced on its owner by :func:`per_sample_copy`;
    yields the copies. The parameters are put back afterwards, whatever happens."""
    copies = []
    try:
        for d in direct:
            copy = per_sample_copy(d.param, batch)
            del d.owner._parameters[d.attr]
            setattr(d.owner, d.attr, copy)  # a plain attribute while the block runs
            copies.append(copy)
        yield copies
    finally:
        for d in direct[: len(copies)]:
            if d.attr in vars(d.owner):
                delattr(d.owner, d.attr)
            d.owner._parameters[d.attr] = d.param


def sq_norms_of(copies: list[Tensor], grads: tuple[Tensor | None, ...]) -> list[Tensor]:
    """Per-sample squared norms from the copies' gradients. -> one (B,) tensor per copy"""
    out = []
    for c, g in zip(copies, grads):
        g = torch.zeros_like(c) if g is None else g
        out.append(g.reshape(g.shape[0], -1).float().pow(2).sum(1))
    return out


def hooked_layers(model: nn.Module, types: tuple[type, ...]) -> set[nn.Module]:
    """The modules of ``types`` that own trainable parameters: their gradients come from hooks."""
    return {
        m for m in model.modules() if isinstance(m, types) and any(p.requires_grad for p in m.parameters(recurse=False))
    }


def vmap_sq_norms(model: nn.Module, x: Tensor, sample_loss, direct: list[Direct]) -> Tensor:
    """Per-sample squared gradient norms of the ``direct`` tensors alone, by ``torch.func.vmap``
    of ``torch.func.grad`` over the samples. -> (B, len(direct))"""
    from torch.func import functional_call, grad, vmap

    class Bound:  # the model with the given tensors in place of its own, called as the model is
        def __init__(self, params: dict[str, Tensor]) -> None:
            self.params = params

        def __call__(self, v: Tensor):
            return functional_call(model, self.params, (v,))

    def loss_of_one(params: dict[str, Tensor], xi: Tensor) -> Tensor:
        return sample_loss(Bound(params), xi.unsqueeze(0)).sum()

    params = {d.name: d.param.detach() for d in direct}
    grads = vmap(grad(loss_of_one), in_dims=(None, 0))(params, x.detach())
    return torch.stack([grads[d.name].reshape(x.shape[0], -1).float().pow(2).sum(1) for d in direct], 1)
